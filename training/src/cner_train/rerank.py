"""Re-ranking a diagnosis's candidate names (CHIP-CDN): a cross-encoder on bge-small-zh-v1.5.

The bi-encoder linker (link.py) finds good candidates (recall@10 about 73 on
our dev split) but orders them poorly (recall@1 about 32): the diagnosis and
a name never see each other. A cross-encoder reads them together,
``[CLS] diagnosis [SEP] name [SEP]``, and gives each pair the probability
that the name is one of the diagnosis's standard names. Which names to keep
follows from it: those at or above a threshold (at least the best one, at
most ``max_names``), the threshold chosen on a slice of the training side.

Candidates are the bi-encoder bundle's own answers, as the processor gets
them: the top ``k_whole`` names of the whole text and the top ``k_part`` of
each listed part (link.query_parts), merged by their best cosine. Training
adds the gold names a text's candidates miss (so every text teaches a
positive); evaluation never does.

Tokenization as everywhere in cner: one token per code point through the
character vocabulary of the linker bundle; the caller builds the pair with
the vocabulary's ``[CLS]``/``[SEP]`` ids and token types 0 (diagnosis) and
1 (name), right-padded.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bge import build_bert, load_encoder, pruned_state_dict
from .link import MAX_QUERY_LEN, OnnxLinker, fit_tune_dev, nearest_by_text, read_pairs, set_prf, split_pairs
from .train import set_seed, warmup_linear
from .vocab import CLS_ID, PAD_ID, SEP_ID, Vocab

log = logging.getLogger(__name__)

RERANKER_FILE = "reranker.onnx"


def pair_batch(vocab: Vocab, texts: Sequence[str], names: Sequence[str], max_len: int = MAX_QUERY_LEN
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, token_type_ids), each [batch, longest] int64:
    ``[CLS] text [SEP] name [SEP]``, text and name each cut at ``max_len`` code points, right-padded."""
    rows = []
    for t, n in zip(texts, names, strict=True):
        a, b = vocab.encode(t[:max_len]), vocab.encode(n[:max_len])
        rows.append(([CLS_ID, *a, SEP_ID, *b, SEP_ID], len(a) + 2))
    seq = max(len(r) for r, _ in rows)
    ids = np.full((len(rows), seq), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(rows), seq), dtype=np.int64)
    types = np.zeros((len(rows), seq), dtype=np.int64)
    for i, (r, first) in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
        types[i, first : len(r)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)


class CrossEncoder(nn.Module):
    """BertModel over a (diagnosis, name) pair → the ``[CLS]`` state → one logit.
    input_ids, attention_mask, token_type_ids: [batch, seq] → [batch]."""

    def __init__(self, bert: nn.Module, dropout: float = 0.1):
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(bert.config.hidden_size, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state[:, 0]
        return self.score(self.dropout(x)).squeeze(-1).float()  # [batch]


class RerankerGraph(nn.Module):
    """What reranker.onnx computes: each pair's probability. [batch, seq] ×3 → probabilities [batch] float32."""

    def __init__(self, model: CrossEncoder):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(input_ids, attention_mask, token_type_ids))


def candidate_cosines(parts: list[tuple[np.ndarray, np.ndarray]], k_whole: int, k_part: int) -> list[tuple[int, float]]:
    """One text's candidates and their best cosines: the whole text's top ``k_whole`` names, then each
    part's top ``k_part``, ordered by their best cosine (ties: the order found), each once."""
    best: dict[int, float] = {}
    for j, (idx, cos) in enumerate(parts):
        for i, c in list(zip(idx, cos, strict=True))[: k_whole if j == 0 else k_part]:
            best[int(i)] = max(best.get(int(i), -2.0), float(c))
    return sorted(best.items(), key=lambda kv: -kv[1])


def candidate_list(parts: list[tuple[np.ndarray, np.ndarray]], k_whole: int, k_part: int) -> list[int]:
    """The rows of ``candidate_cosines``."""
    return [i for i, _ in candidate_cosines(parts, k_whole, k_part)]


@dataclass(frozen=True)
class MemoryAnswer:
    """One text's nearest training diagnoses (the linker graph's memory outputs, best first): their cosines
    [m], their rows in the memory [m], their gold names (rows of names.tsv, -1 pads) [m, l] and the text's
    cosine to each of those names [m, l]."""

    scores: np.ndarray
    rows: np.ndarray
    names: np.ndarray
    cosines: np.ndarray


def memory_of(outputs: dict[str, np.ndarray], exclude_rows: Sequence[int | None] | None = None) -> list[MemoryAnswer]:
    """Per text, its ``MemoryAnswer`` from ``OnnxLinker.run_queries``; ``exclude_rows[i]``, a memory row
    dropped from text i's neighbours (the text itself, when it is a training pair in the memory)."""
    out = []
    for i in range(len(outputs["memory_scores"])):
        keep = np.ones(len(outputs["memory_rows"][i]), dtype=bool)
        if exclude_rows is not None and exclude_rows[i] is not None:
            keep = outputs["memory_rows"][i] != exclude_rows[i]
        out.append(MemoryAnswer(*(outputs[f"memory_{k}"][i][keep] for k in ("scores", "rows", "names", "cosines"))))
    return out


def nearest_with_memory(linker: OnnxLinker, texts: Sequence[str], exclude_rows: Sequence[int | None] | None = None
                        ) -> tuple[list[list[tuple[np.ndarray, np.ndarray]]], list[MemoryAnswer | None]]:
    """Each text's nearest names for itself and its parts (``nearest_by_text``) and, with a memory, its
    ``MemoryAnswer`` (``memory_of``), from one run of the graph over every query: the memory outputs of a
    text's whole-text query come with its nearest names."""
    if not texts:
        return [], []
    outputs: dict[str, np.ndarray] = {}

    def nearest(queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        outputs.update(linker.run_queries(queries))
        return outputs["indices"], outputs["scores"]

    near = nearest_by_text(texts, nearest)
    if "memory" not in linker.config:
        return near, [None] * len(texts)
    whole = np.cumsum([0] + [len(p) for p in near[:-1]])  # each text's own query comes first, then its parts'
    return near, memory_of({k: v[whole] for k, v in outputs.items()}, exclude_rows)


@dataclass(frozen=True)
class LinkCandidate:
    """A name for one text: its row, its best cosine to the text or a listed part, and the nearest
    training diagnoses' vote for it (0 without a memory)."""

    row: int
    cosine: float
    vote: float = 0.0


def memory_votes(memory: MemoryAnswer, k: int, temperature: float) -> dict[int, tuple[float, float]]:
    """name row → (vote, cosine): the text's ``k`` nearest training diagnoses each vote for their gold
    names with weight exp((cosine − best cosine) / temperature), the votes normalized to sum to 1
    over the neighbours."""
    scores = [float(x) for x in memory.scores[:k]]
    if not scores:
        return {}
    weights = [math.exp((x - scores[0]) / temperature) for x in scores]
    total = sum(weights)
    out: dict[int, tuple[float, float]] = {}
    for j, w in enumerate(weights):
        for row, cos in zip(memory.names[j], memory.cosines[j], strict=True):
            if row < 0:
                continue
            vote, _ = out.get(int(row), (0.0, 0.0))
            out[int(row)] = (vote + w / total, float(cos))
    return out


def linking_candidates(parts: list[tuple[np.ndarray, np.ndarray]], memory: MemoryAnswer | None, r: dict) -> list[LinkCandidate]:
    """One text's candidates (``r``: the bundle's reranker config): the nearest names of the text and its
    parts (``candidate_cosines``) and the gold names of its nearest training diagnoses, each once with its
    best cosine and its vote, ordered by cosine (ties: the nearest names first, then the order found)."""
    found = dict(candidate_cosines(parts, r["k_whole"], r["k_part"]))
    votes = {} if memory is None else memory_votes(memory, r["vote"]["k"], r["vote"]["temperature"])
    for row, (_, cos) in votes.items():
        found[row] = max(found.get(row, -2.0), cos)
    ranked = sorted(found.items(), key=lambda kv: -kv[1])
    return [LinkCandidate(row, cos, votes.get(row, (0.0, 0.0))[0]) for row, cos in ranked]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True)
class RerankDecision:
    """Which candidates are re-ranked and which kept. The ``rerank_top`` candidates with the highest
    prescore ``pre_cosine × cosine + pre_vote × vote`` (0: all), less those whose prescore probability
    sigmoid(prescore + ``pre_bias``) is under ``rerank_floor`` (never all: the best stays), are scored
    by the cross-encoder; each then scores sigmoid(``probability`` × p + ``cosine`` × cosine + ``vote`` ×
    vote + ``bias``) (a logistic regression fitted on training-side pairs); kept: those scoring at least
    ``threshold``, never none (the best), at most ``max_names``, best first."""

    probability: float = 1.0
    cosine: float = 0.0
    vote: float = 0.0
    bias: float = 0.0
    threshold: float = 0.5
    max_names: int = 4
    rerank_top: int = 0
    pre_cosine: float = 1.0
    pre_vote: float = 0.0
    pre_bias: float = 0.0
    rerank_floor: float = 0.0

    def to_rerank(self, candidates: Sequence[LinkCandidate]) -> list[LinkCandidate]:
        """The candidates the cross-encoder scores, in candidate order."""
        pre = [self.pre_cosine * c.cosine + self.pre_vote * c.vote for c in candidates]
        best = sorted(range(len(candidates)), key=lambda i: -pre[i])  # stable: ties keep candidate order
        if self.rerank_top:
            best = best[: self.rerank_top]
        if self.rerank_floor > 0:
            best = best[:1] + [i for i in best[1:] if _sigmoid(pre[i] + self.pre_bias) >= self.rerank_floor]
        return [candidates[i] for i in sorted(best)]

    def score(self, probability: float, c: LinkCandidate) -> float:
        return _sigmoid(self.probability * float(probability) + self.cosine * c.cosine + self.vote * c.vote + self.bias)

    def choose(self, candidates: Sequence[LinkCandidate], probs: Sequence[float]) -> list[tuple[int, float]]:
        ranked = sorted(((c.row, self.score(p, c)) for c, p in zip(candidates, probs, strict=True)), key=lambda cs: -cs[1])
        if not ranked:
            return []
        kept = [(r, s) for r, s in ranked if s >= self.threshold][: self.max_names]
        return kept or [ranked[0]]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-6) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularized logistic regression (full-batch L-BFGS, float64; deterministic)."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    yt = torch.from_numpy(np.asarray(y, dtype=np.float64))
    w = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w @ w)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy().copy(), float(b.detach())


def fit_prescore(cands: list[list[LinkCandidate]], golds: Sequence[set[str]], names: Sequence[str], rerank_top: int,
                 rerank_floor: float = 0.0) -> RerankDecision:
    """A decision whose prescore (a logistic regression of gold-or-not on (cosine, vote) over every
    candidate of these texts) picks the ``rerank_top`` candidates to re-rank; its other fields are defaults."""
    flat = [c for cs in cands for c in cs]
    labels = [names[c.row] in g for cs, g in zip(cands, golds, strict=True) for c in cs]
    (pc, pv), pb = fit_logistic(np.array([[c.cosine, c.vote] for c in flat]), np.array(labels))
    return RerankDecision(rerank_top=rerank_top, pre_cosine=round(float(pc), 6), pre_vote=round(float(pv), 6),
                          pre_bias=round(pb, 6), rerank_floor=rerank_floor)


def fit_rerank_decision(cands: list[list[LinkCandidate]], probs: list[np.ndarray], gold: Sequence[Sequence[str]],
                        names: Sequence[str], rerank_top: int = 0, rerank_floor: float = 0.0) -> tuple[RerankDecision, float]:
    """The decision with the best set F1 on these texts. ``probs[i]``: the cross-encoder's probability of
    every candidate of text i. The prescore is a logistic regression of gold-or-not on (cosine, vote) over
    every candidate; the score one on (probability, cosine, vote) over the candidates re-ranked; then a
    grid over the threshold and the cap."""
    golds = [set(g) for g in gold]
    base = fit_prescore(cands, golds, names, rerank_top, rerank_floor)
    kept = [base.to_rerank(cs) for cs in cands]
    p_of = [dict(zip((c.row for c in cs), ps, strict=True)) for cs, ps in zip(cands, probs, strict=True)]
    rows = [(p_of[i][c.row], c, names[c.row] in golds[i]) for i, cs in enumerate(kept) for c in cs]
    (wp, wc, wv), bias = fit_logistic(np.array([[p, c.cosine, c.vote] for p, c, _ in rows]), np.array([y for *_, y in rows]))
    weights = {"probability": round(float(wp), 6), "cosine": round(float(wc), 6), "vote": round(float(wv), 6), "bias": round(bias, 6)}
    best = (base, -1.0)
    for threshold in [round(float(x), 3) for x in np.arange(0.05, 0.951, 0.025)]:
        for max_names in (1, 2, 3, 4, 6):
            d = RerankDecision(**{**asdict(base), **weights, "threshold": threshold, "max_names": max_names})
            chosen = [d.choose(cs, [p_of[i][c.row] for c in cs]) for i, cs in enumerate(kept)]
            f1 = set_prf(gold, [[names[r] for r, _ in ch] for ch in chosen])["f1"]
            if f1 > best[1]:
                best = (d, f1)
    return best


def pairs_by_length(vocab: Vocab, texts: Sequence[str], names: Sequence[str], score: Callable[..., np.ndarray],
                    max_len: int = MAX_QUERY_LEN, batch_size: int = 256) -> np.ndarray:
    """[pairs] ``score(input_ids, attention_mask, token_type_ids)`` of each (text, name) pair, the pairs
    grouped by length so padding stays small (PyTorch and ONNX Runtime alike)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + len(names[i]))
    out = np.zeros(len(texts), dtype=np.float32)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        out[idx] = score(*pair_batch(vocab, [texts[i] for i in idx], [names[i] for i in idx], max_len))
    return out


@torch.no_grad()
def score_pairs(model: CrossEncoder, vocab: Vocab, texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """[pairs] probabilities of the PyTorch model."""
    model.eval()
    return pairs_by_length(vocab, texts, names, lambda ids, mask, types: torch.sigmoid(model(ids, mask, types)).numpy())


def rerank_texts(model: CrossEncoder, vocab: Vocab, texts: Sequence[str], cands: list[list[int]], names: Sequence[str]
                 ) -> list[np.ndarray]:
    flat_t = [t for t, c in zip(texts, cands, strict=True) for _ in c]
    flat_n = [names[i] for c in cands for i in c]
    probs = score_pairs(model, vocab, flat_t, flat_n)
    out, at = [], 0
    for c in cands:
        out.append(probs[at : at + len(c)])
        at += len(c)
    return out


@dataclass
class RerankTrainConfig:
    pairs: str = field(metadata={"help": "CHIP-CDN train.jsonl (text → normalized names)"})
    linker: str = field(metadata={"help": "the bi-encoder linker bundle (link-export): candidates and vocabulary"})
    encoder: str = field(metadata={"help": "encoder.pt from cner-train bge: the cross-encoder starts from it"})
    out: str = field(metadata={"help": "run folder (model.pt, metrics.json)"})
    dev_size: int = field(default=1000, metadata={"help": "pairs held out as the dev split (the linker's split: same size and seed)"})
    split_seed: int = 42
    tune_size: int = field(default=500, metadata={"help": "training-side pairs held back to choose the threshold"})
    k_whole: int = field(default=10, metadata={"help": "candidates from the whole text's nearest names"})
    k_part: int = field(default=3, metadata={"help": "candidates from each listed part's nearest names"})
    vote_k: int = field(default=5, metadata={"help": "nearest training diagnoses that vote (a linker bundle with a memory)"})
    vote_temperature: float = field(default=0.05, metadata={"help": "softness of the neighbours' vote weights (cosine units)"})
    rerank_top: int = field(default=6, metadata={"help": "candidates the cross-encoder scores, by prescore (0: all)"})
    init: str = field(default="", metadata={"help": "a rerank-train run folder whose weights this run starts from (training on)"})
    layers: int = field(default=0, metadata={"help": "keep only the first N transformer layers (0: all): a cheaper cross-encoder"})
    epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    dropout: float = 0.1
    bf16: bool = False
    seed: int = 1
    threads: int = 0
    max_minutes: float = 0.0


def candidate_config(k_whole: int, k_part: int, vote_k: int, vote_temperature: float) -> dict:
    """The candidate part of the reranker config (config.json's ``reranker``)."""
    return {"k_whole": k_whole, "k_part": k_part, "vote": {"k": vote_k, "temperature": vote_temperature}}


def split_candidates(linker: OnnxLinker, texts: Sequence[str], r: dict, memory_offset: int | None = None
                     ) -> list[list[LinkCandidate]]:
    """Each text's ``linking_candidates`` through the bundle. Texts that are themselves pairs of the
    bundle's memory (rows ``memory_offset``, ``memory_offset`` + 1, … in order) do not vote for
    themselves: each one's own row is left out of its neighbours."""
    exclude = None if memory_offset is None else [memory_offset + i for i in range(len(texts))]
    near, memory = nearest_with_memory(linker, texts, exclude)
    return [linking_candidates(p, m, r) for p, m in zip(near, memory, strict=True)]


def check_memory(linker: OnnxLinker, fit: list, tune: list) -> None:
    """The bundle's memory must be this split's fit pairs then its tune pairs (``link-export --memory``)."""
    pairs = linker.config.get("memory", {}).get("pairs")
    if pairs is not None and pairs != len(fit) + len(tune):
        raise ValueError(f"the linker's memory holds {pairs} pairs, not this split's {len(fit)} fit + {len(tune)} tune: "
                         "export the linker with the same split")


def _check_only_dropped_layers(result, source: str) -> None:
    """A partial load (``load_state_dict(strict=False)``) may leave out the layers a shorter model drops, nothing else."""
    unexpected = [k for k in result.unexpected_keys if not re.search(r"encoder\.layer\.\d+\.", k)]
    if unexpected or result.missing_keys:
        raise ValueError(f"{source}: weights the model lacks {unexpected[:5]}, weights missing {list(result.missing_keys)[:5]}")


def train_reranker(cfg: RerankTrainConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    started = time.time()

    linker = OnnxLinker(Path(cfg.linker), threads=cfg.threads)
    names, vocab = linker.names, linker.vocab
    name_index = {n: i for i, n in enumerate(names)}
    pairs = read_pairs(Path(cfg.pairs))
    fit, tune, dev, rng = fit_tune_dev(pairs, cfg.dev_size, cfg.tune_size, cfg.split_seed)

    r = candidate_config(cfg.k_whole, cfg.k_part, cfg.vote_k, cfg.vote_temperature)
    check_memory(linker, fit, tune)
    fit_cc, tune_cc, dev_cc = (split_candidates(linker, [t for t, _ in split], r, offset)
                               for split, offset in ((fit, 0), (tune, len(fit)), (dev, None)))
    fit_c, tune_c, dev_c = ([[c.row for c in x] for x in cc] for cc in (fit_cc, tune_cc, dev_cc))

    def oracle(split, cands) -> float:  # the recall a perfect re-ranker could reach
        kept = [[names[i] for i in c if names[i] in g] or [names[c[0]]] for (_, g), c in zip(split, cands, strict=True)]
        return set_prf([g for _, g in split], kept)["recall"]

    log.info("pairs: %d fit, %d tune, %d dev; candidates per text %.1f; candidate recall: tune %.2f, dev %.2f",
             len(fit), len(tune), len(dev), np.mean([len(c) for c in dev_c]), oracle(tune, tune_c), oracle(dev, dev_c))

    train_c = fit_c
    if cfg.rerank_top:
        # Train on what the bundle will re-rank: each text's rerank_top candidates by a prescore fitted
        # here on the fit pairs (the bundle's own is fitted again on the tune pairs at export).
        pre = fit_prescore(fit_cc, [set(g) for _, g in fit], names, cfg.rerank_top)
        train_c = [[c.row for c in pre.to_rerank(cc)] for cc in fit_cc]
    examples = []  # (text, name index, label)
    for (t, gold), c in zip(fit, train_c, strict=True):
        g = {name_index[n] for n in gold if n in name_index}
        for i in list(dict.fromkeys([*c, *sorted(g)])):
            examples.append((t, i, 1.0 if i in g else 0.0))
    log.info("%d training pairs, %.1f %% positive", len(examples), 100 * sum(e[2] for e in examples) / len(examples))

    encoder = load_encoder(Path(cfg.encoder))
    bert_config = dict(encoder["bert_config"])
    if cfg.layers:
        # A cheaper cross-encoder: the first `layers` transformer layers (of the encoder, or of --init's run).
        if cfg.layers > bert_config["num_hidden_layers"]:
            raise SystemExit(f"--layers {cfg.layers}: the encoder has {bert_config['num_hidden_layers']}")
        bert_config["num_hidden_layers"] = cfg.layers
    bert = build_bert(bert_config, len(vocab))
    _check_only_dropped_layers(bert.load_state_dict(pruned_state_dict(encoder, vocab), strict=False), "the encoder")
    model = CrossEncoder(bert, cfg.dropout)
    if cfg.init:
        loaded = model.load_state_dict(torch.load(Path(cfg.init) / "model.pt", map_location="cpu"), strict=False)
        _check_only_dropped_layers(loaded, cfg.init)
        log.info("starting from the weights of %s (%d layers)", cfg.init, bert_config["num_hidden_layers"])

    def evaluate(split, cands) -> tuple[list[np.ndarray], dict]:
        probs = rerank_texts(model, vocab, [t for t, _ in split], cands, names)
        top1 = set_prf([g for _, g in split], [[names[c[int(np.argmax(p))]]] for c, p in zip(cands, probs, strict=True)])
        return probs, top1

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_ratio)
    history, step = [], 0
    for epoch in range(cfg.epochs):
        model.train()
        rng.shuffle(examples)
        t0, tot, done = time.time(), 0.0, 0
        for b in range(0, len(examples), cfg.batch_size):
            batch = examples[b : b + cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = cfg.lr * warmup_linear(step, warmup, total)
            ids, mask, types = pair_batch(vocab, [t for t, _, _ in batch], [names[i] for _, i, _ in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(ids, mask, types)  # [batch]
            loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([y for _, _, y in batch]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += loss.item()
            step += 1
            done += 1
            if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
                break
        _, dev_top1 = evaluate(dev, dev_c)
        rec = {"epoch": epoch + 1, "loss": tot / max(done, 1), "steps": done, "train_seconds": time.time() - t0,
               "dev_top1": dev_top1}
        history.append(rec)
        log.info("epoch %d loss %.4f (%d steps, %.0fs); dev top-1 F1 %.2f",
                 epoch + 1, rec["loss"], done, rec["train_seconds"], dev_top1["f1"])
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            log.info("time budget reached")
            break

    tune_p, _ = evaluate(tune, tune_c)
    decision, tune_f1 = fit_rerank_decision(tune_cc, tune_p, [g for _, g in tune], names, cfg.rerank_top)
    dev_p, dev_top1 = evaluate(dev, dev_c)
    dev_chosen = []
    for cc, c, p in zip(dev_cc, dev_c, dev_p, strict=True):
        p_of, kept = dict(zip(c, p, strict=True)), decision.to_rerank(cc)
        dev_chosen.append(decision.choose(kept, [p_of[k.row] for k in kept]))
    dev_metrics = set_prf([g for _, g in dev], [[names[i] for i, _ in ch] for ch in dev_chosen])
    log.info("decision %s (tune F1 %.2f); dev set F1 %.2f (P %.2f R %.2f); re-ranked top-1 only %.2f",
             decision, tune_f1, dev_metrics["f1"], dev_metrics["precision"], dev_metrics["recall"], dev_top1["f1"])

    torch.save(model.state_dict(), out / "model.pt")
    result = {
        "config": asdict(cfg),
        "bert_config": {**bert_config, "vocab_size": len(vocab)},
        "encoder": encoder["source"],
        "linker_version": json.loads((Path(cfg.linker) / "manifest.json").read_text(encoding="utf-8"))["version"],
        "protocol": (f"dev = {cfg.dev_size} of the {len(pairs)} CHIP-CDN training pairs (seeded split, seed {cfg.split_seed}, "
                     f"the linker's); threshold chosen on {len(tune)} other training pairs; CBLUE set metric"),
        "candidate_recall": {"tune": oracle(tune, tune_c), "dev": oracle(dev, dev_c)},
        "decision": asdict(decision),
        "tune_f1": tune_f1,
        "dev": dev_metrics,
        "dev_top1_only": dev_top1,
        "history": history,
        "wall_seconds": time.time() - started,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return result


# ---------------------------------------------------------------- the re-ranking linker bundle

RERANKER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
RERANKER_OUTPUT = "probabilities"


def reranker_parity(graph: RerankerGraph, onnx_path: Path, vocab_size: int, atol: float = 1e-4) -> float:
    """Max |torch − ONNX Runtime| of the probabilities over a few shapes; raises above ``atol``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, seq in ((1, 4), (3, 11), (2, 40)):
        ids = rng.integers(6, vocab_size, size=(batch, seq)).astype(np.int64)
        ids[:, 0], ids[:, seq // 2], ids[:, -1] = CLS_ID, SEP_ID, SEP_ID
        mask = np.ones((batch, seq), dtype=np.int64)
        types = np.zeros((batch, seq), dtype=np.int64)
        types[:, seq // 2 + 1 :] = 1
        if batch > 1:
            ids[-1, seq - 2 :] = PAD_ID
            mask[-1, seq - 2 :] = 0
            types[-1, seq - 2 :] = 0
        (probs,) = sess.run([RERANKER_OUTPUT], dict(zip(RERANKER_INPUTS, (ids, mask, types), strict=True)))
        with torch.no_grad():
            ref = graph(*(torch.from_numpy(x) for x in (ids, mask, types))).numpy()
        worst = max(worst, float(np.abs(ref - probs).max()))
    if worst > atol:
        raise AssertionError(f"reranker parity: max abs difference {worst:.2e} > {atol:.0e}")
    return worst


def write_reranker(model: CrossEncoder, vocab_size: int, out: Path) -> dict:
    """reranker.onnx (weights stored as float16); returns the parity and the bytes saved."""
    from .export import OPSET, store_float16

    graph = RerankerGraph(model).eval()
    path = out / RERANKER_FILE
    dummy = tuple(torch.ones(2, 6, dtype=torch.int64) for _ in RERANKER_INPUTS)
    axes = {n: {0: "batch", 1: "seq"} for n in RERANKER_INPUTS} | {RERANKER_OUTPUT: {0: "batch"}}
    torch.onnx.export(graph, dummy, str(path), input_names=list(RERANKER_INPUTS), output_names=[RERANKER_OUTPUT],
                      dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    parity = reranker_parity(graph, path, vocab_size)
    return {"parity_max_abs_diff": parity, "float16_bytes_saved": store_float16(path)}


def reranker_config(candidates: dict, decision: RerankDecision) -> dict:
    """config.json's ``reranker``: the graph's names, the candidates (``candidate_config``) and the decision."""
    return {"inputs": list(RERANKER_INPUTS), "outputs": [RERANKER_OUTPUT], **candidates, "max_length": MAX_QUERY_LEN,
            "decision": asdict(decision)}


def add_reranker(linker_dir: Path, out: Path, model: CrossEncoder, candidates: dict, decision: RerankDecision,
                 manifest_extra: dict) -> dict:
    """A copy of the linker bundle at ``out`` with the re-ranker in it: its graph, its part of config.json
    (the bi-encoder's ``top_k`` raised to ``k_whole`` when lower is refused), and a manifest over every file."""
    import shutil

    from .link import LINKER_FILES, write_linker_manifest

    config = json.loads((linker_dir / "config.json").read_text(encoding="utf-8"))
    k_whole, k_part = candidates["k_whole"], candidates["k_part"]
    if config["top_k"] < max(k_whole, k_part):
        raise ValueError(f"the linker bundle answers {config['top_k']} names a query, fewer than k_whole/k_part {k_whole}/{k_part}: "
                         "export it again with a larger --top-k")
    if decision.vote and "memory" not in config:
        raise ValueError("the decision weighs the memory's vote, and the linker bundle has no memory: export it with --memory")
    if "memory" in config and candidates["vote"]["k"] > config["memory"]["top"]:
        raise ValueError(f"vote k {candidates['vote']['k']} is more than the memory's top {config['memory']['top']}")
    out.mkdir(parents=True, exist_ok=True)
    for f in LINKER_FILES:
        if f != "config.json":
            shutil.copyfile(linker_dir / f, out / f)
    written = write_reranker(model, len(Vocab.load(out / "vocab.txt")), out)
    config["reranker"] = reranker_config(candidates, decision)
    (out / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    base = json.loads((linker_dir / "manifest.json").read_text(encoding="utf-8"))
    keep = {k: v for k, v in base.items() if k not in ("created", "git_commit", "opset", "kind", "system", "files")}
    write_linker_manifest(out, {**keep, **manifest_extra, "reranker": written}, files=(*LINKER_FILES, RERANKER_FILE))
    return written


@dataclass
class RerankExportConfig:
    run: str = field(metadata={"help": "rerank-train run folder"})
    out: str = field(metadata={"help": "linker bundle folder to write: the run's linker bundle with the re-ranker added"})
    pairs: str | None = field(default=None, metadata={"help": "CHIP-CDN train.jsonl: score the bundle on the run's dev split"})
    linker: str = field(default="", metadata={"help": "the linker bundle to add the re-ranker to, instead of the run's own (the same "
                                                     "bi-encoder exported again, e.g. with --memory: the same names and vocabulary)"})
    version: str = ""
    name: str = "cner-icd10-linker-bge-small-zh-reranked"
    refit_decision: bool = field(default=True, metadata={"help": "fit the decision again on the run's tune split (needs --pairs): "
                                                                    "the memory's vote, the prescore and rerank_top included"})
    vote_k: int = field(default=5, metadata={"help": "nearest training diagnoses that vote (with a memory)"})
    vote_temperature: float = 0.05
    rerank_top: int = field(default=6, metadata={"help": "candidates the cross-encoder scores, by prescore (0: all)"})
    rerank_floor: float = field(default=0.0, metadata={"help": "of those, only the ones whose prescore probability is at "
                                                                "least this (the best always): fewer pairs, less cost"})


def export_reranker(cfg: RerankExportConfig) -> Path:
    import datetime as dt

    run, out = Path(cfg.run), Path(cfg.out)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    linker_dir = Path(cfg.linker or metrics["config"]["linker"])
    vocab = Vocab.load(linker_dir / "vocab.txt")
    own = Path(metrics["config"]["linker"])
    if cfg.linker and (own / "vocab.txt").exists() and ((own / "vocab.txt").read_bytes() != (linker_dir / "vocab.txt").read_bytes()
                                                       or (own / "names.tsv").read_bytes() != (linker_dir / "names.tsv").read_bytes()):
        raise SystemExit(f"--linker {linker_dir} has other names or another vocabulary than the run's linker {own}")
    model = CrossEncoder(build_bert({k: v for k, v in metrics["bert_config"].items() if k != "vocab_size"}, len(vocab)))
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    model.eval()
    c = metrics["config"]
    r = candidate_config(c["k_whole"], c["k_part"], cfg.vote_k, cfg.vote_temperature)
    if cfg.pairs and cfg.refit_decision:
        linker = OnnxLinker(linker_dir)
        fit, tune, _, _ = fit_tune_dev(read_pairs(Path(cfg.pairs)), c["dev_size"], c["tune_size"], c["split_seed"])
        check_memory(linker, fit, tune)
        tune_cc = split_candidates(linker, [t for t, _ in tune], r, len(fit))
        probs = rerank_texts(model, vocab, [t for t, _ in tune], [[x.row for x in cc] for cc in tune_cc], linker.names)
        decision, tune_f1 = fit_rerank_decision(tune_cc, probs, [g for _, g in tune], linker.names, cfg.rerank_top,
                                                cfg.rerank_floor)
        kept = [decision.to_rerank(cc) for cc in tune_cc]
        log.info("pairs re-ranked a text on the tune split: %.2f of %.2f candidates", np.mean([len(k) for k in kept]),
                 np.mean([len(cc) for cc in tune_cc]))
        log.info("decision fitted on the tune split: %s (tune F1 %.2f)", decision, tune_f1)
    else:
        try:
            decision = RerankDecision(**metrics["decision"])
        except TypeError as e:
            raise SystemExit(f"the run's decision {metrics['decision']} is of an older form: export with --pairs to fit it again") from e
    add_reranker(linker_dir, out, model, r, decision, {
        "name": cfg.name,
        "version": cfg.version or f"{dt.date.today():%Y.%m.%d}-link-reranked",
        "reranker_training": c,
        "metrics": {"protocol": metrics["protocol"], "dev_pytorch": metrics["dev"], "dev_top1_only": metrics["dev_top1_only"],
                    "candidate_recall": metrics["candidate_recall"]},
    })
    if cfg.pairs:
        pairs = read_pairs(Path(cfg.pairs))
        _, dev_idx = split_pairs(len(pairs), c["dev_size"], c["split_seed"])
        dev = [pairs[i] for i in dev_idx]
        linker = OnnxLinker(out)
        scored = set_prf([g for _, g in dev], [[linker.names[i] for i, _ in ch] for ch in linker.link([t for t, _ in dev])])
        log.info("bundle on the dev split: set F1 %.2f (P %.2f R %.2f); PyTorch run %.2f",
                 scored["f1"], scored["precision"], scored["recall"], metrics["dev"]["f1"])
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        manifest["metrics"]["dev"] = scored  # manifest.json is not among its own checksummed files
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


# ---------------------------------------------------------------- golden fixtures

def tiny_reranked_linker_bundle(out: Path, seed: int = 0) -> Path:
    """The tiny linker bundle with a memory of GOLDEN_MEMORY and a tiny random cross-encoder added
    (3 + 2 nearest names, 3 voting neighbours, 3 candidates re-ranked), for tests only."""
    import tempfile

    from .link import TINY_LINK_BERT, tiny_linker_bundle

    with tempfile.TemporaryDirectory() as tmp:
        linker_dir = tiny_linker_bundle(Path(tmp) / "linker", seed, memory=True)
        torch.manual_seed(seed + 1)
        vocab = Vocab.load(linker_dir / "vocab.txt")
        model = CrossEncoder(build_bert(TINY_LINK_BERT, len(vocab))).eval()
        decision = RerankDecision(probability=4.0, cosine=2.0, vote=3.0, bias=-4.5, threshold=0.7, max_names=2, rerank_top=4,
                                  pre_cosine=1.0, pre_vote=0.5, pre_bias=-0.6, rerank_floor=0.58)
        add_reranker(linker_dir, out, model, candidate_config(3, 2, 3, 0.05), decision,
                     manifest_extra={"name": "cner-tiny-random-reranked-linker", "version": "tiny-reranked-linker-0",
                                     "metrics": {"note": "random weights, for tests only"}})
    return out


def golden_reranked_cases(bundle: Path) -> list[dict]:
    """For each golden text: its nearest training diagnoses (the memory's answer), its candidates (row,
    cosine, vote), the ones re-ranked and the re-ranker's probability of each through ONNX Runtime, and
    the names kept."""
    from .link import GOLDEN_LINK_TEXTS

    linker = OnnxLinker(bundle)
    r = linker.config["reranker"]
    decision = RerankDecision(**r["decision"])
    cases = []
    for text in GOLDEN_LINK_TEXTS:
        (near,), (memory,) = nearest_with_memory(linker, [text])
        cands = linking_candidates(near, memory, r)
        kept = decision.to_rerank(cands)
        probs = linker.rerank([text] * len(kept), [linker.names[c.row] for c in kept])
        cases.append({
            "text": text,
            "memory": {"scores": [float(x) for x in memory.scores], "rows": [int(x) for x in memory.rows],
                       "names": [[int(x) for x in n if x >= 0] for n in memory.names]},
            "candidates": [{"row": c.row, "cosine": c.cosine, "vote": c.vote} for c in cands],
            "reranked": [c.row for c in kept],
            "probabilities": [float(p) for p in probs],
            "chosen": [{"name": linker.names[i], "codes": linker.codes[i], "score": s} for i, s in linker.link([text])[0]],
        })
    return cases
