"""tailkd: distil reasoning from a costly, imperfect teacher LLM into small students."""

__version__ = "0.1.0"
