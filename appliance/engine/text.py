"""Incremental detokenisation: whole UTF-8 characters only, and stop strings never streamed."""

from __future__ import annotations

import codecs

from appliance.engine.interface import StopRule


class TextStream:
    """Turns token bytes into text pieces that are safe to send.

    Bytes of a character split across tokens are held until the character is complete.
    Text that could be the start of a stop string is held until it is known not to be; a
    completed stop string ends the stream and is never sent.
    """

    def __init__(self, stops: list[str], rule: StopRule | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False
        # The text given out so far, kept only for a stop rule to read.
        self._rule = rule
        self._given = ""

    def feed(self, data: bytes) -> str:
        """Text now safe to send. After a stop string is seen, sets `stopped` and returns the text
        before it; after the stop rule says so, sets `stopped` and returns the text up to there."""
        if self.stopped:
            return ""
        text = self._feed(data)
        if self._rule is not None and text:
            self._given += text
            self.stopped = self._rule.stop(self._given)
        return text

    def _feed(self, data: bytes) -> str:
        text = self._held + self._decoder.decode(data)
        if not self._stops:
            self._held = ""
            return text
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._partial_stop_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """Whatever is still held once generation ends without a stop string."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text

    def _partial_stop_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
