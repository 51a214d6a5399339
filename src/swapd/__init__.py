"""swapd: model-swapping orchestrator for LLM inference servers."""

__version__ = "0.1.0"
