"""Retrieval: query-side search over committed chunks, and the retrieval metrics."""
