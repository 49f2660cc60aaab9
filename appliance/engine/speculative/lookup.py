"""Prompt-lookup drafts: guess the next tokens by finding the latest earlier place where the last few
tokens occurred, and proposing what followed there. Summaries, extractions and answers copy spans of
their input, so these guesses are often right; the model verifies them all in one batch."""

from __future__ import annotations

NGRAM_SIZES = (3, 2)


class NgramIndex:
    def __init__(self, tokens: list[int]) -> None:
        self.tokens = list(tokens)
        # n-gram -> index just after its latest occurrence that ends before the last token
        self._next: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in NGRAM_SIZES}
        for end in range(len(self.tokens) - 1):
            self._insert(end)

    def _insert(self, end: int) -> None:
        for n, table in self._next.items():
            if end >= n - 1:
                table[tuple(self.tokens[end - n + 1 : end + 1])] = end + 1

    def append(self, token: int) -> None:
        if self.tokens:
            self._insert(len(self.tokens) - 1)
        self.tokens.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the current suffix."""
        if limit <= 0:
            return []
        for n, table in self._next.items():
            if len(self.tokens) < n:
                continue
            start = table.get(tuple(self.tokens[-n:]))
            if start is not None:
                return self.tokens[start : start + limit]
        return []
