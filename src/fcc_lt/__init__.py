"""fcc: Feature Clusters Compression and the long-tail bag of tricks in plain PyTorch."""

__version__ = "0.1.0"
