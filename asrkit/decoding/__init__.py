"""Search algorithms for transducer (and CTC) models, and WER scoring.

One algorithm per module; all transducer searches take ``(model, encoder_out (B, T, J),
encoder_out_lens (B,))`` where ``model`` is anything with ``predict``/``join``/``blank_id``/
``context_size`` (a ``Transducer`` or an exported model from :func:`asrkit.inference.load_model`).

Example::

    from asrkit.decoding import decode_cuts, save_results
    results = decode_cuts(model, batches, tokenizer, "modified_beam_search", beam_size=4)
    wer = save_results(exp_dir / "modified_beam_search", "test-modified_beam_search", results)
"""

from asrkit.decoding.beam_search import beam_search
from asrkit.decoding.ctc import ctc_greedy_search
from asrkit.decoding.driver import decode_cuts
from asrkit.decoding.fast_beam_search import fast_beam_search, fast_beam_search_nbest
from asrkit.decoding.greedy_search import greedy_search
from asrkit.decoding.hypothesis import SearchOutput
from asrkit.decoding.modified_beam_search import modified_beam_search
from asrkit.decoding.scoring import compute_wer, save_results, write_error_stats
from asrkit.decoding.search import SEARCH_METHODS, run_search, search_options

__all__ = [
    "SEARCH_METHODS",
    "SearchOutput",
    "beam_search",
    "compute_wer",
    "ctc_greedy_search",
    "decode_cuts",
    "fast_beam_search",
    "fast_beam_search_nbest",
    "greedy_search",
    "modified_beam_search",
    "run_search",
    "save_results",
    "search_options",
    "write_error_stats",
]
