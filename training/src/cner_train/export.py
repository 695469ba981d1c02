"""Model bundle export (docs/contract.md): model.onnx, crf.json, labels.json,
vocab.txt, config.json, manifest.json with the sha256 of every file."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .models import ModelConfig, Tagger
from .text import ENTITY_TYPES, MAX_CHUNK_LEN, SECONDARY_TIERS, TAGS, WHITESPACE
from .vocab import PAD, SPACE, SPECIAL_TOKENS, UNK, Vocab

log = logging.getLogger(__name__)

OPSET = 17
BUNDLE_FILES = ("model.onnx", "crf.json", "labels.json", "vocab.txt", "config.json")


@dataclass
class ExportConfig:
    run: str = field(metadata={"help": "training run folder (model.pt, metrics.json, vocab.txt)"})
    out: str = field(metadata={"help": "bundle folder to write"})
    version: str = field(default="", metadata={"help": "model version (default: date and training data hash)"})
    name: str = "cner-albert-idcnn-mha-crf"


def encoding_config() -> dict:
    return {
        "max_length": MAX_CHUNK_LEN,
        "add_special_tokens": False,
        "pad_token": PAD,
        "unk_token": UNK,
        "space_token": SPACE,
        "special_tokens": list(SPECIAL_TOKENS),
        "normalization": {
            "per_code_point": True,
            "whitespace": sorted(f"U+{ord(c):04X}" for c in WHITESPACE),
            "whitespace_to": "U+0020, looked up as space_token",
            "fullwidth_ascii": "U+FF01..U+FF5E minus 0xFEE0",
            "lowercase": "A-Z only",
        },
        "chunking": {
            "max_length": MAX_CHUNK_LEN,
            "sentence_end": "。",
            "secondary_tiers": [sorted(t) if t is not WHITESPACE else "whitespace" for t in SECONDARY_TIERS],
            "pack": True,
        },
        "inputs": ["input_ids", "attention_mask"],
        "output": "emissions",
        "entity_types": [{"code": c, "label": l} for c, l in ENTITY_TYPES],
    }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_onnx(model: Tagger, path: Path) -> None:
    model.eval()
    ids = torch.ones(2, 7, dtype=torch.int64)
    mask = torch.ones(2, 7, dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["emissions"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "emissions": {0: "batch", 1: "seq"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def write_bundle(model: Tagger, vocab: Vocab, out: Path, manifest_extra: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out / "model.onnx")
    (out / "crf.json").write_text(json.dumps(model.crf.to_json()), encoding="utf-8")
    (out / "labels.json").write_text(json.dumps(list(TAGS)), encoding="utf-8")
    vocab.save(out / "vocab.txt")
    (out / "config.json").write_text(json.dumps(encoding_config(), indent=2, ensure_ascii=False), encoding="utf-8")
    manifest = {
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "git_commit": git_commit(),
        "opset": OPSET,
        "labels": list(TAGS),
        **manifest_extra,
        "files": {name: sha256_file(out / name) for name in BUNDLE_FILES},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


def load_run(run: Path) -> tuple[Tagger, Vocab, dict]:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    vocab = Vocab.load(run / "vocab.txt")
    model = Tagger(ModelConfig(**metrics["model"]), len(vocab))
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    model.eval()
    return model, vocab, metrics


def protocol_of(train_cfg: dict) -> str:
    dev, seed = train_cfg.get("dev_size", 0), train_cfg.get("split_seed")
    extra = " + the CCKS-2020 records" if train_cfg.get("ccks2020") else ""
    if not dev:
        return f"trained on all CCKS-2019 training records{extra}; no dev split (fixed epochs)"
    return (f"dev = {dev} of the 1,000 CCKS-2019 training records (seeded split, seed {seed}); "
            f"trained on the other {1000 - dev}{extra}; best dev epoch kept; strict entity-level metrics")


def export(cfg: ExportConfig) -> Path:
    run = Path(cfg.run)
    model, vocab, metrics = load_run(run)
    sha = metrics.get("training_data_sha256", "")
    version = cfg.version or f"{dt.date.today():%Y.%m.%d}-{sha[:8]}"
    dev = metrics.get("dev") or {}
    extra = {
        "name": cfg.name,
        "version": version,
        "training_data_sha256": sha,
        "model": metrics["model"],
        "training": metrics.get("config", {}),
        "metrics": {
            "protocol": protocol_of(metrics.get("config", {})),
            "dev_micro": dev.get("micro"),
            "dev_per_type": dev.get("per_type"),
        },
    }
    out = write_bundle(model, vocab, Path(cfg.out), extra)
    check_parity(model, out / "model.onnx")
    log.info("bundle %s written to %s", version, out)
    return out


def check_parity(model: Tagger, onnx_path: Path, atol: float = 1e-4) -> float:
    """Max |torch - onnxruntime| over a few shapes; raises above ``atol``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    vocab_size = model.albert.cfg.vocab_size if model.cfg.embedder == "albert" else model.char.num_embeddings
    for batch, seq in ((1, 1), (3, 17), (2, 128)):
        ids = rng.integers(1, vocab_size, size=(batch, seq)).astype(np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        if batch > 1:
            cut = max(1, seq // 2)
            ids[-1, cut:] = 0
            mask[-1, cut:] = 0
        with torch.no_grad():
            ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        got = sess.run(["emissions"], {"input_ids": ids, "attention_mask": mask})[0]
        lengths = mask.sum(1)
        for b in range(batch):
            worst = max(worst, float(np.abs(ref[b, : lengths[b]] - got[b, : lengths[b]]).max()))
    if worst > atol:
        raise AssertionError(f"ONNX parity: max abs difference {worst:.2e} > {atol:.0e}")
    return worst
