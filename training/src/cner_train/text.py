"""Text handling shared, rule for rule, with the TypeScript processor.

Everything here has a twin in ``src/pipeline`` (chunk.ts, encode.ts, labels.ts);
the golden fixtures in ``fixtures/golden`` are produced from this module and
checked by both test suites, so a change here must be made there too.

Offsets are Unicode code points (Python ``str`` indices), end exclusive.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_CHUNK_LEN = 128

SENTENCE_END = "。"
# Whitespace is an explicit set: Python's str.isspace and JavaScript's \s differ.
WHITESPACE = frozenset(" \t\n\r\u000b\u000c\u00a0\u3000")
# Secondary boundaries for sentences over the limit, strongest first: the cut
# goes after the last boundary of the first tier found inside the limit.
# On the CCKS-2019 training set this tiering cuts 8 of 17,653 gold entities;
# one tier of all four cuts 14 (see training/RESULTS.md).
SECONDARY_TIERS: tuple[frozenset[str], ...] = (
    frozenset("；"),
    frozenset("，"),
    frozenset("、"),
    WHITESPACE,
)

ENTITY_TYPES: tuple[tuple[str, str], ...] = (
    ("DIS", "疾病和诊断"),
    ("EXA", "影像检查"),
    ("TES", "实验室检验"),
    ("OPE", "手术"),
    ("DRU", "药物"),
    ("ANA", "解剖部位"),
)
CODE_BY_LABEL = {label: code for code, label in ENTITY_TYPES}
LABEL_BY_CODE = {code: label for code, label in ENTITY_TYPES}
TAGS: tuple[str, ...] = ("O",) + tuple(f"{p}-{code}" for code, _ in ENTITY_TYPES for p in ("B", "I"))
TAG_INDEX = {t: i for i, t in enumerate(TAGS)}


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # exclusive
    code: str  # DIS, EXA, ...


def chunk_text(text: str, max_len: int = MAX_CHUNK_LEN) -> list[tuple[int, int]]:
    """Split ``text`` into ``[start, end)`` chunks of at most ``max_len`` code points.

    1. Sentences end after each ``。`` (the period stays with its sentence).
    2. A sentence longer than ``max_len`` is cut after the last secondary
       boundary inside the limit, trying ``；`` then ``，`` then ``、`` then
       whitespace; a hard cut at the limit when there is none.
    3. Consecutive pieces are packed greedily while the chunk fits, so the
       model sees whole neighbouring sentences as context.
    The chunks are contiguous and cover the text exactly.
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    n = len(text)
    if n == 0:
        return []
    pieces: list[tuple[int, int]] = []
    start = 0
    for i, ch in enumerate(text):
        if ch == SENTENCE_END:
            pieces.extend(_split_long(text, start, i + 1, max_len))
            start = i + 1
    if start < n:
        pieces.extend(_split_long(text, start, n, max_len))

    chunks: list[tuple[int, int]] = []
    cur_start, cur_end = pieces[0]
    for s, e in pieces[1:]:
        if e - cur_start <= max_len:
            cur_end = e
        else:
            chunks.append((cur_start, cur_end))
            cur_start, cur_end = s, e
    chunks.append((cur_start, cur_end))
    return chunks


def _split_long(text: str, start: int, end: int, max_len: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while end - start > max_len:
        cut = start + max_len
        for tier in SECONDARY_TIERS:
            found = _last_in(text, start, start + max_len, tier)
            if found is not None:
                cut = found + 1
                break
        out.append((start, cut))
        start = cut
    out.append((start, end))
    return out


def _last_in(text: str, start: int, end: int, chars: frozenset[str]) -> int | None:
    for p in range(end - 1, start - 1, -1):
        if text[p] in chars:
            return p
    return None


def normalize_char(ch: str) -> str:
    """One code point in, one code point out, so offsets never move."""
    if ch in WHITESPACE:
        return " "
    cp = ord(ch)
    if 0xFF01 <= cp <= 0xFF5E:  # full-width ASCII forms
        ch = chr(cp - 0xFEE0)
    if "A" <= ch <= "Z":
        ch = ch.lower()
    return ch


def spans_from_entities(entities: Iterable[dict]) -> list[Span]:
    return [Span(int(e["start_pos"]), int(e["end_pos"]), CODE_BY_LABEL[e["label_type"]]) for e in entities]


def bio_tags(length: int, spans: Iterable[Span], offset: int = 0, names: Sequence[str] = TAGS) -> list[int]:
    """Tag ids (indices into ``names``, CCKS-2019's tags by default) for ``length`` positions starting at
    ``offset`` in the record.

    A span that crosses the window is clipped to it, so a chunk boundary that
    cuts an entity yields two partial entities (counted by ``entities_cut``).
    """
    index = TAG_INDEX if names is TAGS else {t: i for i, t in enumerate(names)}
    tags = [index["O"]] * length
    for sp in spans:
        s, e = max(sp.start, offset), min(sp.end, offset + length)
        if s >= e:
            continue
        tags[s - offset] = index[f"B-{sp.code}"]
        for i in range(s + 1, e):
            tags[i - offset] = index[f"I-{sp.code}"]
    return tags


def spans_from_tags(tags: Sequence[int], offset: int = 0, names: Sequence[str] = TAGS) -> list[Span]:
    """Strict IOB2 reading: an entity starts at B-X and continues over I-X only.

    A stray I-X (possible from an unconstrained decoder) is ignored, as seqeval's
    strict mode does.
    """
    spans: list[Span] = []
    cur: tuple[int, str] | None = None
    for i, t in enumerate(tags):
        name = names[t]
        if cur is not None and name != f"I-{cur[1]}":
            spans.append(Span(cur[0] + offset, i + offset, cur[1]))
            cur = None
        if name.startswith("B-"):
            cur = (i, name[2:])
    if cur is not None:
        spans.append(Span(cur[0] + offset, len(tags) + offset, cur[1]))
    return spans


def entities_cut(chunks: Sequence[tuple[int, int]], spans: Iterable[Span]) -> int:
    """How many gold spans a chunking splits across two chunks."""
    bounds = {s for s, _ in chunks[1:]}
    return sum(1 for sp in spans if any(sp.start < b < sp.end for b in bounds))
