"""POST /v1/completions: OpenAI's legacy text completions, plain or over retrieved passages."""
