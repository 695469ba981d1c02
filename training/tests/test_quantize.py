import json
import shutil

import onnxruntime as ort
import pytest

from cner_train.corpus import sha256_file
from cner_train.quantize import QuantizeConfig, quantize


def test_int8_copy_is_scored_against_float32_and_stamped(fixtures_dir, mini_ccks, tmp_path):
    out = quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-bundle"), out=str(tmp_path / "q"), data=str(mini_ccks),
                                  dev_size=2, max_drop=100.0))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    source = json.loads((fixtures_dir / "tiny-bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["version"] == source["version"] + "-int8"
    assert manifest["quantization"]["float32_version"] == source["version"]
    assert manifest["metrics"]["dev_micro"] == manifest["quantization"]["int8_dev_micro"]
    assert manifest["metrics"]["protocol"].endswith("int8 copy, scored as exported (ONNX Runtime)")
    assert manifest["quantization"]["dev_records_seen_in_training"] is False
    assert set(manifest["files"]) == set(source["files"])
    for name, digest in manifest["files"].items():
        assert sha256_file(out / name) == digest
    assert manifest["files"]["model.onnx"] != source["files"]["model.onnx"]
    ops = {n.op_type for n in __import__("onnx").load(str(out / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"} and "ConvInteger" not in ops
    ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])


def test_int8_copy_is_refused_beyond_the_allowed_drop(fixtures_dir, mini_ccks, tmp_path):
    with pytest.raises(SystemExit, match="not written"):
        quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-bundle"), out=str(tmp_path / "q"), data=str(mini_ccks),
                                dev_size=2, max_drop=-1.0))
    assert not (tmp_path / "q").exists()


def test_int8_copy_of_a_bundle_trained_on_all_records_keeps_the_recipes_score(fixtures_dir, mini_ccks, tmp_path):
    src = tmp_path / "all"
    shutil.copytree(fixtures_dir / "tiny-bundle", src)
    source = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    source["training"] = {**source.get("training", {}), "dev_size": 0}
    source["metrics"] = {"protocol": "the twin's dev score", "dev_micro": {"f1": 12.5}, "dev_per_type": {}}
    (src / "manifest.json").write_text(json.dumps(source), encoding="utf-8")

    out = quantize(QuantizeConfig(bundle=str(src), out=str(tmp_path / "q"), data=str(mini_ccks), dev_size=2, max_drop=100.0))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["metrics"]["dev_micro"] == {"f1": 12.5}
    assert manifest["metrics"]["protocol"].startswith("the twin's dev score; int8 copy: its strict micro-F1 differs")
    assert "which its training saw" in manifest["metrics"]["protocol"]
    assert manifest["quantization"]["dev_records_seen_in_training"] is True


def test_static_int8_copy_is_calibrated_and_batch_invariant(fixtures_dir, mini_ccks, tmp_path):
    import numpy as np

    out = quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-lexicon-bundle"), out=str(tmp_path / "s"), data=str(mini_ccks),
                                  dev_size=2, max_drop=100.0, method="static", calibration_records=4))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["quantization"]["method"].startswith("onnxruntime.quantization.quantize_static, QDQ")
    ops = [n.op_type for n in __import__("onnx").load(str(out / "model.onnx")).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    # A short row alone and the same row padded next to a long one give the same emissions
    # (dynamic quantization would rescale it with the batch's activation range).
    rng = np.random.default_rng(0)
    ids = rng.integers(6, 40, size=(2, 30)).astype(np.int64)
    ids[0, 12:] = 0
    mask = (ids != 0).astype(np.int64)
    feats = ((rng.random((2, 30, 24)) < 0.1) * mask[..., None]).astype(np.float32)
    both = sess.run(["emissions"], {"input_ids": ids, "attention_mask": mask, "lexicon_features": feats})[0]
    alone = sess.run(["emissions"], {"input_ids": ids[:1, :12], "attention_mask": mask[:1, :12],
                                     "lexicon_features": feats[:1, :12]})[0]
    np.testing.assert_allclose(both[0, :12], alone[0], atol=1e-5)


def test_static_int8_leaves_every_matmul_result_float(fixtures_dir, mini_ccks, tmp_path):
    """Only a MatMul's inputs are quantized: a QuantizeLinear on its result would round it to uint8 a
    second time, at one step for the whole output, before the bias and the residual sum (what cost
    bge's output projections 1.4 F1); ONNX Runtime fuses DQ -> MatMul into an integer MatMul with a
    float result instead."""
    import onnx

    out = quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-lexicon-bundle"), out=str(tmp_path / "o"), data=str(mini_ccks),
                                  dev_size=2, max_drop=100.0, method="static", calibration_records=4, ops="MatMul,Gemm,Conv"))
    graph = onnx.load(str(out / "model.onnx")).graph
    produced = {o: n for n in graph.node for o in n.output}
    readers = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    quantized = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and produced.get(n.input[1]) is not None
                 and produced[n.input[1]].op_type == "DequantizeLinear"]
    assert quantized, "some MatMul reads an int8 weight"
    assert all(r.op_type != "QuantizeLinear" for n in quantized for r in readers.get(n.output[0], []))
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert any(r.op_type == "QuantizeLinear" for n in convs for r in readers.get(n.output[0], [])), \
        "a Conv's result stays quantized (QLinearConv: ONNX Runtime has no integer Conv with a float result)"


def test_static_int8_with_float16_weights_keeps_its_scales(fixtures_dir, mini_ccks, tmp_path):
    import onnx
    from onnx import TensorProto

    out = quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-lexicon-bundle"), out=str(tmp_path / "h"), data=str(mini_ccks),
                                  dev_size=2, max_drop=100.0, method="static", calibration_records=4, weights="float16"))
    graph = onnx.load(str(out / "model.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    assert any(i.data_type == TensorProto.FLOAT16 for i in inits.values())
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and all(inits[x].data_type != TensorProto.FLOAT16 for n in qdq for x in n.input[1:] if x in inits)
    assert "float16" in json.loads((out / "manifest.json").read_text(encoding="utf-8"))["quantization"]["method"]
    ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])


def test_quantize_refuses_an_unknown_method(fixtures_dir, mini_ccks, tmp_path):
    with pytest.raises(SystemExit, match="dynamic or static"):
        QuantizeConfig(bundle="b", out="o", data=str(mini_ccks), method="float8")


def test_excluded_nodes_stay_float32(fixtures_dir, mini_ccks, tmp_path):
    import onnx

    src = fixtures_dir / "tiny-lexicon-bundle"
    names = [n.name for n in onnx.load(str(src / "model.onnx")).graph.node if n.op_type == "MatMul"]
    keep = next(n for n in names if "classifier" in n)
    out = quantize(QuantizeConfig(bundle=str(src), out=str(tmp_path / "p"), data=str(mini_ccks), dev_size=2,
                                  max_drop=100.0, exclude="classifier"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["quantization"]["float32_nodes"] == [keep]
    graph = onnx.load(str(out / "model.onnx")).graph
    assert keep in [n.name for n in graph.node if n.op_type == "MatMul"]  # still a float MatMul
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)  # the others are not


def test_static_int8_of_the_convolutions_too_is_batch_invariant_and_stamped(fixtures_dir, mini_ccks, tmp_path):
    """--ops MatMul,Gemm,Conv: the IDCNN's convolutions become QDQ int8 as well (QLinearConv once
    ONNX Runtime fuses them), still calibrated once, so a row's emissions never depend on its batch mates."""
    import numpy as np
    import onnx

    out = quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-lexicon-bundle"), out=str(tmp_path / "c"), data=str(mini_ccks),
                                  dev_size=2, max_drop=100.0, method="static", calibration_records=4, ops="MatMul,Gemm,Conv"))
    graph = onnx.load(str(out / "model.onnx")).graph
    produced = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(produced[n.input[1]].op_type == "DequantizeLinear" for n in convs), "every Conv reads an int8 weight"
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["quantization"]["quantized_ops"] == ["MatMul", "Gemm", "Conv"]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    ids = rng.integers(6, 40, size=(2, 30)).astype(np.int64)
    ids[0, 9:] = 0
    mask = (ids != 0).astype(np.int64)
    feats = ((rng.random((2, 30, 24)) < 0.1) * mask[..., None]).astype(np.float32)
    both = sess.run(["emissions"], {"input_ids": ids, "attention_mask": mask, "lexicon_features": feats})[0]
    alone = sess.run(["emissions"], {"input_ids": ids[:1, :9], "attention_mask": mask[:1, :9], "lexicon_features": feats[:1, :9]})[0]
    np.testing.assert_allclose(both[0, :9], alone[0], atol=1e-5)


def test_quantize_refuses_unknown_ops_and_dynamic_convolutions(mini_ccks):
    with pytest.raises(SystemExit, match="--ops must name"):
        QuantizeConfig(bundle="b", out="o", data=str(mini_ccks), ops="MatMul,Softmax")
    with pytest.raises(SystemExit, match="needs --method static"):
        QuantizeConfig(bundle="b", out="o", data=str(mini_ccks), ops="MatMul,Conv")


def test_smoothing_keeps_the_float_graph_and_evens_out_the_channels(tmp_path):
    """SmoothQuant's rewrite is exact in real arithmetic: the smoothed float graph gives the same
    output; the MatMul's input channels then have maxima sqrt(a_j * w_j) (alpha 0.5), so one
    outlier channel no longer sets the activation's range alone."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cner_train.quantize import smooth_graph

    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"], name="act"), helper.make_node("MatMul", ["h", "w"], ["y"], name="/out/dense/MatMul")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 8]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 3])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src, dst = tmp_path / "f.onnx", tmp_path / "s.onnx"
    onnx.save(model, str(src))
    x = np.abs(rng.normal(size=(2, 5, 8))).astype(np.float32)
    x[..., 3] *= 40  # the outlier channel
    mask = np.ones((2, 5), dtype=np.int64)
    x_pad = x.copy()
    x_pad[1, 4] = 1e4  # a pad position: must not count
    mask_pad = mask.copy()
    mask_pad[1, 4] = 0
    feeds = [{"x": x_pad, "attention_mask": mask_pad}]

    assert smooth_graph(src, dst, feeds, r"out/dense", 0.5) == ["/out/dense/MatMul"]
    run = lambda p, f: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["y"], f)[0]  # noqa: E731
    np.testing.assert_allclose(run(dst, {"x": x, "attention_mask": mask}), run(src, {"x": x, "attention_mask": mask}),
                               rtol=1e-5, atol=1e-5)
    smoothed = onnx.load(str(dst))
    mul = next(n for n in smoothed.graph.node if n.op_type == "Mul")
    assert mul.name == "/out/dense/MatMul/smooth"
    inv = numpy_helper.to_array(next(i for i in smoothed.graph.initializer if i.name == mul.input[1]))
    a = np.abs(x_pad[mask_pad.astype(bool)]).max(axis=0)  # [8], pads left out
    np.testing.assert_allclose(a * inv, np.sqrt(a * np.abs(w).max(axis=1)), rtol=1e-5)
    with pytest.raises(SystemExit, match="matches no MatMul"):
        smooth_graph(src, dst, feeds, r"nothing", 0.5)


def test_real_rows_know_the_framed_bert_sequence():
    import numpy as np

    from cner_train.quantize import real_rows

    mask = np.array([[1, 1, 1], [1, 0, 0]])
    assert real_rows(np.zeros((2, 3, 4)), mask).tolist() == mask.astype(bool).tolist()
    # [CLS] + tokens + [SEP] (+ pads): row 1 has one token, so [CLS], it and [SEP]
    assert real_rows(np.zeros((2, 5, 4)), mask).tolist() == [[True] * 5, [True, True, True, False, False]]
    assert real_rows(np.zeros((6, 4)), mask).all()


def test_static_int8_with_smoothing_and_another_calibration(fixtures_dir, mini_ccks, tmp_path):
    out = quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-lexicon-bundle"), out=str(tmp_path / "s"), data=str(mini_ccks),
                                  dev_size=2, max_drop=100.0, method="static", calibration_records=4,
                                  smooth=r"attn/out/MatMul", calibration="percentile"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    method = manifest["quantization"]["method"]
    assert "99.999th-percentile scales" in method and "SmoothQuant (alpha 0.5) on 1 MatMuls matching" in method
    nodes = __import__("onnx").load(str(out / "model.onnx")).graph.node
    assert any(n.name == "/mha/attn/out/MatMul/smooth" for n in nodes)
    out = quantize(QuantizeConfig(bundle=str(fixtures_dir / "tiny-lexicon-bundle"), out=str(tmp_path / "m"), data=str(mini_ccks),
                                  dev_size=2, max_drop=100.0, method="static", calibration_records=4,
                                  calibration="moving-average"))
    assert "moving-average MinMax scales" in json.loads((out / "manifest.json").read_text(encoding="utf-8"))[
        "quantization"]["method"]
    with pytest.raises(SystemExit, match="--smooth needs --method static"):
        QuantizeConfig(bundle="b", out="o", data="d", smooth="x")
    with pytest.raises(SystemExit, match="--calibration must be one of"):
        QuantizeConfig(bundle="b", out="o", data="d", method="static", calibration="mse")


def test_a_static_int8_graph_restored_to_float_quantizes_to_the_same_weights(fixtures_dir, mini_ccks, tmp_path):
    """restore_float32 undoes QDQ: no QuantizeLinear/DequantizeLinear left, each int8 weight back as the float32
    it stood for (the float graph's answers up to int8 rounding), and quantizing that again finds the same integers."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from cner_train.quantize import quantize_static_graph, restore_float32

    src = fixtures_dir / "tiny-lexicon-bundle"
    out = quantize(QuantizeConfig(bundle=str(src), out=str(tmp_path / "q"), data=str(mini_ccks), dev_size=2,
                                  max_drop=100.0, method="static", calibration_records=4, ops="MatMul,Gemm,Conv"))
    restored = tmp_path / "restored.onnx"
    restore_float32(out / "model.onnx", restored)
    graph = onnx.load(str(restored)).graph
    assert not [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]

    rng = np.random.default_rng(2)
    ids = rng.integers(6, 40, size=(2, 20)).astype(np.int64)
    mask = np.ones_like(ids)
    feeds = {"input_ids": ids, "attention_mask": mask,
             "lexicon_features": (rng.random((2, 20, 24)) < 0.1).astype(np.float32)}
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["emissions"], feeds)[0]  # noqa: E731
    float32, back = run(src / "model.onnx"), run(restored)
    assert np.abs(back - float32).max() < 0.05 * np.abs(float32).max()

    again = tmp_path / "again.onnx"
    quantize_static_graph(restored, again, [feeds], exclude=[], ops=("MatMul", "Gemm", "Conv"))
    int8 = lambda path: sorted((i.dims[0] if i.dims else 0, numpy_helper.to_array(i).tobytes())  # noqa: E731
                               for i in onnx.load(str(path)).graph.initializer if i.data_type == onnx.TensorProto.INT8)
    assert int8(out / "model.onnx") == int8(again)
