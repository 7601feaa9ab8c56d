"""hfgit: Hugging Face-style user access tokens in front of git smart HTTP."""

__version__ = "0.1.0"
