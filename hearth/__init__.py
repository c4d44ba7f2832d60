"""Hearth: a self-hosted platform for open-weight AI models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
