# asrkit — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.asrkit-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench clean-demo help

help:
	@echo "make demo    install, then run egs/synth/run.sh end to end (prints %WER on unseen voices and on an engine left out of training)"
	@echo "make test    install, then run the whole test suite (slow end-to-end tests included)"
	@echo "make test-fast  tests without the slow end-to-end ones"
	@echo "make bench   loss / decode / training benchmarks (figures for docs/benchmarks.md)"

install: $(STAMP)

# Re-running is quick: the stamp is only rebuilt when the dependencies' declarations change.
$(STAMP): pyproject.toml tools/install_system_deps.sh tools/install_fast_rnnt.sh
	bash tools/install_system_deps.sh
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
	# torch first, pinned: the local CPU wheel. Nothing below may replace it (no CUDA packages).
	$(VPY) -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	bash tools/install_fast_rnnt.sh $(VPY)
	$(VPY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') and not torch.version.cuda else 'unexpected torch ' + v)"
	touch $(STAMP)

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash egs/synth/run.sh

test: install
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow" $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/asrkit bench loss

clean-demo:
	rm -rf egs/synth/data egs/synth/exp
