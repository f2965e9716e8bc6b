"""Corpus preparation: one module per corpus with ``download_<c>()`` / ``prepare_<c>()`` (lhotse convention).

Importing this package is cheap: lhotse and other heavy dependencies are imported inside the functions.

=============  ============================================  =====================================================
corpus         download / generate                           prepare (lhotse manifests)
=============  ============================================  =====================================================
synth          :func:`generate_synth` (espeak-ng, offline)   :func:`prepare_synth`
an4            :func:`download_an4`                          :func:`prepare_an4`
librispeech    :func:`download_librispeech`                  :func:`prepare_librispeech`
musan          :func:`download_musan`                        :func:`prepare_musan`
=============  ============================================  =====================================================
"""

from asrkit.data.corpora.an4 import download_an4, prepare_an4
from asrkit.data.corpora.download import download_file, safe_extract_tar
from asrkit.data.corpora.librispeech import download_librispeech, prepare_librispeech
from asrkit.data.corpora.musan import download_musan, prepare_musan
from asrkit.data.corpora.synth import generate_synth, prepare_synth

__all__ = [
    "download_an4",
    "download_file",
    "download_librispeech",
    "download_musan",
    "generate_synth",
    "prepare_an4",
    "prepare_librispeech",
    "prepare_musan",
    "prepare_synth",
    "safe_extract_tar",
]
