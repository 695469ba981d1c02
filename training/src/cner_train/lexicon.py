"""Lexicon match features: which characters of a chunk begin, continue or end a
term of a medical word list, per list (docs/contract.md "Lexicon features").

The features are a function of the chunk's normalized characters and of
``lexicon.tsv`` only, so the TypeScript processor computes them identically
(golden fixtures check it). Every occurrence counts, overlapping ones included:
the model learns how far to trust each list; no longest-match heuristic to
mirror on the other side.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .text import normalize_char

# List name → file in ../shared/data/lexicon/by_type (see that folder's README).
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("DIS", "疾病和诊断.txt"),
    ("EXA", "影像检查.txt"),
    ("TES", "实验室检验.txt"),
    ("OPE", "手术.txt"),
    ("DRU", "药物.txt"),
    ("ANA", "解剖部位.txt"),
    ("CHK", "检查_检验_混合.txt"),
    ("SYM", "症状.txt"),
)
POSITIONS = ("begin", "inside", "end")  # per category: feature index = 3 * category + position
NUM_FEATURES = len(CATEGORIES) * len(POSITIONS)
MIN_TERM, MAX_TERM = 2, 40


def normalize_term(term: str) -> str:
    return "".join(normalize_char(c) for c in term)


class Lexicon:
    def __init__(self, entries: Iterable[tuple[str, str]]):
        """entries: (category code, term); terms are normalized, those outside 2–40 characters dropped."""
        codes = {code: i for i, (code, _) in enumerate(CATEGORIES)}
        self.masks: dict[str, int] = {}
        for code, term in entries:
            if code not in codes:
                raise ValueError(f"unknown lexicon category {code!r}; known: {', '.join(codes)}")
            t = normalize_term(term.strip())
            if MIN_TERM <= len(t) <= MAX_TERM:
                self.masks[t] = self.masks.get(t, 0) | (1 << codes[code])
        self.prefixes = {t[:k] for t in self.masks for k in range(1, len(t) + 1)}
        self.max_len = max((len(t) for t in self.masks), default=0)

    @classmethod
    def from_by_type(cls, folder: Path) -> Lexicon:
        def entries():
            for code, name in CATEGORIES:
                for line in (folder / name).read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        yield code, line.strip()
        return cls(entries())

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """``lexicon.tsv``: one ``CATEGORY<TAB>term`` per line; or a by_type folder."""
        if path.is_dir():
            return cls.from_by_type(path)
        return cls(tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line)

    def save(self, path: Path) -> None:
        """Sorted by term (code-point order), then category, so the file is reproducible."""
        lines = [f"{code}\t{term}" for term in sorted(self.masks) for i, (code, _) in enumerate(CATEGORIES)
                 if self.masks[term] >> i & 1]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def __len__(self) -> int:
        return len(self.masks)

    def features(self, text: str) -> np.ndarray:
        """text (one chunk, original characters) → [len(text), NUM_FEATURES] uint8."""
        norm = normalize_term(text)
        n = len(norm)
        out = np.zeros((n, NUM_FEATURES), dtype=np.uint8)
        for s in range(n):
            for e in range(s + 1, min(n, s + self.max_len) + 1):
                piece = norm[s:e]
                if piece not in self.prefixes:
                    break
                mask = self.masks.get(piece, 0) if e - s >= MIN_TERM else 0
                c = 0
                while mask:
                    if mask & 1:
                        out[s, 3 * c] = 1
                        out[s + 1 : e - 1, 3 * c + 1] = 1
                        out[e - 1, 3 * c + 2] = 1
                    mask >>= 1
                    c += 1
        return out


# ---------------------------------------------------------------------------
# lexicon.trie: the terms as the trie the processor walks (src/pipeline/lexicon.ts,
# docs/contract.md "Lexicon trie"), so it maps the arrays instead of building them
# from lexicon.tsv at every start.
TRIE_MAGIC = b"CNERTRI1"
TRIE_FILE = "lexicon.trie"


def unit_order(cp: int) -> int:
    """A code point's rank in UTF-16 code-unit order (astral characters before U+E000..U+FFFF)."""
    if cp < 0xD800:
        return cp
    if cp <= 0xDFFF:
        return -1
    return cp - 0x2800 if cp >= 0x10000 else cp + 0xFF800


def trie_arrays(masks: dict[str, int]) -> dict[str, np.ndarray]:
    """The trie of lexicon.ts's buildTrie, node for node: terms in UTF-16 order, node 0
    the root, a node's children in a sibling list ascending by ``unit_order``, nodes
    numbered in creation order (so every child and sibling index exceeds its node's)."""
    terms = sorted(masks, key=lambda t: t.encode("utf-16-be"))
    capacity = 1 + sum(len(t) for t in terms)
    first_child = np.zeros(capacity, dtype=np.int32)
    last_child = np.zeros(capacity, dtype=np.int32)
    next_sibling = np.zeros(capacity, dtype=np.int32)
    order = np.zeros(capacity, dtype=np.int32)
    categories = np.zeros(capacity, dtype=np.int32)
    root: dict[int, int] = {}
    nodes = 1
    for term in terms:
        node = 0
        for ch in term:
            key = unit_order(ord(ch))
            if node == 0:
                child = root.get(key, 0)
            else:
                child = int(last_child[node])
                if child and order[child] != key:
                    child = 0
            if child == 0:
                child = nodes
                nodes += 1
                order[child] = key
                if node == 0:
                    root[key] = child
                elif first_child[node] == 0:
                    first_child[node] = child
                else:
                    next_sibling[last_child[node]] = child
                last_child[node] = child
            node = child
        categories[node] = masks[term]
    keys = sorted(root)
    return {
        "root_keys": np.array(keys, dtype=np.int32),
        "root_nodes": np.array([root[k] for k in keys], dtype=np.int32),
        "first_child": first_child[:nodes],
        "next_sibling": next_sibling[:nodes],
        "order": order[:nodes],
        "categories": categories[:nodes],
        "terms": np.array(len(terms)),
    }


def save_trie(lexicon: Lexicon, path: Path) -> None:
    """``lexicon.trie``: the magic ``CNERTRI1``; little-endian uint32 terms, nodes and
    first-level count F; then a zlib stream of int32 little-endian arrays: F first-level
    keys (ascending unit order), their F nodes, and per node first child, next sibling,
    order and categories (8 F + 16 nodes bytes; 10.6 MB for the default's 193,305
    terms, 2.3 MB compressed)."""
    a = trie_arrays(lexicon.masks)
    nodes, first = len(a["order"]), len(a["root_keys"])
    header = TRIE_MAGIC + np.array([int(a["terms"]), nodes, first], dtype="<u4").tobytes()
    body = b"".join(a[k].astype("<i4").tobytes() for k in
                    ("root_keys", "root_nodes", "first_child", "next_sibling", "order", "categories"))
    path.write_bytes(header + zlib.compress(body, 6))
