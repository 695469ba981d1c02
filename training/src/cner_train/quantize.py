"""``cner-train quantize``: an int8 copy of a bundle, two ways (``--method``):

- ``dynamic``: int8 weights, activations quantized per batch at run time. The
  fastest, but a chunk's emissions then depend slightly on which chunks share
  its batch (the activation scale is the batch's).
- ``static``: int8 weights and activations with scales calibrated once on
  training-side chunks (QDQ format, per-channel weights): batch-invariant like
  float32, so the entities of a record never depend on its neighbours.

By default only MatMul/Gemm are quantized (the attention and output
projections). Dynamically the convolutions must stay float32: ONNX Runtime's
ConvInteger ran the whole model 1.9× slower than float32 on the 2-core AMD EPYC
(AVX-512 VNNI) we measured, while MatMul-only int8 ran it 1.5× faster (batch
32 × 96 characters, one thread). Statically (``--ops MatMul,Gemm,Conv``) they
become QLinearConv, which is fast: the default's inference 1.45× faster again
than with MatMul-only static int8, at a larger F1 cost (training/RESULTS.md).

The int8 bundle is kept only if its dev strict micro-F1, measured here through
ONNX Runtime exactly as the processor would run it, stays within ``max_drop``
of the float32 bundle's on the same records; otherwise the command fails and
removes what it wrote. Both scores go into the new manifest.

A bundle trained on all records (``dev_size`` 0) has seen the dev records: the
two scores are then only compared with each other, and the manifest keeps the
float32 bundle's own metrics (its recipe's dev score) with the difference
measured here, instead of presenting a score on seen records as a dev score.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .corpus import sha256_file
from .evaluate import dev_records, score_bundle

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("MatMul", "Gemm")
QUANTIZABLE_OPS = ("MatMul", "Gemm", "Conv")


@dataclass
class QuantizeConfig:
    bundle: str = field(metadata={"help": "float32 model bundle folder", "positional": True})
    out: str = field(metadata={"help": "int8 bundle folder to write"})
    data: str = field(metadata={"help": "CCKS-2019 train.jsonl: both bundles are scored on its fixed dev split"})
    dev_size: int = 150
    split_seed: int = 42
    max_drop: float = field(default=0.3, metadata={"help": "largest dev micro-F1 loss accepted, in points"})
    method: str = field(default="dynamic", metadata={
        "help": "dynamic (activations scaled per batch) | static (calibrated QDQ, batch-invariant)"})
    exclude: str = field(default="", metadata={
        "help": "regular expression: MatMul/Gemm nodes whose name matches stay float32 (e.g. 'layer\\.\\d+/output/dense' "
                "keeps BERT's feed-forward output projections, whose post-GELU inputs quantize worst)"})
    weights: str = field(default="float32", metadata={
        "help": "float32 | float16: the large weights left in float (embeddings, excluded MatMuls) stored as float16, "
                "cast once at load (scored as stored)"})
    ops: str = field(default=",".join(QUANTIZED_OPS), metadata={
        "help": "comma-separated operator types to quantize, of MatMul, Gemm, Conv (Conv: static only)"})
    calibration_records: int = field(default=60, metadata={
        "help": "static: training-side records (never dev) whose chunks calibrate the activation scales"})
    version_suffix: str = "-int8"

    def __post_init__(self) -> None:
        if self.method not in ("dynamic", "static"):
            raise SystemExit(f"--method must be dynamic or static, not {self.method!r}")
        if self.weights not in ("float32", "float16"):
            raise SystemExit(f"--weights must be float32 or float16, not {self.weights!r}")
        bad = [o for o in self.op_types if o not in QUANTIZABLE_OPS]
        if bad or not self.op_types:
            raise SystemExit(f"--ops must name some of {', '.join(QUANTIZABLE_OPS)}, not {self.ops!r}")
        if "Conv" in self.op_types and self.method != "static":
            raise SystemExit("--ops Conv needs --method static (dynamic ConvInteger is slower than float32 here)")

    @property
    def op_types(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.ops.split(",") if o.strip())


def excluded_nodes(model_path: Path, pattern: str, ops: tuple[str, ...] = QUANTIZED_OPS) -> list[str]:
    """The nodes of types ``ops`` whose names match ``pattern`` (none for an empty pattern)."""
    if not pattern:
        return []
    import re

    import onnx

    rx = re.compile(pattern)
    return [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type in ops and rx.search(n.name)]


def quantize_static_qdq(src: Path, dst: Path, cfg: QuantizeConfig, exclude: list[str]) -> str:
    """Calibrated int8 (QDQ): MinMax ranges of every MatMul input over the chunks of
    ``calibration_records`` records from the training side of the dev split."""
    from .corpus import dev_split, read_ccks
    from .data import eval_batches, make_examples, pad_batch, pad_features
    from .lexicon import Lexicon
    from .vocab import Vocab

    records = read_ccks(Path(cfg.data))
    train_idx, _ = dev_split(len(records), cfg.dev_size, cfg.split_seed)
    calib = [records[i] for i in train_idx[: cfg.calibration_records]]
    lexicon = Lexicon.load(src / "lexicon.tsv") if (src / "lexicon.tsv").exists() else None
    examples = make_examples(calib, Vocab.load(src / "vocab.txt"), lexicon=lexicon)
    feeds = []
    for _, batch in eval_batches(examples, 16):
        ids, mask, _ = pad_batch(batch)
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        if lexicon is not None:
            feed["lexicon_features"] = pad_features(batch).numpy()
        feeds.append(feed)
    quantize_static_graph(src / "model.onnx", dst, feeds, exclude, cfg.op_types)
    return (f"onnxruntime.quantization.quantize_static, QDQ, weights QInt8 per channel, activations QUInt8 with "
            f"MinMax scales from the {len(examples)} chunks of {len(calib)} training-side records (batch-invariant)")


def quantize(cfg: QuantizeConfig) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, out = Path(cfg.bundle), Path(cfg.out)
    if out.resolve() == src.resolve():
        raise SystemExit("--out must be another folder than the bundle")
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    (out / "model.onnx").unlink()
    exclude = excluded_nodes(src / "model.onnx", cfg.exclude, cfg.op_types)
    if cfg.method == "static":
        method = quantize_static_qdq(src, out / "model.onnx", cfg, exclude)
    else:
        quantize_dynamic(str(src / "model.onnx"), str(out / "model.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(cfg.op_types), nodes_to_exclude=exclude)
        method = "onnxruntime.quantization.quantize_dynamic, weights QInt8, activations per batch"
    if exclude:
        method += f"; {len(exclude)} nodes matching {cfg.exclude!r} kept float32"
    if cfg.weights == "float16":
        from .export import store_float16

        saved = store_float16(out / "model.onnx")
        method += f"; the other large float weights stored as float16 ({saved / 1e6:.1f} MB saved)"

    dev = dev_records(Path(cfg.data), cfg.dev_size, cfg.split_seed)
    f32 = score_bundle(src, dev)
    i8 = score_bundle(out, dev)
    drop = f32["micro"]["f1"] - i8["micro"]["f1"]
    log.info("dev micro-F1: float32 %.2f, int8 %.2f (drop %.2f, limit %.2f)", f32["micro"]["f1"], i8["micro"]["f1"], drop, cfg.max_drop)
    if drop > cfg.max_drop:
        shutil.rmtree(out)
        raise SystemExit(f"int8 loses {drop:.2f} dev F1 (> {cfg.max_drop}): not written")

    float32_version = manifest["version"]
    manifest["version"] = float32_version + cfg.version_suffix
    metrics = manifest.get("metrics") or {}
    prefix = metrics["protocol"] + "; " if metrics.get("protocol") else ""
    seen = (manifest.get("training") or {}).get("dev_size") == 0
    if seen:
        # Trained on the dev records too: keep the recipe's dev score, add what int8 changed on the same records.
        manifest["metrics"] = {**metrics, "protocol": prefix + (
            f"int8 copy: its strict micro-F1 differs from the float32 bundle's by {i8['micro']['f1'] - f32['micro']['f1']:+.2f} "
            "on the dev records, which its training saw (only the difference is meaningful)")}
    else:
        # The bundle's own scores: this int8 model's, measured as exported; the float32 ones stay below for reference.
        manifest["metrics"] = {"protocol": prefix + "int8 copy, scored as exported (ONNX Runtime)",
                               "dev_micro": i8["micro"], "dev_per_type": i8["per_type"]}
    manifest["quantization"] = {
        "method": method,
        "quantized_ops": list(cfg.op_types),
        "float32_nodes": exclude,
        "float32_version": float32_version,
        "dev_split": f"{cfg.dev_size} records of {cfg.data}, split seed {cfg.split_seed}",
        "dev_records_seen_in_training": seen,
        "float32_dev_micro": f32["micro"],
        "int8_dev_micro": i8["micro"],
        "int8_dev_per_type": i8["per_type"],
    }
    manifest["files"] = {name: sha256_file(out / name) for name in manifest["files"]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


def restore_float32(src: Path, dst: Path) -> None:
    """The graph of ``src`` with its float16-stored weights (``store_float16``: an initializer
    ``X.float16`` and a Cast to ``X``) back as float32 initializers ``X``: a quantizer only
    quantizes weights that are initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    casts = [n for n in graph.node if n.op_type == "Cast" and len(n.input) == 1 and n.input[0].endswith(".float16")
             and n.input[0] in inits and n.output[0] == n.input[0][: -len(".float16")]]
    for n in casts:
        half = inits[n.input[0]]
        half.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(half).astype(np.float32), n.output[0]))
    keep = [n for n in graph.node if n not in casts]
    del graph.node[:]
    graph.node.extend(keep)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def quantize_static_graph(src: Path, dst: Path, feeds: list[dict], exclude: list[str],
                          ops: tuple[str, ...] = QUANTIZED_OPS) -> None:
    """Calibrated int8 (QDQ, weights per channel, MinMax activation ranges over ``feeds``) of the
    ``ops`` nodes (MatMul/Gemm by default) of a float32 graph, but those named in ``exclude``."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Feeds(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(ops), nodes_to_exclude=exclude, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
