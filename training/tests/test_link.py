"""The ICD-10 linker's pieces on a tiny BERT and a handful of names: the CBLUE
set metric, the parts of a diagnosis string, the keep-or-drop decision, and a
short training run end to end."""

import json

import numpy as np
import pytest
import torch

from cner_train.bge import build_bert
from cner_train.link import Decision, LinkTrainConfig, query_parts, read_candidates, set_prf, top_k, train_linker

NAMES = ["胃恶性肿瘤", "幽门梗阻", "癌", "高血压", "冠状动脉粥样硬化性心脏病", "肺恶性肿瘤", "糖尿病", "骨质疏松"]
PAIRS = [
    ("胃癌伴幽门梗阻", ["胃恶性肿瘤", "幽门梗阻", "癌"]),
    ("高血压冠心病", ["高血压", "冠状动脉粥样硬化性心脏病"]),
    ("右肺MT", ["肺恶性肿瘤"]),
    ("肺Ca", ["肺恶性肿瘤", "癌"]),
    ("2型糖尿病", ["糖尿病"]),
    ("骨质疏松症", ["骨质疏松"]),
    ("高血压病3级", ["高血压"]),
    ("胃Ca", ["胃恶性肿瘤", "癌"]),
]


def test_set_metric_is_cblues_micro_over_name_sets():
    m = set_prf([["a", "b"], ["c"]], [["a", "x"], ["c", "c"]])
    assert (m["tp"], m["predicted"], m["gold"]) == (2, 3, 3)
    assert m["precision"] == pytest.approx(200 / 3) and m["f1"] == pytest.approx(200 / 3)
    assert set_prf([["a"]], [[]])["f1"] == 0.0


def test_query_parts_split_where_clinicians_list_diagnoses():
    assert query_parts("胃癌伴幽门梗阻") == ["胃癌伴幽门梗阻", "胃癌", "幽门梗阻"]
    assert query_parts("糖尿病;骨质疏松、高血压") == ["糖尿病;骨质疏松、高血压", "糖尿病", "骨质疏松", "高血压"]
    assert query_parts("肺Ca") == ["肺Ca"]


def test_decision_keeps_the_best_whole_name_and_sure_parts():
    whole = (np.array([5, 1]), np.array([0.9, 0.5]))
    parts = [(np.array([2]), np.array([0.85])), (np.array([3]), np.array([0.6]))]
    assert Decision(whole=0.8, part=0.8).choose([whole, *parts]) == [5, 2]
    assert Decision(whole=0.95, part=0.99).choose([whole, *parts]) == [5], "never nothing"
    assert Decision(whole=0.95, part=0.5).choose([whole, *parts]) == [2, 3]


def test_top_k_is_best_first():
    q = np.array([[1.0, 0.0]])
    n = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    idx, cos = top_k(q, n, 2)
    assert idx.tolist() == [[1, 2]] and cos[0, 0] == pytest.approx(1.0)


@pytest.fixture()
def data(tmp_path):
    (tmp_path / "cand.tsv").write_text("".join(f"C{i:02d}\t{n}\n" for i, n in enumerate(NAMES)) + "C99\t癌\n", encoding="utf-8")
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"text": t, "normalized": g}, ensure_ascii=False) + "\n"
                                                  for t, g in PAIRS * 3), encoding="utf-8")
    chars = sorted({c for t, g in PAIRS for c in t + "".join(g)} | set("".join(NAMES)))
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    config = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
              "max_position_embeddings": 80, "type_vocab_size": 2, "vocab_size": len(tokens)}
    torch.manual_seed(0)
    bert = build_bert(config)
    torch.save({"bert_config": config, "state_dict": bert.state_dict(), "vocab": tokens, "source": {"name": "tiny"}},
               tmp_path / "encoder.pt")
    return tmp_path


def test_read_candidates_keeps_every_code_of_a_name(data):
    cands = {c.name: c.codes for c in read_candidates(data / "cand.tsv")}
    assert cands["癌"] == ("C02", "C99") and len(cands) == len(NAMES)


def test_a_short_training_run_measures_dev_and_fits_its_thresholds_on_the_training_side(data):
    cfg = LinkTrainConfig(pairs=str(data / "pairs.jsonl"), candidates=str(data / "cand.tsv"), encoder=str(data / "encoder.pt"),
                          out=str(data / "run"), dev_size=6, tune_size=6, epochs=2, batch_size=4, lr=1e-3, hard_negatives=2, dim=8)
    result = train_linker(cfg)
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    assert 0.0 <= result["dev"]["f1"] <= 100.0 and result["dev"]["gold"] > 0
    assert result["history"][-1]["dev"]["recall@50"] == pytest.approx(100.0), "every name is within the 50 nearest of 8"
    assert "dev = 6 of the 24" in result["protocol"] and "6 other training pairs" in result["protocol"]
    assert (data / "run" / "model.pt").exists() and (data / "run" / "vocab.txt").exists()
    assert result["dim"] == 8

    from cner_train.link import LinkExportConfig, OnnxLinker, export_linker

    bundle = export_linker(LinkExportConfig(run=str(data / "run"), candidates=str(data / "cand.tsv"), out=str(data / "bundle"),
                                            pairs=str(data / "pairs.jsonl"), version="link-test", top_k=4))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["version"] == "link-test" and manifest["parity_max_abs_diff"] < 1e-4
    assert set(manifest["files"]) == {"linker.onnx", "names.tsv", "vocab.txt", "config.json"}
    assert manifest["metrics"]["dev"]["gold"] == result["dev"]["gold"]
    linker = OnnxLinker(bundle)
    assert linker.codes[linker.names.index("癌")] == ["C02", "C99"]
    chosen = linker.link(["胃癌伴幽门梗阻", "高血压"])
    assert all(1 <= len(c) <= 6 for c in chosen)
    assert all(-1.0 <= s <= 1.0 + 1e-6 for c in chosen for _, s in c)

    from cner_train.link import LinkNamesConfig, int8_names

    names8 = int8_names(LinkNamesConfig(bundle=str(bundle), out=str(data / "names8"), pairs=str(data / "pairs.jsonl")))
    m8 = json.loads((names8 / "manifest.json").read_text(encoding="utf-8"))
    assert m8["version"] == "link-test-names8" and m8["quantization"]["names"]["names"] == len(NAMES)
    assert m8["metrics"]["dev_names_float"] == manifest["metrics"]["dev"] and m8["metrics"]["dev"]["gold"] == result["dev"]["gold"]
    from cner_train.corpus import sha256_file

    assert m8["files"]["linker.onnx"] == sha256_file(names8 / "linker.onnx") != manifest["files"]["linker.onnx"]
    assert len(OnnxLinker(names8).link(["胃癌伴幽门梗阻"])[0]) >= 1

    from cner_train.link import LinkQuantizeConfig, quantize_linker

    # Static int8 of the encoder, then of that int8 bundle again (restored to float first), as models/icd10 was.
    q1 = quantize_linker(LinkQuantizeConfig(bundle=str(names8), out=str(data / "q1"), pairs=str(data / "pairs.jsonl"),
                                            calibration_texts=8))
    mq1 = json.loads((q1 / "manifest.json").read_text(encoding="utf-8"))
    assert mq1["version"] == "link-test-names8-int8" and "requantized_from" not in mq1["quantization"]
    assert mq1["quantization"]["names"] == m8["quantization"]["names"] and mq1["quantization"]["graphs"]["linker.onnx"]["int8_nodes"] > 0
    q2 = quantize_linker(LinkQuantizeConfig(bundle=str(q1), out=str(data / "q2"), pairs=str(data / "pairs.jsonl"),
                                            calibration_texts=8, version_suffix=".2"))
    mq2 = json.loads((q2 / "manifest.json").read_text(encoding="utf-8"))
    assert mq2["version"] == "link-test-names8-int8.2"
    assert mq2["quantization"]["requantized_from"]["version"] == "link-test-names8-int8"
    assert mq2["quantization"]["requantized_from"]["dev"] == mq1["metrics"]["dev"]
    assert mq2["quantization"]["float_dev"] == mq1["quantization"]["float_dev"] and "names" in mq2["quantization"]
    assert mq2["files"]["linker.onnx"] == sha256_file(q2 / "linker.onnx")
    assert len(OnnxLinker(q2).link(["胃癌伴幽门梗阻"])[0]) >= 1


def test_golden_link_fixture_is_what_this_package_computes(fixtures_dir):
    """fixtures/golden/link.json (checked by the TypeScript suite too) is up to date with query_parts and Decision."""
    from cner_train.link import golden_link_cases

    on_disk = json.loads((fixtures_dir / "golden" / "link.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(golden_link_cases(0), ensure_ascii=False))


def test_golden_linker_fixture_is_what_the_tiny_linker_bundle_answers(fixtures_dir):
    """fixtures/golden/golden-linker.json: the committed tiny linker bundle, run by ONNX Runtime here,
    gives the recorded nearest names (cosines within 1e-5) and keeps the recorded names."""
    from cner_train.link import golden_linker_cases

    on_disk = json.loads((fixtures_dir / "golden" / "golden-linker.json").read_text(encoding="utf-8"))
    now = golden_linker_cases(fixtures_dir / "tiny-linker-bundle")
    assert [c["text"] for c in now] == [c["text"] for c in on_disk["cases"]]
    for a, b in zip(now, on_disk["cases"], strict=True):
        assert a["parts"] == b["parts"]
        assert [n["indices"] for n in a["nearest"]] == [n["indices"] for n in b["nearest"]]
        assert np.allclose([s for n in a["nearest"] for s in n["scores"]], [s for n in b["nearest"] for s in n["scores"]], atol=1e-5)
        assert [(c["name"], c["codes"]) for c in a["chosen"]] == [(c["name"], c["codes"]) for c in b["chosen"]]


def test_restore_float32_gives_the_same_answers_and_finds_the_names_product(fixtures_dir, tmp_path):
    """link-quantize's first steps on the tiny linker: float16-stored weights back as float32 initializers
    (the same nearest names and cosines), and the MatMul with the embedded names found (it stays float)."""
    import onnx
    import onnxruntime as ort

    from cner_train.link import _names_matmul
    from cner_train.quantize import restore_float32

    src = fixtures_dir / "tiny-linker-bundle" / "linker.onnx"
    dst = tmp_path / "f32.onnx"
    restore_float32(src, dst)
    graph = onnx.load(str(dst)).graph
    assert not any(n.op_type == "Cast" and n.input[0].endswith(".float16") for n in graph.node)
    feeds = {"input_ids": np.array([[6, 7, 8], [9, 10, 0]], dtype=np.int64),
             "attention_mask": np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int64)}
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)
    b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0], atol=1e-6)
    assert len(_names_matmul(dst)) == 1


def test_a_distilled_query_encoder_keeps_the_teachers_names_and_split(data, tmp_path):
    """link-distill: a 1-layer student of a 2-layer teacher learns to rank as the teacher (its loss falls), keeps the
    teacher's split, and link-export embeds the names and the memory with the teacher, not the student."""
    from cner_train.link import LinkExportConfig, OnnxLinker, export_linker, load_link_run
    from cner_train.link_distill import LinkDistillConfig, distill_linker

    enc = torch.load(data / "encoder.pt")
    config = {**enc["bert_config"], "num_hidden_layers": 2}
    torch.manual_seed(0)
    torch.save({**enc, "bert_config": config, "state_dict": build_bert(config).state_dict()}, tmp_path / "encoder2.pt")
    train_linker(LinkTrainConfig(pairs=str(data / "pairs.jsonl"), candidates=str(data / "cand.tsv"), encoder=str(tmp_path / "encoder2.pt"),
                                 out=str(tmp_path / "teacher"), dev_size=6, tune_size=6, epochs=1, batch_size=4, lr=1e-3,
                                 hard_negatives=2, dim=8))
    ccks = tmp_path / "ccks.jsonl"
    ccks.write_text(json.dumps({"originalText": "既往高血压病史，胃Ca术后。", "entities": [
        {"start_pos": 2, "end_pos": 5, "label_type": "疾病和诊断"}, {"start_pos": 8, "end_pos": 11, "label_type": "疾病和诊断"},
        {"start_pos": 0, "end_pos": 2, "label_type": "手术"}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = distill_linker(LinkDistillConfig(teacher=str(tmp_path / "teacher"), pairs=str(data / "pairs.jsonl"),
                                              candidates=str(data / "cand.tsv"), out=str(tmp_path / "student"), layers=1,
                                              mentions=[str(ccks)], epochs=4, batch_size=8, lr=3e-3))
    assert result["bert_config"]["num_hidden_layers"] == 1 and result["teacher"]["layers"] == 2
    assert (result["config"]["dev_size"], result["config"]["tune_size"], result["config"]["split_seed"]) == (6, 6, 42)
    losses = [h["loss"] for h in result["history"][1:]]
    assert losses[-1] < losses[0], losses
    # 8 names + 3 training-side texts not in dev (the 8 pairs repeat) + their parts + the CCKS mentions, dev texts left out
    assert result["distilled_texts"] >= len(NAMES) + 1

    student, _, _ = load_link_run(tmp_path / "student")
    teacher, vocab, _ = load_link_run(tmp_path / "teacher")
    assert student.bert.config.num_hidden_layers == 1
    bundle = export_linker(LinkExportConfig(run=str(tmp_path / "student"), candidates=str(data / "cand.tsv"), out=str(tmp_path / "bundle"),
                                            pairs=str(data / "pairs.jsonl"), version="distilled", top_k=4, memory=True, memory_top=2))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["distilled_from"]["run"] == str(tmp_path / "teacher")
    linker = OnnxLinker(bundle)
    from cner_train.link import embed

    # A name asked as a query: the student's cosine to the name as the teacher embedded it, which the graph stores.
    want = embed(student, vocab, ["高血压"]) @ embed(teacher, vocab, linker.names).T  # [1, names]
    idx, cos = linker.top(["高血压"])
    assert np.allclose(cos[0], want[0, idx[0]], atol=2e-3)  # float16 storage of the embedded names


@pytest.mark.parametrize("memory", [False, True])
def test_int8_names_keep_the_answers_within_int8_rounding_and_batch_invariant(tmp_path, memory):
    """link-names-int8 on the tiny linker (with and without a memory of training pairs): the names stored
    as int8 with a scale per name, nothing float left of them; the same nearest names, cosines within
    int8 rounding of the float graph's, and a query's answer the same alone as in a batch."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    from cner_train.link import int8_names_graph, tiny_linker_bundle

    bundle = tiny_linker_bundle(tmp_path / "bundle", memory=memory)
    dst = tmp_path / "names8.onnx"
    report = int8_names_graph(bundle / "linker.onnx", dst)
    assert report["memory_gathers"] == int(memory) and report["int8_bytes"] < report["float_bytes"] / 3
    graph = onnx.load(str(dst)).graph
    inits = {t.name: t for t in graph.initializer}
    assert inits["names.int8"].data_type == TensorProto.INT8
    assert not {"names", "names.float16"} & set(inits) and "names" not in {o for n in graph.node for o in n.output}
    assert [n.op_type for n in graph.node].count("MatMulInteger") == 1

    feeds = {"input_ids": np.array([[6, 7, 8, 9], [9, 10, 0, 0], [11, 6, 12, 0]], dtype=np.int64),
             "attention_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=np.int64)}
    a = ort.InferenceSession(str(bundle / "linker.onnx"), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    names = [o.name for o in a.get_outputs()]
    assert names == [o.name for o in b.get_outputs()]
    fa, fb = dict(zip(names, a.run(None, feeds), strict=True)), dict(zip(names, b.run(None, feeds), strict=True))
    # 16-d vectors, int8 per name and per query row: a cosine moves by at most a few 1e-3
    assert np.allclose(fa["scores"], fb["scores"], atol=2e-2)
    for row in range(3):  # the int8 graph's best name is the float graph's best or within rounding of it
        top = fb["indices"][row, 0]
        assert top in fa["indices"][row] and fa["scores"][row, list(fa["indices"][row]).index(top)] >= fa["scores"][row, 0] - 2e-2
    if memory:
        assert np.array_equal(fa["memory_rows"], fb["memory_rows"]) and np.array_equal(fa["memory_names"], fb["memory_names"])
        assert np.allclose(fa["memory_cosines"], fb["memory_cosines"], atol=2e-2)
    alone = dict(zip(names, b.run(None, {k: v[1:2] for k, v in feeds.items()}), strict=True))
    for k in names:
        assert np.array_equal(alone[k][0], fb[k][1]), k


def test_int8_names_refuses_a_graph_whose_names_are_int8_already(tmp_path):
    from cner_train.link import int8_names_graph, tiny_linker_bundle

    bundle = tiny_linker_bundle(tmp_path / "bundle")
    int8_names_graph(bundle / "linker.onnx", tmp_path / "once.onnx")
    with pytest.raises(SystemExit, match="int8 already"):
        int8_names_graph(tmp_path / "once.onnx", tmp_path / "twice.onnx")
