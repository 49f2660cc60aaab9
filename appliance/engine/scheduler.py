"""The scheduler thread: continuous batching over one llama.cpp context.

Every step is one `llama_decode` over a batch holding one new token for each generating
request plus chunks of prompt for requests still prefilling, so requests join and leave
between steps. Each slot is one KV sequence: in one unified KV cache, or each in its own
stream when the cache is split. Finished slots keep their prompt (split: and answer) in the KV
cache, and shared preambles (specialist and system prompts) are also saved to host memory, as is
an idle slot's history before a new request overwrites it. A new request starts from the longest
token prefix found in any slot or in host memory, and prefills only the rest; requests arriving
together with one new preamble prefill it once (reuse.py).

Requests under different LoRA adapters take turns, a step each (adapter_turns.py).

(prefix_cache.py says why saved preambles live in host memory.)
"""

from __future__ import annotations

import logging
import threading
import time

from appliance.engine import preemption, siblings, warm_up
from appliance.engine.adapter_turns import AdapterTurns
from appliance.engine.adapters import Adapters
from appliance.engine.admission import Admission
from appliance.engine.calls import CallQueue
from appliance.engine.fairness import Paused
from appliance.engine.interface import Chunk, Finished, Generation, GenerationRequest, Share, deliver
from appliance.engine.native.llama import Batch, Context, Model, StepLogits
from appliance.engine.prefix_cache import PrefixCache
from appliance.engine.reuse import PromptReuse
from appliance.engine.sampling import token_info
from appliance.engine.seams import DecodeTarget, MainContext, ThreadChoice
from appliance.engine.slots import Active, Slot, lone_request
from appliance.engine.speculative.drafting import StepCosts
from appliance.engine.speculative.lookup import NgramIndex
from appliance.engine.stats import Stats
from appliance.engine.step_plan import choose_drafts, fill_batch, prompt_budget, take_prompt_chunks
from appliance.engine.text import TextStream

log = logging.getLogger("alveare.hive")


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
        threads: ThreadChoice,
        prefill_chunk: int,
        target: DecodeTarget | None = None,
        adapters: Adapters | None = None,
    ) -> None:
        self.model = model
        self.ctx = ctx
        self.adapters = adapters or Adapters(model)
        self.turns = AdapterTurns(self.adapters)
        # Where each step decodes: the main context, or one a tuning piece keeps beside it (seams.py).
        self.target: DecodeTarget = target or MainContext()
        # Only a target that may take the lone request is told about it: nothing to compute per step otherwise.
        self._follows = not isinstance(self.target, MainContext)
        self.slots = [Slot(seq=i) for i in range(slots)]
        self.context_length = context_length
        self.batch = Batch(ctx.n_batch)
        self.prefill_chunk = prefill_chunk
        self.stats = Stats()
        self.threads = threads
        self._threads_now = threads.current
        self._decode_s = 0.0
        # Shared preambles saved to host memory.
        self.prefixes = PrefixCache(ctx, entries=cache_entries, max_bytes=cache_bytes, profile=self.stats.profile)
        self.reuse = PromptReuse(ctx, self.slots, self.prefixes, self.stats)
        self.step_costs = StepCosts()
        self.admission = Admission(slots=slots, queue_size=queue_size, prefill_chunk=prefill_chunk)
        self._cond = self.admission.cond
        self.calls = CallQueue(self._cond)  # run between steps: what must not run beside a decode
        self._stopping = False
        self._admitted_order: list[Slot] = []
        self._outbox: list[tuple[Generation, Chunk | Finished]] = []
        self._thread = threading.Thread(target=self._run, name="alveare-hive", daemon=True)

    # ------------------------------------------------------------ event-loop side
    def start(self) -> None:
        self._thread.start()

    def submit(self, request: GenerationRequest, generations: list[Generation]) -> None:
        """One generation per entry, all from one prefill of the prompt (each in its own slot); refused
        (Overloaded) when it could not start before its deadline (admission.py)."""
        self.admission.submit(request, generations)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self.calls.closed = True
            self._cond.notify()
        self._thread.join(timeout=30)
        self.batch.close()
        log.info("hive profile: %s", self.stats.profile.summary())
        if summary := self.target.summary():
            log.info("%s", summary)

    @property
    def busy(self) -> int:
        return sum(1 for s in self.slots if s.active is not None)

    @property
    def queued(self) -> int:
        return len(self.admission.queue)

    # ------------------------------------------------------------ thread side
    def _run(self) -> None:
        step_s = warm_up.full_step_s(self.model, self.ctx, self.batch, len(self.slots))
        if step_s is not None:
            self.admission.estimate.prime(step_s)
        while True:
            with self._cond:
                if self._stopping:
                    break
                calls = self.calls.pending
                idle = not calls and not len(self.admission.queue) and not any(s.active for s in self.slots)
            if calls:
                self.calls.run()
            if self.adapters.retiring:  # replaced or removed: freed once no request needs them
                with self._cond:
                    paused = self.admission.queue.paused_adapters()
                self.turns.collect(paused, self.ctx, self.slots, self.prefixes)
            if idle:
                with self._cond:
                    # Checked again under the lock: a request or call that came since wakes it at once.
                    if not self.calls.pending and not self._stopping and not len(self.admission.queue):
                        self._cond.wait(timeout=0.5)
                continue
            try:
                started = time.perf_counter()
                self._admit()
                self._reap()
                if any(s.active for s in self.slots):
                    self._follow_target()
                    prefill = any(s.active is not None and s.active.prefilling for s in self.slots)
                    n = self.threads.choose(prefill)
                    if n != self._threads_now:
                        self.ctx.set_threads(n)
                        self.target.set_threads(n)
                        self._threads_now = n
                    stepped = time.perf_counter()
                    size = self._step()
                    self._flush()
                    done = time.perf_counter()
                    elapsed = done - started
                    # Admission's estimate counts a prompt in steps of its own; the step time it
                    # plays the queue forward with is a decode step's (admitting not included), times
                    # the adapters taking turns: a row decodes once a round of them.
                    running = [s.active for s in self.slots if s.active]
                    turns = len({a.adapter for a in running}) or 1
                    self.admission.publish(running, (done - stepped) * turns if size else None)
                    self.stats.profile.busy_s += elapsed
                    if size:
                        self.stats.profile.by_size[size][2] += elapsed
                        self.threads.observe(n, self._decode_s, size)
                else:
                    self._flush()
                    self.admission.publish([s.active for s in self.slots if s.active], None)
                    with self._cond:
                        self._cond.wait(timeout=0.05)
            except Exception:
                log.exception("engine step failed; failing the requests in flight")
                self.target.drop()  # every cell is cleared below: nothing to move back
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
        for entry in self.admission.drain():
            done = entry.paused.active.completion if entry.paused else 0
            for gen in entry.generations:
                self._emit(gen, Finished("cancelled", len(entry.request.prompt_tokens), done))
        self._flush()
        self.calls.run()  # any that came in while it stopped
        self.adapters.close([self.ctx])

    def _emit(self, gen: Generation, item: Chunk | Finished) -> None:
        if isinstance(item, Finished):
            gen.timing.finished = time.monotonic()
        self._outbox.append((gen, item))

    def _flush(self) -> None:
        if self._outbox:
            deliver(self._outbox)
            self._outbox = []

    def _follow_target(self) -> None:
        """Tell the decode target about the request running alone, if one is (lone_request)."""
        if not self._follows:
            return
        with self._cond:
            waiting = len(self.admission.queue)
        running = sum(1 for s in self.slots if s.active is not None)
        self.target.follow(lone_request(self.slots, waiting), busy=bool(waiting) or running > 1)

    def _step_ctx(self) -> Context:
        """The context this step decodes on: the target's, else the main one."""
        return self.target.ctx_for_step() or self.ctx

    def _reserved(self) -> int:
        return sum(s.active.reserved for s in self.slots if s.active)

    def _admit(self) -> None:
        for gen, end in self.admission.sweep(time.monotonic()):
            self._emit(gen, end)
        while True:
            with self._cond:
                entry = self.admission.queue.head()
                if entry is None:
                    return
                req, gens = entry.request, entry.generations
                free = [s for s in self.slots if s.active is None]
                if len(free) < len(gens):
                    giver = self.admission.queue.yielding_flow()
                    victim = preemption.victim(self._admitted_order, giver) if giver is not None else None
                    if victim is None:
                        return
                else:
                    victim = None
                    # Unified: room in the shared cells (kv_room). Split: every slot has its own
                    # stream, which always fits a request.
                    need = entry.kv_room()
                    if self.ctx.unified and self._reserved() + need > self.ctx.n_ctx and len(free) < len(self.slots):
                        return  # wait for KV room
                    self.admission.take(entry)
            if victim is not None:
                self._pause(victim)  # a slot for the flow first in line; admitted on the next turn
            elif entry.paused is not None:
                self._resume(entry.paused, free)
            else:
                self._place(req, gens, free)

    def _pause(self, slot: Slot) -> None:
        self.target.let_go(slot.seq)
        entry = preemption.pause(slot, self.ctx)
        self._admitted_order.remove(slot)
        self.stats.paused += 1
        with self._cond:
            self.admission.queue.pause(entry)

    def _resume(self, paused: Paused, free: list[Slot]) -> None:
        self.target.leave()  # the prefix search reads every slot's cells
        for s in self.slots:
            if s.active is not None:
                s.active.alone = False
        dest = preemption.resume(paused, free, self.reuse)
        self._admitted_order.append(dest)

    def _place(self, req: GenerationRequest, gens: list[Generation], free: list[Slot]) -> None:
        self.target.leave()  # the prefix search reads every slot's cells
        running = [s.active for s in self.slots if s.active is not None]
        for other in running:
            other.alone = False
        if running:
            self.target.release_memory()
        prompt = req.prompt_tokens
        adapter = self.adapters.key(req.adapter)
        save_at = self.reuse.save_point(prompt, req.cache_prefix, adapter)
        dest, reuse = self.reuse.start(prompt, free, save_at, adapter)
        s = req.sampling
        try:
            samplers = siblings.request_samplers(self.model, s, len(gens))
        except ValueError as exc:  # a bad grammar fails this request only
            for gen in gens:
                self._emit(gen, Finished("error", len(prompt), 0, error=str(exc)))
            with self._cond:
                for _ in gens:
                    self.admission.queue.ended(req.share)
            return
        parent = Active(
            req,
            gens[0],
            samplers[0],
            TextStream(req.stop, req.stop_rule),
            done=reuse,
            cached=reuse,
            reserved=len(prompt) + req.max_tokens,
            save_at=save_at,
            alone=not running and len(gens) == 1,
            adapter=adapter,
        )
        if save_at is not None and reuse < save_at:
            # A burst sharing a new preamble (a specialist's or an account's system prompt, just
            # after a start or an edit): one request prefills it, the others restore it once saved.
            parent.waits_for = self.reuse.prefilling(prompt[:save_at], adapter)
        dest.active = parent
        now = time.monotonic()
        for gen in gens:
            gen.timing.started = now
        self._admitted_order += siblings.seat(parent, dest, gens[1:], samplers[1:], free, self.ctx, self.prefixes)
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
            elif a.stop_at is not None and now >= a.stop_at:
                self._finish(slot, "timeout")

    def _step(self) -> int:
        """One llama_decode over every active slot; returns the batch size if it decoded no prompt, else 0."""
        batch = self.batch
        batch.clear()
        ctx = self._step_ctx()
        group = self.turns.choose(self._admitted_order, self._services)
        order = [s for s in self._admitted_order if s.active is not None and s.active.adapter == group]
        generating = [s for s in order if s.active is not None and not s.active.prefilling]
        drafts = choose_drafts(generating, self.step_costs, batch.capacity, self.context_length)
        self.reuse.resolve_waits(self._admitted_order)
        decoding = sum(1 + len(d) for d in drafts.values())
        budget = prompt_budget(batch.capacity, decoding, self.prefill_chunk)
        chunks = take_prompt_chunks(self._prefill_order(order), budget)
        prefilling = [s for s in order if s.seq in chunks]
        plan = fill_batch(batch, [*generating, *prefilling], drafts, chunks, self.target.seq_of)
        generated, prompt_tokens = plan.generated, plan.prompt_tokens
        if not batch.n:
            return 0  # every active request is waiting for another's preamble (and none generates)
        profile = self.stats.profile
        if ctx is self.ctx:  # a target's context only ever takes a request with no adapter (lone_request)
            self.adapters.apply(ctx, group)
        self.turns.stepped(group, profile.steps)
        t0 = time.perf_counter()
        rc = ctx.decode(batch)
        if rc == 1 and ctx is self.ctx and self.reuse.free_idle_cells():
            rc = ctx.decode(batch)
        t1 = time.perf_counter()
        self._decode_s = t1 - t0
        if ctx is not self.ctx:
            self.target.stepped()
        profile.decode_s += t1 - t0
        profile.steps += 1
        profile.generated += generated
        profile.prompt += prompt_tokens
        if not prompt_tokens:
            row = profile.by_size.setdefault(batch.n, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += t1 - t0
            if ctx is self.ctx:  # the draft policy weighs the main model's steps against each other
                self.step_costs.observe(batch.n, t1 - t0)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        rows: list[tuple[Share, int]] = []
        for slot, tokens in plan.added:
            slot.kv.extend(tokens)
            if slot.active is not None:
                rows.append((slot.active.request.share, len(tokens)))
            a = slot.active
            if a is not None and a.save_at is not None and len(slot.kv) == a.save_at:
                self.prefixes.remember(slot.seq, slot.kv, slot.adapter)
                a.save_at = None
        self.stats.record_step(generated, prompt_tokens)
        with self._cond:
            self.admission.queue.charge(rows)
        t2 = time.perf_counter()
        logits = StepLogits(ctx, batch, self.model.n_vocab)
        for slot, idx, draft in plan.to_sample:
            a = slot.active
            assert a is not None
            if a.children:
                self._fork(slot, a, idx, logits)
            token = a.sampler.sample(ctx, idx, logits)
            accepted = 0
            while accepted < len(draft) and token == draft[accepted]:
                # A right guess is already in the KV cache at the next position: keep it, and read
                # the model's next choice from the following logits row.
                slot.kv.append(token)
                self._accept(slot, a, token, idx + accepted)
                if slot.active is not a:
                    break
                accepted += 1
                token = a.sampler.sample(ctx, idx + accepted, logits)
            if slot.active is a:
                self._accept(slot, a, token, idx + accepted)
            if draft:
                self.stats.drafted += len(draft)
                self.stats.draft_accepted += accepted
                a.acceptance.record(len(draft), accepted)
                # Drop the cells of wrong guesses.
                ctx.seq_rm(self.target.seq_of(slot.seq), len(slot.kv), -1)
        profile.sample_s += time.perf_counter() - t2
        return 0 if prompt_tokens else batch.n

    def _fork(self, slot: Slot, a: Active, idx: int, logits: StepLogits) -> None:
        """The prompt is in `slot` now: give each sibling choice its cells and its first token,
        sampled from the same logits row (siblings.py)."""
        for child_slot, child, ok in siblings.fork(slot, a, self.ctx):
            if ok:
                self._accept(child_slot, child, child.sampler.sample(self.ctx, idx, logits), idx)
            else:
                self._finish(child_slot, "error", error="no room in the KV cache for this choice")

    def _accept(self, slot: Slot, a: Active, token: int, row: int) -> None:
        timing = a.generation.timing
        if timing.first_token is None:
            timing.first_token = time.monotonic()
        if a.stop_at is None and a.request.timeout_s is not None:
            a.stop_at = time.monotonic() + a.request.timeout_s
        if self.model.is_eog(token):
            self._finish(slot, "stop")
            return
        a.completion += 1
        a.tokens.append(token)
        if a.lookup is not None:
            a.lookup.append(token)
        piece = self.model.piece(token, special=a.request.special_text)
        if a.request.sampling.logprobs is not None:
            top = a.request.sampling.logprobs or 0
            a.pending.append(token_info(a.sampler, self._step_ctx(), self.model, token, piece, row, top))
        text = a.text.feed(piece)
        if text and not a.generation.cancelled:
            if a.request.stream:
                self._emit(a.generation, Chunk(text, a.pending))
                a.pending = []
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
        self.target.let_go(slot.seq)  # the slot keeps its whole history in the main context, as every slot does
        for child_slot, child in a.children:  # siblings still waiting for this prompt end with it
            if child_slot.active is child:
                self._finish(child_slot, reason, error)
        a.children = []
        if reason in ("stop", "length"):
            a.held.append(a.text.flush())
        text = "".join(a.held)
        if text or a.pending:
            self._emit(a.generation, Chunk(text, a.pending))
        self._emit(
            a.generation,
            Finished(
                reason, len(a.request.prompt_tokens), a.completion, cached_tokens=a.cached, error=error, tokens=a.tokens
            ),
        )
        a.sampler.close()
        slot.active = None
        with self._cond:
            self.admission.queue.ended(a.request.share)
            if reason in ("stop", "length"):
                self.admission.estimate.observe_answer(a.completion)
        # A split cache keeps the answer too, for the chat's next turn, which sends it back: a slot's
        # own stream costs the other slots nothing. A unified cache keeps only the prompt, since
        # there every resident cell costs every later token of every slot some attention work.
        keep = slot.reply_at = len(a.request.prompt_tokens)
        if self.ctx.unified and len(slot.kv) > keep:
            self.ctx.seq_rm(slot.seq, keep, -1)
            slot.kv = slot.kv[:keep]
        if slot in self._admitted_order:
            self._admitted_order.remove(slot)
        self.stats.served += 1

    def _prefill_order(self, order: list[Slot]) -> list[Slot]:
        """Who gets the step's prompt rows first: arrival order, unless several flows are prefilling;
        then the flow with the least service first (fairness.py), so one tenant's long prompts cannot
        hold another's first token back."""
        flows = {s.active.request.share.flow for s in order if s.active is not None and s.active.prefilling}
        if len(flows) < 2:
            return order
        service = self._services(flows)
        return sorted(order, key=lambda s: service.get(s.active.request.share.flow, 0.0) if s.active else 0.0)

    def _services(self, flows: set[str]) -> dict[str, float]:
        with self._cond:
            return self.admission.queue.services(flows)
