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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .corpus import sha256_file
from .evaluate import dev_records, score_bundle

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("MatMul", "Gemm")
QUANTIZABLE_OPS = ("MatMul", "Gemm", "Conv")
CALIBRATIONS = ("minmax", "moving-average", "percentile", "entropy")
# ONNX Runtime's histogram calibrators stack every batch's activations into one array, so for
# these all calibration batches must have one shape.
HISTOGRAM_CALIBRATIONS = ("percentile", "entropy")


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
    smooth: str = field(default="", metadata={
        "help": "static: regular expression of MatMul nodes to smooth before quantizing (SmoothQuant, Xiao et al. 2023): "
                "each input channel j of the activation is divided by s_j and the weight's row j multiplied by it, "
                "s_j = max|x_j|^alpha / max|w_j|^(1-alpha), so a few outlier channels no longer set the whole "
                "activation's int8 step (e.g. 'output/dense' for BERT's post-GELU feed-forward outputs)"})
    smooth_alpha: float = field(default=0.5, metadata={"help": "SmoothQuant's migration strength alpha, in (0, 1)"})
    calibration: str = field(default="minmax", metadata={
        "help": "static: how activation ranges are set from the calibration chunks: minmax | moving-average (of each "
                "batch's min and max, constant 0.01: rare extremes count less, as in PyTorch's QAT observers) | "
                "percentile (99.999th percentile of |x|) | entropy (KL-minimizing threshold, TensorRT's method)"})
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
        if self.smooth and self.method != "static":
            raise SystemExit("--smooth needs --method static (its scales are calibrated)")
        if not 0 < self.smooth_alpha < 1:
            raise SystemExit(f"--smooth-alpha must be in (0, 1), not {self.smooth_alpha}")
        if self.calibration not in CALIBRATIONS:
            raise SystemExit(f"--calibration must be one of {', '.join(CALIBRATIONS)}, not {self.calibration!r}")
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
    from .text import MAX_CHUNK_LEN
    from .vocab import Vocab

    records = read_ccks(Path(cfg.data))
    train_idx, _ = dev_split(len(records), cfg.dev_size, cfg.split_seed)
    calib = [records[i] for i in train_idx[: cfg.calibration_records]]
    lexicon = Lexicon.load(src / "lexicon.tsv") if (src / "lexicon.tsv").exists() else None
    examples = make_examples(calib, Vocab.load(src / "vocab.txt"), lexicon=lexicon)
    feeds = []
    histogram = cfg.calibration in HISTOGRAM_CALIBRATIONS  # then one chunk a batch, padded to the chunk limit
    for _, batch in eval_batches(examples, 1 if histogram else 16):
        ids, mask, _ = pad_batch(batch)
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        if lexicon is not None:
            feed["lexicon_features"] = pad_features(batch).numpy()
        if histogram:
            width = MAX_CHUNK_LEN - ids.shape[1]
            feed = {k: np.pad(v, [(0, 0), (0, width)] + [(0, 0)] * (v.ndim - 2)) for k, v in feed.items()}
        feeds.append(feed)
    graph = src / "model.onnx"
    smoothed = ""
    with tempfile.TemporaryDirectory() as tmp:
        if cfg.smooth:
            graph = Path(tmp) / "smoothed.onnx"
            names = smooth_graph(src / "model.onnx", graph, feeds, cfg.smooth, cfg.smooth_alpha)
            smoothed = (f"; SmoothQuant (alpha {cfg.smooth_alpha}) on {len(names)} MatMuls matching {cfg.smooth!r}, "
                        "channel maxima from the same chunks")
        quantize_static_graph(graph, dst, feeds, exclude, cfg.op_types, cfg.calibration)
    how = {"minmax": "MinMax", "moving-average": "moving-average MinMax", "percentile": "99.999th-percentile",
           "entropy": "entropy (KL)"}[cfg.calibration]
    return (f"onnxruntime.quantization.quantize_static, QDQ, weights QInt8 per channel, activations QUInt8 with "
            f"{how} scales from the {len(examples)} chunks of {len(calib)} training-side records (batch-invariant), "
            "MatMul results float"
            + smoothed)


def smooth_graph(src: Path, dst: Path, feeds: list[dict], pattern: str, alpha: float) -> list[str]:
    """SmoothQuant (Xiao et al., 2023) on the float32 MatMuls of ``src`` whose names match ``pattern``
    and whose weight is an initializer [in, out]: with a_j the largest |x_j| of input channel j over
    ``feeds`` and w_j the largest |W[j, :]|, s_j = a_j^alpha / w_j^(1 - alpha); a Mul by 1/s (named
    ``<MatMul>/smooth``) goes before the MatMul and W's row j is multiplied by s_j. The product is
    unchanged in exact arithmetic (float32 rounding aside); what changes is that a few outlier
    channels (BERT's post-GELU activations have single channels 5-10x the median channel's
    maximum) no longer set the int8 step of the whole activation. Returns the smoothed MatMuls."""
    import re

    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    rx = re.compile(pattern)
    targets = [n for n in graph.node if n.op_type == "MatMul" and rx.search(n.name) and n.input[1] in inits
               and len(inits[n.input[1]].dims) == 2]
    if not targets:
        raise SystemExit(f"--smooth {pattern!r} matches no MatMul with an initializer weight")
    probe = onnx.load(str(src))
    for name in dict.fromkeys(n.input[0] for n in targets):
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = list(dict.fromkeys(n.input[0] for n in targets))
    amax: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, x in zip(wanted, sess.run(wanted, feed), strict=True):
            a = np.abs(x[real_rows(x, feed["attention_mask"])]).max(axis=0)  # [in]
            amax[name] = a if name not in amax else np.maximum(amax[name], a)
    for n in targets:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)  # [in, out]
        a = np.maximum(amax[n.input[0]], 1e-5)  # [in]
        s = (a**alpha / np.maximum(np.abs(w).max(axis=1), 1e-5) ** (1 - alpha)).astype(np.float32)  # [in]
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(w * s[:, None], n.input[1]))
        inv = numpy_helper.from_array((1.0 / s).astype(np.float32), f"{n.name}/smooth/inv_scale")
        graph.initializer.append(inv)
        smoothed = f"{n.name}/smooth_output_0"
        mul = helper.make_node("Mul", [n.input[0], inv.name], [smoothed], name=f"{n.name}/smooth")
        graph.node.insert(list(graph.node).index(n), mul)
        n.input[0] = smoothed
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return [n.name for n in targets]


def real_rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The positions of activation ``x`` ([batch, seq or seq + 2, …]) that hold a real token of a
    batch with ``mask`` ([batch, seq]), [CLS] and [SEP] included for a framed BERT sequence:
    [batch, seq(+2)] booleans; every position for other shapes. A pad's activations are never read
    by the output, so they must not stretch a channel's range."""
    if x.ndim < 3 or x.shape[0] != mask.shape[0]:
        return np.ones(x.shape[: max(1, x.ndim - 1)], dtype=bool)
    if x.shape[1] == mask.shape[1]:
        return mask.astype(bool)
    if x.shape[1] == mask.shape[1] + 2:
        lengths = mask.sum(axis=1)  # [batch]
        return np.arange(x.shape[1])[None, :] < (lengths + 2)[:, None]
    return np.ones(x.shape[:2], dtype=bool)


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
    """The graph of ``src`` with its weights back as float32 initializers, as a quantizer needs them:
    float16-stored weights (``store_float16``: an initializer ``X.float16`` and a Cast to ``X``) cast
    back, and a static int8 graph's QDQ undone: each weight's DequantizeLinear of int8 initializers
    replaced by the float32 initializer it computes, each activation's QuantizeLinear ->
    DequantizeLinear pair removed (its readers read the float tensor). A graph quantized before can
    so be quantized again by another method; its int8 weights come back exactly on their grid, so
    per-channel MinMax finds the same integers for them."""
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
    drop = set(map(id, casts))
    weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and all(x in inits for x in n.input)]
    for n in weights:
        q = numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[n.input[2]]).astype(np.float32) if len(n.input) > 2 else np.zeros_like(scale)
        if scale.ndim == 1:  # per channel: along the node's axis (default 1)
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1) % q.ndim
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        graph.initializer.append(numpy_helper.from_array(((q - zero) * scale).astype(np.float32), n.output[0]))
        drop.add(id(n))
    producer = {o: n for n in graph.node for o in n.output}
    renamed = {}
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and id(n) not in drop and n.input[0] in producer \
                and producer[n.input[0]].op_type == "QuantizeLinear":
            q = producer[n.input[0]]
            renamed[n.output[0]] = q.input[0]
            drop.update((id(n), id(q)))
    keep = [n for n in graph.node if id(n) not in drop]
    for n in keep:
        for k, x in enumerate(n.input):
            while x in renamed:  # a pair may quantize a tensor that was itself a removed pair's result
                x = renamed[x]
            n.input[k] = x
    for o in graph.output:
        if o.name in renamed:
            raise SystemExit(f"{src}: graph output {o.name} is a dequantized activation; not restorable")
    del graph.node[:]
    graph.node.extend(keep)
    used = {x for n in keep for x in n.input} | {o.name for o in graph.output}
    live = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def quantize_static_graph(src: Path, dst: Path, feeds: list[dict], exclude: list[str],
                          ops: tuple[str, ...] = QUANTIZED_OPS, calibration: str = "minmax") -> None:
    """Calibrated int8 (QDQ, weights per channel, activation ranges over ``feeds`` by ``calibration``,
    one of CALIBRATIONS) of the ``ops`` nodes (MatMul/Gemm by default) of a float32 graph, but those
    named in ``exclude``."""
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
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "moving-average": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[calibration],
                        extra_options={
                            # A MatMul's (Gemm's) result stays float: quantized, it would add a second rounding to
                            # uint8 at a per-tensor step of the whole output's range, before the bias and the residual
                            # sum, which BERT's attention and feed-forward output projections do not survive (the
                            # bge member: 81.50 dev against 82.87 float32; 82.81 without). ONNX Runtime then fuses
                            # DQ -> MatMul into one integer MatMul with a float result, faster than QLinearMatMul + DQ.
                            "OpTypesToExcludeOutputQuantization": [o for o in ops if o in ("MatMul", "Gemm")],
                            **({"CalibMovingAverage": True, "CalibMovingAverageConstant": 0.01}
                               if calibration == "moving-average" else {})})
