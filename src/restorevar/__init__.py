"""RestoreVAR: all-in-one image restoration with visual autoregressive models."""

__version__ = "0.1.0"
