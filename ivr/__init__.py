"""Contact-center controller for Swedish municipalities."""

__version__ = "0.1.0"
