"""Intermediate-task fine-tuning on the other CCKS clinical NER sets: the bge encoder, or the character model.

CCKS-2017 (five types of its own, another hospital) and CCKS-2018 (five types,
the same Yidu source as CCKS-2019) annotate the same kind of text under other
label sets, so they cannot join CCKS-2019's tag set. Here each set gets its own
emission layer and CRF over its own BIO tags, all on the one shared encoder,
trained jointly (every batch from one set, the sets' batches shuffled
together). The heads are thrown away afterwards:

- ``--embedder bert``: the encoder is kept as ``encoder.pt`` in the format of
  ``cner-train bge`` / ``bge-mlm``, so ``cner-train train --embedder bert
  --pretrained OUT/encoder.pt`` fine-tunes it on CCKS-2019 as usual;
- ``--embedder char``: the whole character model below its classifier
  (character vectors, IDCNN, MHA; lexicon features of CCKS-2019's lexicon
  too) is kept as ``body.pt``, which ``cner-train train --init OUT/body.pt``
  starts from (same architecture and vocabulary, checked), with a fresh
  classifier and CRF.

Leakage: every record sharing a 20-character window (whitespace ignored) with a
dev record of the fine-tuning split (or with a ``--protect`` file's text) is
dropped before anything is trained, so the encoder never reads a dev record:
CCKS-2018 is the same Yidu source as CCKS-2019, and 345 of its 600 records
share such a window with the 150 dev records (CCKS-2017: none). Records that
only share text with CCKS-2019 *training* records stay: the fine-tuning reads
those texts anyway. A seeded ``holdout`` share
of each set's kept records measures the heads (strict F1 per set), so a run
that learns nothing shows up in its metrics.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .bge import pruned_state_dict
from .bge_mlm import save_encoder, start_encoder_run
from .corpus import Record, WindowFilter, dev_split, read_ccks
from .crf import CRF, ConstrainedDecoder
from .data import Example, eval_batches, pad_batch, pad_features, train_batches
from .lexicon import NUM_FEATURES, Lexicon
from .metrics import strict_prf
from .models import HEAD_PREFIXES, ModelConfig, Tagger
from .text import Span, bio_tags, chunk_text, spans_from_tags
from .train import decay_groups, load_vectors, warmup_linear
from .vocab import Vocab

log = logging.getLogger(__name__)


@dataclass
class TransferConfig:
    sets: list[str] = field(metadata={"help": "NAME=PATH,… CCKS-format files with their own label sets, one head each "
                                              "(e.g. ccks2017=$DATA/ccks2017/train.jsonl,ccks2018=$DATA/ccks2018/train.jsonl)"})
    ccks2019: str = field(metadata={"help": "CCKS-2019 train.jsonl: no trained record may share a 20-character window "
                                            "with one of its dev records"})
    out: str = field(default="runs/transfer", metadata={
        "help": "run folder: encoder.pt (bert) or body.pt (char), vocab.txt, metrics.json"})
    embedder: str = field(default="bert", metadata={"help": "bert (the encoder of --pretrained) | char (the character model)"})
    pretrained: str | None = field(default=None, metadata={
        "help": "bert: encoder.pt from cner-train bge or bge-mlm (its folder's vocab.txt is the vocabulary unless --vocab)"})
    vocab: str | None = field(default=None, metadata={"help": "tagger vocab.txt (char: required)"})
    vectors: str | None = field(default=None, metadata={"help": "char: word2vec character vectors to start from"})
    lexicon: str | None = field(default=None, metadata={
        "help": "char: lexicon match features (CCKS-2019's types) from this by_type folder or lexicon.tsv"})
    encoder: str = field(default="none", metadata={"help": "char: idcnn | bilstm (as train's --encoder)"})
    heads: int = field(default=0, metadata={"help": "char: MHA heads after the encoder (as train's --heads)"})
    protect: list[str] = field(default_factory=list, metadata={
        "help": "more CCKS files (comma-separated) whose every text is protected like the dev records"})
    dev_size: int = field(default=150, metadata={"help": "dev records of the fine-tuning split (0 = none protected)"})
    split_seed: int = 42
    holdout: float = field(default=0.1, metadata={"help": "share of each set's records held out to score its head"})
    epochs: int = 3
    batch_size: int = 16
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate of the embedder (bge, or the character vectors)"})
    head_lr: float = field(default=1e-3, metadata={"help": "peak learning rate of everything above the embedder"})
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    dropout: float = 0.1
    bf16: bool = field(default=True, metadata={"help": "bfloat16 autocast for the forward pass (CRF loss float32)"})
    seed: int = 1
    threads: int = 0
    max_minutes: float = 0.0

    def __post_init__(self) -> None:
        if not self.sets:
            raise ValueError("--sets needs at least one NAME=PATH")
        for s in self.sets:
            name, sep, path = s.partition("=")
            if not sep or not name.isidentifier() or not path:
                raise ValueError(f"--sets entry {s!r}: write NAME=PATH with NAME a plain identifier (e.g. ccks2017=…)")
        if not 0 <= self.holdout < 1:
            raise ValueError("--holdout must be in [0, 1)")
        if self.embedder == "bert" and not self.pretrained:
            raise ValueError("--embedder bert needs --pretrained encoder.pt")
        if self.embedder == "char" and not self.vocab:
            raise ValueError("--embedder char needs --vocab (the fine-tuning's vocabulary)")
        if self.embedder not in ("bert", "char"):
            raise ValueError(f"--embedder must be bert or char, not {self.embedder!r}")


def tag_set(records: Sequence[Record]) -> tuple[str, ...]:
    """O, then B-/I- of each label in sorted order."""
    labels = sorted({sp.code for r in records for sp in r.spans})
    return ("O",) + tuple(f"{p}-{lab}" for lab in labels for p in ("B", "I"))


def examples_of(records: Sequence[Record], vocab: Vocab, tags: tuple[str, ...], lexicon: Lexicon | None) -> list[Example]:
    out = []
    for ri, rec in enumerate(records):
        for s, e in chunk_text(rec.text):
            chunk = rec.text[s:e]
            out.append(Example(ri, s, tuple(vocab.encode(chunk)), tuple(bio_tags(e - s, rec.spans, s, names=tags)),
                               lexicon.features(chunk) if lexicon is not None else None))
    return out


class TransferModel(nn.Module):
    """A tagger's body (everything below its classifier) and, per set, dropout → linear → CRF over that set's tags."""

    def __init__(self, body: Tagger, tags: dict[str, tuple[str, ...]], dropout: float):
        super().__init__()
        self.body = body
        dim = body.classifier.in_features
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(dim, len(t)) for name, t in tags.items()})
        self.crfs = nn.ModuleDict({name: CRF(len(t)) for name, t in tags.items()})

    def forward(self, name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lexicon_features: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask: [batch, seq] → emissions [batch, seq, tags of ``name``]."""
        return self.heads[name](self.dropout(self.body.features(input_ids, attention_mask, lexicon_features)))


def body_state(body: Tagger) -> dict[str, torch.Tensor]:
    """The tagger's weights below its classifier (what ``train --init`` loads)."""
    return {k: v.detach().clone() for k, v in body.state_dict().items() if not k.startswith(HEAD_PREFIXES)}


@torch.no_grad()
def score(model: TransferModel, name: str, tags: tuple[str, ...], records: Sequence[Record],
          examples: Sequence[Example]) -> dict:
    """Strict micro and per-label P/R/F1 of one set's head on its held-out records (constrained Viterbi)."""
    model.eval()
    crf = model.crfs[name]
    decoder = ConstrainedDecoder(crf.start_transitions.numpy(), crf.end_transitions.numpy(), crf.transitions.numpy(), tags)
    pred: list[list[Span]] = [[] for _ in records]
    for _, batch in eval_batches(examples, 64):
        ids, mask, _ = pad_batch(batch)
        em = model(name, ids, mask, pad_features(batch)).float().numpy()  # [batch, seq, tags]
        for row, x in enumerate(batch):
            for sp in spans_from_tags(decoder.viterbi(em[row, : len(x.ids)]), x.offset, names=tags):
                pred[x.record].append(sp)
    labels = sorted({t[2:] for t in tags if t != "O"})
    return strict_prf([r.spans for r in records], pred, labels)


def transfer(cfg: TransferConfig) -> dict:
    pretrained = cfg.pretrained if cfg.embedder == "bert" else None
    out, enc, vocab = start_encoder_run(cfg.out, pretrained, cfg.vocab, cfg.threads, cfg.seed)
    lexicon = Lexicon.load(Path(cfg.lexicon)) if cfg.lexicon else None

    base = read_ccks(Path(cfg.ccks2019))
    _, dev_idx = dev_split(len(base), cfg.dev_size, cfg.split_seed)
    guard = WindowFilter([base[i].text for i in dev_idx] + [r.text for p in cfg.protect for r in read_ccks(Path(p))])
    rng = random.Random(cfg.seed)
    tags: dict[str, tuple[str, ...]] = {}
    train_ex: dict[str, list[Example]] = {}
    held: dict[str, tuple[list[Record], list[Example]]] = {}
    kept_counts: dict[str, dict[str, int]] = {}
    for entry in cfg.sets:
        name, _, path = entry.partition("=")
        records = read_ccks(Path(path), keep_labels=True)
        kept = [r for r in records if not guard.hits(r.text)]
        tags[name] = tag_set(kept)
        order = list(range(len(kept)))
        rng.shuffle(order)
        n_held = int(round(len(kept) * cfg.holdout))
        held_recs = [kept[i] for i in sorted(order[:n_held])]
        train_recs = [kept[i] for i in sorted(order[n_held:])]
        train_ex[name] = examples_of(train_recs, vocab, tags[name], lexicon)
        held[name] = (held_recs, examples_of(held_recs, vocab, tags[name], lexicon))
        kept_counts[name] = {"records": len(records), "dropped_protected": len(records) - len(kept),
                             "train": len(train_recs), "holdout": len(held_recs), "chunks": len(train_ex[name])}
        log.info("%s: %d records, %d dropped (a window shared with a protected text), %d train / %d held out; tags %s",
                 name, len(records), len(records) - len(kept), len(train_recs), len(held_recs), " ".join(tags[name]))

    mcfg = ModelConfig(embedder=cfg.embedder, encoder=cfg.encoder, heads=cfg.heads, dropout=cfg.dropout,
                       bert={k: v for k, v in enc["bert_config"].items() if k != "vocab_size"} if enc else None,
                       lexicon_features=NUM_FEATURES if lexicon is not None else 0)
    model = TransferModel(Tagger(mcfg, len(vocab)), tags, cfg.dropout)
    if cfg.embedder == "bert":
        missing, unexpected = model.body.bert.load_state_dict(pruned_state_dict(enc, vocab), strict=False)
        if unexpected or [m for m in missing if not m.endswith("position_ids")]:
            raise ValueError(f"{cfg.pretrained} does not fit BertModel: missing {missing}, unexpected {unexpected}")
    elif cfg.vectors:
        model.body.char.weight.data.copy_(load_vectors(Path(cfg.vectors), vocab, mcfg.char_dim))
    embedder = model.body.bert if cfg.embedder == "bert" else model.body.char
    enc_ids = {id(p) for p in embedder.parameters()}
    opt = torch.optim.AdamW(
        decay_groups([p for p in model.parameters() if id(p) in enc_ids], cfg.weight_decay, base_lr=cfg.lr)
        + decay_groups([p for p in model.parameters() if id(p) not in enc_ids], cfg.weight_decay, base_lr=cfg.head_lr))
    steps_per_epoch = sum(math.ceil(len(x) / cfg.batch_size) for x in train_ex.values())
    total = steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_ratio)

    history = []
    holdout: dict[str, dict] = {}
    started = time.time()
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.time()
        batches = [(name, b) for name, ex in train_ex.items() for b in train_batches(ex, cfg.batch_size, rng)]
        rng.shuffle(batches)
        losses: dict[str, list[float]] = {name: [] for name in train_ex}
        for name, batch in batches:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * warmup_linear(step, warmup, total)
            ids, mask, gold = pad_batch(batch)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                emissions = model(name, ids, mask, pad_features(batch))  # [batch, seq, tags]
            loss = model.crfs[name].nll(emissions.float(), gold, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses[name].append(loss.item())
            step += 1
        holdout = {n: score(model, n, tags[n], *held[n]) for n in held if held[n][0]}
        rec = {"epoch": epoch + 1, "train_seconds": time.time() - t0,
               "loss": {n: sum(v) / max(1, len(v)) for n, v in losses.items()},
               "holdout_f1": {n: m["micro"]["f1"] for n, m in holdout.items()}}
        history.append(rec)
        log.info("epoch %d: %s", epoch + 1, json.dumps(rec))
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            log.info("time budget reached")
            break

    record = {"sets": kept_counts, "tags": tags, "epochs": len(history), "lr": cfg.lr, "head_lr": cfg.head_lr,
              "holdout_f1": {n: m["micro"]["f1"] for n, m in holdout.items()}}
    if cfg.embedder == "bert":
        save_encoder(model.body.bert, enc, vocab, out / "encoder.pt", {**enc["source"], "transfer": record})
    else:
        torch.save({"model": mcfg.to_dict(), "state_dict": body_state(model.body), "vocab": list(vocab.tokens),
                    "source": {"transfer": record}}, out / "body.pt")
    result = {"config": asdict(cfg), "transfer": record, "holdout": holdout, "history": history,
              "wall_seconds": time.time() - started}
    (out / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return result
