"""Linking diagnoses to ICD-10 (Beijing clinical edition v601): the CHIP-CDN task.

A diagnosis as a clinician wrote it (``右肺MT``, ``胃癌伴幽门梗阻``) maps to one
or several standard names of the 40,474-row candidate table. The linker is a
bi-encoder on bge-small-zh-v1.5: the diagnosis and every candidate name are
embedded by the same encoder (``[CLS]`` state, L2-normalized), so the names
are embedded once when the bundle is built and a query costs one short
forward pass and one matrix product.

Training (``cner-train link-train``): contrastive (InfoNCE) on the training
pairs, each (diagnosis, gold name) against the other names of the batch and
the zero-shot encoder's nearest wrong names (hard negatives), at a
temperature. How many names to keep: the best name of the whole text and of
each of its parts (split at ``，、；`` and the like, where clinicians list
diagnoses), each kept when its cosine clears a threshold chosen on a slice of
the training side, never on the dev split.

Tokenization is the tagger's (docs/contract.md): one token per code point
through cner's character vocabulary, ``[CLS]``/``[SEP]`` added inside the
model, so the TypeScript side feeds character ids exactly as it does for the
tagger.

Metric (CBLUE's): per record the set of predicted names against the set of
gold names; micro precision, recall and F1 over all records.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bge import load_encoder, pruned_state_dict, tagger_vocab
from .models import frame
from .text import normalize_char
from .train import set_seed, warmup_linear
from .vocab import PAD_ID, Vocab

log = logging.getLogger(__name__)

# Where a clinician's diagnosis string lists several diagnoses: punctuation and
# whitespace (the explicit set of text.py, not \s, which differs between Python
# and JavaScript), and 伴/并 ("with") between two non-space characters. The
# pattern goes into the linker bundle and the processor compiles the same text
# (JavaScript RegExp, flag u); both test suites check it on shared cases.
_WS = "\\u0020\\t\\n\\r\\u000b\\u000c\\u00a0\\u3000"
PART_SEPARATORS = re.compile(f"[，,、;；/\\\\|{_WS}]+|(?<=[^{_WS}])[伴并](?=[^{_WS}])")
MAX_QUERY_LEN = 64


@dataclass(frozen=True)
class Candidate:
    name: str
    codes: tuple[str, ...]  # one name can head several rows (a category and its only subcategory)


def read_candidates(path: Path) -> list[Candidate]:
    """The ``code<TAB>name`` table → one candidate per distinct name, codes in table order."""
    codes: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            code, name = line.split("\t", 1)
            codes.setdefault(name.strip(), []).append(code.strip())
    return [Candidate(n, tuple(c)) for n, c in codes.items()]


def read_pairs(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """CHIP-CDN JSON Lines: ``text`` and its ``normalized`` names."""
    out = []
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                norm = obj.get("normalized", [])
                out.append((obj["text"], tuple(norm if isinstance(norm, list) else str(norm).split("##"))))
    return out


def split_pairs(n: int, dev_size: int, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[dev_size:]), sorted(order[:dev_size])


def fit_tune_dev(pairs: list, dev_size: int, tune_size: int, seed: int) -> tuple[list, list, list, random.Random]:
    """The pairs split three ways: fitting, tuning the keep decision (``tune_size`` training-side pairs),
    dev (``split_pairs``); and the generator that shuffled them, for the training loop to go on with."""
    tr_idx, dev_idx = split_pairs(len(pairs), dev_size, seed)
    rng = random.Random(seed)
    rng.shuffle(tr_idx)
    tune_idx, fit_idx = sorted(tr_idx[:tune_size]), sorted(tr_idx[tune_size:])
    fit, tune, dev = ([pairs[i] for i in ix] for ix in (fit_idx, tune_idx, dev_idx))
    return fit, tune, dev, rng


def set_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """CBLUE's CHIP-CDN metric: micro P/R/F1 of per-record name sets (in percent)."""
    tp = sum(len(set(g) & set(p)) for g, p in zip(gold, pred, strict=True))
    n_pred = sum(len(set(p)) for p in pred)
    n_gold = sum(len(set(g)) for g in gold)
    precision = 100.0 * tp / n_pred if n_pred else 0.0
    recall = 100.0 * tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "predicted": n_pred, "gold": n_gold}


def query_parts(text: str) -> list[str]:
    """The whole text, then its parts when it lists several diagnoses (parts of two code points or more)."""
    parts = [p for p in PART_SEPARATORS.split(text) if len(p) >= 2]
    return [text] + [p for p in parts if p != text]


class LinkEncoder(nn.Module):
    """BertModel → the ``[CLS]`` state → (a projection to ``dim``) → L2-normalized.
    input_ids, attention_mask: [batch, seq] → [batch, dim].

    The projection keeps the bundle small: the 37,645 names are stored embedded,
    and at 256 dimensions they take half the room of the encoder's 512. It starts
    orthogonal (scaled to keep norms), so cosines start as the encoder's own."""

    def __init__(self, bert: nn.Module, dim: int = 0):
        super().__init__()
        self.bert = bert
        hidden = bert.config.hidden_size
        self.proj = None
        if dim:
            self.proj = nn.Linear(hidden, dim, bias=False)
            nn.init.orthogonal_(self.proj.weight)
        self.dim = dim or hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids, mask = frame(input_ids, attention_mask)  # [batch, seq + 2]
        x = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]  # [batch, hidden]
        if self.proj is not None:
            x = self.proj(x)  # [batch, dim]
        return nn.functional.normalize(x.float(), dim=-1)


def encode_batch(vocab: Vocab, texts: Sequence[str], max_len: int = MAX_QUERY_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each [batch, longest] int64, right-padded, texts cut at ``max_len`` code points."""
    rows = [vocab.encode(t[:max_len]) or [PAD_ID] for t in texts]
    seq = max(len(r) for r in rows)
    ids = np.full((len(rows), seq), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(rows), seq), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@torch.no_grad()
def embed(model: LinkEncoder, vocab: Vocab, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """[len(texts), hidden] float32, unit rows; texts grouped by length so padding stays small."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.dim), dtype=np.float32)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        ids, mask = encode_batch(vocab, [texts[i] for i in idx])
        out[idx] = model(ids, mask).numpy()
    return out


def top_k(queries: np.ndarray, names: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosines), each [queries, k], best first."""
    scores = queries @ names.T  # [queries, names]
    k = min(k, names.shape[0])
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part = np.take_along_axis(scores, idx, axis=1)
    order = np.argsort(-part, axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(part, order, axis=1)


@dataclass(frozen=True)
class Decision:
    """Which names to keep for one diagnosis string: the best name of the whole text, kept when its cosine
    is at least ``whole``; the best name of each listed part, kept when at least ``part``; at most ``max_names``."""

    whole: float = 0.0
    part: float = 0.8
    max_names: int = 6

    def choose(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
        """parts: (indices, cosines) of the whole text first, then of each part → chosen name indices, best first."""
        (w_idx, w_cos), rest = parts[0], parts[1:]
        scored: dict[int, float] = {}
        if w_cos[0] >= self.whole or not rest:
            scored[int(w_idx[0])] = float(w_cos[0])
        for idx, cos in rest:
            if cos[0] >= self.part:
                scored[int(idx[0])] = max(scored.get(int(idx[0]), -1.0), float(cos[0]))
        if not scored:  # never nothing: the best name of the whole text
            scored[int(w_idx[0])] = float(w_cos[0])
        return [i for i, _ in sorted(scored.items(), key=lambda kv: -kv[1])][: self.max_names]


def nearest_by_text(texts: Sequence[str], nearest: Callable[[list[str]], tuple[np.ndarray, np.ndarray]]
                    ) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """For each text, the (indices, cosines) of the whole text and of each of its parts, all
    queries asked of ``nearest`` in one call."""
    pieces = [query_parts(t) for t in texts]
    idx, cos = nearest([p for ps in pieces for p in ps])
    out, at = [], 0
    for ps in pieces:
        out.append([(idx[at + j], cos[at + j]) for j in range(len(ps))])
        at += len(ps)
    return out


def retrieve_parts(model: LinkEncoder, vocab: Vocab, texts: Sequence[str], name_vecs: np.ndarray,
                   k: int = 1) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """For each text, the top-k (indices, cosines) of the whole text and of each of its parts."""
    return nearest_by_text(texts, lambda queries: top_k(embed(model, vocab, queries), name_vecs, k))


def fit_decision(retrieved: list[list[tuple[np.ndarray, np.ndarray]]], gold: Sequence[Sequence[str]],
                 names: Sequence[str]) -> tuple[Decision, float]:
    """The thresholds with the best set F1 on these records (a grid over cosines)."""
    best = (Decision(), -1.0)
    grid = [round(float(x), 2) for x in np.arange(0.5, 1.0, 0.02)]  # plain floats: they go into config.json
    for whole in [0.0, *grid]:
        for part in grid:
            d = Decision(whole=whole, part=part)
            f1 = set_prf(gold, [[names[i] for i in d.choose(r)] for r in retrieved])["f1"]
            if f1 > best[1]:
                best = (d, f1)
    return best


@dataclass
class LinkTrainConfig:
    pairs: str = field(metadata={"help": "CHIP-CDN train.jsonl (text → normalized names)"})
    candidates: str = field(metadata={"help": "icd10_beijing_clinical_v601_cdn.tsv (code<TAB>name)"})
    encoder: str = field(metadata={"help": "encoder.pt from cner-train bge"})
    out: str = field(metadata={"help": "run folder (model.pt, vocab.txt, metrics.json)"})
    extra_texts: list[str] = field(default_factory=list, metadata={
        "help": "more text files whose characters join the vocabulary (e.g. the CCKS training files), comma-separated"})
    dev_size: int = field(default=1000, metadata={"help": "pairs held out as the dev split (seeded)"})
    split_seed: int = 42
    tune_size: int = field(default=500, metadata={"help": "training-side pairs held back to choose the thresholds"})
    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    temperature: float = 0.05
    hard_negatives: int = field(default=3, metadata={"help": "wrong names per pair from the zero-shot encoder's nearest"})
    dim: int = field(default=256, metadata={"help": "embedding size after a learned projection (0: the encoder's own, 512)"})
    bf16: bool = False
    seed: int = 1
    threads: int = 0
    max_minutes: float = 0.0


def build_vocab(bert_tokens: list[str], texts: Sequence[str]) -> Vocab:
    return tagger_vocab(bert_tokens, [], texts, min_count=1)


def train_linker(cfg: LinkTrainConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    started = time.time()

    pairs = read_pairs(Path(cfg.pairs))
    cands = read_candidates(Path(cfg.candidates))
    names = [c.name for c in cands]
    name_index = {n: i for i, n in enumerate(names)}
    fit, tune, dev, rng = fit_tune_dev(pairs, cfg.dev_size, cfg.tune_size, cfg.split_seed)
    log.info("pairs: %d train (%d fit, %d tune the thresholds), %d dev; %d candidate names",
             len(fit) + len(tune), len(fit), len(tune), len(dev), len(names))

    encoder = load_encoder(Path(cfg.encoder))
    extra = []
    for p in cfg.extra_texts:
        extra += Path(p).read_text(encoding="utf-8").splitlines()
    vocab = build_vocab(encoder["vocab"], names + [t for t, _ in pairs] + extra)
    from .bge import build_bert

    bert = build_bert(encoder["bert_config"], len(vocab))
    bert.load_state_dict(pruned_state_dict(encoder, vocab), strict=False)
    model = LinkEncoder(bert, cfg.dim)

    # (text, gold name index) for every gold name that is a candidate
    examples = [(t, name_index[n]) for t, gold in fit for n in dict.fromkeys(gold) if n in name_index]
    gold_sets = {t: {name_index[n] for n in gold if n in name_index} for t, gold in fit}
    log.info("%d (diagnosis, name) training examples", len(examples))

    # Hard negatives: the zero-shot encoder's nearest names that are not gold.
    name_vecs = embed(model, vocab, names)
    texts = sorted(gold_sets)
    near, _ = top_k(embed(model, vocab, texts), name_vecs, cfg.hard_negatives + 8)
    hard = {t: [int(j) for j in near[i] if int(j) not in gold_sets[t]][: cfg.hard_negatives] for i, t in enumerate(texts)}

    def evaluate(split: list[tuple[str, tuple[str, ...]]], vecs: np.ndarray, k: int = 50) -> dict:
        idx, _ = top_k(embed(model, vocab, [t for t, _ in split]), vecs, k)
        gold_total = sum(len(set(g)) for _, g in split)
        recall = {f"recall@{r}": 100.0 * sum(len(set(g) & {names[j] for j in idx[i, :r]}) for i, (_, g) in enumerate(split))
                  / gold_total for r in (1, 5, 10, 20, 50)}
        return recall

    history = [{"epoch": 0, "dev": evaluate(dev, name_vecs)}]
    log.info("zero-shot dev %s", history[0]["dev"])

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_ratio)
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        rng.shuffle(examples)
        t0, tot = time.time(), 0.0
        for b in range(0, len(examples), cfg.batch_size):
            batch = examples[b : b + cfg.batch_size]
            scale = warmup_linear(step, warmup, total)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * scale
            cand = list(dict.fromkeys([n for _, n in batch] + [h for t, _ in batch for h in hard.get(t, [])]))
            col = {n: j for j, n in enumerate(cand)}
            q_ids, q_mask = encode_batch(vocab, [t for t, _ in batch])
            n_ids, n_mask = encode_batch(vocab, [names[n] for n in cand])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                q = model(q_ids, q_mask)  # [batch, hidden]
                c = model(n_ids, n_mask)  # [candidates, hidden]
            logits = (q @ c.T) / cfg.temperature  # [batch, candidates]
            # Another gold name of the same diagnosis is not a negative.
            other_gold = torch.zeros_like(logits, dtype=torch.bool)
            for i, (t, n) in enumerate(batch):
                for g in gold_sets[t]:
                    if g != n and g in col:
                        other_gold[i, col[g]] = True
            logits = logits.masked_fill(other_gold, -1e4)
            loss = nn.functional.cross_entropy(logits, torch.tensor([col[n] for _, n in batch]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += loss.item()
            step += 1
        name_vecs = embed(model, vocab, names)
        rec = {"epoch": epoch + 1, "loss": tot / steps_per_epoch, "train_seconds": time.time() - t0,
               "dev": evaluate(dev, name_vecs)}
        history.append(rec)
        log.info("epoch %d loss %.4f dev %s (%.0fs)", epoch + 1, rec["loss"], rec["dev"], rec["train_seconds"])
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            log.info("time budget reached")
            break

    # How many names: thresholds chosen on the tune slice, then measured on dev.
    decision, tune_f1 = fit_decision(retrieve_parts(model, vocab, [t for t, _ in tune], name_vecs),
                                     [g for _, g in tune], names)
    dev_pred = [[names[i] for i in decision.choose(r)]
                for r in retrieve_parts(model, vocab, [t for t, _ in dev], name_vecs)]
    dev_metrics = set_prf([g for _, g in dev], dev_pred)
    top1 = set_prf([g for _, g in dev], [[p[0]] for p in dev_pred])
    log.info("decision %s (tune F1 %.2f); dev set F1 %.2f (P %.2f R %.2f); top-1 only %.2f",
             decision, tune_f1, dev_metrics["f1"], dev_metrics["precision"], dev_metrics["recall"], top1["f1"])

    torch.save(model.state_dict(), out / "model.pt")
    vocab.save(out / "vocab.txt")
    result = {
        "config": asdict(cfg),
        "bert_config": {**encoder["bert_config"], "vocab_size": len(vocab)},
        "dim": model.dim,
        "encoder": encoder["source"],
        "protocol": (f"dev = {cfg.dev_size} of the {len(pairs)} CHIP-CDN training pairs (seeded split, seed {cfg.split_seed}); "
                     f"thresholds chosen on {len(tune)} other training pairs; CBLUE set metric"),
        "candidates": len(names),
        "decision": asdict(decision),
        "tune_f1": tune_f1,
        "dev": dev_metrics,
        "dev_top1_only": top1,
        "history": history,
        "wall_seconds": time.time() - started,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return result


# ---------------------------------------------------------------- the linker bundle

LINKER_FILES = ("linker.onnx", "names.tsv", "vocab.txt", "config.json")
SYSTEM = "ICD-10-BJ-v601"


class LinkerGraph(nn.Module):
    """What the bundle's ONNX graph computes: a query's ``top_k`` names by cosine and, with a memory of
    training pairs, its ``memory_top`` nearest training diagnoses, their gold names and the query's cosine
    to each of those names.
    input_ids, attention_mask: [batch, seq] → scores [batch, k] float32, indices [batch, k] int64, and
    with a memory: memory_scores [batch, m] float32, memory_rows [batch, m] int64 (which pairs),
    memory_names [batch, m, l] int64 (their gold names; -1 pads a pair's names to ``l``), memory_cosines
    [batch, m, l] float32."""

    def __init__(self, encoder: LinkEncoder, names: torch.Tensor, top_k: int, memory: torch.Tensor | None = None,
                 memory_names: torch.Tensor | None = None, memory_top: int = 0):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("names", names.t().contiguous())  # [dim, names]
        self.top_k = top_k
        self.memory_top = memory_top if memory is not None else 0
        if memory is not None:
            self.register_buffer("memory", memory.t().contiguous())  # [dim, pairs]
            self.register_buffer("memory_names", memory_names)  # [pairs, l], -1 pads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q = self.encoder(input_ids, attention_mask)  # [batch, dim]
        scores, indices = torch.topk(q @ self.names, self.top_k, dim=1)  # [batch, k] each
        if not self.memory_top:
            return scores, indices
        m_scores, m_rows = torch.topk(q @ self.memory, self.memory_top, dim=1)  # [batch, m] each
        m_names = self.memory_names[m_rows]  # [batch, m, l]
        # Only the names the neighbours hold are gathered (never the whole [names] row of cosines):
        # the embedded names stay one [dim, names] matrix, read by column.
        picked = torch.index_select(self.names, 1, m_names.clamp(min=0).reshape(-1))  # [dim, batch·m·l]
        picked = picked.reshape(q.shape[1], q.shape[0], -1)  # [dim, batch, m·l]
        m_cos = (q.t().unsqueeze(2) * picked).sum(0).reshape(m_names.shape)  # [batch, m, l]
        return scores, indices, m_scores, m_rows, m_names, m_cos


class OnnxLinker:
    """The bundle run as cner runs it: ONNX Runtime for the top names of each query and its parts, then the decision."""

    def __init__(self, bundle: Path, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(bundle / "linker.onnx"), opts, providers=["CPUExecutionProvider"])
        self.vocab = Vocab.load(bundle / "vocab.txt")
        self.config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
        self.decision = Decision(**self.config["decision"])
        self.names, self.codes = [], []
        for line in (bundle / "names.tsv").read_text(encoding="utf-8").splitlines():
            name, codes = line.split("\t")
            self.names.append(name)
            self.codes.append(codes.split(","))
        self.reranker = None
        if "reranker" in self.config:
            self.reranker = ort.InferenceSession(str(bundle / "reranker.onnx"), opts, providers=["CPUExecutionProvider"])

    def run_queries(self, texts: Sequence[str], batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every output of the graph for each text, by output name, in the texts' order (run grouped by length)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        outputs = self.config["outputs"]
        out: dict[str, np.ndarray] = {}
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            ids, mask = encode_batch(self.vocab, [texts[i] for i in rows], self.config["max_query_length"])
            for name, value in zip(outputs, self.session.run(outputs, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}),
                                   strict=True):
                if name not in out:
                    out[name] = np.zeros((len(texts), *value.shape[1:]), dtype=value.dtype)
                out[name][rows] = value
        return out

    def top(self, texts: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(indices, cosines) of each text's ``top_k`` nearest names, each [texts, k]."""
        out = self.run_queries(texts, batch_size)
        return out["indices"], out["scores"]

    def rerank(self, texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """[pairs] the re-ranker's probability that each name is one of its text's standard names."""
        from .rerank import RERANKER_INPUTS, RERANKER_OUTPUT, pairs_by_length

        def score(*batch: torch.Tensor) -> np.ndarray:
            return self.reranker.run([RERANKER_OUTPUT], {n: x.numpy() for n, x in zip(RERANKER_INPUTS, batch, strict=True)})[0]

        return pairs_by_length(self.vocab, texts, names, score, self.config["reranker"]["max_length"])

    def link(self, texts: Sequence[str]) -> list[list[tuple[int, float]]]:
        """Per text, the chosen names as (row, score), best first: with a re-ranker its probability,
        else the cosine of the text or part that chose it."""
        if self.reranker is not None:
            return self._link_reranked(texts)
        out = []
        for parts in nearest_by_text(texts, self.top):
            best: dict[int, float] = {}
            for i, c in parts:
                for j, s in zip(i, c, strict=True):
                    best[int(j)] = max(best.get(int(j), -1.0), float(s))
            out.append([(i, best[i]) for i in self.decision.choose(parts)])
        return out


    def _link_reranked(self, texts: Sequence[str]) -> list[list[tuple[int, float]]]:
        from .rerank import RerankDecision, linking_candidates, nearest_with_memory

        r = self.config["reranker"]
        decision = RerankDecision(**r["decision"])
        cands = [decision.to_rerank(linking_candidates(p, m, r)) for p, m in zip(*nearest_with_memory(self, texts), strict=True)]
        probs = self.rerank([t for t, c in zip(texts, cands, strict=True) for _ in c], [self.names[c.row] for cs in cands for c in cs])
        out, at = [], 0
        for c in cands:
            out.append(decision.choose(c, probs[at : at + len(c)]))
            at += len(c)
        return out


def linker_parity(graph: LinkerGraph, onnx_path: Path, vocab_size: int, atol: float = 1e-4) -> float:
    """Max |torch − ONNX Runtime| of the top-k cosines over a few shapes, and every name ONNX Runtime
    returns scored the same by torch (ties may order differently); raises above ``atol``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, seq in ((1, 1), (3, 9), (2, 64)):
        ids = rng.integers(1, vocab_size, size=(batch, seq)).astype(np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        if batch > 1:
            ids[-1, seq // 2 + 1 :] = PAD_ID
            mask[-1, seq // 2 + 1 :] = 0
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_ids": ids, "attention_mask": mask}), strict=True))
        scores, indices = got["scores"], got["indices"]
        with torch.no_grad():
            q = graph.encoder(torch.from_numpy(ids), torch.from_numpy(mask))  # [batch, dim]
            every = (q @ graph.names).numpy()  # [batch, names]
            ref = graph(torch.from_numpy(ids), torch.from_numpy(mask))
        worst = max(worst, float(np.abs(ref[0].numpy() - scores).max()),
                    float(np.abs(np.take_along_axis(every, indices, axis=1) - scores).max()))
        if graph.memory_top:
            m_scores, m_rows, m_names, m_cos = (got[o] for o in MEMORY_OUTPUTS)
            near = (q @ graph.memory).numpy()  # [batch, pairs]
            if not np.array_equal(graph.memory_names.numpy()[m_rows], m_names):
                raise AssertionError("linker parity: memory_names are not the gold names of memory_rows")
            # every name a neighbour holds, scored as the plain product would score it
            want = np.take_along_axis(every, np.maximum(m_names, 0).reshape(batch, -1), axis=1).reshape(m_names.shape)
            worst = max(worst, float(np.abs(ref[2].numpy() - m_scores).max()),
                        float(np.abs(np.take_along_axis(near, m_rows, axis=1) - m_scores).max()),
                        float(np.abs(np.where(m_names >= 0, want - m_cos, 0)).max()))
    if worst > atol:
        raise AssertionError(f"linker parity: max abs difference {worst:.2e} > {atol:.0e}")
    return worst


@dataclass
class LinkExportConfig:
    run: str = field(metadata={"help": "link-train run folder"})
    candidates: str = field(metadata={"help": "icd10_beijing_clinical_v601_cdn.tsv"})
    out: str = field(metadata={"help": "linker bundle folder to write"})
    pairs: str | None = field(default=None, metadata={"help": "CHIP-CDN train.jsonl: score the bundle on the run's dev split"})
    version: str = ""
    name: str = "cner-icd10-linker-bge-small-zh"
    top_k: int = 8
    memory: bool = field(default=False, metadata={"help": "keep the run's training-side pairs (fit, then tune; never dev) as a memory: "
                                                          "the graph also answers each query's nearest training diagnoses and their "
                                                          "gold names (needs --pairs)"})
    memory_top: int = field(default=6, metadata={"help": "nearest training diagnoses the graph answers per query"})


MEMORY_OUTPUTS = ("memory_scores", "memory_rows", "memory_names", "memory_cosines")


@dataclass(frozen=True)
class LinkMemory:
    """Training pairs the linker keeps (texts embedded, never stored as text): each pair's diagnosis and the
    rows of its gold names among the candidates; ``top``: neighbours the graph returns per query."""

    texts: tuple[str, ...]
    names: tuple[tuple[int, ...], ...]
    top: int
    source: str


def memory_pairs(pairs: Sequence[tuple[str, tuple[str, ...]]], cands: Sequence[Candidate], top: int, source: str) -> LinkMemory:
    index = {c.name: i for i, c in enumerate(cands)}
    names = tuple(tuple(dict.fromkeys(index[n] for n in gold if n in index)) for _, gold in pairs)
    return LinkMemory(tuple(t for t, _ in pairs), names, top, source)


def write_linker_files(model: LinkEncoder, vocab: Vocab, cands: Sequence[Candidate], out: Path, decision: dict,
                       top_k: int, memory: LinkMemory | None = None, index_model: LinkEncoder | None = None) -> dict:
    """Every linker bundle file but manifest.json; returns the torch parity and the bytes float16 saved.
    ``model`` encodes queries in the graph; ``index_model`` (default: the same) embeds the names and the memory."""
    index_model = index_model or model
    from .export import OPSET, store_float16

    out.mkdir(parents=True, exist_ok=True)
    mem_args = {}
    if memory is not None:
        width = max(1, *(len(n) for n in memory.names))
        rows = torch.full((len(memory.names), width), -1, dtype=torch.int64)  # [pairs, l], -1 pads
        for i, n in enumerate(memory.names):
            rows[i, : len(n)] = torch.tensor(n, dtype=torch.int64)
        mem_args = {"memory": torch.from_numpy(embed(index_model, vocab, memory.texts)), "memory_names": rows, "memory_top": memory.top}
    graph = LinkerGraph(model, torch.from_numpy(embed(index_model, vocab, [c.name for c in cands])), top_k, **mem_args).eval()
    outputs = ["scores", "indices", *(MEMORY_OUTPUTS if memory is not None else ())]
    onnx_path = out / "linker.onnx"
    ids, mask = torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}} | {o: {0: "batch"} for o in outputs}
    torch.onnx.export(graph, (ids, mask), str(onnx_path), input_names=["input_ids", "attention_mask"],
                      output_names=outputs, dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
                      dynamo=False)
    parity = linker_parity(graph, onnx_path, len(vocab))
    saved = store_float16(onnx_path)
    (out / "names.tsv").write_text("".join(f"{c.name}\t{','.join(c.codes)}\n" for c in cands), encoding="utf-8")
    vocab.save(out / "vocab.txt")
    config = {
        "kind": "linker",
        "system": SYSTEM,
        "entity_types": ["DIS"],
        "inputs": ["input_ids", "attention_mask"],
        "outputs": outputs,
        "top_k": top_k,
        "max_query_length": MAX_QUERY_LEN,
        "part_separators": PART_SEPARATORS.pattern,
        "decision": decision,
    }
    if memory is not None:
        config["memory"] = {"top": memory.top, "pairs": len(memory.texts), "names_per_pair": int(mem_args["memory_names"].shape[1]),
                            "source": memory.source}
    (out / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return {"parity_max_abs_diff": parity, "weights": {"float16_bytes_saved": saved}}


def write_linker_manifest(out: Path, extra: dict, files: Sequence[str] = LINKER_FILES) -> None:
    import datetime as dt

    from .corpus import sha256_file
    from .export import OPSET, git_commit

    manifest = {
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "git_commit": git_commit(),
        "opset": OPSET,
        "kind": "linker",
        "system": SYSTEM,
        **extra,
        "files": {f: sha256_file(out / f) for f in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


def load_link_run(run: Path) -> tuple[LinkEncoder, Vocab, dict]:
    """A link-train (or link-distill) run folder → its query encoder, vocabulary and metrics."""
    from .bge import build_bert

    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    vocab = Vocab.load(run / "vocab.txt")
    model = LinkEncoder(build_bert({k: v for k, v in metrics["bert_config"].items() if k != "vocab_size"}, len(vocab)),
                        metrics["dim"] if metrics["dim"] != metrics["bert_config"]["hidden_size"] else 0)
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    return model.eval(), vocab, metrics


def export_linker(cfg: LinkExportConfig) -> Path:
    import datetime as dt

    run, out = Path(cfg.run), Path(cfg.out)
    model, vocab, metrics = load_link_run(run)
    # A distilled run answers queries only: the names and the memory are embedded by its teacher.
    index_model = model
    if "teacher" in metrics:
        index_model, teacher_vocab, _ = load_link_run(Path(metrics["teacher"]["run"]))
        if teacher_vocab.tokens != vocab.tokens:
            raise SystemExit(f"{run}: its vocabulary is not its teacher's ({metrics['teacher']['run']})")
    cands = read_candidates(Path(cfg.candidates))
    memory = None
    if cfg.memory:
        if not cfg.pairs:
            raise SystemExit("--memory needs --pairs (the CHIP-CDN train.jsonl the run was trained on)")
        c = metrics["config"]
        fit, tune, _, _ = fit_tune_dev(read_pairs(Path(cfg.pairs)), c["dev_size"], c["tune_size"], c["split_seed"])
        memory = memory_pairs(fit + tune, cands, cfg.memory_top,
                              f"{len(fit)} fit then {len(tune)} tune pairs of {Path(cfg.pairs).name} (dev {c['dev_size']}, tune "
                              f"{c['tune_size']}, split seed {c['split_seed']}); texts embedded, gold names as rows")
    written = write_linker_files(model, vocab, cands, out, metrics["decision"], cfg.top_k, memory, index_model)

    scored = None
    if cfg.pairs:
        pairs = read_pairs(Path(cfg.pairs))
        _, dev_idx = split_pairs(len(pairs), metrics["config"]["dev_size"], metrics["config"]["split_seed"])
        dev = [pairs[i] for i in dev_idx]
        linker = OnnxLinker(out)
        chosen = linker.link([t for t, _ in dev])
        scored = set_prf([g for _, g in dev], [[linker.names[i] for i, _ in c] for c in chosen])
        log.info("bundle on the dev split: set F1 %.2f (P %.2f R %.2f); PyTorch run %.2f",
                 scored["f1"], scored["precision"], scored["recall"], metrics["dev"]["f1"])
    write_linker_manifest(out, {
        "name": cfg.name,
        "version": cfg.version or f"{dt.date.today():%Y.%m.%d}-link",
        "encoder": metrics["encoder"],
        "training": metrics.get("config", {}),
        **({"distilled_from": metrics["teacher"]} if "teacher" in metrics else {}),
        "metrics": {"protocol": metrics["protocol"], "dev": scored or metrics["dev"],
                    "dev_pytorch": metrics["dev"], "dev_recall": metrics["history"][-1]["dev"]},
        **written,
        "candidates": {"file": Path(cfg.candidates).name, "names": len(cands), "rows": sum(len(c.codes) for c in cands)},
    })
    return out


# ---------------------------------------------------------------- golden fixtures

GOLDEN_LINK_TEXTS = (
    "胃癌伴幽门梗阻", "糖尿病;骨质疏松；高血压冠心病不稳定心绞痛", "肺Ca", "伴发热", "高血压 冠心病",
    "2型糖尿病\u3000肾病", "左膝退变|游离体", "右乳腺癌IV期，骨转移、肝转移", "慢性乙型病毒性肝炎/肝硬化",
    "𠀀病伴𠀁症", "a/b", "冠心病 伴 心衰", "\u00a0腹痛\t腹泻\n", "癌并",
)


def golden_link_cases(seed: int = 0) -> dict:
    """Parts of diagnosis strings, and the names the decision keeps for random top-k answers:
    computed here, checked by test/pipeline/link.test.ts against the TypeScript twin."""
    rng = np.random.default_rng(seed)
    decisions = []
    for _ in range(12):
        n_parts = int(rng.integers(1, 4))
        parts = []
        for _ in range(n_parts):
            idx = rng.choice(20, size=4, replace=False)
            cos = np.sort(rng.uniform(0.4, 1.0, size=4))[::-1]
            parts.append((idx, cos))
        d = Decision(whole=float(rng.choice([0.0, 0.7, 0.85])), part=float(rng.choice([0.6, 0.8, 0.9])), max_names=int(rng.integers(1, 4)))
        decisions.append({"decision": asdict(d),
                          "parts": [{"indices": [int(i) for i in idx], "scores": [round(float(c), 6) for c in cos]} for idx, cos in parts],
                          "chosen": d.choose([(idx, np.round(cos, 6)) for idx, cos in parts])})
    return {"part_separators": PART_SEPARATORS.pattern,
            "parts": [{"text": t, "parts": query_parts(t)} for t in GOLDEN_LINK_TEXTS],
            "decisions": decisions}


# Candidate names written for the test fixtures, with synthetic codes (not the ICD table's).
GOLDEN_CANDIDATES = (
    ("胃恶性肿瘤", ("X01.001",)), ("幽门梗阻", ("X02.001",)), ("癌", ("X03.001", "X03.002")), ("高血压", ("X04.001",)),
    ("冠状动脉粥样硬化性心脏病", ("X05.001",)), ("肺恶性肿瘤", ("X06.001",)), ("2型糖尿病", ("X07.001",)),
    ("骨质疏松", ("X08.001",)), ("不稳定性心绞痛", ("X09.001",)), ("慢性肾脏病", ("X10.001",)), ("肝硬化", ("X11.001",)),
    ("慢性乙型病毒性肝炎", ("X12.001",)), ("乳腺恶性肿瘤", ("X13.001",)), ("骨继发恶性肿瘤", ("X14.001",)),
    ("肝继发恶性肿瘤", ("X15.001",)), ("心力衰竭", ("X16.001",)),
)
TINY_LINK_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=80, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
                      initializer_range=0.5)  # wide random weights: distinct embeddings, robust orders


# Training pairs of the tiny memory (synthetic): diagnoses and their gold names among GOLDEN_CANDIDATES.
GOLDEN_MEMORY = (
    ("胃癌", ("胃恶性肿瘤",)), ("胃癌伴梗阻", ("胃恶性肿瘤", "幽门梗阻")), ("高血压病", ("高血压",)),
    ("冠心病", ("冠状动脉粥样硬化性心脏病",)), ("肺Ca", ("肺恶性肿瘤", "癌")), ("糖尿病肾病", ("2型糖尿病", "慢性肾脏病")),
    ("乙肝肝硬化", ("慢性乙型病毒性肝炎", "肝硬化")), ("乳腺癌骨转移", ("乳腺恶性肿瘤", "骨继发恶性肿瘤", "癌")),
    ("心衰", ("心力衰竭",)), ("不稳定心绞痛", ("不稳定性心绞痛",)),
)


def tiny_linker_bundle(out: Path, seed: int = 0, memory: bool = False) -> Path:
    """A linker bundle in the real format over a tiny random BERT (16-d projection, top 4), for tests only;
    with ``memory``, GOLDEN_MEMORY as its training pairs (the 4 nearest answered)."""
    from .bge import build_bert
    from .vocab import SPECIAL_TOKENS

    chars = sorted(({c for n, _ in GOLDEN_CANDIDATES for c in n} | {c for t in GOLDEN_LINK_TEXTS for c in t.strip()}
                    | {c for t, _ in GOLDEN_MEMORY for c in t}) - {" "})
    vocab = Vocab(list(SPECIAL_TOKENS) + [c for c in chars if normalize_char(c) == c])  # a vocabulary holds normalized characters
    torch.manual_seed(seed)
    model = LinkEncoder(build_bert(TINY_LINK_BERT, len(vocab)), dim=16).eval()
    cands = [Candidate(n, codes) for n, codes in GOLDEN_CANDIDATES]
    mem = memory_pairs(GOLDEN_MEMORY, cands, top=4, source="GOLDEN_MEMORY (synthetic)") if memory else None
    written = write_linker_files(model, vocab, cands, out, asdict(Decision(whole=0.0, part=0.3, max_names=3)), top_k=4, memory=mem)
    write_linker_manifest(out, {"name": "cner-tiny-random-linker", "version": "tiny-linker-0",
                                "metrics": {"note": "random weights, for tests only"}, **written,
                                "candidates": {"file": "GOLDEN_CANDIDATES (synthetic codes)", "names": len(cands)}})
    return out


def golden_linker_cases(bundle: Path) -> list[dict]:
    """For each golden text: its parts, each part's nearest names through ONNX Runtime, and the names kept."""
    linker = OnnxLinker(bundle)
    cases = []
    for text in GOLDEN_LINK_TEXTS:
        parts = query_parts(text)
        idx, cos = linker.top(parts)
        chosen = linker.link([text])[0]
        cases.append({
            "text": text,
            "parts": parts,
            "nearest": [{"indices": [int(i) for i in idx[j]], "scores": [float(c) for c in cos[j]]} for j in range(len(parts))],
            "chosen": [{"name": linker.names[i], "codes": linker.codes[i], "score": s} for i, s in chosen],
        })
    return cases


# ---------------------------------------------------------------- int8

@dataclass
class LinkQuantizeConfig:
    bundle: str = field(metadata={"help": "linker bundle (link-export, or rerank-export with its re-ranker; "
                                          "an int8 one is restored to float first)"})
    out: str = field(metadata={"help": "folder of the int8 copy"})
    pairs: str = field(metadata={"help": "CHIP-CDN train.jsonl: calibration texts from the fitting side, and the dev score"})
    calibration_texts: int = field(default=1000, metadata={"help": "training-side diagnoses whose activations set the int8 ranges"})
    exclude: str = field(default="", metadata={"help": "regular expression: MatMul nodes whose name matches stay float32 "
                                                      "(the product with the embedded names always does)"})
    version_suffix: str = "-int8"


def _copy_to_rewrite(src: Path, out: Path, pairs: str) -> tuple[dict, list, list]:
    """``src`` copied to ``out`` for a rewrite of its graphs: its manifest, and the fit and dev pairs of its split."""
    import shutil

    if out.resolve() == src.resolve():
        raise SystemExit("--out must be another folder than the bundle")
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    train = manifest["training"]
    fit, _, dev, _ = fit_tune_dev(read_pairs(Path(pairs)), train["dev_size"], train["tune_size"], train["split_seed"])
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    return manifest, fit, dev


def _dev_score(linker: OnnxLinker, dev: list) -> dict:
    return set_prf([g for _, g in dev], [[linker.names[i] for i, _ in c] for c in linker.link([t for t, _ in dev])])


def _names_matmul(path: Path) -> list[str]:
    """The MatMul of a query with the embedded names: the one whose output the TopK reads."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    topk_inputs = {x for n in nodes if n.op_type == "TopK" for x in n.input}
    return [n.name for n in nodes if n.op_type == "MatMul" and n.output[0] in topk_inputs]


def quantize_linker(cfg: LinkQuantizeConfig) -> Path:
    """Static int8 (QDQ, calibrated, so a query's names never depend on its batch mates) of a linker
    bundle's graphs, the names product kept float; scored against the float bundle on the dev split."""
    import re
    import tempfile

    import onnx

    from .export import store_float16
    from .quantize import QUANTIZED_OPS, quantize_static_graph, restore_float32

    src, out = Path(cfg.bundle), Path(cfg.out)
    manifest, fit, dev = _copy_to_rewrite(src, out, cfg.pairs)
    calib = [t for t, _ in fit[: cfg.calibration_texts]]
    base = OnnxLinker(src)

    rx = re.compile(cfg.exclude) if cfg.exclude else None
    report = {}
    graphs = [("linker.onnx", [p for t in calib for p in query_parts(t)])]
    if base.reranker is not None:
        graphs.append(("reranker.onnx", calib))
    with tempfile.TemporaryDirectory() as tmp:
        for name, texts in graphs:
            f32 = Path(tmp) / name
            restore_float32(src / name, f32)
            nodes = [n.name for n in onnx.load(str(f32)).graph.node if n.op_type in QUANTIZED_OPS]
            exclude = _names_matmul(f32) + [n for n in nodes if rx is not None and rx.search(n)]
            feeds = []
            if name == "linker.onnx":
                order = sorted(texts, key=len)
                for b in range(0, len(order), 64):
                    ids, mask = encode_batch(base.vocab, order[b : b + 64], base.config["max_query_length"])
                    feeds.append({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
            else:
                from .rerank import RERANKER_INPUTS, candidate_list, pair_batch

                r = base.config["reranker"]
                cands = [candidate_list(p, r["k_whole"], r["k_part"]) for p in nearest_by_text(texts, base.top)]
                pairs = sorted(((t, base.names[i]) for t, c in zip(texts, cands, strict=True) for i in c),
                               key=lambda p: len(p[0]) + len(p[1]))
                for b in range(0, len(pairs), 64):
                    batch = pair_batch(base.vocab, [t for t, _ in pairs[b : b + 64]], [n for _, n in pairs[b : b + 64]], r["max_length"])
                    feeds.append({k: x.numpy() for k, x in zip(RERANKER_INPUTS, batch, strict=True)})
            quantize_static_graph(f32, out / name, feeds, exclude)
            saved = store_float16(out / name)
            report[name] = {"int8_nodes": len(nodes) - len(exclude), "float_nodes": exclude, "calibration_batches": len(feeds),
                            "float16_bytes_saved": saved}

    f, q = _dev_score(base, dev), _dev_score(OnnxLinker(out), dev)
    before = manifest.get("quantization") or {}
    requantized = "method" in before  # the source was a link-quantize result, restored to float above
    log.info("dev set F1: %s %.2f, int8 %.2f", "the int8 source" if requantized else "float", f["f1"], q["f1"])
    from .corpus import sha256_file

    quantization = {
        "method": (f"onnxruntime.quantization.quantize_static, QDQ, weights QInt8 per channel, activations QUInt8 with MinMax "
                   f"ranges from {len(calib)} training-side diagnoses (batch-invariant), MatMul results float; the product "
                   "with the embedded names and the embeddings stay float (stored as float16)"),
        "graphs": report,
    }
    metrics = {**manifest.get("metrics", {}), "dev": q}
    if requantized:
        # An int8 bundle quantized again (restore_float32 undid its QDQ): its float bundle's score stays on record.
        quantization["requantized_from"] = {"version": manifest["version"], "method": before["method"], "dev": f}
        quantization["float_dev"] = before.get("float_dev")
    else:
        quantization["float_dev"] = metrics["dev_float"] = f
    quantization["int8_dev"] = q
    if "names" in before:
        quantization["names"] = before["names"]
    manifest["version"] = manifest["version"] + cfg.version_suffix
    manifest["quantization"] = quantization
    manifest["metrics"] = metrics
    manifest["files"] = {name: sha256_file(out / name) for name in manifest["files"]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


# ---------------------------------------------------------------- int8 names

@dataclass
class LinkNamesConfig:
    bundle: str = field(metadata={"help": "linker bundle (link-export, rerank-export or link-quantize)"})
    out: str = field(metadata={"help": "folder of the copy with int8 embedded names"})
    pairs: str = field(metadata={"help": "CHIP-CDN train.jsonl: the dev split (the bundle's) that scores the copy against the bundle"})
    version_suffix: str = "-names8"


NAMES = "names"


def int8_names_graph(src: Path, dst: Path) -> dict:
    """``src``'s linker graph with its embedded names ([dim, names], the largest weight by far) stored as
    int8, one scale per name, and the query's product with them done in integers (MatMulInteger):
    the names take a quarter of the memory, and ONNX Runtime no longer keeps both a float32 copy and
    its pre-packed twin. The query is quantized per row (its own max |value| / 127, symmetric), so a
    query's scores never depend on its batch mates; a name's cosine moves by about 1e-3. The memory
    branch's gather of the names a neighbour holds reads the same int8 columns and their scales.
    Returns what was done, for the manifest."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    cast = next((n for n in graph.node if n.op_type == "Cast" and n.output[0] == NAMES), None)
    stored = cast.input[0] if cast is not None else NAMES
    if stored not in inits:
        already = "names.int8" in inits
        raise SystemExit(f"{src}: no float embedded names (initializer {NAMES!r}): "
                         + ("they are int8 already" if already else "is this a linker graph from link-export?"))
    names = numpy_helper.to_array(inits[stored]).astype(np.float32)  # [dim, names]
    users = [n for n in graph.node if NAMES in n.input]
    products = [n for n in users if n.op_type == "MatMul" and list(n.input) == [n.input[0], NAMES]]
    gathers = [n for n in users if n.op_type == "Gather" and n.input[0] == NAMES
               and next((a.i for a in n.attribute if a.name == "axis"), 0) == 1]
    if len(products) != 1 or len(products) + len(gathers) != len(users):
        raise SystemExit(f"{src}: the names are read by {[n.op_type for n in users]}; expected one MatMul (and Gathers of columns)")

    peak = np.abs(names).max(axis=0)  # [names]
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)  # [names]
    q_names = np.clip(np.rint(names / scale), -127, 127).astype(np.int8)  # [dim, names]

    del graph.initializer[:]
    graph.initializer.extend(t for t in inits.values() if t.name != stored)
    graph.initializer.extend([
        numpy_helper.from_array(q_names, "names.int8"),
        numpy_helper.from_array(scale, "names.scale"),
        numpy_helper.from_array(np.array(127.0, dtype=np.float32), "names.q_max"),
        numpy_helper.from_array(np.array(128.0, dtype=np.float32), "names.q_offset"),
        numpy_helper.from_array(np.array(128, dtype=np.uint8), "names.q_zero"),
        numpy_helper.from_array(np.array(1e-30, dtype=np.float32), "names.q_tiny"),
    ])
    mm = products[0]
    q, out = mm.input[0], mm.output[0]
    p = "/names_int8"
    replaced = {id(mm): [
        helper.make_node("Abs", [q], [f"{p}/abs"], name=f"{p}/Abs"),
        helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/peak"], axes=[1], keepdims=1, name=f"{p}/ReduceMax"),  # [batch, 1]
        helper.make_node("Max", [f"{p}/peak", "names.q_tiny"], [f"{p}/peak_safe"], name=f"{p}/Max"),
        helper.make_node("Div", [f"{p}/peak_safe", "names.q_max"], [f"{p}/row_scale"], name=f"{p}/RowScale"),  # [batch, 1]
        helper.make_node("Div", [q, f"{p}/row_scale"], [f"{p}/q_scaled"], name=f"{p}/Scale"),
        helper.make_node("Round", [f"{p}/q_scaled"], [f"{p}/q_round"], name=f"{p}/Round"),  # [-127, 127]
        helper.make_node("Add", [f"{p}/q_round", "names.q_offset"], [f"{p}/q_shift"], name=f"{p}/Shift"),  # [1, 255]
        helper.make_node("Cast", [f"{p}/q_shift"], [f"{p}/q_u8"], to=TensorProto.UINT8, name=f"{p}/ToUint8"),
        helper.make_node("MatMulInteger", [f"{p}/q_u8", "names.int8", "names.q_zero"], [f"{p}/dot"],
                         name=f"{p}/MatMulInteger"),  # [batch, names] int32, exact (|sum| ≤ dim·127² < 2^24)
        helper.make_node("Cast", [f"{p}/dot"], [f"{p}/dot_f"], to=TensorProto.FLOAT, name=f"{p}/ToFloat"),
        helper.make_node("Mul", [f"{p}/dot_f", f"{p}/row_scale"], [f"{p}/dot_rows"], name=f"{p}/MulRows"),
        helper.make_node("Mul", [f"{p}/dot_rows", "names.scale"], [out], name=f"{p}/MulNames"),  # [batch, names]
    ]}
    for i, g in enumerate(gathers):
        idx, gout = g.input[1], g.output[0]
        replaced[id(g)] = [
            helper.make_node("Gather", ["names.int8", idx], [f"{p}/picked{i}"], axis=1, name=f"{p}/Gather{i}"),  # [dim, …] int8
            helper.make_node("Cast", [f"{p}/picked{i}"], [f"{p}/picked{i}_f"], to=TensorProto.FLOAT, name=f"{p}/PickedFloat{i}"),
            helper.make_node("Gather", ["names.scale", idx], [f"{p}/picked{i}_scale"], axis=0, name=f"{p}/GatherScale{i}"),
            helper.make_node("Mul", [f"{p}/picked{i}_f", f"{p}/picked{i}_scale"], [gout], name=f"{p}/PickedNames{i}"),
        ]
    # Each replacement where the node it replaces was: its inputs are computed before, its users after.
    order = [m for n in graph.node if n is not cast for m in replaced.get(id(n), [n])]
    del graph.node[:]
    graph.node.extend(order)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {"names": int(names.shape[1]), "dim": int(names.shape[0]), "float_bytes": int(names.nbytes),
            "int8_bytes": int(q_names.nbytes + scale.nbytes), "memory_gathers": len(gathers)}


def int8_names(cfg: LinkNamesConfig) -> Path:
    """A copy of a linker bundle with int8 embedded names (``int8_names_graph``), scored against the bundle on its dev split."""
    from .corpus import sha256_file

    src, out = Path(cfg.bundle), Path(cfg.out)
    manifest, _, dev = _copy_to_rewrite(src, out, cfg.pairs)
    report = int8_names_graph(src / "linker.onnx", out / "linker.onnx")
    base, copy = OnnxLinker(src), OnnxLinker(out)
    texts = [p for t, _ in dev for p in query_parts(t)]
    (bi, bs), (ci, cs) = base.top(texts), copy.top(texts)
    f, q = _dev_score(base, dev), _dev_score(copy, dev)
    report.update({
        "method": "embedded names int8, one scale per name (max |value| / 127); the query int8 per row (batch-invariant); "
                  "MatMulInteger, scores rescaled to float",
        "dev_before": f, "dev": q,
        "top1_agreement": float((bi[:, 0] == ci[:, 0]).mean()),
        "max_abs_cosine_diff_top1": float(np.abs(bs[:, 0] - cs[:, 0]).max()),
    })
    log.info("dev set F1: names float %.2f, names int8 %.2f; top-1 name agreement %.4f, max |Δ cosine| %.2e",
             f["f1"], q["f1"], report["top1_agreement"], report["max_abs_cosine_diff_top1"])
    manifest["version"] = manifest["version"] + cfg.version_suffix
    manifest.setdefault("quantization", {})["names"] = report
    manifest["metrics"] = {**manifest.get("metrics", {}), "dev": q, "dev_names_float": f}
    manifest["files"] = {name: sha256_file(out / name) for name in manifest["files"]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return out
