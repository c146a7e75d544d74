"""Command line: rag-appliance serve [--config F] [--host H] [--port P]."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from rag_appliance.errors import SettingsError

log = logging.getLogger("rag_appliance")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag-appliance", description="Self-hosted embeddings and RAG on one GPU."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument(
        "--config",
        default=os.environ.get("RAG_CONFIG"),
        help="YAML profile (default: $RAG_CONFIG, else the built-in CPU profile)",
    )
    serve.add_argument("--host", help="interface to bind (overrides server.host)")
    serve.add_argument("--port", type=int, help="port to bind (overrides server.port)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2  # pragma: no cover - argparse enforces a command


def _serve(args: argparse.Namespace) -> int:
    from rag_appliance.settings import load_settings

    try:
        settings = load_settings(args.config)
        server = settings.server.model_copy(
            update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        )
        settings = settings.model_copy(update={"server": server})
        logging.basicConfig(
            level=settings.server.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        # Heavy imports only now: `--help` and settings errors stay fast.
        import uvicorn

        from rag_appliance.app import create_app
        from rag_appliance.services import build_services

        services = build_services(settings)
    except SettingsError as exc:
        print(f"rag-appliance: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, services)
    log.info("serving on http://%s:%d", settings.server.host, settings.server.port)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0
