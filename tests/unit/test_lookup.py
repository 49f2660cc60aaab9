from __future__ import annotations

from appliance.engine.speculative.lookup import NgramIndex


def test_draft_continues_the_latest_earlier_occurrence() -> None:
    idx = NgramIndex([1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8])
    assert idx.draft(3) == []  # suffix (7, 8) / (3, 7, 8) never occurred before
    for t in (1, 2, 3):
        idx.append(t)
    # (1, 2, 3) occurred twice; the latest earlier one was followed by 7, 8
    assert idx.draft(3) == [7, 8, 1]
    assert idx.draft(2) == [7, 8]
    assert idx.draft(0) == []


def test_bigram_fallback_and_no_self_match() -> None:
    idx = NgramIndex([5, 6])
    assert idx.draft(4) == []
    idx.append(5)
    idx.append(6)
    assert idx.draft(4) == [5, 6]
