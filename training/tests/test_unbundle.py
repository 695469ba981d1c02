"""cner-train unbundle: a bundle back into runs that export the same model again."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cner_train.export import ExportConfig, export, load_run
from cner_train.quantize import QuantizeConfig, quantize
from cner_train.train import TrainConfig, train
from cner_train.unbundle import UnbundleConfig, unbundle
from cner_train.vocab import Vocab


def texts_of(mini_ccks):
    return [json.loads(line)["originalText"] for line in mini_ccks.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mini_ccks):
    """Two character runs with lexicon features: one on the records' full vocabulary, one on its own
    (fewer characters, two the other lacks, another order), so their ensemble maps ids per member."""
    d = tmp_path_factory.mktemp("runs")
    texts = texts_of(mini_ccks)
    (d / "lexicon.tsv").write_text("DIS\t胃癌\nANA\t右肺下叶\nDRU\t奥沙利铂\nCHK\t血常规\n", encoding="utf-8")
    Vocab.build([], texts).save(d / "full.txt")
    Vocab.build(["㎎Ⅵ㎎Ⅵ"], texts[: len(texts) // 2]).save(d / "own.txt")
    out = []
    for name, seed in (("full", 1), ("own", 2)):
        run = d / name
        train(TrainConfig(ccks2019=str(mini_ccks), out=str(run), vocab=str(d / f"{name}.txt"), embedder="char", dev_size=2,
                          epochs=1, batch_size=2, lexicon=str(d / "lexicon.tsv"), seed=seed))
        out.append(run)
    return out


def emissions(bundle, rng):
    """The bundle's emissions on random ids (the last row padded) and lexicon features."""
    vocab_size = len(Vocab.load(bundle / "vocab.txt"))
    ids = rng.integers(1, vocab_size, size=(3, 40)).astype(np.int64)
    mask = np.ones_like(ids)
    ids[-1, 25:], mask[-1, 25:] = 0, 0
    feats = ((rng.random((3, 40, 24)) < 0.2) & (mask[:, :, None] > 0)).astype(np.float32)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["emissions"], {"input_ids": ids, "attention_mask": mask, "lexicon_features": feats})[0], mask


def same_bundle_model(a, b):
    for seed in (0, 1):
        (ea, mask), (eb, _) = emissions(a, np.random.default_rng(seed)), emissions(b, np.random.default_rng(seed))
        np.testing.assert_allclose(ea[mask > 0], eb[mask > 0], atol=1e-5)
    crf_a, crf_b = (json.loads((x / "crf.json").read_text(encoding="utf-8")) for x in (a, b))
    for key in ("start", "end", "transitions"):
        np.testing.assert_allclose(crf_a[key], crf_b[key], atol=1e-7, err_msg=key)


def test_a_single_model_bundle_unbundles_into_a_run_that_exports_it_again(runs, tmp_path):
    bundle = export(ExportConfig(run=str(runs[0]), out=str(tmp_path / "b"), version="one-1"))
    [run] = unbundle(UnbundleConfig(bundle=str(bundle), out=str(tmp_path / "run")))
    assert run == tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["unbundled_from"]["version"] == "one-1" and metrics["config"]["seed"] == 1
    assert (run / "vocab.txt").read_text(encoding="utf-8") == (runs[0] / "vocab.txt").read_text(encoding="utf-8")
    original, again = load_run(runs[0])[0].state_dict(), load_run(run)[0].state_dict()
    assert original.keys() == again.keys()
    for key in original:
        torch.testing.assert_close(again[key], original[key], atol=1e-6, rtol=0, msg=key)
    same_bundle_model(bundle, export(ExportConfig(run=str(run), out=str(tmp_path / "again"), version="one-1")))


def test_an_ensemble_unbundles_into_its_members_with_their_own_vocabularies(runs, tmp_path):
    bundle = export(ExportConfig(run=str(runs[0]), members=[str(runs[1])], member_weights=[0.5, 0.5],
                                 out=str(tmp_path / "ens"), version="ens-1"))
    members = unbundle(UnbundleConfig(bundle=str(bundle), out=str(tmp_path / "members")))
    assert members == [tmp_path / "members" / "member0", tmp_path / "members" / "member1"]
    for original, member in zip(runs, members, strict=True):
        assert Vocab.load(member / "vocab.txt").tokens == Vocab.load(original / "vocab.txt").tokens
        a, b = load_run(original)[0].state_dict(), load_run(member)[0].state_dict()
        for key in a:
            if not key.startswith("crf."):  # the graph holds only the members' averaged CRF
                torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0, msg=key)
    assert [json.loads((m / "metrics.json").read_text())["config"]["seed"] for m in members] == [1, 2]
    # the members again, with the same relative weights: the same model, CRF included
    again = export(ExportConfig(run=str(members[0]), members=[str(members[1])], member_weights=[0.5, 0.5],
                                out=str(tmp_path / "again"), version="ens-1"))
    same_bundle_model(bundle, again)


def test_an_int8_copy_is_refused(runs, mini_ccks, tmp_path):
    bundle = export(ExportConfig(run=str(runs[0]), out=str(tmp_path / "b"), version="q-1"))
    int8 = quantize(QuantizeConfig(bundle=str(bundle), out=str(tmp_path / "q"), data=str(mini_ccks), dev_size=2, max_drop=100.0))
    with pytest.raises(ValueError, match="cannot represent this bundle"):
        unbundle(UnbundleConfig(bundle=str(int8), out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
