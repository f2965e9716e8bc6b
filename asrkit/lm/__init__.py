"""Language models for decoding: token n-gram models (ARPA files, Kneser-Ney estimation) and shallow fusion.

Example::

    from asrkit.lm import NgramLM, TokenLMScorer
    scorer = TokenLMScorer(NgramLM.read_arpa("data/lang/lm-3gram.arpa"), tokenizer.symbols)
    hyps = modified_beam_search(model, encoder_out, encoder_out_lens, lm=scorer, lm_scale=0.3)
"""

from asrkit.lm.fusion import TokenLMScorer
from asrkit.lm.kneser_ney import estimate_kneser_ney
from asrkit.lm.ngram import BOS, EOS, NgramLM, perplexity

__all__ = ["BOS", "EOS", "NgramLM", "TokenLMScorer", "estimate_kneser_ney", "perplexity"]
