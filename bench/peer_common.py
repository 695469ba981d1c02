"""What the Python peers of `npm run bench` share: the Python way of tagging.

A peer reads the benchmark's texts, chunks and encodes them exactly as cner
does (``cner_train.text`` and ``cner_train.vocab`` are the reference
implementation the TypeScript side is proven equal to by the golden
fixtures), runs its model on batches of 32 chunks padded to 128 (the naive
peer) or, as a careful engineer would, on chunks sorted by length in batches
of cner's size padded only to the longest chunk of each batch, decodes
every chunk with a numpy Viterbi under the same BIO constraint and tie rule
as ``src/pipeline/viterbi.ts``, and reads the spans with strict IOB2.

Only the source of the emissions differs between peers (onnxruntime in
python_peer.py, PyTorch eager in torch_peer.py). The benchmark driver
(bench/peers.ts) talks to a peer over stdin/stdout, one JSON object per line,
so the model is loaded once and the driver can interleave the peer's timed
runs with cner's (load noise then hits both).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cner_train.crf import bio_constraints
from cner_train.lexicon import NUM_FEATURES, Lexicon
from cner_train.text import MAX_CHUNK_LEN, chunk_text, spans_from_tags
from cner_train.vocab import Vocab

BATCH_SIZE = 32
PAD_TO = MAX_CHUNK_LEN

# (input_ids [batch, 128] int64, attention_mask [batch, 128] int64,
#  lexicon_features [batch, 128, features] float32 or None) → emissions [batch, 128, tags] float32
Emit = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


def read_texts(path: Path) -> list[str]:
    """The benchmark's texts: one JSON object per line with a ``text`` field (written by the driver)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


class NumpyViterbi:
    """Constrained Viterbi over one chunk, vectorized over the tags.

    The forbidden BIO moves are −∞ (docs/contract.md); scores are float64 and
    summed in the order of viterbi.ts ((previous score + transition), max,
    then + emission), and ``argmax`` returns the first maximum, i.e. ties go to
    the lower tag index, as the strict ``>`` scan does there.
    """

    def __init__(self, crf: dict):
        allowed_start, allowed_trans = bio_constraints()
        self.start = np.where(allowed_start, np.asarray(crf["start"], dtype=np.float64), -np.inf)
        self.end = np.asarray(crf["end"], dtype=np.float64)
        self.trans = np.where(allowed_trans, np.asarray(crf["transitions"], dtype=np.float64), -np.inf)  # [from, to]
        self.cols = np.arange(len(self.end))

    def decode(self, emissions: np.ndarray) -> list[int]:
        """emissions [length, tags] → best valid tag path."""
        em = emissions.astype(np.float64)
        n, t = em.shape
        back = np.empty((n, t), dtype=np.intp)
        score = self.start + em[0]  # shape: (tags,)
        for i in range(1, n):
            cand = score[:, None] + self.trans  # shape: (prev, next)
            best = cand.argmax(axis=0)  # shape: (next,)
            back[i] = best
            score = cand[best, self.cols] + em[i]
        tag = int((score + self.end).argmax())
        path = [tag]
        for i in range(n - 1, 0, -1):
            tag = int(back[i, tag])
            path.append(tag)
        return path[::-1]

    def decode_batch(self, emissions: np.ndarray) -> np.ndarray:
        """emissions [batch, length, tags], all rows of the full length → paths [batch, length].

        Vectorized over the batch too (as pytorch-crf decodes); the benchmark
        reports it next to ``decode`` to show what batching buys numpy.
        """
        em = emissions.astype(np.float64)
        b, n, t = em.shape
        back = np.empty((b, n, t), dtype=np.intp)
        score = self.start + em[:, 0]  # shape: (batch, tags)
        for i in range(1, n):
            cand = score[:, :, None] + self.trans  # shape: (batch, prev, next)
            best = cand.argmax(axis=1)  # shape: (batch, next)
            back[:, i] = best
            score = np.take_along_axis(cand, best[:, None, :], axis=1)[:, 0] + em[:, i]
        rows = np.arange(b)
        paths = np.empty((b, n), dtype=np.intp)
        paths[:, n - 1] = (score + self.end).argmax(axis=1)
        for i in range(n - 1, 0, -1):
            paths[:, i - 1] = back[rows, i, paths[:, i]]
        return paths


@dataclass
class Chunk:
    record: int
    start: int
    end: int


class Tagger:
    """Texts → entity spans per record, the whole run timed."""

    def __init__(self, bundle: Path, emit: Emit, careful: bool = False, batch_size: int = BATCH_SIZE):
        # careful: chunks sorted by length, each batch padded to its longest chunk (dynamic padding)
        self.careful = careful
        self.batch_size = batch_size
        self.vocab = Vocab.load(bundle / "vocab.txt")
        # A model with a lexicon_features input (config.json "inputs") gets them, computed by the reference code.
        inputs = json.loads((bundle / "config.json").read_text(encoding="utf-8"))["inputs"]
        self.lexicon = Lexicon.load(bundle / "lexicon.tsv") if "lexicon_features" in inputs else None
        self.viterbi = NumpyViterbi(json.loads((bundle / "crf.json").read_text(encoding="utf-8")))
        self.emit = emit

    def encode(self, texts: list[str], part: list[Chunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        pad = max(c.end - c.start for c in part) if self.careful else PAD_TO
        ids = np.zeros((len(part), pad), dtype=np.int64)  # [PAD] = 0
        mask = np.zeros((len(part), pad), dtype=np.int64)
        feats = None if self.lexicon is None else np.zeros((len(part), pad, NUM_FEATURES), dtype=np.float32)
        for k, c in enumerate(part):
            ids[k, : c.end - c.start] = self.vocab.encode(texts[c.record][c.start : c.end])
            mask[k, : c.end - c.start] = 1
            if feats is not None:
                feats[k, : c.end - c.start] = self.lexicon.features(texts[c.record][c.start : c.end])
        return ids, mask, feats

    def run(self, texts: list[str]) -> dict:
        """Tags every text; returns timings, counts and the entities ([start, end, code] per record)."""
        wall0, cpu0 = time.perf_counter(), time.process_time()
        model_s = 0.0
        chunks = [Chunk(r, s, e) for r, text in enumerate(texts) for s, e in chunk_text(text)]
        order = sorted(chunks, key=lambda c: c.end - c.start) if self.careful else chunks
        entities: list[list[list]] = [[] for _ in texts]
        for b in range(0, len(order), self.batch_size):
            part = order[b : b + self.batch_size]
            ids, mask, feats = self.encode(texts, part)
            m0 = time.perf_counter()
            em = self.emit(ids, mask, feats)
            model_s += time.perf_counter() - m0
            for k, c in enumerate(part):
                path = self.viterbi.decode(em[k, : c.end - c.start])
                entities[c.record].extend([s.start, s.end, s.code] for s in spans_from_tags(path, c.start))
        if self.careful:  # back in text order: chunks of a record were decoded out of order
            for spans in entities:
                spans.sort()
        return {
            "wall_s": time.perf_counter() - wall0,
            "cpu_s": time.process_time() - cpu0,
            "model_s": model_s,
            "records": len(texts),
            "chunks": len(chunks),
            "entities": entities,
        }


def viterbi_timing(viterbi: NumpyViterbi, file: Path, count: int, length: int, tags: int, repeat: int) -> dict:
    """Per-chunk µs of ``decode`` (and of ``decode_batch`` over 32 chunks) on the driver's emissions."""
    em = np.fromfile(file, dtype="<f4").reshape(count, length, tags)
    paths = [viterbi.decode(em[k]) for k in range(count)]  # also the warm-up
    single, batched = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for k in range(count):
            viterbi.decode(em[k])
        single.append((time.perf_counter() - t0) / count * 1e6)
        t0 = time.perf_counter()
        for b in range(0, count, BATCH_SIZE):
            viterbi.decode_batch(em[b : b + BATCH_SIZE])
        batched.append((time.perf_counter() - t0) / count * 1e6)
    same = all(list(viterbi.decode_batch(em[b : b + BATCH_SIZE])[k]) == paths[b + k]
               for b in range(0, count, BATCH_SIZE) for k in range(min(BATCH_SIZE, count - b)))
    return {"per_chunk_us": single, "batched_per_chunk_us": batched, "batched_same_paths": same, "paths": paths}


def serve(tagger: Tagger, info: dict) -> None:
    """Answers the driver: one JSON request per stdin line, one JSON answer per stdout line."""
    out = sys.stdout
    out.write(json.dumps({"ready": True, "info": info}) + "\n")
    out.flush()
    texts: list[str] = []
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["cmd"] == "load":
                texts = read_texts(Path(req["file"]))
                answer: dict = {"records": len(texts)}
            elif req["cmd"] == "run":
                answer = tagger.run(texts)
                if not req.get("entities", False):
                    del answer["entities"]
            elif req["cmd"] == "viterbi":
                answer = viterbi_timing(tagger.viterbi, Path(req["file"]), req["count"], req["length"], req["tags"], req["repeat"])
            elif req["cmd"] == "quit":
                return
            else:
                answer = {"error": f"unknown command {req['cmd']!r}"}
        except Exception as e:  # the driver reports it; the peer stays up for the next request
            answer = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
