"""Evaluate an exported bundle with ONNX Runtime on any CCKS-format file, or on
the dev split of CCKS-2019 — what the processor would output, not the PyTorch model."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .corpus import dev_split, read_ccks
from .crf import ConstrainedDecoder
from .data import Example, eval_batches, make_examples, pad_batch, pad_features
from .lexicon import Lexicon
from .metrics import format_table, strict_prf
from .text import Span, spans_from_tags
from .vocab import Vocab

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    bundle: str = field(metadata={"help": "model bundle folder"})
    data: str = field(metadata={"help": "CCKS-format JSON Lines"})
    dev_only: bool = field(default=False, metadata={"help": "score only the fixed dev split of the file (CCKS-2019 train)"})
    dev_size: int = 150
    split_seed: int = 42
    out: str | None = field(default=None, metadata={"help": "write metrics JSON here"})
    threads: int = 0


def bundle_emissions(bundle: Path, records, threads: int = 0) -> Iterator[tuple[Example, np.ndarray]]:
    """(chunk example, emissions [chunk length, tags]) for every chunk of the records, through ONNX Runtime
    exactly as the processor feeds the bundle; chunks come shortest first."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(bundle / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    vocab = Vocab.load(bundle / "vocab.txt")
    lexicon = Lexicon.load(bundle / "lexicon.tsv") if (bundle / "lexicon.tsv").exists() else None
    examples = make_examples(records, vocab, lexicon=lexicon)
    for _, batch in eval_batches(examples, 32):
        ids, mask, _ = pad_batch(batch)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        if lexicon is not None:
            feeds["lexicon_features"] = pad_features(batch).numpy()
        em = sess.run(["emissions"], feeds)[0]  # [batch, seq, tags]
        for row, x in enumerate(batch):
            yield x, em[row, : len(x.ids)]


def bundle_decoder(bundle: Path) -> ConstrainedDecoder:
    return ConstrainedDecoder.from_json(json.loads((bundle / "crf.json").read_text(encoding="utf-8")))


def bundle_predict(bundle: Path, records, threads: int = 0) -> list[list[Span]]:
    decoder = bundle_decoder(bundle)
    out: list[list[Span]] = [[] for _ in records]
    for x, em in bundle_emissions(bundle, records, threads):
        path = decoder.viterbi(em)
        out[x.record].extend(Span(s.start + x.offset, s.end + x.offset, s.code) for s in spans_from_tags(path))
    return out


def dev_records(data: Path, dev_size: int, split_seed: int) -> list:
    """The fixed dev split of a CCKS-2019 training file (the records training never saw)."""
    records = read_ccks(data)
    _, dev_idx = dev_split(len(records), dev_size, split_seed)
    return [records[i] for i in dev_idx]


def score_bundle(bundle: Path, records, threads: int = 0) -> dict:
    """Strict P/R/F1 of a bundle's predictions (ONNX Runtime) against the records' gold spans."""
    return strict_prf([r.spans for r in records], bundle_predict(bundle, records, threads))


def evaluate_bundle(cfg: EvaluateConfig) -> dict:
    records = dev_records(Path(cfg.data), cfg.dev_size, cfg.split_seed) if cfg.dev_only else read_ccks(Path(cfg.data))
    metrics = score_bundle(Path(cfg.bundle), records, cfg.threads)
    print(format_table(metrics))
    if cfg.out:
        Path(cfg.out).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics
