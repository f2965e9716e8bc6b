"""asrkit: a command-line speech-recognition toolkit (zipformer transducers, pruned RNN-T loss)."""

__version__ = "0.1.0"
