"""Which slot a new request takes and what host memory keeps (hive/reuse.py, hive/prefix_cache.py),
against a stand-in for the context's sequence calls: the choices and the bookkeeping, not the
cells (tests/engine/test_chat_history.py runs the same paths on the real model)."""

from __future__ import annotations

from appliance.engine.prefix_cache import UNCLAIMED_KEEP, PrefixCache
from appliance.engine.reuse import PromptReuse
from appliance.engine.slots import Slot
from appliance.engine.stats import Profile, Stats

BYTES_PER_TOKEN = 100


class Sequences:
    """What each sequence holds, by token; a saved state is BYTES_PER_TOKEN bytes a token."""

    unified = False

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = {s.seq: s for s in slots}
        self.copies: list[tuple[int, int, int]] = []
        self.restored: list[int] = []
        self.sized = 0  # seq_bytes calls: llama.cpp walks a sequence's cells for each

    def seq_bytes(self, seq: int) -> int:
        self.sized += 1
        return len(self.slots[seq].kv) * BYTES_PER_TOKEN

    def seq_save(self, seq: int, size: int | None = None) -> bytearray:
        return bytearray(self.seq_bytes(seq) if size is None else size)

    def seq_restore(self, state: bytearray, seq: int) -> bool:
        self.restored.append(seq)
        return True

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        return True

    def copy_prefix(self, src: int, dst: int, n: int) -> bool:
        self.copies.append((src, dst, n))
        return True


def setup(slots: int, *, entries: int = 4, max_bytes: int = 100_000) -> tuple[list[Slot], Sequences, PrefixCache]:
    held = [Slot(seq=i) for i in range(slots)]
    ctx = Sequences(held)
    return held, ctx, PrefixCache(ctx, entries=entries, max_bytes=max_bytes, profile=Profile())  # type: ignore[arg-type]


def claimed(cache: PrefixCache) -> PrefixCache:
    """A chat's next turn found its history still in a slot: callers come back, conversations are kept."""
    cache.notice([1, 2, 3, 4], [([1, 2, 3], 2)])
    assert cache.chats_come_back
    return cache


def keep(cache: PrefixCache, slot: Slot, tokens: list[int], reply_at: int | None = None) -> None:
    """The slot holds `tokens`, a prompt and its answer from `reply_at` (the last ten by default)."""
    slot.kv, slot.reply_at = tokens, len(tokens) - 10 if reply_at is None else reply_at
    cache.keep_conversation(slot)


def kinds(cache: PrefixCache) -> list[tuple[bool, int]]:
    return [(e.conversation, len(e.tokens)) for e in cache.saved]


SYSTEM = list(range(1000, 1020))  # a 20-token preamble


def test_conversations_make_room_only_among_themselves() -> None:
    (slot,), _, cache = setup(1, max_bytes=8000)
    claimed(cache)
    slot.kv = SYSTEM
    cache.remember(0, SYSTEM)
    keep(cache, slot, SYSTEM + list(range(20)))  # 4000 bytes beside the preamble's 2000
    keep(cache, slot, SYSTEM + list(range(100, 110)))  # 3000 more: over 8000, the older chat goes
    assert kinds(cache) == [(False, 20), (True, 30)]
    keep(cache, slot, SYSTEM + list(range(200, 270)))  # 9000: more than all but the preamble leaves
    assert kinds(cache) == [(False, 20), (True, 30)]


def test_keeping_a_conversation_sizes_its_state_once() -> None:
    (slot,), ctx, cache = setup(1)
    keep(claimed(cache), slot, SYSTEM + list(range(20)))
    assert kinds(cache) == [(True, 40)] and ctx.sized == 1


def test_each_kind_keeps_at_most_entries() -> None:
    (slot,), _, cache = setup(1, entries=2)
    for i in range(3):
        slot.kv = [i] * 20
        cache.remember(0, slot.kv)
        keep(claimed(cache), slot, [50 + i] * 20)
    assert sorted(e.tokens[0] for e in cache.saved) == [1, 2, 51, 52]


def conversations(cache: PrefixCache) -> list[int]:
    return [e.tokens[len(SYSTEM)] for e in cache.saved if e.conversation]


def test_one_off_requests_copy_no_conversation() -> None:
    (slot,), ctx, cache = setup(1, entries=8, max_bytes=10**6)
    for i in range(6):
        cache.notice(SYSTEM + [100 + i] * 20, [])  # each a new request: no claim
        keep(cache, slot, SYSTEM + [100 + i] * 30)
    cache.notice(SYSTEM + [105] * 20, [])  # the same question again, not the chat's next turn
    cache.notice(SYSTEM + [105] * 19 + [7] * 30, [])  # long enough, but another answer
    keep(cache, slot, SYSTEM + [106] * 30)
    assert UNCLAIMED_KEEP == 0 and cache.saved == []
    assert ctx.sized == 0 and cache.profile.saves == 0  # not even sized: no copy at all
    assert not cache.chats_come_back
    # The next turn of one of them, though not restorable, is noticed: from now on chats are kept.
    cache.notice(SYSTEM + [104] * 21 + [1, 2], [])
    assert cache.chats_come_back
    keep(cache, slot, SYSTEM + [107] * 30)
    assert conversations(cache) == [107]


def test_a_chat_coming_back_lifts_the_limit_until_as_many_go_unclaimed() -> None:
    (slot,), _, cache = setup(1, entries=8, max_bytes=10**6)
    for i in range(6):
        keep(cache, slot, SYSTEM + [100 + i] * 30)
    # The next turn of a chat dropped already (a queue of chats comes back late): its history with
    # the answer tokenised again, which parts from the sampled tokens after a few.
    cache.notice(SYSTEM + [100] * 23 + [1, 2, 3, 4], [])
    for i in range(6, 12):
        keep(cache, slot, SYSTEM + [100 + i] * 30)
    assert len(conversations(cache)) == 6  # claimed: up to entries
    keep(cache, slot, SYSTEM + [112] * 30)
    assert len(conversations(cache)) == 7
    keep(cache, slot, SYSTEM + [113] * 30)  # the eighth unclaimed conversation in a row
    assert conversations(cache) == []  # back to tokens only
    cache.notice(SYSTEM + [113] * 25, [])  # whose next turn is still noticed
    assert cache.chats_come_back


def test_a_unified_slot_keeps_only_the_prompt_and_a_claim_sends_all_of_it() -> None:
    (slot,), _, cache = setup(1, entries=8, max_bytes=10**6)
    for i in range(5):
        keep(cache, slot, SYSTEM + [100 + i] * 10, reply_at=30)  # the prompt alone
    assert len(conversations(cache)) == UNCLAIMED_KEEP
    cache.notice(SYSTEM + [104] * 10 + [7] * 12, [])
    for i in range(5, 9):
        keep(cache, slot, SYSTEM + [100 + i] * 10, reply_at=30)
    assert len(conversations(cache)) == 4


def test_a_later_turn_replaces_the_earlier_one() -> None:
    (slot,), _, cache = setup(1)
    claimed(cache)
    turn_one = SYSTEM + list(range(30))
    keep(cache, slot, turn_one)
    keep(cache, slot, turn_one + list(range(40, 60)))
    assert kinds(cache) == [(True, 70)]
    keep(cache, slot, turn_one)  # a prefix of what is kept already: nothing new
    assert kinds(cache) == [(True, 70)]


def test_of_entries_sharing_as_much_the_shortest_is_restored() -> None:
    (slot,), _, cache = setup(1)
    keep(cache, slot, SYSTEM + list(range(60)))
    slot.kv = SYSTEM
    cache.remember(0, SYSTEM)
    entry, length = cache.best([*SYSTEM, 7, 7, 7], limit=22)
    assert length == 20 and entry is not None and len(entry.tokens) == 20


def callers_come_back(cache: PrefixCache, slot: Slot) -> None:
    """A chat's next turn claims its history, saved from `slot`: chats are kept resident from now on."""
    keep(cache, slot, [7] * 30)
    cache.notice([7] * 30 + [8], [])
    cache.saved.clear()
    slot.kv = []
    assert cache.chats_come_back


def test_a_new_request_takes_a_slot_it_leaves_no_chat_short_in() -> None:
    slots, ctx, cache = setup(3)
    callers_come_back(cache, slots[0])
    reuse = PromptReuse(ctx, slots, cache, Stats())  # type: ignore[arg-type]
    chat = SYSTEM + list(range(40))
    slots[0].kv = list(chat)  # an idle slot holding one caller's chat
    slots[1].kv = SYSTEM[:5]  # a slot cut short by 5 tokens only
    prompt = SYSTEM + [9] * 10
    dest, reused = reuse.start(prompt, slots, None)
    # Not slot 0, whose chat it would cut short: slot 1 (closer than the empty slot 2), and the
    # preamble copied from slot 0.
    assert dest is slots[1] and reused == 20 and ctx.copies == [(0, 1, 20)]
    assert slots[0].kv == chat and cache.saved == []


def test_one_off_requests_cut_a_used_slot_rather_than_fill_an_empty_one() -> None:
    slots, ctx, cache = setup(3)
    reuse = PromptReuse(ctx, slots, cache, Stats())  # type: ignore[arg-type]
    assert not cache.chats_come_back  # a fresh cache: nobody came back to a chat yet
    slots[0].kv, slots[0].reply_at = SYSTEM + list(range(40)), 30  # the last one-off request's prompt and answer
    dest, reused = reuse.start(SYSTEM + [9] * 10, slots, None)
    # Its preamble in place, and no empty slot's stream touched (its memory stays uncommitted).
    assert dest is slots[0] and reused == 20 and ctx.copies == []
    assert kinds(cache) == [] and ctx.sized == 0  # nor is the history it cut copied


def test_a_chat_continued_in_its_slot_counts_with_the_cache_off() -> None:
    slots, ctx, cache = setup(3, max_bytes=0)  # --prefix-cache-mb 0: nothing is ever saved
    reuse = PromptReuse(ctx, slots, cache, Stats())  # type: ignore[arg-type]
    chat = SYSTEM + list(range(40))
    slots[0].kv, slots[0].reply_at = list(chat), 30
    reuse.start(chat + [3] * 8, [slots[0]], None)  # its next turn, in its own slot
    assert cache.chats_come_back
    # So a one-off request now leaves the other idle slots' chats alone and takes the empty slot.
    slots[0].kv, slots[0].active = list(chat), None
    slots[1].kv, slots[1].reply_at = SYSTEM + list(range(100, 140)), 30
    dest, _ = reuse.start(SYSTEM + [9] * 10, slots, None)
    assert dest is slots[2]


def test_a_chat_cut_short_is_saved_first() -> None:
    slots, ctx, cache = setup(2)
    claimed(cache)
    reuse = PromptReuse(ctx, slots, cache, Stats())  # type: ignore[arg-type]
    slots[0].kv = SYSTEM + list(range(40))
    slots[1].kv = [5] * 30
    dest, reused = reuse.start(SYSTEM + [9] * 10, slots, None)
    assert dest is slots[0] and reused == 20
    assert kinds(cache) == [(True, 60)]
    # Its next turn restores it from host memory into whichever slot is free.
    slots[0].kv = SYSTEM + [9] * 10
    slots[1].kv = [5] * 30
    chat_turn_two = SYSTEM + list(range(40)) + [3] * 8
    dest, reused = reuse.start(chat_turn_two, [slots[1]], None)
    assert dest is slots[1] and reused == 60 and ctx.restored == [1]


def test_unified_takes_the_best_match_and_saves_what_it_cuts() -> None:
    slots, ctx, cache = setup(2)
    claimed(cache)
    ctx.unified = True  # every resident cell costs every step: no history kept resident for later
    reuse = PromptReuse(ctx, slots, cache, Stats())  # type: ignore[arg-type]
    slots[0].kv = SYSTEM + list(range(40))
    dest, reused = reuse.start(SYSTEM + [9] * 10, slots, None)
    assert dest is slots[0] and reused == 20 and ctx.copies == []
    assert kinds(cache) == [(True, 60)]
