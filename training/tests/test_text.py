import unicodedata
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from cner_train.text import (
    MAX_CHUNK_LEN,
    TAGS,
    Span,
    bio_tags,
    chunk_text,
    entities_cut,
    normalize_char,
    spans_from_tags,
)

ALPHABET = st.sampled_from(list("。；，、 \t\n\u3000患者胃癌术后ABCabc0123😀𠀀") + ["\u00a0"])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=700), st.integers(min_value=1, max_value=130))
def test_chunks_cover_text_exactly_and_respect_limit(text, max_len):
    chunks = chunk_text(text, max_len)
    if not text:
        assert chunks == []
        return
    assert chunks[0][0] == 0 and chunks[-1][1] == len(text)
    for (_, e1), (s2, _) in pairwise(chunks):
        assert e1 == s2
    assert all(0 < e - s <= max_len for s, e in chunks)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=400))
def test_every_period_ends_a_piece(text):
    # A chunk boundary never falls right after a character unless that character ends a
    # sentence or a secondary boundary, or the cut was hard (a run with no boundary at all).
    bounds = [s for s, _ in chunk_text(text)[1:]]
    for b in bounds:
        prev = text[b - 1]
        assert prev in "。；，、 \t\n\u3000\u00a0" or _no_boundary_before(text, b)


def _no_boundary_before(text, b):
    start = max(0, b - MAX_CHUNK_LEN)
    return not any(c in "。；，、 \t\n\u3000\u00a0" for c in text[start:b])


def test_sentences_are_packed_and_the_period_stays():
    text = "甲。" * 100
    chunks = chunk_text(text)
    assert [e - s for s, e in chunks] == [128, 72]
    assert all(text[e - 1] == "。" for _, e in chunks)


def test_long_sentence_prefers_semicolon_over_comma():
    text = "甲" * 100 + "；" + "乙" * 20 + "，" + "丙" * 30 + "。"
    # one tier of all boundaries would cut after the comma (122); the semicolon tier wins
    assert chunk_text(text) == [(0, 101), (101, 153)]


def test_hard_cut_without_boundaries():
    assert chunk_text("x" * 300) == [(0, 128), (128, 256), (256, 300)]


def test_astral_characters_are_one_position():
    text = "😀" * 130
    assert chunk_text(text) == [(0, 128), (128, 130)]


def test_normalize_is_one_to_one():
    assert normalize_char("Ａ") == "a"
    assert normalize_char("５") == "5"
    assert normalize_char("\u3000") == " "
    assert normalize_char("\t") == " "
    assert normalize_char("Z") == "z"
    assert normalize_char("患") == "患"
    assert normalize_char("É") == "É"  # only ASCII is lower-cased
    for cp in range(0x20, 0x3000):
        ch = chr(cp)
        if unicodedata.category(ch) != "Cs":
            assert len(normalize_char(ch)) == 1


def test_bio_round_trip_and_cut_count():
    spans = [Span(1, 4, "DIS"), Span(5, 6, "DRU")]
    tags = bio_tags(8, spans)
    assert [TAGS[t] for t in tags] == ["O", "B-DIS", "I-DIS", "I-DIS", "O", "B-DRU", "O", "O"]
    assert spans_from_tags(tags) == spans
    assert entities_cut([(0, 3), (3, 8)], spans) == 1
    assert entities_cut([(0, 4), (4, 8)], spans) == 0


def test_stray_inside_tag_is_ignored():
    tags = [TAGS.index(t) for t in ("I-DIS", "I-DIS", "O", "B-ANA", "I-DIS")]
    assert spans_from_tags(tags) == [Span(3, 4, "ANA")]
