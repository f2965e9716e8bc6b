"""Logging set-up shared by all commands: console + a log file per run (per rank)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_logging(log_file: Optional[Path] = None, rank: int = 0, verbose: bool = False) -> None:
    """Log INFO to stderr (rank 0 only) and everything to ``log_file`` (one file per rank)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    fmt = logging.Formatter(FORMAT, datefmt="%H:%M:%S")
    if rank == 0:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        root.addHandler(console)
    if log_file is not None:
        log_file = Path(log_file)
        if rank > 0:
            log_file = log_file.with_name(f"{log_file.stem}-rank{rank}{log_file.suffix}")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
    for noisy in ("lhotse", "matplotlib", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
