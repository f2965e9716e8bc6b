"""The ``asrkit`` command: one typer sub-app or command per stage (each in its own module).

Errors derived from :class:`asrkit.errors.AsrkitError` print one line (plus a hint) and exit 1;
set ``ASRKIT_DEBUG=1`` for the full traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from asrkit.cli import align, average, bench, decode, export, info, prepare, train, transcribe
from asrkit.errors import AsrkitError

app = typer.Typer(
    name="asrkit",
    help="Speech recognition toolkit: prepare data, train zipformer transducers with the pruned RNN-T loss, "
    "average, decode, export and transcribe.\n\nExample: egs/synth/run.sh --stage 0 --stop-stage 8",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(prepare.app, name="prepare")
app.command("train")(train.train)
app.command("average")(average.average)
app.command("decode")(decode.decode)
app.command("export")(export.export)
app.command("transcribe")(transcribe.transcribe)
app.command("align")(align.align)
app.add_typer(bench.app, name="bench")
app.command("info")(info.info)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        status = app(args=argv, standalone_mode=False)
        if isinstance(status, int) and status != 0:  # a command's typer.Exit(code), which click returns here
            sys.exit(status)
    except AsrkitError as exc:
        if os.environ.get("ASRKIT_DEBUG") == "1":
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        _exit_for_cli_exception(exc)
        raise


def _exit_for_cli_exception(exc: Exception) -> None:
    """Exit as click's standalone mode would for a usage error, ``Abort`` or ``Exit``; return for anything else.

    Matched by shape, not by class: typer >= 0.20 raises its vendored ``typer._click`` exceptions, which are not
    ``click``'s, and older typer raises ``click``'s own.
    """
    if type(exc).__name__ == "Abort":
        sys.exit(1)
    exit_code = getattr(exc, "exit_code", None)
    if not isinstance(exit_code, int):
        return
    show = getattr(exc, "show", None)
    if callable(show):  # ClickException / UsageError: the usage line and the message, no traceback
        show()
    sys.exit(exit_code)


def _one_line(message: str) -> str:
    """An error raised in a DataLoader worker arrives with the worker's traceback in its message: keep the cause."""
    if "Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith("asrkit.errors.") and ": " in last else last


if __name__ == "__main__":
    main()
