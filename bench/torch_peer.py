"""The PyTorch peer of `npm run bench`: the training package's Tagger in eager
mode + numpy Viterbi, with the bundle's weights.

A bundle ships only model.onnx, so the Tagger (for an ensemble bundle, the
package's Ensemble of Taggers) is built from the manifest's model configs and
its weights are read from the ONNX initializers: by
parameter name (also through the Identity nodes the exporter uses for
deduplicated tensors), and Linear weights, which constant folding turned into
unnamed transposed MatMul operands, through the module scope in the MatMul
node's name. The CRF scores come from crf.json. Before
serving, the emissions are checked against onnxruntime on real batches of
the benchmark's texts (max |torch − onnxruntime| over the unpadded positions
must stay under --atol), so the peer is the same model, not a look-alike.

    .venv/bin/python bench/torch_peer.py --bundle models/default --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from peer_common import BATCH_SIZE, Chunk, Tagger, read_texts, serve

from cner_train.export import Ensemble
from cner_train.models import ModelConfig
from cner_train.models import Tagger as TorchTagger
from cner_train.text import chunk_text
from cner_train.vocab import Vocab


def load_tagger(bundle: Path, vocab_size: int) -> torch.nn.Module:
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
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
        # An averaged ensemble (cner-train export --members): the package's own Ensemble module over its members;
        # a member with its own vocabulary reads the bundle's ids through its lookup table ("remap<k>").
        members = manifest["ensemble"]["members"]
        model = Ensemble([TorchTagger(ModelConfig(**m["model"]), m.get("vocab_size", vocab_size)) for m in members],
                         [torch.from_numpy(values[f"remap{k}"]) if f"remap{k}" in values else None for k in range(len(members))],
                         manifest["ensemble"].get("weights"))
    else:
        model = TorchTagger(ModelConfig(**manifest["model"]), vocab_size)
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
                             "represent this bundle (int8?); run the benchmark with --no-torch")
        weights[key] = torch.from_numpy(np.ascontiguousarray(value))
    model.load_state_dict(weights, strict=True)
    return model.eval()


def parity(model: torch.nn.Module, sess: ort.InferenceSession, batches: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> float:
    """Max |torch − onnxruntime| over the unpadded positions of ``batches``."""
    worst = 0.0
    for ids, mask, feats in batches:
        with torch.inference_mode():
            ref = model(torch.from_numpy(ids), torch.from_numpy(mask), None if feats is None else torch.from_numpy(feats)).numpy()
        feeds = {"input_ids": ids, "attention_mask": mask}
        if feats is not None:
            feeds["lexicon_features"] = feats
        got = sess.run(["emissions"], feeds)[0]
        valid = mask.astype(bool)
        worst = max(worst, float(np.abs(ref - got)[valid].max()))
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--parity-texts", type=Path, required=True, help="JSONL texts whose first batches check the emissions")
    p.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    model = load_tagger(args.bundle, len(Vocab.load(args.bundle / "vocab.txt")))

    def emit(ids: np.ndarray, mask: np.ndarray, feats: np.ndarray | None) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(ids), torch.from_numpy(mask), None if feats is None else torch.from_numpy(feats)).numpy()

    tagger = Tagger(args.bundle, emit)
    texts = read_texts(args.parity_texts)
    chunks = [Chunk(r, s, e) for r, t in enumerate(texts) for s, e in chunk_text(t)][: 2 * BATCH_SIZE]
    batches = [tagger.encode(texts, chunks[b : b + BATCH_SIZE]) for b in range(0, len(chunks), BATCH_SIZE)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(args.threads, 0)
    sess = ort.InferenceSession(str(args.bundle / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    diff = parity(model, sess, batches)
    del sess
    if diff > args.atol:
        raise SystemExit(f"torch emissions differ from onnxruntime by {diff:.2e} > {args.atol:.0e}: the weights were not mapped right")

    serve(
        tagger,
        {
            "name": "PyTorch eager + numpy Viterbi",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "intra_op_threads": torch.get_num_threads(),
            "weights": "ONNX initializers mapped onto cner_train.models.Tagger (manifest model config); CRF from crf.json",
            "parity_max_abs_diff": diff,
            "parity_chunks": len(chunks),
        },
    )


if __name__ == "__main__":
    main()
