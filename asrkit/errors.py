"""Exception hierarchy for user-facing errors.

Every error raised because of *user input* (a file, a config key, an utterance) is an
:class:`AsrkitError` whose message names the offending thing and, where possible, the fix.
The CLI prints ``str(error)`` on one line (plus ``hint`` when set) and exits with status 1.
"""

from __future__ import annotations


class AsrkitError(Exception):
    """Base class of all user-facing asrkit errors.

    Args:
        message: one line naming the file/utterance/key and what is wrong.
        hint: optional one-line suggestion printed after the message.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(AsrkitError):
    """A recipe/config file or a command-line option is invalid."""


class DataError(AsrkitError):
    """A corpus, manifest, audio file or transcript is missing or invalid."""


class CheckpointError(AsrkitError):
    """A checkpoint or exported model file is missing, truncated or incompatible."""


class ExportError(AsrkitError):
    """A model could not be exported or an exported model is invalid."""


class MissingDependencyError(AsrkitError):
    """An optional dependency needed by the requested feature is not installed."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the Python package '{package}', which is not installed",
            hint=f"pip install 'asrkit[{extra}]'",
        )
        self.package = package
