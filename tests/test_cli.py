"""The command line: help texts, one-line errors, exit codes."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from asrkit.cli.main import app

runner = CliRunner()

COMMANDS = ["prepare", "train", "average", "decode", "export", "transcribe", "align", "bench", "info"]


def test_top_level_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize(
    "args",
    [["train"], ["average"], ["decode"], ["export"], ["transcribe"], ["align"], ["info"], ["prepare", "synth"],
     ["prepare", "fbank"], ["prepare", "tokenizer"], ["prepare", "download"], ["prepare", "manifests"],
     ["prepare", "shar"], ["bench", "loss"], ["bench", "train"], ["bench", "backends"], ["bench", "decode"]],
)
def test_every_command_help_has_an_example(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def _asrkit(*args, env=None):
    return subprocess.run([sys.executable, "-m", "asrkit.cli.main", *args], capture_output=True, text=True, env=env)


def test_user_error_is_one_line_and_exit_1(tmp_path):
    proc = _asrkit("info", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "missing.yaml" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (("decode", "--no-such-option"), "No such option: --no-such-option"),
    (("decode", "--avg", "two", "--cuts", "x.jsonl.gz"), "Invalid value for '--avg'"),
])
def test_usage_error_prints_usage_without_traceback(args, message):
    proc = _asrkit(*args)
    assert proc.returncode == 2
    assert "Usage: " in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_env_shows_traceback(tmp_path):
    import os

    env = dict(os.environ, ASRKIT_DEBUG="1")
    proc = _asrkit("info", str(tmp_path / "missing.yaml"), env=env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_bad_recipe_key_names_the_key(tmp_path):
    (tmp_path / "r.yaml").write_text("optim:\n  learning_rate: 1\n")
    proc = _asrkit("info", str(tmp_path / "r.yaml"))
    assert proc.returncode == 1 and "learning_rate" in proc.stderr and "hint:" in proc.stderr


def test_unknown_corpus_lists_choices(tmp_path):
    proc = _asrkit("prepare", "download", "timit", "--dl-dir", str(tmp_path))
    assert proc.returncode == 1 and "timit" in proc.stderr and "an4" in proc.stderr


def test_bad_world_size_is_a_one_line_error_before_anything_loads(tmp_path):
    proc = _asrkit("train", "--recipe", str(tmp_path / "missing.yaml"), "--train-cuts", "x.jsonl.gz",
                   "--world-size", "two")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--world-size 'two' is not a number of processes" in proc.stderr and "hint: a positive integer or auto" in proc.stderr
