"""Domain adaptation of bge-small-zh: continued masked-LM pretraining on the medical corpus.

The jar holds no MLM head (bge was trained as a sentence embedder), so a fresh
``transformers`` BERT MLM head is put on the encoder; for the first
``head_steps`` steps only the head learns (the encoder's learning rate is 0), so
its random gradients do not reach the pretrained weights. The decoder is tied to
the word embeddings, as in BERT.

Input is what the tagger sees: cner's one-token-per-code-point vocabulary (the
encoder's rows for it, ``bge.pruned_state_dict``), chunks of at most
``max_length`` code points, ``[CLS]``/``[SEP]`` framed as in the tagger
(``models.frame``). Masking is ``pretrain.mask_spans`` (spans of 1..3
characters, 80/10/10). Every corpus line sharing a 20-character window with a
dev record is dropped (``corpus.WindowFilter``), as for the ALBERT pretraining.

The result, ``encoder.pt``, has the format ``cner-train bge`` writes, so
``cner-train train --embedder bert --pretrained OUT/encoder.pt`` uses it as is:
its ``vocab`` names each row (the tagger vocabulary, specials under the
encoder's names) and its ``source`` adds a ``domain_mlm`` record of what was
done. Resumable like ``pretrain``: a checkpoint every ``checkpoint_minutes``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .bge import SPECIAL_ROWS, load_encoder, pruned_state_dict
from .corpus import WindowFilter, dev_split, read_ccks
from .models import frame
from .pretrain import SegmentStore, collate, encode_segments, make_batches, mask_spans, masked_holdout
from .train import decay_groups, set_seed, warmup_linear
from .vocab import PAD_ID, Vocab

log = logging.getLogger(__name__)

# The in-domain clinical EMR files of the medical corpus (its README: the first six, Yidu/CCKS EMRs).
EMR_FILES = "ccks2017_emr_text.txt,ccks2018_emr_text.txt,ccks2019_subtask2_unlabeled.txt,ccks2019_train_text.txt," \
            "ccks2020_train_text.txt,ccks2020_unlabeled.txt"


@dataclass
class BgeMlmConfig:
    encoder: str = field(metadata={"help": "encoder.pt from cner-train bge (its folder's vocab.txt is the tagger vocabulary)"})
    corpus: str = field(metadata={"help": "medical-corpus folder (*.txt, one document per line)"})
    ccks2019: str = field(metadata={"help": "CCKS-2019 train.jsonl: its dev records are kept out of the corpus"})
    out: str = field(default="runs/bge-mlm", metadata={"help": "run folder: encoder.pt, vocab.txt, checkpoint, metrics"})
    files: str = field(default=EMR_FILES, metadata={
        "help": "comma-separated corpus files to read ('*' = every *.txt); default: the six clinical EMR files"})
    vocab: str | None = field(default=None, metadata={"help": "tagger vocab.txt (default: the encoder's folder's)"})
    dev_size: int = field(default=150, metadata={"help": "dev records kept out of the corpus (the fine-tuning split)"})
    split_seed: int = 42
    max_length: int = 128
    tokens_per_batch: int = field(default=4096, metadata={"help": "batch size in real (non-pad) tokens"})
    mask_rate: float = 0.15
    max_span: int = 3
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate of the encoder"})
    head_lr: float = field(default=5e-4, metadata={"help": "peak learning rate of the fresh MLM head"})
    weight_decay: float = 0.01
    head_steps: int = field(default=100, metadata={"help": "first steps in which only the fresh MLM head learns"})
    warmup_steps: int = 200
    total_steps: int = field(default=3000, metadata={"help": "length of the linear-decay schedule (after head_steps)"})
    max_minutes: float = field(default=0.0, metadata={"help": "stop (after a checkpoint) after this many minutes; 0 = no limit"})
    checkpoint_minutes: float = 5.0
    log_every: int = 20
    eval_every: int = 200
    holdout_segments: int = 500
    bf16: bool = field(default=True, metadata={"help": "bfloat16 autocast for the forward pass (loss and weights float32)"})
    seed: int = 1234
    threads: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.mask_rate < 1:
            raise ValueError("mask_rate must be in (0, 1)")
        if self.tokens_per_batch < self.max_length:
            raise ValueError("tokens_per_batch must be at least max_length")


def row_names(vocab: Vocab) -> list[str]:
    """The name of each embedding row of the adapted encoder: the tagger token, with
    cner's special tokens under the encoder's names, so ``bge.embedding_rows`` maps
    the same vocabulary back onto the same rows."""
    return [SPECIAL_ROWS.get(t, t) for t in vocab.tokens]


def build_segments(cfg: BgeMlmConfig, vocab: Vocab, exclude: WindowFilter) -> tuple[list[list[int]], dict[str, int]]:
    corpus = Path(cfg.corpus)
    paths = sorted(corpus.glob("*.txt")) if cfg.files.strip() == "*" else [corpus / f.strip() for f in cfg.files.split(",") if f.strip()]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"corpus files not found: {missing}; list files of {corpus} in --files, or '*' for all")
    counts = {"lines": 0, "lines_dropped": 0}

    def kept_lines():
        for path in paths:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if not line:
                        continue
                    dropped = exclude.hits(line)
                    counts["lines_dropped" if dropped else "lines"] += 1
                    if not dropped:
                        yield line

    return encode_segments(kept_lines(), vocab, cfg.max_length), counts


class MlmModel(torch.nn.Module):
    """``transformers`` BertForMaskedLM, scoring only the masked positions (the head over all
    positions would cost a [batch, seq, vocab] product for nothing)."""

    def __init__(self, bert_config: dict, vocab_size: int):
        super().__init__()
        from transformers import BertConfig, BertForMaskedLM

        bcfg = BertConfig(**{**bert_config, "vocab_size": vocab_size})
        self.mlm = BertForMaskedLM(bcfg)
        if self.mlm.cls.predictions.decoder.weight is not self.mlm.bert.embeddings.word_embeddings.weight:
            raise AssertionError("the MLM decoder should be tied to the word embeddings")

    def forward(self, ids: np.ndarray, lengths: np.ndarray, inputs: np.ndarray, labels: np.ndarray):
        """inputs, labels: [batch, seq] (labels -100 where nothing is predicted) → (summed loss, correct, count)."""
        attn = torch.from_numpy((ids != PAD_ID).astype(np.int64))  # [batch, seq]
        framed, mask = frame(torch.from_numpy(inputs), attn)  # [batch, seq + 2]
        hidden = self.mlm.bert(input_ids=framed, attention_mask=mask).last_hidden_state[:, 1:-1]  # [batch, seq, hidden]
        lab = torch.from_numpy(labels)
        picked = lab != -100  # [batch, seq]
        logits = self.mlm.cls(hidden[picked]).float()  # [masked, vocab]
        target = lab[picked]
        loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
        return loss, int((logits.argmax(-1) == target).sum()), int(picked.sum())


def save_encoder(bert: torch.nn.Module, enc: dict, vocab: Vocab, path: Path, source: dict) -> None:
    """``cner-train bge``'s format: BertModel weights (rows = the tagger vocabulary), config, row names, source."""
    sd = {k: v.detach().clone() for k, v in bert.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"bert_config": {**enc["bert_config"], "vocab_size": len(vocab)}, "state_dict": sd,
                "vocab": row_names(vocab), "source": source}, tmp)
    os.replace(tmp, path)


def start_encoder_run(out_dir: str, encoder: str | None, vocab: str | None, threads: int,
                      seed: int) -> tuple[Path, dict | None, Vocab]:
    """The start of a run that trains an encoder.pt (or, with ``encoder`` None, a character model)
    further: its folder (with the tagger vocabulary copied in, so ``train --pretrained
    OUT/encoder.pt`` finds it), threads, seed, the encoder and the vocabulary (``vocab``, or the
    encoder's folder's vocab.txt)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    set_seed(seed)
    vocab_path = Path(vocab) if vocab else Path(encoder).parent / "vocab.txt"
    (out / "vocab.txt").write_bytes(vocab_path.read_bytes())
    return out, load_encoder(Path(encoder)) if encoder else None, Vocab.load(vocab_path)


def evaluate(model: MlmModel, store: SegmentStore, cfg: BgeMlmConfig, vocab_size: int) -> tuple[float, float]:
    """Masked-token loss and accuracy on held-out segments with a fixed mask (float32)."""
    return masked_holdout(model, model, store, cfg, vocab_size)


def adapt(cfg: BgeMlmConfig) -> Path:
    out, enc, vocab = start_encoder_run(cfg.out, cfg.encoder, cfg.vocab, cfg.threads, cfg.seed)

    records = read_ccks(Path(cfg.ccks2019))
    _, dev_idx = dev_split(len(records), cfg.dev_size, cfg.split_seed)
    t0 = time.time()
    segments, counts = build_segments(cfg, vocab, WindowFilter([records[i].text for i in dev_idx]))
    random.Random(cfg.seed).shuffle(segments)
    holdout = SegmentStore(segments[: cfg.holdout_segments])
    store = SegmentStore(segments[cfg.holdout_segments :])
    log.info("corpus: %d lines (%d dropped for sharing a window with a dev record), %d segments, %d tokens (%.0fs)",
             counts["lines"], counts["lines_dropped"], len(store), int(store.lengths.sum()), time.time() - t0)

    model = MlmModel(enc["bert_config"], len(vocab))
    missing, unexpected = model.mlm.bert.load_state_dict(pruned_state_dict(enc, vocab), strict=False)
    if unexpected or [m for m in missing if not m.endswith("position_ids")]:
        raise ValueError(f"{cfg.encoder} does not fit BertModel: missing {missing}, unexpected {unexpected}")
    encoder_params = list(model.mlm.bert.parameters())
    encoder_ids = {id(p) for p in encoder_params}
    head_params = [p for p in model.parameters() if id(p) not in encoder_ids]

    opt = torch.optim.AdamW(decay_groups(encoder_params, cfg.weight_decay, kind="encoder")
                            + decay_groups(head_params, cfg.weight_decay, kind="head"), lr=cfg.lr)

    def lr_of(kind: str, step: int) -> float:
        if kind == "encoder":
            if step < cfg.head_steps:
                return 0.0
            return cfg.lr * warmup_linear(step - cfg.head_steps, cfg.warmup_steps, cfg.total_steps)
        return cfg.head_lr * warmup_linear(step, min(cfg.warmup_steps, cfg.head_steps), cfg.total_steps + cfg.head_steps)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "tokens": 0, "seconds": 0.0}
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", state["step"], state["epoch"], state["batch_in_epoch"])
    (out / "config.json").write_text(json.dumps({"bge_mlm": asdict(cfg)}, indent=2), encoding="utf-8")
    metrics_log = open(out / "metrics.jsonl", "a", encoding="utf-8")

    def log_metrics(rec: dict) -> None:
        log.info(json.dumps(rec))
        metrics_log.write(json.dumps(rec) + "\n")
        metrics_log.flush()

    def record(holdout_metrics: tuple[float, float] | None) -> dict:
        epochs = round(state["tokens"] / max(1, int(store.lengths.sum())), 3)
        return {"files": cfg.files, "lines": counts["lines"], "lines_dropped_dev_windows": counts["lines_dropped"],
                "segments": len(store), "steps": state["step"], "tokens": state["tokens"], "epochs": epochs,
                "lr": cfg.lr, "head_lr": cfg.head_lr, "head_steps": cfg.head_steps,
                **({"holdout_mlm_loss": holdout_metrics[0], "holdout_mlm_acc": holdout_metrics[1]} if holdout_metrics else {})}

    def save(holdout_metrics=None) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                    "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ckpt_path)
        save_encoder(model.mlm.bert, enc, vocab, out / "encoder.pt", {**enc["source"], "domain_mlm": record(holdout_metrics)})

    started = last_ckpt = time.time()
    run_loss, run_n = 0.0, 0
    stop = False
    model.train()
    last_eval = None
    while state["step"] < cfg.total_steps + cfg.head_steps and not stop:
        batches = make_batches(store.lengths, cfg.tokens_per_batch, random.Random(cfg.seed + state["epoch"]))
        for bi in range(state["batch_in_epoch"], len(batches)):
            if state["step"] >= cfg.total_steps + cfg.head_steps:
                break
            t_step = time.time()
            ids, lengths = collate(store, batches[bi])
            inp, lab = mask_spans(ids, lengths, cfg, len(vocab), np.random.default_rng([cfg.seed, state["epoch"], bi]))
            for g in opt.param_groups:
                g["lr"] = lr_of(g["kind"], state["step"])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                loss_sum, _, k = model(ids, lengths, inp, lab)
            loss = loss_sum / max(1, k)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            state["step"] += 1
            state["batch_in_epoch"] = bi + 1
            state["tokens"] += int(lengths.sum())
            state["seconds"] += time.time() - t_step
            run_loss += float(loss.detach())
            run_n += 1
            evaluate_now = state["step"] % cfg.eval_every == 0 or state["step"] == cfg.head_steps
            if state["step"] % cfg.log_every == 0 or evaluate_now:
                rec = {"step": state["step"], "epoch": state["epoch"], "loss": run_loss / run_n,
                       "lr_encoder": lr_of("encoder", state["step"]), "tokens": state["tokens"],
                       "tokens_per_s": state["tokens"] / max(1e-9, state["seconds"])}
                if evaluate_now:  # at head_steps: what the unchanged encoder gives a trained head
                    last_eval = evaluate(model, holdout, cfg, len(vocab))
                    rec["holdout_loss"], rec["holdout_acc"] = last_eval
                log_metrics(rec)
                run_loss, run_n = 0.0, 0
            if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                save(last_eval)
                last_ckpt = time.time()
            if cfg.max_minutes and time.time() - started > cfg.max_minutes * 60:
                stop = True
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    last_eval = evaluate(model, holdout, cfg, len(vocab))
    log_metrics({"step": state["step"], "final": True, "tokens": state["tokens"],
                 "holdout_loss": last_eval[0], "holdout_acc": last_eval[1]})
    save(last_eval)
    log.info("stopped at step %d, %d tokens seen", state["step"], state["tokens"])
    return out
