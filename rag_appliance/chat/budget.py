"""The context window as a budget: room for passages, and the one context-length check."""

from __future__ import annotations

from dataclasses import dataclass

from rag_appliance.errors import InvalidRequest

# Tokens kept free for the answer while packing passages, when the request sets no length.
MIN_ANSWER = 16


@dataclass(frozen=True)
class TokenBudget:
    """A model's context length shared by the prompt (passages included) and the answer."""

    limit: int  # the model's maximum context length
    requested: int | None  # the request's max_tokens / max_completion_tokens
    default: int  # generation.max_tokens

    def answer_reserve(self) -> int:
        """Tokens to keep free for the answer while passages are packed."""
        return self.requested or min(self.default, max(MIN_ANSWER, self.limit // 4))

    def passages(self, conversation: int, share: float) -> int:
        """Tokens the retrieved passages may take beside a conversation of this many tokens."""
        room = self.limit - conversation - self.answer_reserve()
        return max(0, min(int(self.limit * share), room))

    def completion(self, prompt: int) -> int:
        """The completion length for a prompt of this many tokens; 400 when it cannot fit."""
        room = self.limit - prompt
        if self.requested is not None and self.requested > room:
            raise InvalidRequest(
                f"This model's maximum context length is {self.limit} tokens. However, you "
                f"requested {prompt + self.requested} tokens ({prompt} in the messages, "
                f"{self.requested} in the completion). Please reduce the length of the "
                "messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        if room < 1:
            raise InvalidRequest(
                f"This model's maximum context length is {self.limit} tokens; the messages "
                f"alone take {prompt}.",
                param="messages",
                code="context_length_exceeded",
            )
        return self.requested or min(self.default, room)
