"""scorecheck: check published LLM benchmark numbers against any OpenAI-compatible endpoint."""

__version__ = "0.1.0"
