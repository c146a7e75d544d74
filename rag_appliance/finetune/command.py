"""`rag-appliance finetune`: mine, train, score held-out queries, save only a better model."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_appliance.embedding.models import ModelProfile
from rag_appliance.embedding.registry import NAME, models_dir
from rag_appliance.errors import InvalidRequest
from rag_appliance.finetune.card import ModelCard, write_card
from rag_appliance.finetune.mining import PairCorpus, build_corpus, mine_negatives
from rag_appliance.finetune.pairs import Pair, data_hash, load_pairs, parse_pairs, split_pairs
from rag_appliance.finetune.train import TrainConfig, TrainResult, require_extra, train
from rag_appliance.retrieval.model_compare import index_dataset, model_settings, score_dataset
from rag_appliance.retrieval.retriever import SearchOptions

if TYPE_CHECKING:
    from rag_appliance.settings import Settings

K = 10
_COLLECTION = "finetune"


@dataclass(frozen=True)
class FinetuneArgs:
    """The command's options as plain values."""

    pairs: Path | None = None
    output: Path | None = None
    name: str | None = None
    from_logs: bool = False
    base: str | None = None
    eval_split: float = 0.2
    force: bool = False
    config: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class Scored:
    """A model's held-out metrics and what the run learned along the way."""

    metrics: dict[str, float]
    profile: ModelProfile
    served_as: str
    pairs: list[Pair] = field(default_factory=list)
    mined: int = 0


def target(settings: Settings, args: FinetuneArgs) -> tuple[Path, str]:
    """(output folder, model name); an existing folder or a bad name is refused up front."""
    if args.name is not None and not NAME.match(args.name):
        raise InvalidRequest(
            f"--name '{args.name}' must be letters, digits, '.', '_' or '-' (a folder name)",
            param="name",
        )
    if args.output is None and args.name is None:
        raise InvalidRequest("give --output DIR or --name NAME", param="output")
    output = args.output or models_dir(settings.data_dir) / str(args.name)
    if output.exists():
        raise InvalidRequest(
            f"{output} already exists; choose another --output (nothing was written)",
            param="output",
        )
    return output, args.name or output.name


def read_pairs(settings: Settings, args: FinetuneArgs) -> list[Pair]:
    """The pairs file, or the pairs exported from the search log with --from-logs."""
    if args.from_logs == (args.pairs is not None):
        raise InvalidRequest("give either --pairs FILE or --from-logs", param="pairs")
    if args.pairs is not None:
        return load_pairs(args.pairs)
    return pairs_from_logs(settings)


def pairs_from_logs(settings: Settings) -> list[Pair]:
    """Pairs from the search log and its feedback, through `pairs export`'s own function."""
    try:
        from rag_appliance.feedback.pairs import export_pairs
    except ImportError:  # pragma: no cover - a build without the search log
        raise InvalidRequest(
            "--from-logs needs the search-log export (rag_appliance.feedback.pairs)",
            param="from_logs",
        ) from None
    exported = export_pairs(settings)
    print(exported.summary())
    return parse_pairs((json.dumps(r) for r in exported.pairs), "the search log")


def scratch_settings(settings: Settings, model: str, data_dir: Path) -> Settings:
    """`model` served over an embedded store in a scratch folder: no reranker, chat or logs."""
    from rag_appliance.settings import StoreSettings

    served = model_settings(settings, model)
    update: dict[str, Any] = {
        "data_dir": data_dir,
        "store": StoreSettings(),
        "rerank": served.rerank.model_copy(update={"model": None}),
        "generation": served.generation.model_copy(update={"enabled": False}),
        # The mining and scoring searches are not users' searches.
        "search_log": served.search_log.model_copy(update={"enabled": False}),
    }
    return served.model_copy(update=update)


async def score_model(
    settings: Settings,
    model: str,
    scratch: Path,
    corpus: PairCorpus,
    mine: list[Pair] | None = None,
) -> Scored:
    """Index the pairs' texts with `model`, score the held-out queries, and mine for `mine`."""
    from rag_appliance.local_commands import running

    folder = Path(tempfile.mkdtemp(dir=scratch, prefix="store-"))
    async with running(scratch_settings(settings, model, folder)) as services:
        retriever = services.require_retriever()
        await index_dataset(services.require_pipeline(), _COLLECTION, corpus.held_out)
        options = SearchOptions(rerank=False)  # the configured mode, as users search
        metrics = await score_dataset(retriever, _COLLECTION, corpus.held_out, K, options)
        mined_pairs: list[Pair] = []
        mined = 0
        if mine is not None:
            mined_pairs, mined = await mine_negatives(
                retriever, _COLLECTION, corpus, mine, K, options
            )
        scored = Scored(metrics, services.embedding.profile, services.embedding.served_name)
    shutil.rmtree(folder, ignore_errors=True)
    return Scored(scored.metrics, scored.profile, scored.served_as, mined_pairs, mined)


def train_and_save(
    settings: Settings,
    base: str,
    profile: ModelProfile,
    pairs: list[Pair],
    config: TrainConfig,
    into: Path,
    work: Path,
) -> TrainResult:
    """Load the base in float32, train it, save it into `into` (blocking)."""
    import torch

    from rag_appliance.embedding import registry
    from rag_appliance.embedding.encoder import load_model, resolve_device, resolve_source

    emb = registry.resolve(model_settings(settings, base).embedding, settings.data_dir)
    device = resolve_device(emb.device)
    if device == "cpu" and emb.num_threads:
        torch.set_num_threads(emb.num_threads)
    model = load_model(resolve_source(emb.model), emb.profile, device, torch.float32)
    # At most the lengths the appliance serves (longer inputs are cut there anyway); shorter
    # with --max-length, which makes CPU training several times cheaper.
    served = min(int(model.max_seq_length or profile.max_length), profile.max_length)
    model.max_seq_length = min(served, config.max_length or served)
    result = train(model, profile, pairs, config, work)
    model.save(str(into), create_model_card=False)
    return result


@dataclass(frozen=True)
class Steps:
    """The two heavy steps, replaceable by fakes in unit tests."""

    score: Callable[..., Awaitable[Scored]] = score_model
    train: Callable[..., TrainResult] = train_and_save


async def finetune_command(
    settings: Settings, args: FinetuneArgs, steps: Steps | None = None
) -> int:
    """Fine-tune the embedding model on pairs; exit 1 (and write nothing) when it is no better."""
    steps = steps or Steps()
    output, name = target(settings, args)
    pairs = await asyncio.to_thread(read_pairs, settings, args)
    require_extra()
    base = args.base or settings.embedding.model
    train_pairs, held_pairs = split_pairs(pairs, args.eval_split, args.config.seed)
    corpus = build_corpus(train_pairs, held_pairs)
    print(
        f"{len(pairs)} pairs: {len(train_pairs)} to train on, {len(held_pairs)} held out "
        f"({len(corpus.held_out.queries)} queries); {len(corpus.ids)} texts to search"
    )
    staging, scratch = await asyncio.to_thread(_make_dirs, output)
    started = time.perf_counter()
    try:
        before = await steps.score(settings, base, scratch, corpus, mine=train_pairs)
        print(
            f"base {before.served_as}: held-out {_fmt(before.metrics)}; "
            f"{before.mined} hard negatives mined for {len(train_pairs)} pairs"
        )
        result = await asyncio.to_thread(
            steps.train,
            settings,
            base,
            before.profile,
            before.pairs,
            args.config,
            staging,
            scratch / "trainer",
        )
        card = ModelCard(
            name=name,
            base=before.served_as,
            profile=before.profile,
            data={
                "pairs": str(args.pairs) if args.pairs else "search log",
                "sha256": data_hash(pairs),
                "train_pairs": len(train_pairs),
                "held_out_pairs": len(held_pairs),
                "held_out_queries": len(corpus.held_out.queries),
                "corpus_texts": len(corpus.ids),
                "hard_negatives_mined": before.mined,
            },
            parameters=asdict(args.config) | {"eval_split": args.eval_split, "base_model": base},
            training=asdict(result),
        )
        # The profile (pooling, prefixes, its own name) is read from the card when it is scored.
        await asyncio.to_thread(write_card, staging, card)
        after = await steps.score(settings, str(staging), scratch, corpus)
        print(f"fine-tuned {name}: held-out {_fmt(after.metrics)}")
        better = check_better(before.metrics, after.metrics, args.force)
        card = replace(card, metrics={"base": before.metrics, "finetuned": after.metrics})
        await asyncio.to_thread(publish, staging, output, card)
    finally:
        await asyncio.to_thread(_remove, staging, scratch)
    note = "" if better else " (--force: it does not beat its base)"
    print(f"saved {output} as '{name}' in {time.perf_counter() - started:.0f}s{note}")
    return 0


def check_better(before: dict[str, float], after: dict[str, float], force: bool) -> bool:
    """Whether nDCG@10 rose; refused (InvalidRequest) when it did not and `force` is off."""
    key = f"ndcg@{K}"
    better = after[key] > before[key]
    if not better and not force:
        raise InvalidRequest(
            f"the fine-tuned model does not beat its base on the held-out split (nDCG@{K} "
            f"{after[key]:.4f} vs {before[key]:.4f}); nothing was saved (--force saves it anyway)",
            param="force",
        )
    return better


def publish(staging: Path, output: Path, card: ModelCard) -> None:
    """Write the final card and move the finished model into place in one rename."""
    write_card(staging, card)
    staging.chmod(0o755)  # mkdtemp made it private; the model is as readable as its parent
    if output.exists():
        raise InvalidRequest(f"{output} appeared while training; nothing was saved", param="output")
    staging.rename(output)


def _make_dirs(output: Path) -> tuple[Path, Path]:
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written beside its final place (same file system) so that the last step is one rename.
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.partial-"))
    return staging, Path(tempfile.mkdtemp(prefix="rag-finetune-"))


def _remove(*folders: Path) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


async def run_from_args(settings: Settings, args: Any) -> int:
    """The CLI's entry: argparse's namespace -> FinetuneArgs -> finetune_command."""
    if args.epochs < 1 or args.batch_size < 2:
        raise InvalidRequest("--epochs must be >= 1 and --batch-size >= 2", param="epochs")
    if args.max_length is not None and args.max_length < 8:
        raise InvalidRequest("--max-length must be at least 8 tokens", param="max_length")
    if not 0.0 < args.lr < 1.0 or not 0.0 <= args.warmup < 1.0:
        raise InvalidRequest("--lr must be in (0, 1) and --warmup in [0, 1)", param="lr")
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_ratio=args.warmup,
        seed=args.seed,
        max_length=args.max_length,
    )
    return await finetune_command(
        settings,
        FinetuneArgs(
            pairs=args.pairs,
            output=args.output,
            name=args.name,
            from_logs=args.from_logs,
            base=args.base,
            eval_split=args.eval_split,
            force=args.force,
            config=config,
        ),
    )
