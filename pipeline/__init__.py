"""cirforge: synthetic training data for composed image retrieval, and the training that uses it."""

__version__ = "0.1.0"
