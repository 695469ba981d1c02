"""A model bundle back into training runs: the PyTorch model a bundle's ONNX
graph holds, and (``cner-train unbundle``) one run folder per member, so the
members of a shipped ensemble can join a new one (``export --members``)
without being trained again.

A bundle ships only model.onnx, so the model (for an ensemble bundle, the
package's Ensemble of Taggers) is built from the manifest's model configs and
its weights are read from the ONNX initializers: by parameter name (also
through the Identity nodes the exporter uses for deduplicated tensors, and the
Cast of a bundle exported with float16 weights), and Linear weights, which
constant folding turned into unnamed transposed MatMul operands, through the
module scope in the MatMul node's name. The CRF scores come from crf.json.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .corpus import sha256_file
from .export import Ensemble, check_parity
from .models import ModelConfig, Tagger
from .vocab import UNK, UNK_ID, Vocab

log = logging.getLogger(__name__)


def load_bundle_model(bundle: Path) -> torch.nn.Module:
    """The bundle's model in PyTorch (eval mode): a Tagger, or an Ensemble whose
    members' own CRFs are zero (the graph holds only their average, crf.json)."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    vocab_size = len(Vocab.load(bundle / "vocab.txt"))
    graph = onnx.load(str(bundle / "model.onnx")).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        # The exporter keeps one copy of identical tensors and names the others through Identity nodes;
        # a bundle exported with --weights float16 stores large weights as float16 behind a Cast to float32.
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
        elif node.op_type == "Cast" and node.input[0] in values and values[node.input[0]].dtype == np.float16:
            values[node.output[0]] = values[node.input[0]].astype(np.float32)
    if "ensemble" in manifest:
        # A member with its own vocabulary reads the bundle's ids through its lookup table ("remap<k>").
        members = manifest["ensemble"]["members"]
        model: torch.nn.Module = Ensemble(
            [Tagger(ModelConfig(**m["model"]), m.get("vocab_size", vocab_size)) for m in members],
            [torch.from_numpy(values[f"remap{k}"]) if f"remap{k}" in values else None for k in range(len(members))],
            manifest["ensemble"].get("weights"))
    else:
        model = Tagger(ModelConfig(**manifest["model"]), vocab_size)
    # Linear weights became transposed MatMul operands without a parameter name; the MatMul
    # node's name carries the module's scope ("/mha/attn/qkv/MatMul"; "_1" marks a reuse).
    matmul: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in values:
            scope = ".".join(re.sub(r"_\d+$", "", part) for part in node.name.strip("/").split("/")[:-1])
            matmul.setdefault(f"{scope}.weight", values[node.input[1]].T)
    crf = json.loads((bundle / "crf.json").read_text(encoding="utf-8"))
    weights: dict[str, torch.Tensor] = {
        "crf.start_transitions": torch.tensor(crf["start"]),
        "crf.end_transitions": torch.tensor(crf["end"]),
        "crf.transitions": torch.tensor(crf["transitions"]),
    }
    for key, param in model.state_dict().items():
        if key in weights:
            continue
        if re.match(r"members\.\d+\.crf\.", key):
            weights[key] = torch.zeros_like(param)  # members' own CRFs: not in the graph, the averaged one decodes
            continue
        value = values.get(key, matmul.get(key))
        if value is None or tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"no ONNX initializer for parameter {key} {tuple(param.shape)}: the Tagger cannot "
                             "represent this bundle (int8?)")
        weights[key] = torch.from_numpy(np.array(value))  # a writable copy
    model.load_state_dict(weights, strict=True)
    return model.eval()


def member_vocab(bundle_vocab: Vocab, remap: torch.Tensor | None, size: int) -> Vocab:
    """A member's own vocabulary from the bundle's and its lookup table (bundle id → member id;
    every token the member lacks maps to its [UNK])."""
    if remap is None:
        return bundle_vocab
    tokens: list[str | None] = [None] * size
    tokens[UNK_ID] = UNK
    for i, j in enumerate(remap.tolist()):
        if j != UNK_ID:
            tokens[j] = bundle_vocab.tokens[i]
    missing = [j for j, t in enumerate(tokens) if t is None]
    if missing:
        raise ValueError(f"the bundle's lookup table names no token for member ids {missing[:5]}")
    return Vocab([t for t in tokens if t is not None])


@dataclass
class UnbundleConfig:
    bundle: str = field(metadata={"help": "float model bundle folder (float32, or float16 weights; not an int8 copy)",
                                  "positional": True})
    out: str = field(metadata={"help": "folder to write: the run itself for a single model, member0/, member1/ ... "
                                       "for an ensemble"})
    atol: float = field(default=1e-4, metadata={"help": "largest |PyTorch − ONNX Runtime| emission difference accepted"})


def unbundle(cfg: UnbundleConfig) -> list[Path]:
    """Writes one training run (model.pt, vocab.txt, lexicon.tsv, metrics.json) per
    model of the bundle, after checking that the PyTorch model reproduces the
    bundle's emissions.

    An ensemble graph holds only its members' averaged CRF, so each member's
    run gets that average as its CRF: emissions are exact, and an ensemble
    that keeps these members' relative weights (e.g. 0.25/0.25 for a bundle
    that averaged them 0.5/0.5) has exactly the CRF it had."""
    bundle, out = Path(cfg.bundle), Path(cfg.out)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    vocab = Vocab.load(bundle / "vocab.txt")
    model = load_bundle_model(bundle)
    worst = check_parity(model, bundle / "model.onnx", len(vocab), atol=cfg.atol)
    onnx_sha256 = sha256_file(bundle / "model.onnx")
    if isinstance(model, Ensemble):
        infos = manifest["ensemble"]["members"]
        members = [(m, getattr(model, f"remap{k}", None), info, out / f"member{k}")
                   for k, (m, info) in enumerate(zip(model.members, infos, strict=True))]
    else:
        members = [(model, None, {"model": manifest["model"], "seed": manifest.get("training", {}).get("seed")}, out)]
    runs = []
    for k, (member, remap, info, run) in enumerate(members):
        run.mkdir(parents=True, exist_ok=True)
        own = member_vocab(vocab, remap, info.get("vocab_size", len(vocab)))
        state = member.state_dict()
        for name in ("start_transitions", "end_transitions", "transitions"):
            state[f"crf.{name}"] = getattr(model.crf, name).detach().clone()
        torch.save(state, run / "model.pt")
        own.save(run / "vocab.txt")
        if (bundle / "lexicon.tsv").exists():
            shutil.copyfile(bundle / "lexicon.tsv", run / "lexicon.tsv")
        # The manifest keeps the first run's training config: a member of another recipe
        # (a character run beside a bge one) gets only its seed, not a config that is not its own.
        recipe = manifest.get("training", {}) if info["model"] == manifest.get("model") else {}
        config = {**recipe, "seed": info.get("seed"), "out": str(run)}
        metrics = {
            "config": config,
            "model": info["model"],
            "vocab_size": len(own),
            "training_data_sha256": manifest.get("training_data_sha256", ""),
            "best_epoch": None,
            "dev": None,
            "history": [],
            "unbundled_from": {"bundle": str(bundle), "version": manifest["version"], "member": k,
                               "model_onnx_sha256": onnx_sha256, "parity_max_abs_diff": worst,
                               "crf": "the bundle's (averaged) CRF" if isinstance(model, Ensemble) else "the bundle's CRF"},
        }
        if info["model"].get("embedder") == "bert" and "encoder" in manifest:
            metrics["encoder"] = manifest["encoder"]
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
        runs.append(run)
    log.info("%s (%s): %d run(s) written to %s, max |PyTorch − ONNX Runtime| %.2e",
             bundle, manifest["version"], len(runs), out, worst)
    return runs
