"""Masked-language-model pretraining of the compact ALBERT on the medical corpus.

Resumable: a checkpoint (model, optimizer, schedule, data position, RNG) is
written atomically every ``checkpoint_minutes``, so a run killed at the end of a
session continues where it stopped when started again with the same ``out``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .albert import AlbertConfig, AlbertForMLM
from .corpus import WindowFilter, corpus_lines, dev_split, read_ccks
from .text import chunk_text
from .train import set_seed
from .vocab import MASK_ID, PAD_ID, SPECIAL_TOKENS, Vocab

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    corpus: str = field(metadata={"help": "folder of the unlabeled corpus (*.txt, one document per line)"})
    ccks2019: str = field(metadata={"help": "CCKS-2019 train.jsonl (for the vocabulary and the dev-record exclusion)"})
    out: str = field(default="runs/pretrain", metadata={"help": "run folder: vocab, checkpoints, logs"})
    ccks2020: str | None = field(default=None, metadata={"help": "CCKS-2020 train_new.jsonl (vocabulary only)"})
    dev_size: int = field(default=150, metadata={"help": "dev records excluded from the corpus (same split as fine-tuning)"})
    split_seed: int = field(default=42, metadata={"help": "seed of the dev split"})
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_length: int = 128
    tokens_per_batch: int = field(default=4096, metadata={"help": "batch size in real (non-pad) tokens"})
    mask_rate: float = 0.15
    max_span: int = field(default=3, metadata={"help": "masked spans have 1..max_span characters (geometric)"})
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    total_steps: int = field(default=20000, metadata={"help": "length of the linear-decay schedule"})
    max_minutes: float = field(default=0.0, metadata={"help": "stop (after a checkpoint) after this many minutes; 0 = no limit"})
    checkpoint_minutes: float = 5.0
    log_every: int = 50
    holdout_segments: int = 1000
    seed: int = 1234
    threads: int = 0
    init_from: str | None = field(default=None, metadata={
        "help": "start from this encoder.pt (weights only, fresh optimizer and schedule) when --out has no checkpoint"})

    def __post_init__(self) -> None:
        if not 0 < self.mask_rate < 1:
            raise ValueError("mask_rate must be in (0, 1)")
        if self.tokens_per_batch < self.max_length:
            raise ValueError("tokens_per_batch must be at least max_length")


class SegmentStore:
    """All segments encoded into one flat array, with offsets."""

    def __init__(self, segments: list[list[int]]):
        self.lengths = np.array([len(s) for s in segments], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.ids = np.fromiter((i for s in segments for i in s), dtype=np.int32, count=int(self.lengths.sum()))

    def __len__(self) -> int:
        return len(self.lengths)

    def get(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


def make_batches(lengths: np.ndarray, tokens_per_batch: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches of about ``tokens_per_batch`` padded tokens, in shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: (int(lengths[i]), rng.random()))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) + 1) * int(lengths[i]) > tokens_per_batch:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def mask_spans(ids: np.ndarray, lengths: np.ndarray, cfg: PretrainConfig, vocab_size: int, rng: np.random.Generator):
    """Span masking: about ``mask_rate`` of the real tokens, in spans of 1..max_span
    characters; of the chosen positions 80% become [MASK], 10% a random character,
    10% stay. Returns (inputs, labels) with -100 where nothing is predicted."""
    inputs = ids.copy()
    labels = np.full_like(ids, -100)
    batch, seq = ids.shape
    for b in range(batch):
        n = int(lengths[b])
        target = max(1, int(round(n * cfg.mask_rate)))
        chosen = np.zeros(n, dtype=bool)
        tries = 0
        while chosen.sum() < target and tries < 4 * target:
            tries += 1
            span = min(cfg.max_span, int(rng.geometric(0.5)))
            start = int(rng.integers(0, n))
            chosen[start : min(n, start + span)] = True
        pos = np.nonzero(chosen)[0]
        labels[b, pos] = ids[b, pos]
        r = rng.random(len(pos))
        inputs[b, pos[r < 0.8]] = MASK_ID
        rand_pos = pos[(r >= 0.8) & (r < 0.9)]
        inputs[b, rand_pos] = rng.integers(len(SPECIAL_TOKENS), vocab_size, size=len(rand_pos))
    return inputs, labels


def collate(store: SegmentStore, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    lengths = store.lengths[idx]
    seq = int(lengths.max())
    ids = np.full((len(idx), seq), PAD_ID, dtype=np.int64)
    for row, i in enumerate(idx):
        seg = store.get(i)
        ids[row, : len(seg)] = seg
    return ids, lengths


def encode_segments(lines: Iterable[str], vocab: Vocab, max_length: int) -> list[list[int]]:
    """Each line cut into chunks of at most ``max_length`` code points (as the tagger cuts), encoded; chunks of one character dropped."""
    return [vocab.encode(line[s:e]) for line in lines for s, e in chunk_text(line, max_length) if e - s >= 2]


def build_segments(cfg: PretrainConfig, vocab: Vocab, exclude: WindowFilter) -> list[list[int]]:
    return encode_segments(corpus_lines(Path(cfg.corpus), exclude), vocab, cfg.max_length)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
    return cfg.lr * max(0.02, 1.0 - frac)


def pretrain(cfg: PretrainConfig) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)

    records = read_ccks(Path(cfg.ccks2019))
    _, dev_idx = dev_split(len(records), cfg.dev_size, cfg.split_seed)
    dev_texts = [records[i].text for i in dev_idx]
    exclude = WindowFilter(dev_texts)

    vocab_path = out / "vocab.txt"
    if not vocab_path.exists() and cfg.init_from and (Path(cfg.init_from).parent / "vocab.txt").exists():
        vocab_path.write_bytes((Path(cfg.init_from).parent / "vocab.txt").read_bytes())
    if vocab_path.exists():
        vocab = Vocab.load(vocab_path)
    else:
        labeled = [r.text for r in records]
        if cfg.ccks2020:
            labeled += [r.text for r in read_ccks(Path(cfg.ccks2020))]
        vocab = Vocab.build(corpus_lines(Path(cfg.corpus)), labeled)
        vocab.save(vocab_path)
    log.info("vocabulary: %d tokens", len(vocab))

    t0 = time.time()
    segments = build_segments(cfg, vocab, exclude)
    rng_split = random.Random(cfg.seed)
    rng_split.shuffle(segments)
    holdout = SegmentStore(segments[: cfg.holdout_segments])
    store = SegmentStore(segments[cfg.holdout_segments :])
    log.info("corpus: %d segments, %d tokens (%.0fs to encode)", len(store), int(store.lengths.sum()), time.time() - t0)

    mcfg = AlbertConfig(
        vocab_size=len(vocab),
        embedding_size=cfg.embedding_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position=cfg.max_length,
    )
    model = AlbertForMLM(mcfg)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "tokens": 0, "seconds": 0.0}
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["model_config"] != mcfg.to_dict():
            raise ValueError(f"{ckpt_path} was made with another model config; use another --out")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", state["step"], state["epoch"], state["batch_in_epoch"])
    elif cfg.init_from:
        init = torch.load(cfg.init_from, map_location="cpu", weights_only=False)
        if init["model_config"] != mcfg.to_dict():
            raise ValueError(f"{cfg.init_from} was made with another model config")
        model.encoder.load_state_dict(init["encoder"])
        model.load_state_dict(init["mlm_head"], strict=False)
        log.info("initialised from %s (pretrained for %s tokens)", cfg.init_from, init.get("state", {}).get("tokens"))
    (out / "config.json").write_text(json.dumps({"pretrain": asdict(cfg), "model": mcfg.to_dict()}, indent=2))

    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %d parameters", n_params)
    started = time.time()
    last_ckpt = time.time()
    metrics_log = open(out / "metrics.jsonl", "a", encoding="utf-8")

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "state": state,
                "torch_rng": torch.get_rng_state(),
                "model_config": mcfg.to_dict(),
                "vocab_size": len(vocab),
            },
            tmp,
        )
        os.replace(tmp, ckpt_path)
        save_encoder(model, out / "encoder.pt", state)

    stop = False
    run_loss, run_n = 0.0, 0
    while state["step"] < cfg.total_steps and not stop:
        batches = make_batches(store.lengths, cfg.tokens_per_batch, random.Random(cfg.seed + state["epoch"]))
        for bi in range(state["batch_in_epoch"], len(batches)):
            if state["step"] >= cfg.total_steps:
                break
            t_step = time.time()
            ids, lengths = collate(store, batches[bi])
            inp, lab = mask_spans(ids, lengths, cfg, len(vocab), np.random.default_rng([cfg.seed, state["epoch"], bi]))
            attn = (ids != PAD_ID).astype(np.int64)
            model.train()
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"], cfg)
            loss = model(torch.from_numpy(inp), torch.from_numpy(attn), torch.from_numpy(lab))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            state["step"] += 1
            state["batch_in_epoch"] = bi + 1
            state["tokens"] += int(lengths.sum())
            state["seconds"] += time.time() - t_step
            run_loss += loss.item()
            run_n += 1
            if state["step"] % cfg.log_every == 0:
                rec = {
                    "step": state["step"],
                    "epoch": state["epoch"],
                    "loss": run_loss / run_n,
                    "lr": lr_at(state["step"], cfg),
                    "tokens": state["tokens"],
                    "tokens_per_s": state["tokens"] / max(1e-9, state["seconds"]),
                }
                if state["step"] % (cfg.log_every * 10) == 0:
                    rec["holdout_loss"], rec["holdout_acc"] = evaluate(model, holdout, cfg, len(vocab))
                log.info(json.dumps(rec))
                metrics_log.write(json.dumps(rec) + "\n")
                metrics_log.flush()
                run_loss, run_n = 0.0, 0
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                save()
                last_ckpt = time.time()
            if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
                stop = True
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    save()
    log.info("stopped at step %d, %d tokens seen", state["step"], state["tokens"])
    return out


def save_encoder(model: AlbertForMLM, path: Path, state: dict) -> None:
    """The compact artifact that is committed under models/pretrained/: float16
    weights of the encoder and of the MLM head (so pretraining can continue
    from it with --init-from), the model config and where pretraining stood."""
    half = lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}  # noqa: E731
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    tmp = path.with_suffix(".tmp")
    torch.save({"encoder": half(model.encoder.state_dict()), "mlm_head": half(head),
                "model_config": model.encoder.cfg.to_dict(), "state": dict(state)}, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def masked_holdout(model: torch.nn.Module, score, store: SegmentStore, cfg, vocab_size: int) -> tuple[float, float]:
    """Masked-token loss and accuracy on held-out segments with a fixed mask, ``model`` in eval
    mode meanwhile. ``score(ids, lengths, inputs, labels)`` → (summed loss, correct, predicted
    positions) for one batch; ``cfg`` has tokens_per_batch, mask_rate and max_span."""
    rng = np.random.default_rng(7)
    tot_loss, correct, n = 0.0, 0, 0
    model.eval()
    try:
        for idx in make_batches(store.lengths, cfg.tokens_per_batch, random.Random(7)):
            ids, lengths = collate(store, idx)
            inp, lab = mask_spans(ids, lengths, cfg, vocab_size, rng)
            loss, c, k = score(ids, lengths, inp, lab)
            tot_loss += float(loss)
            correct += c
            n += k
    finally:
        model.train()
    return tot_loss / max(1, n), correct / max(1, n)


def evaluate(model: AlbertForMLM, store: SegmentStore, cfg: PretrainConfig, vocab_size: int) -> tuple[float, float]:
    def score(ids, lengths, inp, lab):
        attn = torch.from_numpy((ids != PAD_ID).astype(np.int64))
        hidden = model.encoder(torch.from_numpy(inp), attn)
        labels = torch.from_numpy(lab)
        picked = labels != -100
        h = model.head_ln(torch.nn.functional.gelu(model.head_dense(hidden[picked])))
        logits = h @ model.encoder.word.weight.t() + model.head_bias
        target = labels[picked]
        loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
        return loss, int((logits.argmax(-1) == target).sum()), int(picked.sum())

    return masked_holdout(model, score, store, cfg, vocab_size)
