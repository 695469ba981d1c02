"""A tiny end-to-end run: fine-tune on synthetic records, export the bundle,
check ONNX parity at several shapes and the manifest."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cner_train.albert import AlbertConfig, AlbertEncoder
from cner_train.corpus import sha256_file
from cner_train.export import ExportConfig, export, load_run
from cner_train.text import TAGS
from cner_train.train import TrainConfig, train
from cner_train.vocab import Vocab


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, mini_ccks):
    """A tiny untrained 'pretrained' encoder with a vocabulary of the mini records."""
    d = tmp_path_factory.mktemp("pretrained")
    texts = [json.loads(line)["originalText"] for line in mini_ccks.read_text(encoding="utf-8").splitlines()]
    vocab = Vocab.build([], texts)
    vocab.save(d / "vocab.txt")
    cfg = AlbertConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    torch.save({"encoder": AlbertEncoder(cfg).state_dict(), "model_config": cfg.to_dict()}, d / "encoder.pt")
    return d / "encoder.pt"


@pytest.fixture(scope="module")
def run(tmp_path_factory, mini_ccks, pretrained):
    out = tmp_path_factory.mktemp("run")
    result = train(TrainConfig(ccks2019=str(mini_ccks), out=str(out), pretrained=str(pretrained), dev_size=2,
                               epochs=3, batch_size=2, lr=1e-2, lr_embedder=1e-3, optimizer="radam"))
    assert result["best_epoch"] >= 1
    return out


def test_run_writes_metrics_per_type(run):
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["dev"]["per_type"]) == {"DIS", "EXA", "TES", "OPE", "DRU", "ANA"}
    assert 0.0 <= metrics["dev"]["micro"]["f1"] <= 100.0
    assert len(metrics["history"]) == 3


def test_export_bundle_and_parity(run, tmp_path):
    bundle = export(ExportConfig(run=str(run), out=str(tmp_path / "bundle"), version="test-1"))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["version"] == "test-1"
    assert manifest["labels"] == list(TAGS)
    assert manifest["metrics"]["dev_micro"] is not None
    for name, digest in manifest["files"].items():
        assert sha256_file(bundle / name) == digest
    crf = json.loads((bundle / "crf.json").read_text(encoding="utf-8"))
    assert len(crf["start"]) == len(crf["end"]) == len(crf["transitions"]) == 13

    model, vocab, _ = load_run(run)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    assert [o.name for o in sess.get_outputs()] == ["emissions"]
    rng = np.random.default_rng(1)
    # tolerance 1e-4 absolute on emissions of order 1-10: float32 kernels differ in summation order
    for batch in (1, 4):
        for seq in (1, 17, 128):
            ids = rng.integers(1, len(vocab), size=(batch, seq)).astype(np.int64)
            mask = np.ones_like(ids)
            if batch > 1:
                ids[1, seq // 2 + 1:] = 0
                mask[1, seq // 2 + 1:] = 0
            with torch.no_grad():
                ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            got = sess.run(["emissions"], {"input_ids": ids, "attention_mask": mask})[0]
            assert got.shape == (batch, seq, 13)
            for b in range(batch):
                n = int(mask[b].sum())
                np.testing.assert_allclose(got[b, :n], ref[b, :n], atol=1e-4)


def test_bundle_predictions_equal_pytorch_predictions(run, tmp_path, mini_ccks):
    from cner_train.corpus import read_ccks
    from cner_train.data import make_examples
    from cner_train.evaluate import bundle_predict
    from cner_train.train import decoder_of, predict

    bundle = export(ExportConfig(run=str(run), out=str(tmp_path / "b2"), version="test-2"))
    model, vocab, _ = load_run(run)
    records = read_ccks(mini_ccks)
    torch_spans = [[s for s, _ in r] for r in predict(model, decoder_of(model), records, make_examples(records, vocab))]
    assert bundle_predict(bundle, records) == torch_spans


@pytest.fixture(scope="module")
def run_seed2(tmp_path_factory, mini_ccks, pretrained):
    out = tmp_path_factory.mktemp("run2")
    train(TrainConfig(ccks2019=str(mini_ccks), out=str(out), pretrained=str(pretrained), dev_size=2,
                      epochs=2, batch_size=2, lr=1e-2, lr_embedder=1e-3, optimizer="radam", seed=2))
    return out


def test_ensemble_bundle_is_the_mean_of_its_members(run, run_seed2, tmp_path):
    bundle = export(ExportConfig(run=str(run), members=[str(run_seed2)], out=str(tmp_path / "ens"), version="ens-1"))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert [m["run"] for m in manifest["ensemble"]["members"]] == [str(run), str(run_seed2)]
    assert "ensemble of 2 runs" in manifest["metrics"]["protocol"]
    assert manifest["metrics"]["dev_micro"] is not None
    for name, digest in manifest["files"].items():
        assert sha256_file(bundle / name) == digest

    members = [load_run(run)[0], load_run(run_seed2)[0]]
    crf = json.loads((bundle / "crf.json").read_text(encoding="utf-8"))
    for key, name in (("start", "start_transitions"), ("end", "end_transitions"), ("transitions", "transitions")):
        mean = torch.stack([getattr(m.crf, name).detach() for m in members]).double().mean(0).numpy()
        np.testing.assert_allclose(np.array(crf[key]), mean, atol=1e-6)

    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 20, size=(3, 17)).astype(np.int64)
    mask = np.ones_like(ids)
    ids[2, 9:] = 0
    mask[2, 9:] = 0
    with torch.no_grad():
        ref = torch.stack([m(torch.from_numpy(ids), torch.from_numpy(mask)) for m in members]).mean(0).numpy()
    got = sess.run(["emissions"], {"input_ids": ids, "attention_mask": mask})[0]
    for b, n in enumerate(mask.sum(1)):
        np.testing.assert_allclose(got[b, :n], ref[b, :n], atol=1e-4)


@pytest.fixture(scope="module")
def char_run_own_vocab(tmp_path_factory, mini_ccks):
    """A character model whose vocabulary lacks characters the ALBERT runs know, has two they lack,
    and orders the rest differently."""
    d = tmp_path_factory.mktemp("ownvocab")
    texts = [json.loads(line)["originalText"] for line in mini_ccks.read_text(encoding="utf-8").splitlines()]
    Vocab.build(["㎎Ⅵ㎎Ⅵ"], texts[: len(texts) // 2]).save(d / "vocab.txt")  # two characters the ALBERT runs lack
    out = d / "run"
    train(TrainConfig(ccks2019=str(mini_ccks), out=str(out), vocab=str(d / "vocab.txt"), embedder="char", dev_size=2,
                      epochs=1, batch_size=2))
    return out


def test_ensemble_maps_the_bundle_vocabulary_to_a_member_with_its_own(run, char_run_own_vocab, tmp_path, mini_ccks):
    bundle = export(ExportConfig(run=str(run), members=[str(char_run_own_vocab)], out=str(tmp_path / "mixed"), version="mix-1"))
    (albert, albert_vocab, _), (char, char_vocab, _) = load_run(run), load_run(char_run_own_vocab)
    bundle_vocab = Vocab.load(bundle / "vocab.txt")
    assert bundle_vocab.tokens[: len(albert_vocab)] == albert_vocab.tokens != char_vocab.tokens
    assert set(bundle_vocab.tokens) == set(albert_vocab.tokens) | set(char_vocab.tokens)
    assert sorted(bundle_vocab.tokens[len(albert_vocab):]) == ["Ⅵ", "㎎"]
    text = json.loads(mini_ccks.read_text(encoding="utf-8").splitlines()[-1])["originalText"][:60] + "㎎Ⅵ"
    assert any(ch not in char_vocab.index for ch in text)  # some characters are [UNK] to the member
    ids = np.array([bundle_vocab.encode(text)], dtype=np.int64)
    # each member sees exactly its own encoding of the same text
    own_albert, own_char = torch.tensor([albert_vocab.encode(text)]), torch.tensor([char_vocab.encode(text)])
    mask = torch.ones_like(own_char)
    with torch.no_grad():
        ref = ((albert(own_albert, mask) + char(own_char, mask)) / 2).numpy()
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["emissions"], {"input_ids": ids, "attention_mask": mask.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_weighted_ensemble_with_all_weight_on_one_member_is_that_member(run, run_seed2, tmp_path):
    bundle = export(ExportConfig(run=str(run), members=[str(run_seed2)], member_weights=[0.0, 1.0], out=str(tmp_path / "w"),
                                 version="w-1"))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["ensemble"]["combination"].startswith("weighted mean (weights 0, 1)")
    assert manifest["ensemble"]["weights"] == [0.0, 1.0]
    second = load_run(run_seed2)[0]
    crf = json.loads((bundle / "crf.json").read_text(encoding="utf-8"))
    np.testing.assert_allclose(np.array(crf["transitions"]), second.crf.transitions.detach().double().numpy(), atol=1e-6)
    ids = np.array([[3, 5, 7, 9, 11]], dtype=np.int64)
    mask = np.ones_like(ids)
    got = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        ["emissions"], {"input_ids": ids, "attention_mask": mask})[0]
    with torch.no_grad():
        ref = second(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    with pytest.raises(ValueError, match="summing to 1"):
        export(ExportConfig(run=str(run), members=[str(run_seed2)], member_weights=[0.5, 0.6], out=str(tmp_path / "x")))


def test_ensemble_refuses_dev_metrics_without_protocol(run, run_seed2, tmp_path):
    metrics = tmp_path / "dev.json"
    metrics.write_text(json.dumps({"micro": {"f1": 1.0}, "per_type": {}}), encoding="utf-8")
    with pytest.raises(SystemExit, match="--dev-protocol"):
        export(ExportConfig(run=str(run), members=[str(run_seed2)], out=str(tmp_path / "e"), dev_metrics=str(metrics)))


def test_all_records_run_keeps_the_last_epoch_and_exports_the_recipes_dev_score(run, mini_ccks, pretrained, tmp_path):
    """--dev-size 0: every record trains, no epoch is chosen on dev; the bundle then
    carries the dev score measured on the same recipe with the dev records held out."""
    out = tmp_path / "all"
    result = train(TrainConfig(ccks2019=str(mini_ccks), out=str(out), pretrained=str(pretrained), dev_size=0,
                               epochs=2, batch_size=2, lr=1e-2, lr_embedder=1e-3, optimizer="radam"))
    assert result["best_epoch"] == 2 and result["dev"] is None
    assert [h["epoch"] for h in result["history"]] == [1, 2] and all("dev_f1" not in h for h in result["history"])
    assert (out / "model.pt").exists()

    twin = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["dev"]
    (tmp_path / "twin-dev.json").write_text(json.dumps(twin), encoding="utf-8")
    protocol = "twin trained without the dev records, same recipe"
    bundle = export(ExportConfig(run=str(out), out=str(tmp_path / "bundle"), version="all-1",
                                 dev_metrics=str(tmp_path / "twin-dev.json"), dev_protocol=protocol))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["metrics"] == {"protocol": protocol, "dev_micro": twin["micro"], "dev_per_type": twin["per_type"]}
    assert manifest["training"]["dev_size"] == 0

    # without them the manifest says there was no dev split instead of inventing a score
    bare = export(ExportConfig(run=str(out), out=str(tmp_path / "bare"), version="all-2"))
    metrics = json.loads((bare / "manifest.json").read_text(encoding="utf-8"))["metrics"]
    assert metrics["dev_micro"] is None and "no dev split" in metrics["protocol"]


@pytest.fixture(scope="module")
def lexicon_run(tmp_path_factory, mini_ccks):
    """A character model that reads lexicon features (terms of the mini records' own lists)."""
    d = tmp_path_factory.mktemp("lexrun")
    texts = [json.loads(line)["originalText"] for line in mini_ccks.read_text(encoding="utf-8").splitlines()]
    Vocab.build([], texts).save(d / "vocab.txt")
    (d / "lexicon.tsv").write_text("DIS\t胃癌\nANA\t右肺下叶\nDRU\t奥沙利铂\nCHK\t血常规\nSYM\t升高\n", encoding="utf-8")
    out = d / "run"
    train(TrainConfig(ccks2019=str(mini_ccks), out=str(out), vocab=str(d / "vocab.txt"), embedder="char", dev_size=2,
                      epochs=2, batch_size=2, lexicon=str(d / "lexicon.tsv")))
    return out


def test_lexicon_model_exports_a_third_input_and_its_lexicon(lexicon_run, tmp_path, mini_ccks):
    from cner_train.corpus import read_ccks
    from cner_train.data import make_examples
    from cner_train.evaluate import bundle_predict
    from cner_train.lexicon import NUM_FEATURES, Lexicon
    from cner_train.train import decoder_of, predict

    bundle = export(ExportConfig(run=str(lexicon_run), out=str(tmp_path / "lex"), version="lex-1"))
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "lexicon_features"]
    assert sess.get_inputs()[2].shape[2] == NUM_FEATURES
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert sha256_file(bundle / "lexicon.tsv") == manifest["files"]["lexicon.tsv"]
    assert sha256_file(bundle / "lexicon.trie") == manifest["files"]["lexicon.trie"]  # the processor loads this one
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    assert config["inputs"][-1] == "lexicon_features" and config["lexicon"]["features"] == NUM_FEATURES

    model, vocab, _ = load_run(lexicon_run)
    lexicon = Lexicon.load(bundle / "lexicon.tsv")
    records = read_ccks(mini_ccks)
    examples = make_examples(records, vocab, lexicon=lexicon)
    assert any(x.lexicon.any() for x in examples)
    torch_spans = [[s for s, _ in r] for r in predict(model, decoder_of(model), records, examples)]
    assert bundle_predict(bundle, records) == torch_spans
    # the features matter to this model: without them the emissions change
    x = examples[0]
    ids = torch.tensor([x.ids])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        with_f = model(ids, mask, torch.from_numpy(x.lexicon[None].astype(np.float32)))
        without = model(ids, mask, torch.zeros(1, len(x.ids), NUM_FEATURES))
    assert not torch.allclose(with_f, without)
    with pytest.raises(ValueError, match="lexicon features"):
        model(ids, mask)
