"""rag-appliance: OpenAI-compatible embeddings and RAG on one GPU."""

__version__ = "0.1.0"
