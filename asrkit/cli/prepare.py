"""``asrkit prepare``: corpora, manifests, fbank features, tokenizer, token n-gram LM, Lhotse Shar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from asrkit.cli.common import Force, LangDir, NumJobs, Verbose
from asrkit.utils.logging import setup_logging

app = typer.Typer(
    help="Data preparation stages.\n\nExample: asrkit prepare synth --corpus-dir data/synth --hours 2",
    no_args_is_help=True,
)

CORPORA = ("synth", "an4", "librispeech", "musan")


def _check_corpus(corpus: str) -> str:
    from asrkit.errors import ConfigError

    if corpus not in CORPORA:
        raise ConfigError(f"unknown corpus {corpus!r}", hint=f"choose one of: {', '.join(CORPORA)}")
    return corpus


@app.command("synth")
def synth(
    corpus_dir: Annotated[Path, typer.Option(help="Where wavs are generated.")] = Path("data/synth"),
    manifest_dir: Annotated[Path, typer.Option(help="Where lhotse manifests are written.")] = Path("data/manifests"),
    hours: Annotated[float, typer.Option(help="Total hours of audio (train+dev+test).")] = 2.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed -> same corpus).")] = 0,
    sentences: Annotated[bool, typer.Option(help="Also generate short English sentences.")] = False,
    train_speakers: Annotated[int, typer.Option(
        help="Training speakers (voice x variant x rate x pitch); they share the training hours equally (dev and "
             "test do not change with it).")] = 100,
    generated_voices: Annotated[int, typer.Option(
        help="How many training speakers use a randomly generated espeak-ng voice variant (random vocal-tract "
             "length, formants, pitch, voice quality) instead of one of espeak-ng's; dev/test are unchanged.")] = 0,
    engine_mix: Annotated[list[str], typer.Option(
        "--engine-mix", help="engine=share (repeatable): the share of the training speakers each TTS engine speaks "
                             "(espeak, flite, festival, pico, rhvoice; espeak required).")] = ["espeak=1"],
    train_hours: Annotated[Optional[float], typer.Option(
        help="Hours of the training split (default: what --hours leaves after dev and test, 7 % each); dev and "
             "test do not change with it.")] = None,
    engines_on_top: Annotated[bool, typer.Option(
        "--engines-on-top/--engines-shared",
        help="On top: the other engines of --engine-mix add speakers and hours to the espeak-ng corpus that --hours "
             "and --train-speakers make (100 espeak-ng speakers + 25 festival with espeak=4 festival=1); shared: "
             "they take a share of those speakers and hours.")] = False,
    eval_engine: Annotated[str, typer.Option(
        help="An engine left out of training whose speakers make dev_<engine> and test_<engine>; 'none' for "
             "none.")] = "none",
    num_jobs: NumJobs = 2,
    verbose: Verbose = False,
) -> None:
    """Generate the offline synthetic-speech corpus (espeak-ng and other TTS engines) and its manifests.

    Example: asrkit prepare synth --corpus-dir data/synth --hours 2 --engine-mix espeak=0.8 --engine-mix flite=0.2
    --eval-engine festival
    """
    from asrkit.data.corpora.synth import generate_synth, parse_engine_mix, prepare_synth

    setup_logging(manifest_dir / "log" / "prepare-synth.log", verbose=verbose)
    generate_synth(corpus_dir, hours=hours, seed=seed, num_jobs=num_jobs, sentences=sentences,
                   train_speakers=train_speakers, generated_voice_speakers=generated_voices,
                   engine_mix=parse_engine_mix(engine_mix), eval_engine=None if eval_engine == "none" else eval_engine,
                   train_hours=train_hours, engines_on_top=engines_on_top)
    prepare_synth(corpus_dir, manifest_dir)


@app.command("download")
def download(
    corpus: Annotated[str, typer.Argument(help="an4 | librispeech | musan")],
    dl_dir: Annotated[Path, typer.Option(help="Download directory (archives found there are reused).")] = Path(
        "download"
    ),
    full_libri: Annotated[bool, typer.Option(help="LibriSpeech: all 960 h instead of train-clean-100.")] = False,
    verbose: Verbose = False,
) -> None:
    """Download (and safely extract) a corpus.

    Example: asrkit prepare download an4 --dl-dir download
    """
    _check_corpus(corpus)
    setup_logging(dl_dir / "log" / f"download-{corpus}.log", verbose=verbose)
    if corpus == "an4":
        from asrkit.data.corpora.an4 import download_an4

        download_an4(dl_dir)
    elif corpus == "librispeech":
        from asrkit.data.corpora.librispeech import download_librispeech_corpus

        download_librispeech_corpus(dl_dir, full_libri=full_libri)
    elif corpus == "musan":
        from asrkit.data.corpora.musan import download_musan_corpus

        download_musan_corpus(dl_dir)
    else:
        from asrkit.errors import ConfigError

        raise ConfigError("the synth corpus is generated, not downloaded", hint="use `asrkit prepare synth`")


@app.command("manifests")
def manifests(
    corpus: Annotated[str, typer.Argument(help="an4 | librispeech | musan | synth")],
    corpus_dir: Annotated[Path, typer.Option(help="The extracted corpus.")],
    output_dir: Annotated[Path, typer.Option(help="Where manifests are written.")] = Path("data/manifests"),
    num_jobs: NumJobs = 2,
    verbose: Verbose = False,
) -> None:
    """Write lhotse RecordingSet/SupervisionSet manifests for a corpus.

    Example: asrkit prepare manifests an4 --corpus-dir download/an4 --output-dir data/manifests
    """
    _check_corpus(corpus)
    setup_logging(output_dir / "log" / f"manifests-{corpus}.log", verbose=verbose)
    if corpus == "an4":
        from asrkit.data.corpora.an4 import prepare_an4

        prepare_an4(corpus_dir, output_dir)
    elif corpus == "librispeech":
        from asrkit.data.corpora.librispeech import prepare_librispeech_corpus

        prepare_librispeech_corpus(corpus_dir, output_dir, num_jobs=num_jobs)
    elif corpus == "musan":
        from asrkit.data.corpora.musan import prepare_musan_corpus

        prepare_musan_corpus(corpus_dir, output_dir)
    else:
        from asrkit.data.corpora.synth import prepare_synth

        prepare_synth(corpus_dir, output_dir)


@app.command("fbank")
def fbank(
    prefix: Annotated[str, typer.Option(help="Manifest prefix (corpus name), e.g. synth, an4, librispeech.")],
    splits: Annotated[list[str], typer.Option("--split", help="Splits to process (repeat the option).")],
    manifest_dir: Annotated[Path, typer.Option(help="Input manifests.")] = Path("data/manifests"),
    output_dir: Annotated[Path, typer.Option(help="Output cuts + lilcom features.")] = Path("data/fbank"),
    speed_perturb: Annotated[
        Optional[list[str]], typer.Option("--speed-perturb", help="Splits to add 0.9x/1.1x copies to.")
    ] = None,
    window: Annotated[
        Optional[float], typer.Option(help="Splits without transcripts (MUSAN): cut recordings into windows of "
                                           "this many seconds.")
    ] = None,
    num_jobs: NumJobs = 2,
    force: Force = False,
    verbose: Verbose = False,
) -> None:
    """Compute 80-dim fbank features (lilcom storage) for manifest splits.

    Example: asrkit prepare fbank --prefix synth --split train --split test --speed-perturb train
    """
    from asrkit.data.audio import use_soundfile_backend
    from asrkit.data.fbank import compute_fbank_for_splits

    setup_logging(output_dir / "log" / f"fbank-{prefix}.log", verbose=verbose)
    use_soundfile_backend()
    compute_fbank_for_splits(manifest_dir, prefix, splits, output_dir, speed_perturb or (), num_jobs, force,
                             window)


@app.command("tokenizer")
def tokenizer(
    cuts: Annotated[Path, typer.Option(help="Training cuts whose transcripts train the tokenizer.")],
    lang_dir: LangDir = Path("data/lang"),
    vocab_size: Annotated[int, typer.Option(help="Upper bound on the number of tokens.")] = 500,
    model_type: Annotated[str, typer.Option(help="unigram | bpe")] = "unigram",
    force: Force = False,
    verbose: Verbose = False,
) -> None:
    """Train a sentencepiece tokenizer: bpe.model + tokens.txt (<blk> = 0).

    Example: asrkit prepare tokenizer --cuts data/fbank/synth_cuts_train.jsonl.gz --lang-dir data/lang
    """
    from asrkit.data.prepare_lang import prepare_tokenizer

    setup_logging(lang_dir / "log" / "tokenizer.log", verbose=verbose)
    prepare_tokenizer(cuts, lang_dir, vocab_size, model_type, force)


@app.command("lm")
def lm(
    cuts: Annotated[Path, typer.Option(help="Training cuts whose transcripts train the language model.")],
    lang_dir: LangDir = Path("data/lang"),
    order: Annotated[int, typer.Option(min=1, help="n-gram order (over tokenizer pieces).")] = 3,
    dev_cuts: Annotated[Optional[Path], typer.Option(help="Also report the perplexity on these cuts.")] = None,
    force: Force = False,
    verbose: Verbose = False,
) -> None:
    """Estimate a Kneser-Ney token n-gram LM (lm-<order>gram.arpa in --lang-dir) for `asrkit decode --lm`.

    Needs the tokenizer (bpe.model) in --lang-dir.

    Example: asrkit prepare lm --cuts data/fbank/synth_cuts_train.jsonl.gz --lang-dir data/lang --order 3
    """
    from asrkit.data.prepare_lang import prepare_lm

    setup_logging(lang_dir / "log" / "lm.log", verbose=verbose)
    path = prepare_lm(cuts, lang_dir, order, dev_cuts, force)
    typer.echo(str(path))


@app.command("shar")
def shar(
    cuts: Annotated[Path, typer.Option(help="Cuts (with features) to export.")],
    output_dir: Annotated[Path, typer.Option(help="Shar output directory.")],
    shard_size: Annotated[int, typer.Option(help="Cuts per shard.")] = 1000,
    force: Force = False,
    verbose: Verbose = False,
) -> None:
    """Export cuts + features to Lhotse Shar shards (for streaming from object storage).

    Example: asrkit prepare shar --cuts data/fbank/synth_cuts_train.jsonl.gz --output-dir data/shar/train
    """
    from asrkit.data.datamodule import load_cuts
    from asrkit.data.shar import export_shar

    setup_logging(output_dir / "log" / "shar.log", verbose=verbose)
    export_shar(load_cuts(cuts), output_dir, shard_size=shard_size, overwrite=force)
