"""This package's version, as in pyproject.toml (a test checks they agree)."""
__version__ = "0.2.0"
