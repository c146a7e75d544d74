"""Command line: rag-appliance serve | index | search | upgrade-sparse | eval | migrate.

index, search and eval run in-process, or against a running server with --server URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag_appliance.errors import AppError, SettingsError

log = logging.getLogger("rag_appliance")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag-appliance", description="Self-hosted embeddings and RAG on one GPU."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=os.environ.get("RAG_CONFIG"),
        help="YAML profile (default: $RAG_CONFIG, else the built-in CPU profile)",
    )
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--server",
        metavar="URL",
        help="run against this running appliance over HTTP (e.g. http://127.0.0.1:8000) instead "
        "of in-process; nothing needs stopping",
    )
    remote.add_argument(
        "--api-key", default=None, help="the server's API key with --server (default: $RAG_API_KEY)"
    )
    remote.add_argument(
        "--retries",
        type=int,
        default=5,
        help="with --server: retries of a call on connect errors, 429 and 503, with backoff",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="serve the HTTP API")
    serve.add_argument("--host", help="interface to bind (overrides server.host)")
    serve.add_argument("--port", type=int, help="port to bind (overrides server.port)")

    index = sub.add_parser(
        "index",
        parents=[common, remote],
        help="index files and folders (in-process, or through a server with --server)",
    )
    index.add_argument("paths", nargs="+", help="files or folders (recursive)")
    index.add_argument("--collection", required=True, help="target collection")
    index.add_argument("--metadata", default="{}", help="JSON object stored with every file")
    index.add_argument(
        "--workers", type=int, default=4, help="parallel uploads with --server (default 4)"
    )

    search = sub.add_parser("search", parents=[common, remote], help="search a collection")
    search.add_argument("query", help="the search text")
    search.add_argument("--collection", required=True, help="collection to search")
    search.add_argument("--top-k", type=int, default=5, help="hits to show")
    search.add_argument("--filter", help='metadata filter as JSON, e.g. \'{"lang": "en"}\'')

    upgrade = sub.add_parser(
        "upgrade-sparse",
        parents=[common],
        help="give a dense-only collection BM25 sparse vectors from its stored text (in-process)",
    )
    upgrade.add_argument("--collection", required=True, help="collection to upgrade")

    evaluate = sub.add_parser(
        "eval",
        parents=[common, remote],
        help="index a BEIR dataset and print retrieval metrics",
    )
    evaluate.add_argument("--dataset", required=True, type=Path, help="BEIR-format folder")
    evaluate.add_argument("--collection", required=True, help="collection to index into")
    evaluate.add_argument("--k", type=int, default=10, help="cut-off of the metrics")
    evaluate.add_argument(
        "--exact", action="store_true", help="also rank by exact numpy search, as a reference"
    )
    evaluate.add_argument("--json", type=Path, default=None, help="also write the results here")
    evaluate.add_argument(
        "--model",
        action="append",
        default=[],
        help="compare this embedding model (repeat: hub name, local path or registry name); each "
        "indexes the set into its own temporary collection",
    )
    evaluate.add_argument(
        "--mode", choices=["dense", "sparse", "hybrid"], help="search mode of --model rows"
    )

    finetune = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune the embedding model on query-document pairs (docs/finetuning.md)",
    )
    finetune.add_argument("--pairs", type=Path, help="JSONL {query, positive, negative?}")
    finetune.add_argument("--from-logs", action="store_true", help="pairs from the search log")
    finetune.add_argument("--output", type=Path, help="folder to save the model in (new)")
    finetune.add_argument(
        "--name",
        help="model name (default: the output folder's name); without --output it is saved "
        "under data_dir/models/NAME",
    )
    finetune.add_argument("--base", help="model to start from (default: embedding.model)")
    finetune.add_argument("--epochs", type=int, default=2, help="passes over the pairs")
    finetune.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    finetune.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    finetune.add_argument("--warmup", type=float, default=0.1, help="warm-up share of steps")
    finetune.add_argument("--seed", type=int, default=42, help="seed of split, order, init")
    finetune.add_argument(
        "--max-length", type=int, help="tokens per training text (default: the served limit)"
    )
    finetune.add_argument(
        "--eval-split", type=float, default=0.2, help="share of queries held out for scoring"
    )
    finetune.add_argument(
        "--force", action="store_true", help="save even when it does not beat its base"
    )

    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy collections to another store without re-embedding (resumable)",
    )
    migrate.add_argument(
        "--to-backend",
        required=True,
        choices=["qdrant_edge", "qdrant_server", "pgvector", "milvus"],
        help="the target store's backend",
    )
    migrate.add_argument("--to-url", help="the target store's URL (else its embedded default)")
    migrate.add_argument("--to-api-key", help="the target Qdrant server's API key")
    migrate.add_argument(
        "--to-data-dir", type=Path, help="data_dir of an embedded target (default: data_dir)"
    )
    migrate.add_argument(
        "--collection",
        action="append",
        default=[],
        help="a collection to copy (repeat; default all)",
    )

    reindex = sub.add_parser(
        "reindex",
        parents=[common],
        help="re-embed a collection with a new model into a new version, then switch to it "
        "atomically (blue/green; in-process; docs/finetuning.md)",
    )
    reindex.add_argument("--collection", required=True, help="the collection to re-index")
    reindex.add_argument("--model", help="the new embedding model (hub name, path, registry name)")
    reindex.add_argument("--batch", type=int, default=64, help="chunks embedded per step")
    reindex.add_argument("--resume", action="store_true", help="continue an interrupted run")
    reindex.add_argument(
        "--drop-old", action="store_true", help="delete the old versions (after the switch)"
    )

    pairs = sub.add_parser("pairs", help="training pairs from the search log (docs/feedback.md)")
    pairs_sub = pairs.add_subparsers(dest="pairs_command", required=True)
    export = pairs_sub.add_parser(
        "export", parents=[common], help="write JSONL {query, positive, negative?} (in-process)"
    )
    export.add_argument("--output", required=True, type=Path, help="the JSONL file to write")
    export.add_argument("--collection", help="only this collection's events")
    export.add_argument("--since", help="only events from then on (ISO date or date-time)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if getattr(args, "server", None):
        return _remote_main(args)
    try:
        settings = _settings(args)
        logging.basicConfig(
            level=settings.server.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if args.command == "serve":
            return _serve(settings)
        return asyncio.run(_local(args, settings))
    except SettingsError as exc:
        print(f"rag-appliance: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"rag-appliance: {exc.message}", file=sys.stderr)
        return 1


def _remote_main(args: argparse.Namespace) -> int:
    """index / search / eval over HTTP: no settings, models or store loaded here."""
    try:
        return asyncio.run(_remote(args))
    except SettingsError as exc:
        print(f"rag-appliance: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"rag-appliance: {exc.message}", file=sys.stderr)
        return 1


async def _remote(args: argparse.Namespace) -> int:
    from rag_appliance.remote import commands
    from rag_appliance.remote.client import api_key

    key = api_key(args.api_key)
    if args.retries < 0:
        raise SettingsError("--retries must be 0 or more")
    remote = commands.Remote(args.server, key, args.retries + 1)
    if args.command == "index":
        if args.workers < 1:
            raise SettingsError("--workers must be at least 1")
        meta = _json_arg(args.metadata, "metadata") or {}
        return await commands.index_command(remote, args.paths, args.collection, meta, args.workers)
    if args.command == "search":
        flt = _json_arg(args.filter, "filter")
        return await commands.search_command(remote, args.query, args.collection, args.top_k, flt)
    if args.exact or args.model or args.mode:
        raise SettingsError("eval --server takes no --exact, --model or --mode (in-process only)")
    return await commands.eval_command(remote, args.dataset, args.collection, args.k, args.json)


def _settings(args: argparse.Namespace) -> Any:
    from rag_appliance.settings import load_settings

    settings = load_settings(args.config)
    if args.command == "serve":
        pairs = (("host", args.host), ("port", args.port))
        server = settings.server.model_copy(update={k: v for k, v in pairs if v is not None})
        settings = settings.model_copy(update={"server": server})
    else:  # one-shot commands: keep the terminal for results and progress bars, and no chat
        server = settings.server.model_copy(update={"log_level": "warning"})
        generation = settings.generation.model_copy(update={"enabled": False})
        settings = settings.model_copy(update={"server": server, "generation": generation})
    return settings


def _target_settings(settings: Any, args: argparse.Namespace) -> Any:
    """The configured settings with the store `migrate` copies into."""
    from pydantic import ValidationError

    from rag_appliance.settings import StoreSettings

    # The target's URL and key are its own: never the source's.
    fields = {"backend": args.to_backend, "url": args.to_url, "api_key": args.to_api_key}
    try:
        store = StoreSettings.model_validate(settings.store.model_dump() | fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"--to-*: {first['msg']}") from None
    update: dict[str, Any] = {"store": store}
    if args.to_data_dir is not None:
        update["data_dir"] = args.to_data_dir
    return settings.model_copy(update=update)


def _json_arg(raw: str | None, name: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"--{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"--{name} must be a JSON object")
    return value


async def _local(args: argparse.Namespace, settings: Any) -> int:
    from rag_appliance import local_commands

    if args.command == "index":
        meta = _json_arg(args.metadata, "metadata") or {}
        return await local_commands.index_command(settings, args.paths, args.collection, meta)
    if args.command == "pairs":
        from rag_appliance.feedback.pairs import export_command

        return await export_command(settings, args.output, args.collection, args.since)
    if args.command == "finetune":
        from rag_appliance.finetune.command import run_from_args

        return await run_from_args(settings, args)
    if args.command == "reindex":
        return await local_commands.reindex_command(
            settings, args.collection, args.model, args.batch, args.resume, args.drop_old
        )
    if args.command == "upgrade-sparse":
        return await local_commands.upgrade_sparse_command(settings, args.collection)
    if args.command == "migrate":
        return await local_commands.migrate_command(
            settings, _target_settings(settings, args), args.collection
        )
    if args.command == "search":
        flt = _json_arg(args.filter, "filter")
        return await local_commands.search_command(
            settings, args.query, args.collection, args.top_k, flt
        )
    return await local_commands.eval_command(
        settings,
        args.dataset,
        args.collection,
        args.k,
        args.exact,
        args.json,
        args.model,
        args.mode,
    )


def _serve(settings: Any) -> int:
    # Heavy imports only now: `--help` and settings errors stay fast.
    import uvicorn

    from rag_appliance.app import create_app
    from rag_appliance.services import build_services

    services = build_services(settings)
    app = create_app(settings, services)
    log.info("serving on http://%s:%d", settings.server.host, settings.server.port)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        # SIGTERM ends the server within 5 s: requests still running after 2 s are cancelled
        # (a parse's worker killed, an index call's uncommitted chunks rolled back).
        timeout_graceful_shutdown=2,
    )
    return 0
