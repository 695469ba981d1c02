"""Unlabeled corpus and labeled CCKS records: reading, the dev split, leakage filters."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .text import WHITESPACE, Span, spans_from_entities


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    spans: tuple[Span, ...]


def read_ccks(path: Path, prefix: str = "", keep_labels: bool = False) -> list[Record]:
    """CCKS-2019-format JSON Lines: ``originalText`` and ``entities`` (end exclusive). A span's
    ``code`` is its CCKS-2019 type code (DIS, …), or with ``keep_labels`` its ``label_type`` as
    written, for the sets with label sets of their own (CCKS-2017/2018)."""
    out: list[Record] = []
    with open(path, encoding="utf-8-sig") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            obj = json.loads(line)
            text = obj.get("originalText", obj.get("text"))
            if not isinstance(text, str):
                raise ValueError(f"{path}:{i + 1}: no originalText")
            entities = obj.get("entities", [])
            spans = tuple(Span(int(e["start_pos"]), int(e["end_pos"]), str(e["label_type"])) for e in entities) \
                if keep_labels else tuple(spans_from_entities(entities))
            for sp in spans:
                if not 0 <= sp.start < sp.end <= len(text):
                    raise ValueError(f"{path}:{i + 1}: span {sp} out of bounds")
            out.append(Record(str(obj.get("id", f"{prefix}{i}")), text, spans))
    return out


def file_sha256(paths: Iterable[Path]) -> str:
    """One sha256 over the files' bytes in order (the training data's fingerprint)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of one file, read in blocks (bundles and jars run to ~100 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dev_split(n: int, dev_size: int, seed: int) -> tuple[list[int], list[int]]:
    """A fixed, seeded split of record indices into (train, dev)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    dev = sorted(order[:dev_size])
    train = sorted(order[dev_size:])
    return train, dev


def _squeeze(text: str) -> str:
    return "".join(c for c in text if c not in WHITESPACE)


class WindowFilter:
    """Drops corpus lines that share any ``width``-character window (whitespace
    ignored) with protected texts, the way the shared corpus was filtered
    against the CCKS-2019 test set. Used to keep dev records out of pretraining.
    """

    def __init__(self, protected: Iterable[str], width: int = 20):
        self.width = width
        self.windows: set[str] = set()
        for t in protected:
            s = _squeeze(t)
            self.windows.update(s[i : i + width] for i in range(max(0, len(s) - width + 1)))

    def hits(self, line: str) -> bool:
        s = _squeeze(line)
        w = self.width
        return any(s[i : i + w] in self.windows for i in range(max(0, len(s) - w + 1)))


def corpus_lines(corpus_dir: Path, exclude: WindowFilter | None = None) -> Iterator[str]:
    for path in sorted(Path(corpus_dir).glob("*.txt")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line and not (exclude and exclude.hits(line)):
                    yield line


def labeled_texts(records: Sequence[Record]) -> list[str]:
    return [r.text for r in records]
