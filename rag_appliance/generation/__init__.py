"""Text generation: the Generator protocol and its vLLM backend."""
