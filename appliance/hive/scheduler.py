"""The scheduler thread: continuous batching over one llama.cpp context.

Every step is one `llama_decode` over a batch holding one new token for each generating
request plus chunks of prompt for requests still prefilling, so requests join and leave
between steps. Each slot is one KV sequence. Finished slots keep their prompt in the
unified KV cache, and shared preambles (specialist and system prompts) are also saved to
host memory. A new request starts from the longest token prefix found in any slot (copied
by tagging cells, no data moves) or among the saved preambles (restored, a memory copy),
and prefills only the rest.

Why host memory for the preamble cache rather than extra resident sequences: every cell in
the KV cache costs every later decode step some attention work (llama.cpp walks all cells
and masks the other sequences'), so dozens of resident preambles slowed every token down,
while a saved one costs nothing until it is restored (about 1 ms for 250 tokens here).
"""

from __future__ import annotations

import ctypes
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from appliance.errors import Overloaded
from appliance.hive.drafting import Acceptance, StepCosts, choose
from appliance.hive.llama import Batch, Context, Model, Sampler
from appliance.hive.lookup import NgramIndex
from appliance.hive.text import TextStream
from appliance.hive.types import Finished, Generation, GenerationRequest, deliver

log = logging.getLogger("alveare.hive")

# A copied prefix must save at least this many tokens of prefill to be worth a copy.
MIN_COPY = 8
# Preambles shorter than this are not worth a cache entry.
MIN_CACHE = 16
# Most draft tokens a request's lookup proposes per step; the draft policy decides how many are used.
MAX_DRAFT = 8
# Seconds of history kept for tokens/s.
RATE_WINDOW = 60.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Active:
    """A request occupying a slot."""

    request: GenerationRequest
    generation: Generation
    sampler: Sampler
    text: TextStream
    done: int  # prompt tokens already in the KV cache
    cached: int  # of which were reused from the cache
    reserved: int
    last: int = -1  # sampled token not yet decoded
    completion: int = 0
    tokens: list[int] = field(default_factory=list)
    # Prompt-lookup drafting, for greedy requests that asked for it.
    lookup: NgramIndex | None = None
    acceptance: Acceptance = field(default_factory=Acceptance)
    # Text not yet sent: everything, for a caller that does not stream.
    held: list[str] = field(default_factory=list)

    @property
    def prefilling(self) -> bool:
        return self.done < len(self.request.prompt_tokens)


@dataclass
class Slot:
    """A request slot: one KV sequence."""

    seq: int
    kv: list[int] = field(default_factory=list)  # tokens in this sequence's KV cells, by position
    active: Active | None = None


@dataclass
class Saved:
    """A preamble's KV cells saved in host memory (like llama-server's prompt cache)."""

    tokens: list[int]
    state: ctypes.Array
    used: int = 0

    @property
    def nbytes(self) -> int:
        return len(self.state)


@dataclass
class Profile:
    """Where the scheduler thread's time goes (seconds since start), logged when the engine stops."""

    steps: int = 0
    generated: int = 0
    prompt: int = 0
    busy_s: float = 0.0  # admitting, stepping and handing out tokens
    decode_s: float = 0.0  # inside llama_decode
    sample_s: float = 0.0  # sampler chains, detokenising, stop strings
    restores: int = 0
    restore_s: float = 0.0
    saves: int = 0
    save_s: float = 0.0
    # Steps that decode only new tokens, no prompt, by batch size:
    # [count, seconds in llama_decode, seconds for the whole step (admit, batch, decode, sample, hand out)].
    by_size: dict[int, list[float]] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.steps:
            return "no steps"
        other = self.busy_s - self.decode_s - self.sample_s - self.restore_s - self.save_s

        def share(x: float) -> str:
            return f"{x:.2f} s ({100 * x / self.busy_s:.1f}%)" if self.busy_s else f"{x:.2f} s"

        return (
            f"{self.steps} steps, {self.generated} generated + {self.prompt} prompt tokens "
            f"({(self.generated + self.prompt) / self.steps:.1f} per step), {self.busy_s:.2f} s busy: "
            f"decode {share(self.decode_s)}, sampling {share(self.sample_s)}, "
            f"{self.restores} prefix restores {share(self.restore_s)}, {self.saves} prefix saves {share(self.save_s)}, "
            f"other {share(other)}; decode-only steps by batch size (llama_decode + the host's Python around it): "
            + ", ".join(
                f"{n}: {int(c)} x {1000 * t / c:.2f} + {1000 * (w - t) / c:.2f} ms"
                for n, (c, t, w) in sorted(self.by_size.items())
            )
        )


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    served: int = 0
    lookups: int = 0
    hits: int = 0
    reused_tokens: int = 0
    drafted: int = 0
    draft_accepted: int = 0
    profile: Profile = field(default_factory=Profile)
    steps: deque[tuple[float, int, int]] = field(default_factory=deque)  # (time, generated, prompt)

    def record_step(self, generated: int, prompt: int) -> None:
        now = time.monotonic()
        self.steps.append((now, generated, prompt))
        while self.steps and self.steps[0][0] < now - RATE_WINDOW:
            self.steps.popleft()

    def rates(self) -> tuple[float, float]:
        now = time.monotonic()
        recent = [s for s in self.steps if s[0] >= now - RATE_WINDOW]
        if not recent:
            return 0.0, 0.0
        span = max(now - recent[0][0], 1.0)
        return sum(s[1] for s in recent) / span, sum(s[2] for s in recent) / span


class Scheduler:
    def __init__(
        self,
        model: Model,
        ctx: Context,
        *,
        slots: int,
        cache_entries: int,
        cache_bytes: int,
        queue_size: int,
        context_length: int,
    ) -> None:
        self.model = model
        self.ctx = ctx
        self.slots = [Slot(seq=i) for i in range(slots)]
        # Shared preambles saved to host memory, least recently used dropped first past either bound.
        self.saved: list[Saved] = []
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        # One more sequence, used only to cut a preamble out of a slot while saving it.
        self.scratch = slots
        self._clock = 0
        self.queue_size = queue_size
        self.context_length = context_length
        self.batch = Batch(ctx.n_batch)
        self.stats = Stats()
        self.step_costs = StepCosts()
        self._waiting: deque[tuple[GenerationRequest, Generation]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._admitted_order: list[Slot] = []
        self._outbox: list[tuple[Generation, str | Finished]] = []
        self._thread = threading.Thread(target=self._run, name="alveare-hive", daemon=True)

    # ------------------------------------------------------------ event-loop side
    def start(self) -> None:
        self._thread.start()

    def submit(self, request: GenerationRequest, generation: Generation) -> None:
        with self._cond:
            if self.busy >= len(self.slots) and len(self._waiting) >= self.queue_size:
                raise Overloaded(
                    "The appliance is at capacity: every slot is busy and the queue is full. Retry shortly.",
                    headers={"Retry-After": "1"},
                )
            self._waiting.append((request, generation))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)
        self.batch.close()
        log.info("hive profile: %s", self.stats.profile.summary())

    @property
    def busy(self) -> int:
        return sum(1 for s in self.slots if s.active is not None)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    # ------------------------------------------------------------ thread side
    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    break
                if not self._waiting and not any(s.active for s in self.slots):
                    self._cond.wait(timeout=0.5)
                    continue
            try:
                started = time.perf_counter()
                self._admit()
                self._reap()
                if any(s.active for s in self.slots):
                    size = self._step()
                    self._flush()
                    elapsed = time.perf_counter() - started
                    self.stats.profile.busy_s += elapsed
                    if size:
                        self.stats.profile.by_size[size][2] += elapsed
                else:
                    self._flush()
                    with self._cond:
                        self._cond.wait(timeout=0.05)
            except Exception:
                log.exception("engine step failed; failing the requests in flight")
                for slot in self.slots:
                    if slot.active:
                        self._finish(slot, "error", error="engine step failed")
                for seq in self.slots:
                    seq.kv = []
                self.ctx.clear()
                self._flush()
        for slot in self.slots:
            if slot.active:
                self._finish(slot, "cancelled")
        with self._cond:
            while self._waiting:
                req, gen = self._waiting.popleft()
                self._emit(gen, Finished("cancelled", len(req.prompt_tokens), 0))
        self._flush()

    def _emit(self, gen: Generation, item: str | Finished) -> None:
        self._outbox.append((gen, item))

    def _flush(self) -> None:
        if self._outbox:
            deliver(self._outbox)
            self._outbox = []

    def _reserved(self) -> int:
        return sum(s.active.reserved for s in self.slots if s.active)

    def _admit(self) -> None:
        while True:
            with self._cond:
                if not self._waiting:
                    return
                free = [s for s in self.slots if s.active is None]
                req, gen = self._waiting[0]
                now = time.monotonic()
                if gen.cancelled or (req.deadline is not None and now >= req.deadline):
                    self._waiting.popleft()
                    self._emit(gen, Finished("cancelled" if gen.cancelled else "timeout", len(req.prompt_tokens), 0))
                    continue
                if not free:
                    return
                need = len(req.prompt_tokens) + req.max_tokens
                if self._reserved() + need > self.ctx.n_ctx and len(free) < len(self.slots):
                    return  # wait for KV room; requests run in arrival order
                self._waiting.popleft()
            self._place(req, gen, free, need)

    def _place(self, req: GenerationRequest, gen: Generation, free: list[Slot], need: int) -> None:
        prompt = req.prompt_tokens
        limit = len(prompt) - 1  # the last prompt token is always decoded, for its logits
        own = {s.seq: min(common_prefix(s.kv, prompt), limit) for s in self.slots}
        dest = max(free, key=lambda s: (own[s.seq], -len(s.kv)))
        src = max(self.slots, key=lambda s: own[s.seq])
        saved, saved_len = self._best_saved(prompt, limit)
        reuse = own[dest.seq]
        if saved is not None and saved_len >= max(reuse, own[src.seq]) + MIN_COPY:
            reuse = saved_len if self._restore(saved, dest, saved_len) else 0
        elif src is not dest and own[src.seq] >= reuse + MIN_COPY:
            reuse = own[src.seq]
            self.ctx.seq_rm(dest.seq)
            self.ctx.seq_cp(src.seq, dest.seq, 0, reuse)
        else:
            self.ctx.seq_rm(dest.seq, reuse, -1)
        dest.kv = prompt[:reuse]
        s = req.sampling
        try:
            sampler = Sampler(
                self.model,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=s.top_k,
                min_p=s.min_p,
                presence_penalty=s.presence_penalty,
                frequency_penalty=s.frequency_penalty,
                repeat_penalty=s.repeat_penalty,
                seed=s.seed if s.seed is not None else random.getrandbits(32),
                grammar=s.grammar,
            )
        except ValueError as exc:  # a bad grammar fails this request only
            self._emit(gen, Finished("error", len(prompt), 0, error=str(exc)))
            return
        dest.active = Active(req, gen, sampler, TextStream(req.stop), done=reuse, cached=reuse, reserved=need)
        greedy = s.temperature <= 0 and s.grammar is None and not (s.presence_penalty or s.frequency_penalty)
        if req.lookup and greedy and s.repeat_penalty == 1.0:
            dest.active.lookup = NgramIndex(prompt)
        self._admitted_order.append(dest)
        self.stats.lookups += 1
        if reuse:
            self.stats.hits += 1
            self.stats.reused_tokens += reuse

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            a = slot.active
            if a is None:
                continue
            if a.generation.cancelled:
                self._finish(slot, "cancelled")
            elif a.request.deadline is not None and now >= a.request.deadline:
                self._finish(slot, "timeout")

    def _step(self) -> int:
        """One llama_decode over every active slot; returns the batch size if it decoded no prompt, else 0."""
        batch = self.batch
        batch.clear()
        # (slot, batch index of the first logits row, draft tokens verified at the following rows)
        to_sample: list[tuple[Slot, int, list[int]]] = []
        added: list[tuple[Slot, list[int]]] = []
        generating = [s for s in self._admitted_order if s.active is not None and not s.active.prefilling]
        # Prompt-lookup guesses, of which the draft policy picks the ones worth a batch row.
        proposed: dict[int, list[int]] = {}
        proposals: list[tuple[int, int, float]] = []
        for slot in generating:
            a = slot.active
            assert a is not None
            if a.lookup is not None:
                room = min(a.request.max_tokens - a.completion - 1, self.context_length - len(slot.kv) - 2)
                if guess := a.lookup.draft(min(MAX_DRAFT, room)):
                    proposed[slot.seq] = guess
                    proposals.append((slot.seq, len(guess), a.acceptance.rate))
        use = choose(self.step_costs, len(generating), proposals, batch.capacity - len(generating)) if proposals else {}
        for slot in generating:
            a = slot.active
            assert a is not None
            draft = proposed.get(slot.seq, [])[: use.get(slot.seq, 0)]
            pos = len(slot.kv)
            first = batch.add(a.last, pos, slot.seq, True)
            for j, tok in enumerate(draft):
                batch.add(tok, pos + 1 + j, slot.seq, True)
            to_sample.append((slot, first, draft))
            added.append((slot, [a.last]))
        generated = len(to_sample)
        budget = batch.capacity - batch.n
        prompt_tokens = 0
        for slot in self._admitted_order:
            a = slot.active
            if a is None or not a.prefilling or budget <= 0:
                continue
            prompt = a.request.prompt_tokens
            chunk = prompt[a.done : a.done + budget]
            pos = len(slot.kv)
            for j, tok in enumerate(chunk):
                last = a.done + j == len(prompt) - 1
                idx = batch.add(tok, pos + j, slot.seq, last)
                if last:
                    to_sample.append((slot, idx, []))
            added.append((slot, chunk))
            a.done += len(chunk)
            budget -= len(chunk)
            prompt_tokens += len(chunk)
        profile = self.stats.profile
        t0 = time.perf_counter()
        rc = self.ctx.decode(batch)
        if rc == 1 and self._free_idle_cells():
            rc = self.ctx.decode(batch)
        t1 = time.perf_counter()
        profile.decode_s += t1 - t0
        profile.steps += 1
        profile.generated += generated
        profile.prompt += prompt_tokens
        if not prompt_tokens:
            row = profile.by_size.setdefault(batch.n, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += t1 - t0
            self.step_costs.observe(batch.n, t1 - t0)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        for slot, tokens in added:
            slot.kv.extend(tokens)
            a = slot.active
            if a is not None and a.request.cache_prefix and len(tokens) > 1 and not a.prefilling:
                self._remember(slot, a.request.cache_prefix)
        self.stats.record_step(generated, prompt_tokens)
        t2 = time.perf_counter()
        for slot, idx, draft in to_sample:
            a = slot.active
            assert a is not None
            token = a.sampler.sample(self.ctx, idx)
            accepted = 0
            while accepted < len(draft) and token == draft[accepted]:
                # A right guess is already in the KV cache at the next position: keep it, and read
                # the model's next choice from the following logits row.
                slot.kv.append(token)
                self._accept(slot, a, token)
                if slot.active is not a:
                    break
                accepted += 1
                token = a.sampler.sample(self.ctx, idx + accepted)
            if slot.active is a:
                self._accept(slot, a, token)
            if draft:
                self.stats.drafted += len(draft)
                self.stats.draft_accepted += accepted
                a.acceptance.record(len(draft), accepted)
                self.ctx.seq_rm(slot.seq, len(slot.kv), -1)  # drop the cells of wrong guesses
        profile.sample_s += time.perf_counter() - t2
        return 0 if prompt_tokens else batch.n

    def _accept(self, slot: Slot, a: Active, token: int) -> None:
        if self.model.is_eog(token):
            self._finish(slot, "stop")
            return
        a.completion += 1
        a.tokens.append(token)
        if a.lookup is not None:
            a.lookup.append(token)
        text = a.text.feed(self.model.piece(token))
        if text and not a.generation.cancelled:
            if a.request.stream:
                self._emit(a.generation, text)
            else:
                a.held.append(text)  # a non-streaming caller needs the text only at the end
        if a.text.stopped:
            self._finish(slot, "stop")
        elif a.completion >= a.request.max_tokens or len(slot.kv) + 1 >= self.context_length:
            self._finish(slot, "length")
        else:
            a.last = token

    def _finish(self, slot: Slot, reason: str, error: str | None = None) -> None:
        a = slot.active
        assert a is not None
        if reason in ("stop", "length"):
            a.held.append(a.text.flush())
        text = "".join(a.held)
        if text:
            self._emit(a.generation, text)
        self._emit(
            a.generation,
            Finished(
                reason, len(a.request.prompt_tokens), a.completion, cached_tokens=a.cached, error=error, tokens=a.tokens
            ),
        )
        a.sampler.close()
        slot.active = None
        # Keep the prompt for reuse, not the answer: every resident cell costs every later token a
        # little attention work, and a follow-up turn re-tokenises the answer anyway.
        keep = len(a.request.prompt_tokens)
        if len(slot.kv) > keep:
            self.ctx.seq_rm(slot.seq, keep, -1)
            slot.kv = slot.kv[:keep]
        if slot in self._admitted_order:
            self._admitted_order.remove(slot)
        self.stats.served += 1

    # ------------------------------------------------------------ prefix cache
    def _touch(self, entry: Saved) -> None:
        self._clock += 1
        entry.used = self._clock

    def _best_saved(self, prompt: list[int], limit: int) -> tuple[Saved | None, int]:
        best, length = None, 0
        for entry in self.saved:
            n = min(common_prefix(entry.tokens, prompt), limit)
            if n > length:
                best, length = entry, n
        return best, length

    def _restore(self, entry: Saved, dest: Slot, length: int) -> bool:
        """Put the first `length` tokens of a saved preamble into `dest`; False leaves `dest` empty."""
        t0 = time.perf_counter()
        self.ctx.seq_rm(dest.seq)
        ok = self.ctx.seq_restore(entry.state, dest.seq)
        if ok:
            self.ctx.seq_rm(dest.seq, length, -1)
            self._touch(entry)
        else:
            self.ctx.seq_rm(dest.seq)  # no contiguous room: prefill from scratch instead
        self.stats.profile.restores += 1
        self.stats.profile.restore_s += time.perf_counter() - t0
        return ok

    def _remember(self, slot: Slot, length: int) -> None:
        """Save the first `length` tokens of a slot (its shared preamble) to host memory, once."""
        if length < MIN_CACHE or length > len(slot.kv) or self.cache_entries <= 0:
            return
        prefix = slot.kv[:length]
        for entry in self.saved:
            if len(entry.tokens) >= length and entry.tokens[:length] == prefix:
                self._touch(entry)
                return
        t0 = time.perf_counter()
        self.ctx.seq_rm(self.scratch)
        self.ctx.seq_cp(slot.seq, self.scratch, 0, length)
        state = self.ctx.seq_save(self.scratch)
        self.ctx.seq_rm(self.scratch)
        self.stats.profile.saves += 1
        self.stats.profile.save_s += time.perf_counter() - t0
        if state is None:
            return
        entry = Saved(prefix, state)
        self._touch(entry)
        self.saved.append(entry)
        while self.saved and (
            len(self.saved) > self.cache_entries or sum(e.nbytes for e in self.saved) > self.cache_bytes
        ):
            self.saved.remove(min(self.saved, key=lambda e: e.used))

    def _free_idle_cells(self) -> bool:
        """Out of KV room: drop the prompts idle slots keep for reuse. True if anything was freed."""
        freed = False
        for slot in self.slots:
            if slot.active is None and slot.kv:
                self.ctx.seq_rm(slot.seq)
                slot.kv = []
                freed = True
        return freed
