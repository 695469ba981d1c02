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
