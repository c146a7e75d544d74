"""Optional cross-encoder reranking: the model, the service, POST /v1/rerank."""
