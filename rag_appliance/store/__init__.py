"""Vector stores: the VectorStore protocol (base) and its Qdrant adapters (edge, server)."""
