"""The Python peer of `npm run bench`: onnxruntime (Python) + numpy Viterbi.

The same model.onnx, thread settings and graph optimization level as the
processor's onnxruntime-node session (src/model/onnx-session.ts). Naive:
fixed padding to 128 and batches of 32 chunks, as a quick Python service
batches. Careful (--careful): chunks sorted by length, batches of cner's
size, each padded to its longest chunk, and the session without the memory
pattern (as cner's), which is what a good Python engineer writes.
Started by bench/peers.ts; see peer_common.py for the protocol.

    .venv/bin/python bench/python_peer.py --bundle models/default --threads 1 [--careful --batch-size 32]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
from peer_common import Tagger, serve


def session(bundle: Path, threads: int, optimization: str, careful: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # The memory pattern is planned per input shape: useless with dynamic padding (cner turns it off too).
    opts.enable_mem_pattern = not careful
    # 0 = onnxruntime's choice (one per core), as intraOpNumThreads 0 in onnxruntime-node.
    opts.intra_op_num_threads = threads
    # Sequential execution (onnxruntime-node's default): the inter-op pool is unused.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    return ort.InferenceSession(str(bundle / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (0 = one per core)")
    p.add_argument("--optimization", default="all", choices=["disabled", "basic", "extended", "all"])
    p.add_argument("--careful", action="store_true", help="length-sorted chunks, dynamic padding per batch")
    p.add_argument("--batch-size", type=int, default=32, help="chunks per batch")
    args = p.parse_args()

    sess = session(args.bundle, args.threads, args.optimization, args.careful)

    def emit(ids: np.ndarray, mask: np.ndarray, feats: np.ndarray | None) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if feats is not None:
            feeds["lexicon_features"] = feats
        return sess.run(["emissions"], feeds)[0]

    serve(
        Tagger(args.bundle, emit, careful=args.careful, batch_size=args.batch_size),
        {
            "name": "onnxruntime (Python, length-sorted, dynamic padding) + numpy Viterbi" if args.careful
            else "onnxruntime (Python) + numpy Viterbi",
            "batching": f"sorted by length, batches of {args.batch_size} padded to their longest chunk" if args.careful
            else f"batches of {args.batch_size} padded to 128",
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "intra_op_threads": args.threads,
            "graph_optimization": args.optimization,
        },
    )


if __name__ == "__main__":
    main()
