"""Records → chunk examples → padded batches, exactly as the processor encodes them."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .corpus import Record
from .lexicon import NUM_FEATURES, Lexicon
from .text import MAX_CHUNK_LEN, bio_tags, chunk_text
from .vocab import PAD_ID, Vocab


@dataclass(frozen=True)
class Example:
    record: int  # index into the record list
    offset: int  # code-point offset of the chunk in its record
    ids: tuple[int, ...]
    tags: tuple[int, ...]
    # [len(ids), NUM_FEATURES] uint8 when the model reads lexicon features
    lexicon: np.ndarray | None = field(default=None, compare=False)
    # [len(ids), tags] float32: a teacher's tag marginals, the target instead of ``tags`` (cner-train train --soft)
    soft: np.ndarray | None = field(default=None, compare=False)


def make_examples(records: Sequence[Record], vocab: Vocab, max_len: int = MAX_CHUNK_LEN,
                  lexicon: Lexicon | None = None) -> list[Example]:
    out: list[Example] = []
    for ri, rec in enumerate(records):
        for s, e in chunk_text(rec.text, max_len):
            chunk = rec.text[s:e]
            out.append(Example(ri, s, tuple(vocab.encode(chunk)), tuple(bio_tags(e - s, rec.spans, s)),
                               lexicon.features(chunk) if lexicon is not None else None))
    return out


def with_soft(examples: Sequence[Example], marginals: Sequence[np.ndarray]) -> list[Example]:
    """Attach each record's teacher marginals ([len(text), tags]) to its chunk examples."""
    return [replace(x, soft=marginals[x.record][x.offset : x.offset + len(x.ids)]) for x in examples]


def pad_soft(examples: Sequence[Example], seq: int, tags: int) -> torch.Tensor:
    """Teacher marginals [batch, seq, tags] (zeros on pads and on rows without a teacher)."""
    soft = np.zeros((len(examples), seq, tags), dtype=np.float32)
    for i, x in enumerate(examples):
        if x.soft is not None:
            soft[i, : len(x.ids)] = x.soft
    return torch.from_numpy(soft)


def pad_features(examples: Sequence[Example]) -> torch.Tensor | None:
    """lexicon_features [batch, longest, NUM_FEATURES] float32 (zeros on pads), or None without a lexicon."""
    if examples[0].lexicon is None:
        return None
    seq = max(len(x.ids) for x in examples)
    feats = np.zeros((len(examples), seq, NUM_FEATURES), dtype=np.float32)
    for i, x in enumerate(examples):
        feats[i, : len(x.ids)] = x.lexicon
    return torch.from_numpy(feats)


def pad_batch(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, tags), each [batch, longest] int64, right-padded."""
    seq = max(len(x.ids) for x in examples)
    ids = np.full((len(examples), seq), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(examples), seq), dtype=np.int64)
    tags = np.zeros((len(examples), seq), dtype=np.int64)
    for i, x in enumerate(examples):
        n = len(x.ids)
        ids[i, :n] = x.ids
        mask[i, :n] = 1
        tags[i, :n] = x.tags
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(tags)


def train_batches(examples: Sequence[Example], batch_size: int, rng: random.Random) -> Iterator[list[Example]]:
    """Shuffled batches of similar length (sorted within pools of 50 batches), so padding stays small."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[Example]] = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p : p + pool], key=lambda i: len(examples[i].ids))
        batches.extend([examples[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    yield from batches


def eval_batches(examples: Sequence[Example], batch_size: int) -> Iterator[tuple[list[int], list[Example]]]:
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        yield idx, [examples[i] for i in idx]
