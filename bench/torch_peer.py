"""The PyTorch peer of `npm run bench`: the training package's Tagger in eager
mode + numpy Viterbi, with the bundle's weights.

A bundle ships only model.onnx, so the Tagger (for an ensemble bundle, the
package's Ensemble of Taggers) is rebuilt from the manifest's model configs and
the ONNX initializers by `cner_train.unbundle.load_bundle_model` (the loader of
`cner-train unbundle`). Before
serving, the emissions are checked against onnxruntime on real batches of
the benchmark's texts (max |torch − onnxruntime| over the unpadded positions
must stay under --atol), so the peer is the same model, not a look-alike.

    .venv/bin/python bench/torch_peer.py --bundle models/default --threads 1
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from peer_common import BATCH_SIZE, Chunk, Tagger, read_texts, serve

from cner_train.text import chunk_text
from cner_train.unbundle import load_bundle_model


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

    try:
        model = load_bundle_model(args.bundle)
    except ValueError as e:  # a graph the Tagger cannot represent (an int8 copy)
        raise SystemExit(f"{e}; run the benchmark with --no-torch") from e

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
