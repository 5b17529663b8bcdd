"""qgpt: microgpt trained in fixed-point integer arithmetic."""

__version__ = "0.1.0"
