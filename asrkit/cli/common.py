"""Option declarations shared by several commands (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ExpDir = Annotated[Path, typer.Option("--exp-dir", help="Experiment directory (checkpoints, config.yaml, logs).")]
LangDir = Annotated[
    Path, typer.Option("--lang-dir", help="Directory with bpe.model and tokens.txt from `asrkit prepare tokenizer`.")
]
Epoch = Annotated[int, typer.Option("--epoch", help="Use epoch-EPOCH.pt (the last epoch to average).")]
Iter = Annotated[int, typer.Option("--iter", help="Use checkpoint-ITER.pt instead of epoch checkpoints (0: off).")]
Avg = Annotated[int, typer.Option("--avg", help="Number of checkpoints to average (ending at --epoch/--iter).")]
UseAveragedModel = Annotated[
    bool,
    typer.Option(
        "--use-averaged-model/--no-use-averaged-model",
        help="Average with the running-average models stored in the checkpoints (icefall's --use-averaged-model).",
    ),
]
Force = Annotated[bool, typer.Option("--force", help="Redo the work even if its outputs exist.")]
NumJobs = Annotated[int, typer.Option("--num-jobs", "-j", help="Parallel processes.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
SkipBadAudio = Annotated[
    bool, typer.Option(help="Drop (log, count and list) utterances whose audio cannot be read instead of stopping.")
]
BlankPenalty = Annotated[
    float,
    typer.Option("--blank-penalty", help="Transducer searches: subtracted from the blank logit at every frame (> 0 "
                                         "trades deletions for insertions; tune it on a dev set)."),
]
Recipe = Annotated[Path, typer.Option("--recipe", help="Recipe YAML (model + optimization + data), see recipes/.")]
FeatureCuts = Annotated[Path, typer.Option("--train-cuts", help="Cuts with features to train on.")]
Overrides = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override any recipe key (repeatable): --set optim.base_lr=0.02")
]


def overrides_dict(items: Optional[list[str]]) -> dict:
    """``--set KEY=VALUE`` options -> ``{key: value}`` (values parsed as YAML scalars)."""
    from asrkit.config import parse_override

    return dict(parse_override(s) for s in (items or []))


def optional_path(value: Optional[Path]) -> Optional[Path]:
    return Path(value) if value else None
