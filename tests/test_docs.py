"""The docs stay true to the code: every quoted ``asrkit`` command parses against the CLI, every dotted name in
docs/architecture.md imports (and every module of the package is on that map), every relative link resolves, and no
tracked text file describes how the work was organised instead of giving dates and commits.

Each check is a function that returns its problems as ``path:line: what is wrong`` strings; the ``*_catches_*``
tests feed each one deliberately broken input, so none of the checks can pass vacuously.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def doc_files() -> list[Path]:
    """README.md and every docs/*.md: the pages whose commands and links are checked."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# ------------------------------------------------------------------------------------------ markdown pieces
_FENCE = re.compile(r"^\s*(```|~~~)")
_SPAN = re.compile(r"`([^`]+)`")


def _split_fences(text: str) -> tuple[list[tuple[int, str]], str]:
    """(lines inside fenced code blocks as (line number, text), the text with those lines blanked)."""
    fenced: list[tuple[int, str]] = []
    prose: list[str] = []
    inside = False
    for number, line in enumerate(text.split("\n"), start=1):
        if _FENCE.match(line):
            inside = not inside
            prose.append("")
        elif inside:
            fenced.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    return fenced, "\n".join(prose)


def code_spans(text: str) -> list[tuple[int, str]]:
    """Inline code spans outside fenced blocks, as (line number of the span's start, content); a span may wrap."""
    _, prose = _split_fences(text)
    return [(_line_of(prose, m.start()), m.group(1).replace("\n", " ")) for m in _SPAN.finditer(prose)]


# ------------------------------------------------------------------------------ (a) commands parse against the CLI
_INVOCATION = re.compile(r"(?<![\w.-])asrkit(?=\s)")
_FLAG = re.compile(r"^--[A-Za-z0-9][A-Za-z0-9_-]*$")


def _cut_command(fragment: str) -> str:
    """The command text of ``fragment`` (which starts at ``asrkit``): up to a comment or a shell separator."""
    for stop in (" #", "&&", ";", " | ", "`"):
        if stop in fragment:
            fragment = fragment[: fragment.index(stop)]
    return fragment.strip()


def quoted_commands(text: str) -> list[tuple[int, str]]:
    """Every ``asrkit ...`` command quoted in a markdown page, as (line number, command).

    Found in inline code spans and in fenced blocks; in a fenced block, indented lines that start with ``[`` or
    ``--`` continue the command above them (as README's wrapped usage lines do).
    """
    found: list[tuple[int, str]] = []
    fenced, _ = _split_fences(text)
    last: list | None = None
    for number, line in fenced:
        stripped = line.strip()
        if last is not None and line[:1].isspace() and stripped[:1] in ("[", "-"):
            last[1] += " " + _cut_command(stripped)
            continue
        last = None
        for m in _INVOCATION.finditer(line):
            last = [number, _cut_command(line[m.start():])]
            found.append(last)  # type: ignore[arg-type]
    for number, span in code_spans(text):
        for m in _INVOCATION.finditer(span):
            found.append([number, _cut_command(span[m.start():])])  # type: ignore[arg-type]
    return [(n, c) for n, c in found]


def _tokens(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:  # an unbalanced quote in prose: plain words are good enough to find flags
        words = command.split()
    return [w.strip("[](),:") for w in words[1:]]


def _option_names(command) -> set[str]:
    names = {"--help"}
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def command_problems(where: str, text: str) -> list[str]:
    """Quoted commands of ``text`` (the page ``where``) whose subcommands or ``--flags`` the CLI does not know."""
    import typer

    from asrkit.cli.main import app

    root = typer.main.get_command(app)
    problems = []
    for number, command in quoted_commands(text):
        tokens = _tokens(command)
        nodes, path, i = [root], ["asrkit"], 0
        while i < len(tokens) and all(hasattr(n, "commands") for n in nodes):
            word = tokens[i]
            if not word or word.startswith("-") or word in ("...", "…"):
                break
            names = word.split("|")
            unknown = [w for w in names for n in nodes if w not in n.commands]
            if unknown:
                problems.append(f"{where}:{number}: `{command}`: {' '.join(path)} has no subcommand "
                                f"{unknown[0]!r} (it has: {', '.join(sorted(nodes[0].commands))})")
                nodes = []
                break
            nodes = [n.commands[w] for n in nodes for w in names]
            path.append(word)
            i += 1
        for word in tokens[i:] if nodes else []:
            flag = word.split("=", 1)[0]
            if not _FLAG.match(flag):
                continue
            for node in nodes:
                if flag not in _option_names(node):
                    problems.append(f"{where}:{number}: `{command}`: {' '.join(path)} has no option {flag}")
                    break
    return problems


def test_quoted_commands_parse_against_the_cli():
    problems = []
    for page in doc_files():
        problems += command_problems(_rel(page), page.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_benchmarks_quote_commands():
    """The figures page gives a command per table: finding none would mean the extraction broke."""
    assert len(quoted_commands((ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8"))) >= 8


def test_command_check_catches_unknown_flags_and_subcommands():
    page = ("Run `asrkit train --recipe r.yaml --no-such-flag 3` first.\n\n"
            "```\nasrkit bench loss --quick\nasrkit decode --cuts a.jsonl.gz\n    [--lm-scael 0.3]\n"
            "asrkit prepare synth|fbank|nosuchstage\n```\n"
            "and `asrkit bogus --x`, but `asrkit ...` and `asrkit` alone are prose.\n")
    problems = command_problems("page.md", page)
    assert any(p.startswith("page.md:1:") and "asrkit train has no option --no-such-flag" in p for p in problems)
    assert any(p.startswith("page.md:5:") and "asrkit decode has no option --lm-scael" in p for p in problems)
    assert any(p.startswith("page.md:7:") and "no subcommand 'nosuchstage'" in p for p in problems)
    assert any(p.startswith("page.md:9:") and "no subcommand 'bogus'" in p for p in problems)
    assert len(problems) == 4, problems
    assert command_problems("ok.md", "`asrkit decode --no-use-averaged-model --cuts x --lm-scale=0.2`") == []


# ------------------------------------------------------------------- (b) architecture.md names what exists
_DOTTED = re.compile(r"^asrkit(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def resolve_dotted(name: str):
    """Import the longest importable module prefix of ``name`` and look the rest up as attributes."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        module_name = ".".join(parts[:k])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue
            raise
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def dotted_name_problems(where: str, text: str) -> list[str]:
    problems = []
    for number, span in code_spans(text):
        if not _DOTTED.match(span):
            continue
        try:
            resolve_dotted(span)
        except (ImportError, AttributeError) as e:
            problems.append(f"{where}:{number}: `{span}` does not exist ({type(e).__name__}: {e})")
    return problems


def package_modules() -> list[str]:
    """Dotted names of every module and package under asrkit/."""
    names = []
    for path in sorted((ROOT / "asrkit").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def unmapped_module_problems(where: str, text: str, modules: list[str]) -> list[str]:
    named = {span for _, span in code_spans(text)}
    return [f"{where}: module `{m}` is missing from the package map" for m in modules if m not in named]


def test_architecture_names_exist():
    page = ROOT / "docs" / "architecture.md"
    problems = dotted_name_problems(_rel(page), page.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_architecture_maps_every_module():
    page = ROOT / "docs" / "architecture.md"
    problems = unmapped_module_problems(_rel(page), page.read_text(encoding="utf-8"), package_modules())
    assert not problems, "\n".join(problems)


def test_dotted_name_check_catches_missing_names():
    page = "Calls `asrkit.training.loop.Trainer.run`,\nthen `asrkit.training.loop.Trainer.fly` and `asrkit.nosuch.mod`."
    problems = dotted_name_problems("arch.md", page)
    assert len(problems) == 2, problems
    assert problems[0].startswith("arch.md:2: `asrkit.training.loop.Trainer.fly` does not exist")
    assert problems[1].startswith("arch.md:2: `asrkit.nosuch.mod` does not exist")
    missing = unmapped_module_problems("arch.md", page, ["asrkit.training.loop", "asrkit.training"])
    assert missing == ["arch.md: module `asrkit.training.loop` is missing from the package map",
                       "arch.md: module `asrkit.training` is missing from the package map"]


# ------------------------------------------------------------- (c) no words of how the work was organised
# The words are written in two pieces so that this file passes its own check.
_FORBIDDEN = re.compile(r"\b(" + "|".join(("ses" "sions?", "rou" "nds?", "wa" "ves?")) + r")\b", re.IGNORECASE)

# (path pattern, allowed phrase, why): each allowed phrase is removed from a line before the check runs.
ALLOWED = [
    ("*", r"\b(np\.|math\.)?" + "rou" "nd\\(", "Python's and numpy's rounding function"),
    ("*", r"\b" + "rou" "nd[- ]trips?\\b", "a serialisation that reads back what it wrote"),
    ("*", r"\b" + "rou" "nd-off\\b", "floating-point rounding error"),
    ("*", r"\b" + "wa" "ve files?\\b", "the WAV audio format"),
    ("tests/*.py", r"scope=\"" + "ses" "sion\"", "pytest's fixture scope"),
    ("asrkit/inference.py", r"\b" + "ses" "sions\\b", "onnxruntime InferenceSession objects, one per ONNX file"),
    ("asrkit/data/corpora/tts/festival.py", r"\butt\.save\." + "wa" "ve\\b", "festival's Scheme function"),
]


def tracked_text_files() -> list[Path]:
    """Files git tracks (plus new ones it does not ignore) that are UTF-8 text."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = []
    for name in filter(None, listed):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def organisation_word_problems(relpath: str, text: str) -> list[str]:
    allowed = [re.compile(phrase, re.IGNORECASE) for pattern, phrase, _ in ALLOWED if Path(relpath).match(pattern)
               or pattern == "*"]
    problems = []
    for number, line in enumerate(text.split("\n"), start=1):
        for phrase in allowed:
            line = phrase.sub(" ", line)
        for m in _FORBIDDEN.finditer(line):
            problems.append(f"{relpath}:{number}: {m.group(0)!r} in: {line.strip()[:160]}")
    return problems


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout to list tracked files")
def test_no_work_organisation_words():
    problems = []
    for path in tracked_text_files():
        problems += organisation_word_problems(_rel(path), path.read_text(encoding="utf-8"))
    assert not problems, "use dates and commits instead:\n" + "\n".join(problems)


def test_organisation_word_check_catches_words_and_keeps_technical_phrases():
    bad = "ok line\nmeasured in the third " + "rou" "nd of " + "ses" "sion 4\nnew " + "Wa" "ve of work"
    assert organisation_word_problems("docs/x.md", bad) == [
        f"docs/x.md:2: {'rou' 'nd'!r} in: measured in the third {'rou' 'nd'} of {'ses' 'sion'} 4",
        f"docs/x.md:2: {'ses' 'sion'!r} in: measured in the third {'rou' 'nd'} of {'ses' 'sion'} 4",
        f"docs/x.md:3: {'Wa' 've'!r} in: new {'Wa' 've'} of work",
    ]
    good = ("x = " + "rou" "nd(y, 2); np." + "rou" "nd(z)\nA " + "rou" "nd trip through lilcom; " + "rou" "nd-off\n"
            "not a " + "wa" "ve file\nort.InferenceSes" "sion(path)\nwavefront steps; " + "rou" "nding")
    assert organisation_word_problems("asrkit/x.py", good) == []
    ort = "self." + "ses" "sions = " + "ses" "sions"
    assert organisation_word_problems("asrkit/inference.py", ort) == []
    assert len(organisation_word_problems("asrkit/loop.py", ort)) == 2


# --------------------------------------------------------------------------- (d) relative links resolve
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a markdown page (lower case, punctuation dropped, spaces to hyphens)."""
    _, prose = _split_fences(text)
    anchors: set[str] = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", prose, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def link_problems(page: Path, text: str) -> list[str]:
    problems = []
    _, prose = _split_fences(text)
    prose = _SPAN.sub(lambda s: re.sub(r"[^\n]", " ", s.group(0)), prose)  # a link inside code is not a link
    for m in _LINK.finditer(prose):
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        where = f"{_rel(page)}:{_line_of(prose, m.start())}: link ({target})"
        if file_part and not dest.exists():
            problems.append(f"{where}: {_rel(dest)} does not exist")
        elif anchor and dest.suffix == ".md":
            headings = heading_anchors(dest.read_text(encoding="utf-8") if file_part else text)
            if anchor not in headings:
                problems.append(f"{where}: {_rel(dest)} has no heading with anchor #{anchor}")
    return problems


def test_relative_links_resolve():
    problems = []
    for page in doc_files():
        problems += link_problems(page, page.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_link_check_catches_missing_files_and_anchors(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## GPU (one NVIDIA H200)\n")
    page = tmp_path / "page.md"
    text = ("# Title\n[ok](other.md#gpu-one-nvidia-h200) [ok](#title) [web](https://example.org/x)\n"
            "[gone](missing.md)\n[bad anchor](other.md#gpu) ``[not a link](in-code.md)``\n")
    problems = link_problems(page, text)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{page}:3: link (missing.md): ") and problems[0].endswith("does not exist")
    assert problems[1].startswith(f"{page}:4: link (other.md#gpu): ") and "no heading with anchor #gpu" in problems[1]


# ------------------------------------------------------------------------------------------ named tests
_TEST_ID = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def named_test_problems(files: list[Path]) -> list[str]:
    """Every ``tests/x.py[::test_name]`` a page names (as the check of a claim) exists."""
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in _TEST_ID.finditer(text):
            test_file, name = ROOT / match.group(1), match.group(2)
            where = f"{_rel(path)}:{_line_of(text, match.start())}"
            if not test_file.is_file():
                problems.append(f"{where}: {match.group(1)} does not exist")
            elif name and not re.search(rf"^def {name}\(", test_file.read_text(encoding="utf-8"), re.M):
                problems.append(f"{where}: {match.group(1)} has no test {name}")
    return problems


def test_named_tests_exist():
    problems = named_test_problems(doc_files())
    assert not problems, "\n".join(problems)


def test_named_test_check_catches_missing_tests(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("ok `tests/test_docs.py::test_named_tests_exist`\n"
                    "bad `tests/test_docs.py::test_that_never_was` and `tests/test_nothing.py`\n")
    problems = named_test_problems([page])
    assert len(problems) == 2 and "page.md:2: tests/test_docs.py has no test test_that_never_was" in problems[0]
    assert "tests/test_nothing.py does not exist" in problems[1]
