"""A stand-in engine for API paths the real model can't reach on demand (crashes, loading)."""

from __future__ import annotations

import asyncio

from appliance.core.errors import InvalidRequest
from appliance.engine.interface import (
    AdapterFile,
    AdapterStatus,
    Chunk,
    CpuStatus,
    EngineStatus,
    Finished,
    Generation,
    GenerationRequest,
    KvStatus,
    ModelStatus,
    TokenInfo,
    TuningLine,
    Turn,
)


class FakeEngine:
    def __init__(
        self,
        *,
        loaded: bool = True,
        reply: str = "fake reply",
        outcome: str = "stop",
        explode: Exception | None = None,
        load_error: str | None = None,
        template: str = "",
        generation_tail: str = "",
        deficits: dict[str, float] | None = None,
    ) -> None:
        self._loaded = loaded
        # The chat template's text (a "<think>" in it: a model that thinks), and what its generation
        # prompt adds after "<assistant>" ("<think>\n": a template that opens the block itself).
        self.template = template
        self.generation_tail = generation_tail
        # The last prompt submitted, as text (tokens are characters here).
        self.last_prompt = ""
        self.load_error = load_error
        self.reply = reply
        self.outcome = outcome
        self.explode = explode
        # What fair_share_deficits reports: flow name -> slots short of its share.
        self.deficits = deficits or {}

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def model_name(self) -> str:
        return "fake-model"

    @property
    def context_length(self) -> int:
        return 2048

    @property
    def vocab_size(self) -> int:
        return 256

    @property
    def chat_stops(self) -> list[str]:
        return []

    @property
    def chat_template(self) -> str:
        return self.template

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: list[int]) -> str:
        return "".join(map(chr, tokens))

    def render_chat(self, messages, *, add_generation_prompt: bool = True, tools: list[dict] | None = None) -> str:
        pairs = [(m.role, m.content or "") if isinstance(m, Turn) else m for m in messages]
        head = "<assistant>" + self.generation_tail
        return "".join(f"<{r}>{c}" for r, c in pairs) + (head if add_generation_prompt else "")

    def submit(self, request: GenerationRequest) -> Generation:
        if self.explode is not None:
            raise self.explode
        self.last_prompt = "".join(map(chr, request.prompt_tokens))
        generation = Generation(asyncio.get_running_loop())
        # A slot at once, and every word in one step: the stages as the real engine stamps them.
        timing = generation.timing
        timing.started = timing.first_token = timing.finished = timing.submitted
        words = self.reply.split(" ")
        top = request.sampling.logprobs
        for i, w in enumerate(words):
            piece = w if i == 0 else " " + w
            # With logprobs asked for, each word is a token (logprob -(i+1)/10) with `top` made-up alternatives.
            tokens = [] if top is None else [TokenInfo(i, piece.encode(), -(i + 1) / 10, self._alternatives(top))]
            generation.push(Chunk(piece, tokens))
        generation.push(Finished(self.outcome, len(request.prompt_tokens), len(words)))
        return generation

    @staticmethod
    def _alternatives(n: int) -> list[tuple[int, bytes, float]]:
        return [(1000 + j, f"alt{j}".encode(), -5.0 - j) for j in range(n)]

    def submit_many(self, request: GenerationRequest, n: int) -> list[Generation]:
        return [self.submit(request) for _ in range(n)]

    def check_grammar(self, grammar: str) -> None:
        pass

    def json_schema_grammar(self, schema: dict, *, param: str) -> str:
        return 'root ::= "{}"'

    def status(self) -> EngineStatus:
        return EngineStatus(
            loaded=self._loaded,
            load_error=self.load_error,
            model=ModelStatus(
                name="fake-model",
                file="",
                optimized_from="",
                solo_file="",
                size_bytes=0,
                n_params=0,
                device="cpu",
                gpu_layers=0,
                chat_template="",
            ),
            kv=KvStatus(layout="unified", cells=2048, context_length=2048),
            cpu=CpuStatus(kernels="", kernels_source="", kernels_reason="", threads=1),
            tuning=[TuningLine(name="threads", on=False, setting="--threads", state="1 thread")],
            slots_total=1,
            slots_busy=0,
            queue_depth=0,
            queue_limit=0,
            tokens_per_second=0,
            prompt_tokens_per_second=0,
            requests_served=0,
            prefix_cache_hits=0,
            prefix_cache_lookups=0,
            prefix_cache_hit_rate=0.0,
            prefix_cache_tokens_reused=0,
            draft_tokens=0,
            draft_tokens_accepted=0,
        )

    def fair_share_deficits(self) -> dict[str, float]:
        return dict(self.deficits)

    def adapters(self) -> list[AdapterStatus]:
        return []

    async def set_adapter(self, name: str, adapter: AdapterFile) -> AdapterStatus:
        raise InvalidRequest("the fake engine loads no adapters", param="file")

    async def remove_adapter(self, name: str) -> bool:
        return False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
