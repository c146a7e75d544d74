"""OpenAI chat completions with optional retrieval: protocol, service, router."""
