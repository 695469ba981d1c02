"""Self-training data: a teacher bundle tags unlabeled clinical EMR text and
the chunks it is sure of become extra training records (sequence-level
distillation: the student learns the teacher's Viterbi paths).

Sure means every character's Viterbi tag has a posterior of at least
``min_marginal`` under the teacher's constrained CRF, so a kept chunk has no
boundary the teacher hesitated over. Corpus lines sharing a 20-character window
with any labeled CCKS record (the dev split included) are dropped first: dev
texts must never reach training, and the labeled training texts already have
gold labels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .corpus import Record, WindowFilter, read_ccks
from .evaluate import bundle_decoder, bundle_emissions
from .text import LABEL_BY_CODE, TAGS, spans_from_tags

log = logging.getLogger(__name__)

# The unlabeled clinical EMR files of ../shared/data/medical-corpus (its README):
# the other EMR files there are the CCKS-2019/2020 training texts themselves.
EMR_FILES = ("ccks2020_unlabeled.txt", "ccks2019_subtask2_unlabeled.txt", "ccks2017_emr_text.txt",
             "ccks2018_emr_text.txt")


@dataclass
class PseudoConfig:
    bundle: str = field(metadata={"help": "teacher bundle (cner-train export; an ensemble is one bundle)"})
    corpus: str = field(metadata={"help": "the medical-corpus folder"})
    ccks2019: str = field(metadata={"help": "CCKS-2019 train.jsonl: lines overlapping any of its records are dropped"})
    out: str = field(metadata={"help": "CCKS-format JSON Lines of the kept chunks (pass to cner-train train --extra)"})
    ccks2020: str | None = field(default=None, metadata={"help": "CCKS-2020 train_new.jsonl, excluded the same way"})
    files: list[str] = field(default_factory=lambda: list(EMR_FILES), metadata={
        "help": "corpus files to tag (comma-separated)"})
    min_marginal: float = field(default=0.9, metadata={
        "help": "keep a chunk when every character's Viterbi tag has at least this posterior"})
    min_chars: int = field(default=10, metadata={"help": "drop shorter chunks"})
    soft: bool = field(default=False, metadata={
        "help": "knowledge distillation: keep every chunk (no min_marginal filter) and write the teacher's "
                "per-character tag marginals beside OUT (OUT.marginals.npy, float16 [characters, tags], rows in "
                "the order of OUT's lines) for cner-train train --soft"})
    threads: int = 0


def marginals_path(out: Path) -> Path:
    """Where ``pseudo --soft`` writes the teacher's marginals for the records file ``out``."""
    return out.with_suffix(".marginals.npy")


def read_soft(path: Path) -> tuple[list[Record], list[np.ndarray]]:
    """The records of a ``pseudo --soft`` file and each one's teacher marginals ([len(text), tags] float32)."""
    records = read_ccks(path)
    table = np.load(marginals_path(path))  # [characters, tags]
    rows: list[np.ndarray] = []
    with open(path, encoding="utf-8") as f:
        starts = [json.loads(line)["marginals_row"] for line in f if line.strip()]
    for rec, start in zip(records, starts, strict=True):
        m = table[start : start + len(rec.text)].astype(np.float32)
        if m.shape != (len(rec.text), len(TAGS)):
            raise ValueError(f"{path}: marginals rows {start}..{start + len(rec.text)} do not fit {marginals_path(path)}")
        rows.append(m)
    return records, rows


def corpus_records(cfg: PseudoConfig) -> tuple[list[Record], int]:
    """(unlabeled corpus lines as records, lines dropped for overlapping labeled records)."""
    labeled = read_ccks(Path(cfg.ccks2019))
    if cfg.ccks2020:
        labeled += read_ccks(Path(cfg.ccks2020))
    overlap = WindowFilter(r.text for r in labeled)
    records: list[Record] = []
    dropped = 0
    for name in cfg.files:
        with open(Path(cfg.corpus) / name, encoding="utf-8") as f:
            for i, line in enumerate(f):
                line = line.rstrip("\n")
                if not line:
                    continue
                if overlap.hits(line):
                    dropped += 1
                    continue
                records.append(Record(f"{name}:{i + 1}", line, ()))
    return records, dropped


def pseudo_label(cfg: PseudoConfig) -> dict:
    bundle = Path(cfg.bundle)
    records, dropped = corpus_records(cfg)
    log.info("%d corpus lines to tag (%d dropped: they overlap labeled records)", len(records), dropped)
    decoder = bundle_decoder(bundle)
    chunks = 0
    kept: list[tuple[int, int, str, list]] = []  # (record, offset, text, spans), written in corpus order
    for x, em in bundle_emissions(bundle, records, cfg.threads):
        chunks += 1
        if len(x.ids) < cfg.min_chars:
            continue
        path = decoder.viterbi(em)
        marginals = decoder.tag_marginals(em)  # [seq, tags]
        if not cfg.soft and min(marginals[i, t] for i, t in enumerate(path)) < cfg.min_marginal:
            continue
        kept.append((x.record, x.offset, records[x.record].text[x.offset : x.offset + len(x.ids)], spans_from_tags(path),
                     marginals.astype(np.float16) if cfg.soft else None))
    kept.sort(key=lambda k: (k[0], k[1]))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    row = 0
    with open(out, "w", encoding="utf-8") as f:
        for ri, offset, text, spans, _ in kept:
            f.write(json.dumps({
                "id": f"{records[ri].id}@{offset}",
                "originalText": text,
                "entities": [{"start_pos": s.start, "end_pos": s.end, "label_type": LABEL_BY_CODE[s.code]} for s in spans],
                **({"marginals_row": row} if cfg.soft else {}),
            }, ensure_ascii=False) + "\n")
            row += len(text)
    if cfg.soft:
        np.save(marginals_path(out), np.concatenate([k[4] for k in kept]) if kept else np.zeros((0, len(TAGS)), np.float16))
    chars = sum(len(k[2]) for k in kept)
    entities = sum(len(k[3]) for k in kept)
    summary = {"lines": len(records), "lines_dropped_overlap": dropped, "chunks": chunks, "kept": len(kept),
               "kept_chars": chars, "kept_entities": entities, "min_marginal": None if cfg.soft else cfg.min_marginal, "soft": cfg.soft,
               "teacher": json.loads((bundle / "manifest.json").read_text(encoding="utf-8")).get("version")}
    log.info("kept %d of %d chunks (%d characters, %d entities)", len(kept), chunks, chars, entities)
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
