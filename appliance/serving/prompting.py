"""Prompting: a specialist, the caller's messages and parameters to a generation plan, the
engine's requests (prompt tokens, shared-prefix length, budget, sampling, stops)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.core import protocol as p
from appliance.core.errors import ContextLengthExceeded, InvalidRequest, ModelLoading
from appliance.core.specialists import Specialist
from appliance.engine.interface import Engine, GenerationRequest, SamplingParams, StopRule, Turn

PREAMBLE_MEMO = 256

Turns = list[tuple[str, str]]
# A conversation may hold Turns: assistant tool calls and tool results, for templates that render them.
Conversation = list[tuple[str, str] | Turn]
# How one non-system message (with its text and index) goes to the template.
TurnOf = Callable[[p.ChatMessage, str, int], tuple[str, str] | Turn]

# The least a chat template adds per message (a role marker and an end-of-turn token).
MIN_TOKENS_PER_TURN = 2


@dataclass(frozen=True)
class GenerationPlan:
    """A request resolved against its specialist and tokenised, ready for the engine."""

    specialist: Specialist
    model: str
    # One per prompt (the legacy endpoint takes several); each is answered `n` times from one prefill.
    requests: list[GenerationRequest]
    prompt_tokens: int
    n: int = 1

    @property
    def token_estimate(self) -> int:
        """What the rate limiter takes up front: the prompts plus every choice's completion budget."""
        return self.prompt_tokens + self.n * sum(r.max_tokens for r in self.requests)


class Prompter:
    def __init__(self, engine: Engine, *, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        # Tokens of recently seen preambles, so the shared-prefix length costs no second tokenisation.
        self._preamble_tokens: dict[tuple[tuple[str, str], ...], list[int]] = {}  # preamble + next role

    def check_loaded(self) -> None:
        if not self.engine.loaded:
            raise ModelLoading("The model is still loading. Retry in a few seconds.", headers={"Retry-After": "2"})

    # ------------------------------------------------------------ messages
    def tokenize(self, text: str) -> list[int]:
        """Raw text (the legacy completions prompt) as it stands, special tokens included."""
        return self.engine.tokenize(text)

    @staticmethod
    def message_text(message: p.ChatMessage, index: int) -> str:
        content = message.content
        if content is None:
            # Only an assistant turn that calls tools may come without content.
            if message.role == "assistant" and message.tool_calls:
                return ""
            raise InvalidRequest(
                f"messages[{index}].content is required for a {message.role} message.",
                param=f"messages[{index}].content",
            )
        if isinstance(content, str):
            return checked_text(content, f"messages[{index}].content")
        texts = []
        for j, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise InvalidRequest(
                    f"Only text content parts are supported; messages[{index}].content[{j}] has type '{part.type}'.",
                    param=f"messages[{index}].content[{j}].type",
                )
            texts.append(checked_text(part.text, f"messages[{index}].content[{j}].text"))
        return "".join(texts)

    def chat_turns(
        self, specialist: Specialist, prompt: str, messages: list[p.ChatMessage], turn: TurnOf | None = None
    ) -> tuple[Turns, Conversation]:
        """(preamble, conversation): the specialist's prompt (the account's own, if set) first and the
        client's system messages after it, in the same system turn; or, for a specialist whose prompt
        is only a default (`caller_system = "replace"`), the client's system messages when it sends any."""
        system: list[str] = []
        rest: Conversation = []
        for i, m in enumerate(messages):
            text = self.message_text(m, i)
            if m.role in ("system", "developer"):
                if text.strip():
                    system.append(text)
            elif turn is not None:
                rest.append(turn(m, text, i))
            else:
                rest.append(("tool" if m.role == "function" else m.role, text))
        if not rest:
            raise InvalidRequest("messages must contain at least one user or assistant message.", param="messages")
        if not (system and specialist.caller_system == "replace"):
            system.insert(0, prompt)
        return self.preamble(specialist, "\n\n".join(system)), rest

    @staticmethod
    def preamble(specialist: Specialist, system: str) -> Turns:
        """The system turn and the specialist's worked examples: the prefix every request shares."""
        turns = [("system", system)]
        for ex in specialist.examples:
            turns += [("user", ex.user), ("assistant", ex.assistant)]
        return turns

    def tokenize_chat(
        self, preamble: Turns, conversation: Conversation, tools: list[dict] | None = None, *, lead: str = ""
    ) -> tuple[list[int], int]:
        """The prompt's tokens, and how many of them are the shared preamble (for the prefix cache);
        `tools` for a template that renders tool definitions itself; `lead`: the start of the answer,
        already fixed (a forced tool call's frame), after the generation prompt."""
        prompt = self.engine.tokenize(self.engine.render_chat([*preamble, *conversation], tools=tools) + lead)
        # The preamble rendered with an empty next turn: what every conversation after it shares
        # includes that turn's header (`<|im_start|>user\n`), a few more tokens no request prefills.
        first = conversation[0] if conversation else None
        role = (first.role if isinstance(first, Turn) else first[0]) if first is not None else ""
        key = (*preamble, ("next", role))
        head = self._preamble_tokens.get(key)
        if head is None:
            turns = [*preamble, (role, "")] if role else preamble
            head = self.engine.tokenize(self.engine.render_chat(turns, add_generation_prompt=False))
            if len(self._preamble_tokens) >= PREAMBLE_MEMO:
                self._preamble_tokens.pop(next(iter(self._preamble_tokens)))
            self._preamble_tokens[key] = head
        shared = 0
        for a, b in zip(head, prompt, strict=False):
            if a != b:
                break
            shared += 1
        return prompt, shared

    def check_turns(self, turns: int, param: str) -> None:
        """Refuse a conversation that cannot fit before rendering and tokenising it (seconds of CPU for
        tens of thousands of messages): every turn costs at least MIN_TOKENS_PER_TURN template tokens."""
        window = self.engine.context_length
        if turns * MIN_TOKENS_PER_TURN > window:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {window} tokens. However, your {turns} messages take "
                f"at least {turns * MIN_TOKENS_PER_TURN} tokens. Please shorten the conversation.",
                param=param,
            )

    # ------------------------------------------------------------ parameters
    def fit(self, prompt: list[int], max_tokens: int | None, default: int, param: str) -> int:
        """The completion budget; an explicit max_tokens that cannot fit is an error, a default shrinks."""
        window = self.engine.context_length
        if len(prompt) >= window:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {window} tokens. However, your prompt is "
                f"{len(prompt)} tokens. Please shorten the prompt.",
                param=param,
            )
        if max_tokens is None:
            return min(default, window - len(prompt))
        if len(prompt) + max_tokens > window:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{len(prompt) + max_tokens} tokens ({len(prompt)} in the prompt, {max_tokens} in the "
                "completion). Please reduce the length of the prompt or the completion.",
                param=param,
            )
        return max_tokens

    @staticmethod
    def stop_list(stop: str | list[str] | None, default: list[str]) -> list[str]:
        if stop is None:
            return list(default)
        stops = [stop] if isinstance(stop, str) else list(stop)
        return [s for s in stops if s]

    def chat_stop_list(self, stop: str | list[str] | None, default: list[str], *, shaped: bool) -> list[str]:
        """A chat answer's stop strings: the caller's (else the specialist's), and the template's own
        end of turn where it is text, not a token. A shaped answer (grammar) ends where its grammar does;
        stop strings could cut it, so it gets only the caller's."""
        if shaped:
            return self.stop_list(stop, [])
        return [*self.stop_list(stop, default), *self.engine.chat_stops]

    @staticmethod
    def sampling(
        specialist: Specialist,
        temperature: float | None,
        top_p: float | None,
        req: p.ChatCompletionRequest | p.CompletionRequest | None = None,
        *,
        grammar: str | None = None,
        logprobs: int | None = None,
        logit_bias: dict[int, float] | None = None,
    ) -> SamplingParams:
        """The request's parameters over the specialist's defaults."""
        ignore_eos = bool(req.ignore_eos) if req else False
        if ignore_eos and grammar:
            raise InvalidRequest(
                "ignore_eos cannot be combined with response_format, tools or labels (nor a specialist that "
                "shapes its answer): a shaped answer ends on the model's end-of-generation token.",
                param="ignore_eos",
            )
        return SamplingParams(
            temperature=specialist.temperature if temperature is None else temperature,
            top_p=specialist.top_p if top_p is None else max(top_p, 1e-6),
            presence_penalty=(req.presence_penalty if req else None) or 0.0,
            frequency_penalty=(req.frequency_penalty if req else None) or 0.0,
            seed=req.seed if req else None,
            grammar=grammar,
            logprobs=logprobs,
            logit_bias=logit_bias or {},
            ignore_eos=ignore_eos,
        )

    def label_budget(self, labels: list[str], default: int) -> int:
        """Room for the longest label and the end-of-turn token, so a label is never cut short."""
        longest = max((len(self.engine.tokenize(label, special=False)) for label in labels), default=0)
        return max(default, longest + 1)

    @staticmethod
    def with_labels(system: str, labels: list[str] | None) -> str:
        """A request's own labels are told to the model too (the grammar only enforces them)."""
        if not labels:
            return system
        return f"{system}\n\nAnswer with exactly one of these labels: {', '.join(labels)}."

    def request(
        self,
        prompt: list[int],
        max_tokens: int,
        stop: list[str],
        sampling: SamplingParams,
        *,
        specialist: str,
        cache_prefix: int = 0,
        lookup: bool = False,
        stream: bool = False,
        stop_rule: StopRule | None = None,
        special_text: bool = False,
    ) -> GenerationRequest:
        """The engine request for one prompt, for `specialist` (it decodes under the LoRA adapter the
        engine has loaded as that specialist's, if any); its n choices share one prefill (with a seed,
        choice i samples with seed + i: the engine does that)."""
        return GenerationRequest(
            prompt_tokens=prompt,
            max_tokens=max_tokens,
            sampling=sampling,
            stop=stop,
            stop_rule=stop_rule,
            special_text=special_text,
            # The timeout bounds the wait for a slot and the generation after the first token, not
            # the prompt's prefill: a long prompt that fits the context can always be answered.
            deadline=time.monotonic() + self.timeout_s,
            timeout_s=self.timeout_s,
            cache_prefix=cache_prefix,
            lookup=lookup,
            stream=stream,
            adapter=specialist,
        )


def checked_text(text: str, param: str) -> str:
    """Prompt text as sent, refused if it holds a NUL character: no prompt needs one, and it is the
    classic smuggling byte for anything downstream that reads text as C strings."""
    if "\x00" in text:
        raise InvalidRequest(f"{param} contains a NUL character (\\u0000); send text without it.", param=param)
    return text
