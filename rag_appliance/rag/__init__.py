"""Retrieval (and, later, retrieve-then-generate)."""
