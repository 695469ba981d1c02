"""Character vocabulary: one token per line of ``vocab.txt``, line number = id."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from pathlib import Path

from .text import normalize_char

PAD, UNK, CLS, SEP, MASK, SPACE = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[SPACE]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, MASK, SPACE)
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID, SPACE_ID = range(len(SPECIAL_TOKENS))


class Vocab:
    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocab must start with {SPECIAL_TOKENS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocab has duplicate tokens")
        for t in tokens[len(SPECIAL_TOKENS):]:
            if len(t) != 1 or normalize_char(t) != t or t == " ":
                raise ValueError(f"vocab token {t!r} is not a single normalized character")
        self.tokens = tuple(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def char_id(self, ch: str) -> int:
        n = normalize_char(ch)
        if n == " ":
            return SPACE_ID
        return self.index.get(n, UNK_ID)

    def encode(self, text: str) -> list[int]:
        return [self.char_id(ch) for ch in text]

    def save(self, path: Path) -> None:
        path.write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls(lines)

    @classmethod
    def build(cls, corpus_lines: Iterable[str], labeled_texts: Iterable[str], min_count: int = 2) -> Vocab:
        """Characters seen ``min_count`` times in the corpus, plus every character of the labeled texts.

        Ordered by descending frequency then code point, so the file is deterministic.
        """
        counts: collections.Counter[str] = collections.Counter()
        for line in corpus_lines:
            counts.update(normalize_char(c) for c in line)
        keep = {c for c, n in counts.items() if n >= min_count}
        labeled: collections.Counter[str] = collections.Counter()
        for text in labeled_texts:
            labeled.update(normalize_char(c) for c in text)
        keep |= set(labeled)
        keep.discard(" ")
        total = counts + labeled
        ordered = sorted(keep, key=lambda c: (-total[c], ord(c)))
        return cls(list(SPECIAL_TOKENS) + ordered)
