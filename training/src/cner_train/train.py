"""Fine-tuning and evaluation of the tagger on CCKS-2019 (optionally + CCKS-2020).

Protocol: a fixed, seeded split of the 1,000 CCKS-2019 training records into
train and dev (850/150 by default); the model with the best dev strict micro-F1
over the epochs is kept. Metrics are computed on the original record offsets
after re-assembling the chunks.
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

import numpy as np
import torch
from tqdm import tqdm

from .corpus import Record, dev_split, file_sha256, read_ccks
from .crf import ConstrainedDecoder
from .data import Example, eval_batches, make_examples, pad_batch, pad_features, pad_soft, train_batches, with_soft
from .lexicon import NUM_FEATURES, Lexicon
from .metrics import format_table, strict_prf
from .models import HEAD_PREFIXES, ModelConfig, Tagger
from .pseudo import marginals_path, read_soft
from .text import Span, spans_from_tags
from .vocab import Vocab

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "radam", "adagrad", "rmsprop", "lookahead")


@dataclass
class TrainConfig:
    ccks2019: str = field(metadata={"help": "CCKS-2019 train.jsonl"})
    out: str = field(metadata={"help": "run folder (model.pt, metrics.json, dev predictions)"})
    ccks2020: str | None = field(default=None, metadata={"help": "CCKS-2020 train_new.jsonl, added to the training part"})
    extra: list[str] = field(default_factory=list, metadata={
        "help": "more CCKS-format files for the training part only (comma-separated), e.g. cner-train pseudo output"})
    soft: list[str] = field(default_factory=list, metadata={
        "help": "knowledge distillation: cner-train pseudo --soft files (comma-separated); their chunks train on "
                "the teacher's tag marginals (KL to the CRF's marginals) instead of gold tags"})
    soft_per_epoch: int = field(default=0, metadata={
        "help": "soft chunks drawn afresh each epoch (0 = all of them every epoch)"})
    soft_weight: float = field(default=1.0, metadata={"help": "weight of a soft chunk's KL against a gold chunk's NLL"})
    vocab: str | None = field(default=None, metadata={"help": "vocab.txt (defaults to the pretrained encoder's)"})
    pretrained: str | None = field(default=None, metadata={
        "help": "pretrained encoder.pt: ALBERT from cner-train pretrain (embedder=albert), "
                "bge-small-zh from cner-train bge (embedder=bert)"})
    init: str | None = field(default=None, metadata={
        "help": "start from body.pt of cner-train transfer --embedder char: everything below the classifier "
                "(same architecture and vocabulary, checked); the classifier and CRF start fresh"})
    vectors: str | None = field(default=None, metadata={
        "help": "character vectors (embedder=char, or --char-concat); random if absent"})
    char_concat: bool = field(default=False, metadata={
        "help": "embedder albert/bert: concatenate trained character embeddings (from --vectors) to the encoder's "
                "states before the IDCNN; they learn at --lr, the encoder at --lr-embedder"})
    lexicon: str | None = field(default=None, metadata={
        "help": "lexicon match features from this by_type folder (../shared/data/lexicon/by_type) or lexicon.tsv"})
    dev_size: int = field(default=150, metadata={"help": "dev records; 0 = train on everything for a fixed number of epochs"})
    split_seed: int = 42
    embedder: str = "albert"
    encoder: str = "idcnn"
    heads: int = 4
    dropout: float = 0.5
    optimizer: str = field(default="adam", metadata={"help": "|".join(OPTIMIZERS)})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the layers above the embedder"})
    lr_embedder: float = field(default=1e-4, metadata={"help": "learning rate of ALBERT / BERT / the character vectors"})
    layer_decay: float = field(default=1.0, metadata={
        "help": "embedder bert: layer-wise learning-rate decay, the top layer at --lr-embedder and each one below "
                "it this factor slower (1 = one rate for the whole encoder)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW's decoupled weight decay (not on biases and norms)"})
    batch_size: int = 20
    epochs: int = 30
    patience: int = 6
    warmup_ratio: float = 0.05
    bf16: bool = field(default=False, metadata={
        "help": "bfloat16 autocast for the training forward pass (CPUs with avx512_bf16/AMX: ~1.7x faster steps); "
                "the CRF loss, weights, optimizer state, evaluation and export stay float32"})
    seed: int = 1
    threads: int = 0
    max_minutes: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
        if self.embedder in ("albert", "bert") and not self.pretrained:
            raise ValueError(f"--pretrained encoder.pt is required for embedder={self.embedder}")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_linear(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    return min(1.0, (step + 1) / max(1, warmup)) * max(0.0, 1 - max(0, step - warmup) / max(1, total - warmup))


def embedder_groups(model: Tagger, params: list[torch.nn.Parameter], cfg: TrainConfig) -> list[dict]:
    """The embedder's parameter groups: one at ``lr_embedder``, or with ``layer_decay`` < 1 (BERT only) one per
    depth, layer l of L at lr_embedder * layer_decay ** (L - l) and the embeddings at depth 0."""
    if cfg.layer_decay >= 1.0 or cfg.embedder != "bert":
        return [{"params": params, "lr": cfg.lr_embedder}]
    ids = {id(p) for p in params}
    layers = model.bert.config.num_hidden_layers
    by_depth: dict[int, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if id(p) not in ids:
            continue
        parts = name.split(".")
        depth = 0 if parts[1] == "embeddings" else int(parts[3]) + 1 if parts[1] == "encoder" else layers
        by_depth.setdefault(depth, []).append(p)
    return [{"params": ps, "lr": cfg.lr_embedder * cfg.layer_decay ** (layers - d)} for d, ps in sorted(by_depth.items())]


def decay_groups(params: list[torch.nn.Parameter], weight_decay: float, **extra) -> list[dict]:
    """AdamW's parameter groups in BERT's recipe: decay on the matrices, none on biases and norm
    weights (1-d parameters); ``extra`` (a learning rate, a tag) goes into both groups."""
    return [{"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay, **extra},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0, **extra}]


def build_optimizer(model: Tagger, cfg: TrainConfig) -> torch.optim.Optimizer:
    emb_params, top_params = [], []
    # The pretrained encoder learns slowly; a hybrid's character vectors learn with the head.
    embedder = ("char.",) if cfg.embedder == "char" else ("albert.", "bert.")
    for name, p in model.named_parameters():
        (emb_params if name.startswith(embedder) else top_params).append(p)
    groups = [{"params": top_params, "lr": cfg.lr}, *embedder_groups(model, emb_params, cfg)]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW([d for g in groups for d in decay_groups(g["params"], cfg.weight_decay, lr=g["lr"])])
    if cfg.optimizer == "radam":
        return torch.optim.RAdam(groups)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(groups)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups)
    import torch_optimizer  # Lookahead (Zhang et al., 2019) from the torch-optimizer package

    return torch_optimizer.Lookahead(torch.optim.Adam(groups), k=5, alpha=0.5)


def load_vectors(path: Path, vocab: Vocab, dim: int) -> torch.Tensor:
    """word2vec text format (first line ``count dim``); rows for characters not in the file stay random."""
    weight = torch.randn(len(vocab), dim) * 0.1
    weight[0] = 0
    with open(path, encoding="utf-8") as f:
        head = f.readline().split()
        if int(head[1]) != dim:
            raise ValueError(f"{path} has {head[1]}-d vectors, the model wants {dim}")
        for line in f:
            parts = line.rstrip("\n").split(" ")
            tok = parts[0]
            i = vocab.index.get(tok)
            if i is not None:
                weight[i] = torch.tensor([float(x) for x in parts[1:]])
    return weight


@torch.no_grad()
def predict(model: Tagger, decoder: ConstrainedDecoder, records: Sequence[Record], examples: Sequence[Example],
            batch_size: int = 64, with_confidence: bool = False) -> list[list[tuple[Span, float]]]:
    """Entity spans (record offsets) per record."""
    model.eval()
    out: list[list[tuple[Span, float]]] = [[] for _ in records]
    for _, batch in eval_batches(examples, batch_size):
        ids, mask, _ = pad_batch(batch)
        em = model(ids, mask, pad_features(batch)).numpy()  # [batch, seq, tags]
        for row, x in enumerate(batch):
            e = em[row, : len(x.ids)]
            path = decoder.viterbi(e)
            spans = spans_from_tags(path)
            fb = decoder.forward_backward(e) if with_confidence and spans else None
            for sp in spans:
                conf = decoder.span_confidence(e, sp.start, sp.end, sp.code, fb) if fb else 1.0
                out[x.record].append((Span(sp.start + x.offset, sp.end + x.offset, sp.code), conf))
    return out


def decoder_of(model: Tagger) -> ConstrainedDecoder:
    crf = model.crf
    return ConstrainedDecoder(
        crf.start_transitions.detach().numpy(), crf.end_transitions.detach().numpy(), crf.transitions.detach().numpy()
    )


def evaluate(model: Tagger, records: Sequence[Record], examples: Sequence[Example]) -> dict:
    pred = predict(model, decoder_of(model), records, examples)
    return strict_prf([r.spans for r in records], [[s for s, _ in p] for p in pred])


def batch_loss(model: Tagger, emissions: torch.Tensor, batch: Sequence[Example], tags: torch.Tensor,
               mask: torch.Tensor, soft_weight: float) -> torch.Tensor:
    """Mean over the batch's rows of the gold rows' CRF NLL and the soft rows' KL(teacher || CRF marginals),
    each summed over the row's characters. emissions: [batch, seq, tags] float32."""
    is_soft = torch.tensor([x.soft is not None for x in batch])  # [batch]
    if not bool(is_soft.any()):
        return model.crf.nll(emissions, tags, mask)  # the usual case: no copies of the batch
    gold = ~is_soft
    loss = model.crf.nll_rows(emissions[gold], tags[gold], mask[gold]).sum()
    q = pad_soft([x for x in batch if x.soft is not None], emissions.shape[1], emissions.shape[2])  # [soft rows, seq, tags]
    log_p = model.crf.log_marginals(emissions[is_soft], mask[is_soft])  # [soft rows, seq, tags]
    kl = q * (torch.log(q.clamp_min(1e-8)) - log_p)  # zero where q is 0 (pads included)
    loss = loss + soft_weight * (kl.sum(dim=2) * mask[is_soft].to(kl.dtype)).sum()
    return loss / len(batch)


def load_data(cfg: TrainConfig) -> tuple[list[Record], list[Record], list[Path]]:
    paths = [Path(cfg.ccks2019)]
    records = read_ccks(paths[0])
    if cfg.dev_size:
        tr_idx, dev_idx = dev_split(len(records), cfg.dev_size, cfg.split_seed)
        train_recs, dev_recs = [records[i] for i in tr_idx], [records[i] for i in dev_idx]
    else:
        train_recs, dev_recs = records, []
    if cfg.ccks2020:
        paths.append(Path(cfg.ccks2020))
        train_recs += read_ccks(paths[-1], prefix="ccks2020-")
    for i, extra in enumerate(cfg.extra):
        paths.append(Path(extra))
        train_recs += read_ccks(paths[-1], prefix=f"extra{i}-")
    return train_recs, dev_recs, paths


# ModelConfig fields that do not change the weights' shapes
SHAPELESS = ("dropout", "attn_dropout", "num_tags")


def load_body(model: Tagger, path: Path, vocab: Vocab) -> dict:
    """Load ``cner-train transfer``'s body.pt (every weight below the classifier) into ``model``,
    which must have the body's architecture and vocabulary; returns the body's source record."""
    body = torch.load(path, map_location="cpu", weights_only=False)
    want = {k: v for k, v in model.cfg.to_dict().items() if k not in SHAPELESS}
    have = {k: v for k, v in body["model"].items() if k not in SHAPELESS}
    diff = sorted(k for k in want.keys() | have.keys()
                  if json.dumps(want.get(k), sort_keys=True, default=list) != json.dumps(have.get(k), sort_keys=True, default=list))
    if diff:
        raise ValueError(f"{path} is another architecture than this run's (it differs in {', '.join(diff)})")
    if list(body["vocab"]) != list(vocab.tokens):
        raise ValueError(f"{path} was trained on another vocabulary than --vocab")
    missing, unexpected = model.load_state_dict(body["state_dict"], strict=False)
    if unexpected or [m for m in missing if not m.startswith(HEAD_PREFIXES)]:
        raise ValueError(f"{path} does not fit the model: missing {missing}, unexpected {unexpected}")
    return body["source"]


def train(cfg: TrainConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)

    albert_cfg = bert_cfg = None
    pretrained = None
    if cfg.embedder in ("albert", "bert"):
        pretrained = torch.load(cfg.pretrained, map_location="cpu", weights_only=False)
    if cfg.embedder == "albert":
        albert_cfg = pretrained["model_config"]
    elif cfg.embedder == "bert":
        bert_cfg = {k: v for k, v in pretrained["bert_config"].items() if k != "vocab_size"}
    vocab_path = Path(cfg.vocab) if cfg.vocab else (Path(cfg.pretrained).parent / "vocab.txt" if cfg.pretrained else None)
    if vocab_path is None:
        raise ValueError("--vocab is required without a pretrained encoder")
    vocab = Vocab.load(vocab_path)

    train_recs, dev_recs, data_paths = load_data(cfg)
    lexicon = Lexicon.load(Path(cfg.lexicon)) if cfg.lexicon else None
    if lexicon is not None:
        lexicon.save(out / "lexicon.tsv")
        log.info("lexicon: %d terms", len(lexicon))
    train_ex = make_examples(train_recs, vocab, lexicon=lexicon)
    dev_ex = make_examples(dev_recs, vocab, lexicon=lexicon)
    log.info("train: %d records, %d chunks; dev: %d records, %d chunks", len(train_recs), len(train_ex), len(dev_recs), len(dev_ex))
    soft_ex: list[Example] = []
    for path in cfg.soft:
        data_paths += [Path(path), marginals_path(Path(path))]
        recs, marginals = read_soft(Path(path))
        soft_ex += with_soft(make_examples(recs, vocab, lexicon=lexicon), marginals)
    if soft_ex:
        log.info("soft: %d chunks (%s an epoch)", len(soft_ex), cfg.soft_per_epoch or "all")
    per_epoch_soft = min(cfg.soft_per_epoch or len(soft_ex), len(soft_ex))

    mcfg = ModelConfig(embedder=cfg.embedder, encoder=cfg.encoder, heads=cfg.heads, dropout=cfg.dropout, albert=albert_cfg,
                       bert=bert_cfg, lexicon_features=NUM_FEATURES if lexicon is not None else 0,
                       char_concat=cfg.char_concat)
    model = Tagger(mcfg, len(vocab))
    if cfg.embedder == "albert":
        model.albert.load_state_dict(pretrained["encoder"])
    elif cfg.embedder == "bert":
        from .bge import pruned_state_dict

        model.bert.load_state_dict(pruned_state_dict(pretrained, vocab))
    if (cfg.embedder == "char" or cfg.char_concat) and cfg.vectors:
        model.char.weight.data.copy_(load_vectors(Path(cfg.vectors), vocab, mcfg.char_dim))
    init_source = load_body(model, Path(cfg.init), vocab) if cfg.init else None
    opt = build_optimizer(model, cfg)
    steps_per_epoch = math.ceil((len(train_ex) + per_epoch_soft) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_ratio)
    base_lrs = [g["lr"] for g in opt.param_groups]

    history = []
    best = {"f1": -1.0, "epoch": -1}
    started = time.time()
    step = 0
    rng = random.Random(cfg.seed)
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.time()
        tot = 0.0
        epoch_ex = train_ex + (rng.sample(soft_ex, per_epoch_soft) if per_epoch_soft < len(soft_ex) else soft_ex)
        bar = tqdm(list(train_batches(epoch_ex, cfg.batch_size, rng)), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, mininterval=10)
        for batch in bar:
            scale = warmup_linear(step, warmup, total)
            for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = lr * scale
            ids, mask, tags = pad_batch(batch)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                emissions = model(ids, mask, pad_features(batch))  # [batch, seq, tags]
            loss = batch_loss(model, emissions.float(), batch, tags, mask, cfg.soft_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot += loss.item()
            step += 1
        rec = {"epoch": epoch + 1, "loss": tot / steps_per_epoch, "train_seconds": time.time() - t0}
        if dev_recs:
            m = evaluate(model, dev_recs, dev_ex)
            rec["dev"] = m
            rec["dev_f1"] = m["micro"]["f1"]
            if m["micro"]["f1"] > best["f1"]:
                best = {"f1": m["micro"]["f1"], "epoch": epoch + 1, "metrics": m}
                torch.save(model.state_dict(), out / "model.pt")
        else:
            torch.save(model.state_dict(), out / "model.pt")
            best = {"f1": None, "epoch": epoch + 1}
        history.append(rec)
        dev_f1 = f"{rec.get('dev_f1', float('nan')):.2f}"
        log.info("epoch %d loss %.4f dev F1 %s (%.0fs)", epoch + 1, rec["loss"], dev_f1, rec["train_seconds"])
        if dev_recs and epoch + 1 - best["epoch"] >= cfg.patience:
            log.info("no dev improvement for %d epochs: stopping", cfg.patience)
            break
        if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
            log.info("time budget reached")
            break

    result = {
        "config": asdict(cfg),
        "model": mcfg.to_dict(),
        "vocab_size": len(vocab),
        **({"encoder": pretrained["source"]} if cfg.embedder == "bert" else {}),
        **({"init": init_source} if init_source else {}),
        "training_data_sha256": file_sha256(data_paths),
        "best_epoch": best["epoch"],
        "dev": best.get("metrics"),
        "history": history,
        "wall_seconds": time.time() - started,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    vocab.save(out / "vocab.txt")
    if best.get("metrics"):
        log.info("best dev (epoch %d):\n%s", best["epoch"], format_table(best["metrics"]))
    return result
