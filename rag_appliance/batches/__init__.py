"""The OpenAI Batch API for embeddings: files, batches, their journal and the runner."""
