from __future__ import annotations

from appliance.engine.text import TextStream


def feed_all(stream: TextStream, pieces: list[bytes]) -> str:
    out = "".join(stream.feed(p) for p in pieces)
    return out + stream.flush()


def test_utf8_split_across_tokens_is_never_cut() -> None:
    s = TextStream([])
    data = "héllo 🐝".encode()
    emitted = [s.feed(bytes([b])) for b in data]
    assert all("\ufffd" not in e for e in emitted)
    assert "".join(emitted) + s.flush() == "héllo 🐝"


def test_stop_string_is_never_emitted() -> None:
    s = TextStream(["###"])
    assert s.feed(b"Hello #") == "Hello "
    assert s.feed(b"#") == ""
    assert s.feed(b"# rest") == ""
    assert s.stopped
    assert s.flush() == ""


def test_partial_stop_that_does_not_complete_is_released() -> None:
    s = TextStream(["STOP"])
    assert s.feed(b"go ST") == "go "
    assert s.feed(b"AY") == "STAY"
    assert not s.stopped


def test_held_text_is_flushed_at_the_end() -> None:
    s = TextStream(["END"])
    assert feed_all(s, [b"the E", b"N"]) == "the EN"


def test_earliest_of_several_stops_wins() -> None:
    s = TextStream(["b", "a"])
    assert s.feed(b"xxab") == "xx"
    assert s.stopped
