"""The golden fixtures are what the TypeScript suite checks too: here, that this
package still produces them exactly, and that the tiny bundle's ONNX agrees."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from cner_train.corpus import sha256_file
from cner_train.crf import ConstrainedDecoder
from cner_train.text import TAGS, chunk_text, spans_from_tags
from cner_train.vocab import Vocab


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return json.loads((fixtures_dir / "golden" / "golden.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def bundle(fixtures_dir):
    return fixtures_dir / "tiny-bundle"


def test_manifest_hashes(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    for name, digest in manifest["files"].items():
        assert sha256_file(bundle / name) == digest, name
    assert json.loads((bundle / "labels.json").read_text(encoding="utf-8")) == list(TAGS)


def test_chunks_and_ids_match(golden, bundle):
    vocab = Vocab.load(bundle / "vocab.txt")
    for case in golden["cases"]:
        text = case["text"]
        assert [list(c) for c in chunk_text(text)] == case["chunks"]
        assert [vocab.encode(text[s:e]) for s, e in case["chunks"]] == case["input_ids"]


def test_onnx_emissions_match(golden, bundle):
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    for case in golden["cases"]:
        for ids, em in zip(case["input_ids"], case["emissions"], strict=True):
            x = np.array([ids], dtype=np.int64)
            got = sess.run(["emissions"], {"input_ids": x, "attention_mask": np.ones_like(x)})[0][0]
            np.testing.assert_allclose(got, np.array(em, dtype=np.float32), atol=1e-4)


def test_decoder_reproduces_tags_and_confidences(golden, bundle):
    decoder = ConstrainedDecoder.from_json(json.loads((bundle / "crf.json").read_text(encoding="utf-8")))
    for case in golden["cases"]:
        entities = []
        for (s, _), em, tags in zip(case["chunks"], case["emissions"], case["tags"], strict=True):
            em = np.array(em, dtype=np.float64)
            path = decoder.viterbi(em)
            assert [TAGS[t] for t in path] == tags
            for sp in spans_from_tags(path):
                entities.append((sp.start + s, sp.end + s, sp.code, decoder.span_confidence(em, sp.start, sp.end, sp.code)))
        assert [(e["start"], e["end"], e["type"]) for e in case["entities"]] == [e[:3] for e in entities]
        np.testing.assert_allclose([e["confidence"] for e in case["entities"]], [e[3] for e in entities], atol=1e-9)
        for e in case["entities"]:
            assert case["text"][e["start"]:e["end"]] == e["text"]


def test_fixture_covers_every_tag_kind(golden):
    seen = {t for case in golden["cases"] for tags in case["tags"] for t in tags}
    assert {"O", "B-DIS", "I-DIS", "B-ANA", "I-ANA", "B-TES", "I-TES"} <= seen


@pytest.mark.parametrize("name", ["golden-lexicon.json", "golden-bert.json"])
def test_lexicon_fixtures_reproduce(fixtures_dir, name):
    """golden-lexicon.json (tiny character model) and golden-bert.json (tiny BERT tagger,
    float16-stored): this package's ids, features, emissions and tags for their bundles."""
    from cner_train.golden import GOLDEN_LEXICON
    from cner_train.lexicon import Lexicon

    golden = json.loads((fixtures_dir / "golden" / name).read_text(encoding="utf-8"))
    bundle = fixtures_dir / golden["bundle"]
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    for file, digest in manifest["files"].items():
        assert sha256_file(bundle / file) == digest, file
    lexicon = Lexicon.load(bundle / "lexicon.tsv")
    assert lexicon.masks == Lexicon(GOLDEN_LEXICON).masks
    vocab = Vocab.load(bundle / "vocab.txt")
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = ConstrainedDecoder.from_json(json.loads((bundle / "crf.json").read_text(encoding="utf-8")))
    for case in golden["cases"]:
        text = case["text"]
        for (s, e), ids, ones, em, tags in zip(case["chunks"], case["input_ids"], case["lexicon_features"],
                                                case["emissions"], case["tags"], strict=True):
            assert vocab.encode(text[s:e]) == ids
            feats = lexicon.features(text[s:e])
            assert [[int(t), int(f)] for t, f in zip(*np.nonzero(feats), strict=True)] == ones
            x = np.array([ids], dtype=np.int64)
            got = sess.run(["emissions"], {"input_ids": x, "attention_mask": np.ones_like(x),
                                           "lexicon_features": feats[None].astype(np.float32)})[0][0]
            np.testing.assert_allclose(got, np.array(em, dtype=np.float32), atol=1e-4)
            assert [TAGS[t] for t in decoder.viterbi(np.array(em, dtype=np.float64))] == tags
