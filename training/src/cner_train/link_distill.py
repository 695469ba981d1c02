"""A cheaper query encoder for the ICD-10 linker, distilled from a trained one.

The linker's bundle stores every candidate name (and, with a memory, every
training diagnosis) already embedded; only the query goes through the encoder
when cner links a mention. So the query side can be a shallower encoder than
the one that embedded the names, as long as it lands its queries where the
full one would: the student keeps the teacher's first ``layers`` layers and
learns, on diagnosis strings without their labels, to give the same
distribution over the teacher's embedded names and memory (KL at the
linker's temperature) and the same direction (1 − cosine). The names and
the memory in the bundle stay the teacher's embeddings (``link-export``
reads ``teacher`` from the run's metrics).

Texts distilled: every candidate name, the training-side diagnoses of the
linker's split (fit and tune; never its dev pairs) and their listed parts,
and the 疾病和诊断 mentions of CCKS-format files (the strings the stream
links), with their parts. Strings equal to a dev diagnosis are left out.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .corpus import read_ccks
from .link import (
    LinkEncoder,
    embed,
    encode_batch,
    fit_decision,
    fit_tune_dev,
    load_link_run,
    query_parts,
    read_candidates,
    read_pairs,
    retrieve_parts,
    set_prf,
    top_k,
)
from .train import set_seed, warmup_linear

log = logging.getLogger(__name__)


@dataclass
class LinkDistillConfig:
    teacher: str = field(metadata={"help": "link-train run folder whose query encoder is distilled"})
    pairs: str = field(metadata={"help": "CHIP-CDN train.jsonl the teacher was trained on (its split is kept)"})
    candidates: str = field(metadata={"help": "icd10_beijing_clinical_v601_cdn.tsv"})
    out: str = field(metadata={"help": "run folder (model.pt, vocab.txt, metrics.json), exported by link-export"})
    layers: int = field(default=2, metadata={"help": "transformer layers the student keeps (the teacher's first ones)"})
    mentions: list[str] = field(default_factory=list, metadata={
        "help": "CCKS-format JSON Lines whose 疾病和诊断 mentions are distilled too, comma-separated"})
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-4
    warmup_ratio: float = 0.06
    temperature: float = field(default=0.05, metadata={"help": "softmax temperature of the distribution matched (the linker's)"})
    cosine_weight: float = field(default=1.0, metadata={"help": "weight of (1 − cosine to the teacher's query) beside the KL"})
    bf16: bool = False
    seed: int = 1
    threads: int = 0
    max_minutes: float = 0.0


def _mentions(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        for r in read_ccks(Path(p)):
            out += [r.text[s.start : s.end] for s in r.spans if s.code == "DIS"]
    return out


def distill_texts(names: list[str], train_texts: list[str], mentions: list[str], dev_texts: set[str]) -> list[str]:
    """Every string distilled, once, in a fixed order: names, then training-side diagnoses, then mentions (each with its parts)."""
    texts = list(names)
    for t in [*train_texts, *mentions]:
        texts += query_parts(t)
    return [t for t in dict.fromkeys(texts) if t.strip() and t not in dev_texts]


def student_of(teacher: LinkEncoder, layers: int) -> LinkEncoder:
    """The teacher's embeddings, first ``layers`` transformer layers and projection, as a new encoder."""
    from .bge import build_bert
    from .rerank import _check_only_dropped_layers

    config = teacher.bert.config.to_dict()
    if not 1 <= layers <= config["num_hidden_layers"]:
        raise SystemExit(f"--layers {layers}: the teacher has {config['num_hidden_layers']}")
    keep = {k: config[k] for k in ("hidden_size", "num_attention_heads", "intermediate_size", "max_position_embeddings",
                                   "type_vocab_size", "hidden_act", "layer_norm_eps", "vocab_size")}
    student = LinkEncoder(build_bert({**keep, "num_hidden_layers": layers}), teacher.dim if teacher.proj is not None else 0)
    _check_only_dropped_layers(student.load_state_dict(teacher.state_dict(), strict=False), "the teacher")
    return student


def distill_loss(q: torch.Tensor, target: torch.Tensor, index: torch.Tensor, temperature: float, cosine_weight: float) -> torch.Tensor:
    """q, target: [batch, dim] unit rows (student, teacher); index: [keys, dim] what the bundle ranks → KL + weighted (1 − cos)."""
    log_p = nn.functional.log_softmax(q @ index.T / temperature, dim=-1)  # [batch, keys]
    with torch.no_grad():
        p_t = nn.functional.softmax(target @ index.T / temperature, dim=-1)  # [batch, keys]
    kl = nn.functional.kl_div(log_p, p_t, reduction="batchmean")
    return kl + cosine_weight * (1.0 - (q * target).sum(-1)).mean()


def distill_linker(cfg: LinkDistillConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    started = time.time()

    teacher, vocab, t_metrics = load_link_run(Path(cfg.teacher))
    teacher.eval()
    split = t_metrics["config"]
    names = [c.name for c in read_candidates(Path(cfg.candidates))]
    pairs = read_pairs(Path(cfg.pairs))
    fit, tune, dev, _ = fit_tune_dev(pairs, split["dev_size"], split["tune_size"], split["split_seed"])
    texts = distill_texts(names, [t for t, _ in fit + tune], _mentions(cfg.mentions), {t for t, _ in dev})
    log.info("%d strings to distill (%d names, %d fit + %d tune diagnoses, mentions of %d files; dev texts left out)",
             len(texts), len(names), len(fit), len(tune), len(cfg.mentions))

    # What the bundle ranks a query against: the teacher's embedded names, then its memory (fit, then tune).
    name_vecs = embed(teacher, vocab, names)  # [names, dim]
    index = torch.from_numpy(np.concatenate([name_vecs, embed(teacher, vocab, [t for t, _ in fit + tune])]))  # [keys, dim]
    targets = torch.from_numpy(embed(teacher, vocab, texts))  # [texts, dim]
    t_seconds = time.time() - started

    student = student_of(teacher, cfg.layers)

    def evaluate(model: LinkEncoder) -> dict:
        dev_texts = [t for t, _ in dev]
        idx, _ = top_k(embed(model, vocab, dev_texts), name_vecs, 10)
        t_idx, _ = top_k(embed(teacher, vocab, dev_texts), name_vecs, 10)
        gold_total = sum(len(set(g)) for _, g in dev)
        recall = {f"recall@{r}": 100.0 * sum(len(set(g) & {names[j] for j in idx[i, :r]}) for i, (_, g) in enumerate(dev)) / gold_total
                  for r in (1, 5, 10)}
        return {**recall, "top1_as_teacher": 100.0 * float(np.mean(idx[:, 0] == t_idx[:, 0])),
                "top10_overlap": 100.0 * float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, t_idx, strict=True)]))}

    history = [{"epoch": 0, "dev": evaluate(student)}]
    log.info("teacher embedded everything in %.0fs; student of %d layers before distilling: %s", t_seconds, cfg.layers, history[0]["dev"])

    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.01)
    order = list(range(len(texts)))
    rng = random.Random(cfg.seed)
    total = math.ceil(len(order) / cfg.batch_size) * cfg.epochs
    warmup, step = int(total * cfg.warmup_ratio), 0
    for epoch in range(cfg.epochs):
        student.train()
        rng.shuffle(order)
        t0, tot, n = time.time(), 0.0, 0
        for b in range(0, len(order), cfg.batch_size):
            rows = order[b : b + cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = cfg.lr * warmup_linear(step, warmup, total)
            ids, mask = encode_batch(vocab, [texts[i] for i in rows])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                q = student(ids, mask)  # [batch, dim]
            loss = distill_loss(q, targets[rows], index, cfg.temperature, cfg.cosine_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            tot, n, step = tot + loss.item(), n + 1, step + 1
        rec = {"epoch": epoch + 1, "loss": tot / n, "train_seconds": time.time() - t0, "dev": evaluate(student)}
        history.append(rec)
        log.info("epoch %d loss %.4f dev %s (%.0fs)", epoch + 1, rec["loss"], rec["dev"], rec["train_seconds"])
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            log.info("time budget reached")
            break

    # The cosine-only decision (a bundle without a re-ranker) fitted again for the student's queries.
    decision, tune_f1 = fit_decision(retrieve_parts(student, vocab, [t for t, _ in tune], name_vecs), [g for _, g in tune], names)
    dev_pred = [[names[i] for i in decision.choose(r)] for r in retrieve_parts(student, vocab, [t for t, _ in dev], name_vecs)]
    dev_metrics = set_prf([g for _, g in dev], dev_pred)
    log.info("decision %s (tune F1 %.2f); dev set F1 %.2f (teacher's run: %.2f)", decision, tune_f1, dev_metrics["f1"],
             t_metrics["dev"]["f1"])

    torch.save(student.state_dict(), out / "model.pt")
    vocab.save(out / "vocab.txt")
    result = {
        # The split (dev_size, tune_size, split_seed) is the teacher's: link-export's memory and link-quantize read it here.
        "config": {**asdict(cfg), **{k: split[k] for k in ("dev_size", "tune_size", "split_seed")}},
        "teacher": {"run": cfg.teacher, "layers": teacher.bert.config.num_hidden_layers, "dev": t_metrics["dev"]},
        "bert_config": {**t_metrics["bert_config"], "num_hidden_layers": cfg.layers},
        "dim": student.dim,
        "encoder": t_metrics["encoder"],
        "protocol": t_metrics["protocol"],
        "candidates": len(names),
        "distilled_texts": len(texts),
        "decision": asdict(decision),
        "tune_f1": tune_f1,
        "dev": dev_metrics,
        "history": history,
        "wall_seconds": time.time() - started,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return result
