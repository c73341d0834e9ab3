"""migrate: carry a risky change through staged phases on GPU hosts, and roll it back by itself."""

__version__ = "0.1.0"
