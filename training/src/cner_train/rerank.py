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
class RerankDecision:
    """Each candidate's score is ``(1 - cosine_weight) × probability + cosine_weight × cosine`` (its best
    cosine from the nearest names); keep the candidates scoring at least ``threshold``, never none (the
    best), at most ``max_names``, best first."""

    threshold: float = 0.5
    max_names: int = 4
    cosine_weight: float = 0.0

    def choose(self, candidates: Sequence[int], probs: Sequence[float], cosines: Sequence[float] | None = None
               ) -> list[tuple[int, float]]:
        w = self.cosine_weight
        cos = cosines if cosines is not None else [0.0] * len(candidates)
        scores = [float(p) if w == 0 else (1 - w) * float(p) + w * float(c) for p, c in zip(probs, cos, strict=True)]
        ranked = sorted(zip(candidates, scores, strict=True), key=lambda cp: -cp[1])  # stable: ties keep candidate order
        if not ranked:
            return []
        kept = [(int(c), p) for c, p in ranked if p >= self.threshold][: self.max_names]
        return kept or [(int(ranked[0][0]), ranked[0][1])]


def fit_rerank_decision(cands: list[list[tuple[int, float]]], probs: list[np.ndarray], gold: Sequence[Sequence[str]],
                        names: Sequence[str]) -> tuple[RerankDecision, float]:
    """The threshold, cap and cosine weight with the best set F1 on these texts (a grid);
    ``cands``: each text's candidates with their best cosines (``candidate_cosines``)."""
    best = (RerankDecision(), -1.0)
    rows = [[i for i, _ in c] for c in cands]
    cosines = [[x for _, x in c] for c in cands]
    for weight in (0.0, 0.2, 0.4, 0.5, 0.6, 0.8):
        for threshold in [round(float(x), 2) for x in np.arange(0.05, 0.96, 0.05)]:
            for max_names in (1, 2, 3, 4, 6):
                d = RerankDecision(threshold, max_names, weight)
                chosen = [d.choose(r, p, c) for r, p, c in zip(rows, probs, cosines, strict=True)]
                f1 = set_prf(gold, [[names[i] for i, _ in ch] for ch in chosen])["f1"]
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
    epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-5
    warmup_ratio: float = 0.1
    dropout: float = 0.1
    bf16: bool = False
    seed: int = 1
    threads: int = 0
    max_minutes: float = 0.0


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

    def candidates(split: list[tuple[str, tuple[str, ...]]]) -> list[list[tuple[int, float]]]:
        return [candidate_cosines(p, cfg.k_whole, cfg.k_part) for p in nearest_by_text([t for t, _ in split], linker.top)]

    fit_cc, tune_cc, dev_cc = candidates(fit), candidates(tune), candidates(dev)
    fit_c, tune_c, dev_c = ([[i for i, _ in x] for x in cc] for cc in (fit_cc, tune_cc, dev_cc))

    def oracle(split, cands) -> float:  # the recall a perfect re-ranker could reach
        kept = [[names[i] for i in c if names[i] in g] or [names[c[0]]] for (_, g), c in zip(split, cands, strict=True)]
        return set_prf([g for _, g in split], kept)["recall"]

    log.info("pairs: %d fit, %d tune, %d dev; candidates per text %.1f; candidate recall: tune %.2f, dev %.2f",
             len(fit), len(tune), len(dev), np.mean([len(c) for c in dev_c]), oracle(tune, tune_c), oracle(dev, dev_c))

    examples = []  # (text, name index, label)
    for (t, gold), c in zip(fit, fit_c, strict=True):
        g = {name_index[n] for n in gold if n in name_index}
        for i in list(dict.fromkeys([*c, *sorted(g)])):
            examples.append((t, i, 1.0 if i in g else 0.0))
    log.info("%d training pairs, %.1f %% positive", len(examples), 100 * sum(e[2] for e in examples) / len(examples))

    encoder = load_encoder(Path(cfg.encoder))
    bert = build_bert(encoder["bert_config"], len(vocab))
    bert.load_state_dict(pruned_state_dict(encoder, vocab), strict=False)
    model = CrossEncoder(bert, cfg.dropout)

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
    decision, tune_f1 = fit_rerank_decision(tune_cc, tune_p, [g for _, g in tune], names)
    dev_p, dev_top1 = evaluate(dev, dev_c)
    dev_chosen = [decision.choose([i for i, _ in cc], p, [x for _, x in cc]) for cc, p in zip(dev_cc, dev_p, strict=True)]
    dev_metrics = set_prf([g for _, g in dev], [[names[i] for i, _ in ch] for ch in dev_chosen])
    log.info("decision %s (tune F1 %.2f); dev set F1 %.2f (P %.2f R %.2f); re-ranked top-1 only %.2f",
             decision, tune_f1, dev_metrics["f1"], dev_metrics["precision"], dev_metrics["recall"], dev_top1["f1"])

    torch.save(model.state_dict(), out / "model.pt")
    result = {
        "config": asdict(cfg),
        "bert_config": {**encoder["bert_config"], "vocab_size": len(vocab)},
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


def reranker_config(k_whole: int, k_part: int, decision: RerankDecision) -> dict:
    return {"inputs": list(RERANKER_INPUTS), "outputs": [RERANKER_OUTPUT], "k_whole": k_whole, "k_part": k_part,
            "max_length": MAX_QUERY_LEN, "decision": asdict(decision)}


def add_reranker(linker_dir: Path, out: Path, model: CrossEncoder, k_whole: int, k_part: int, decision: RerankDecision,
                 manifest_extra: dict) -> dict:
    """A copy of the linker bundle at ``out`` with the re-ranker in it: its graph, its part of config.json
    (the bi-encoder's ``top_k`` raised to ``k_whole`` when lower is refused), and a manifest over every file."""
    import shutil

    from .link import LINKER_FILES, write_linker_manifest

    config = json.loads((linker_dir / "config.json").read_text(encoding="utf-8"))
    if config["top_k"] < max(k_whole, k_part):
        raise ValueError(f"the linker bundle answers {config['top_k']} names a query, fewer than k_whole/k_part {k_whole}/{k_part}: "
                         "export it again with a larger --top-k")
    out.mkdir(parents=True, exist_ok=True)
    for f in LINKER_FILES:
        if f != "config.json":
            shutil.copyfile(linker_dir / f, out / f)
    written = write_reranker(model, len(Vocab.load(out / "vocab.txt")), out)
    config["reranker"] = reranker_config(k_whole, k_part, decision)
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
    version: str = ""
    name: str = "cner-icd10-linker-bge-small-zh-reranked"
    refit_decision: bool = field(default=True, metadata={"help": "fit the keep decision again on the run's tune split "
                                                                    "(with --pairs), the cosine weight included"})


def export_reranker(cfg: RerankExportConfig) -> Path:
    import datetime as dt

    run, out = Path(cfg.run), Path(cfg.out)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    linker_dir = Path(metrics["config"]["linker"])
    vocab = Vocab.load(linker_dir / "vocab.txt")
    model = CrossEncoder(build_bert({k: v for k, v in metrics["bert_config"].items() if k != "vocab_size"}, len(vocab)))
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    model.eval()
    c = metrics["config"]
    decision = RerankDecision(**metrics["decision"])
    if cfg.pairs and cfg.refit_decision:
        # The decision fitted again on the tune split, with the cosine weight in the grid (runs older than it had none).
        linker = OnnxLinker(linker_dir)
        _, tune, _, _ = fit_tune_dev(read_pairs(Path(cfg.pairs)), c["dev_size"], c["tune_size"], c["split_seed"])
        tune_cc = [candidate_cosines(p, c["k_whole"], c["k_part"]) for p in nearest_by_text([t for t, _ in tune], linker.top)]
        probs = rerank_texts(model, vocab, [t for t, _ in tune], [[i for i, _ in x] for x in tune_cc], linker.names)
        decision, tune_f1 = fit_rerank_decision(tune_cc, probs, [g for _, g in tune], linker.names)
        log.info("decision fitted again on the tune split: %s (tune F1 %.2f)", decision, tune_f1)
    add_reranker(linker_dir, out, model, c["k_whole"], c["k_part"], decision, {
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

def tiny_reranked_linker_bundle(linker_dir: Path, out: Path, seed: int = 0) -> Path:
    """The tiny linker bundle with a tiny random cross-encoder added (3 + 2 candidates), for tests only."""
    from .link import TINY_LINK_BERT

    torch.manual_seed(seed + 1)
    vocab = Vocab.load(linker_dir / "vocab.txt")
    model = CrossEncoder(build_bert(TINY_LINK_BERT, len(vocab))).eval()
    add_reranker(linker_dir, out, model, k_whole=3, k_part=2, decision=RerankDecision(threshold=0.71, max_names=2),
                 manifest_extra={"name": "cner-tiny-random-reranked-linker", "version": "tiny-reranked-linker-0",
                                 "metrics": {"note": "random weights, for tests only"}})
    return out


def golden_reranked_cases(bundle: Path) -> list[dict]:
    """For each golden text: its candidates (rows), the re-ranker's probability of each through
    ONNX Runtime, and the names kept."""
    from .link import GOLDEN_LINK_TEXTS

    linker = OnnxLinker(bundle)
    r = linker.config["reranker"]
    cases = []
    for text in GOLDEN_LINK_TEXTS:
        cands = candidate_list(nearest_by_text([text], linker.top)[0], r["k_whole"], r["k_part"])
        probs = linker.rerank([text] * len(cands), [linker.names[i] for i in cands])
        cases.append({
            "text": text,
            "candidates": cands,
            "probabilities": [float(p) for p in probs],
            "chosen": [{"name": linker.names[i], "codes": linker.codes[i], "score": s} for i, s in linker.link([text])[0]],
        })
    return cases
