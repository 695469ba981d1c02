import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cner_train.lexicon import CATEGORIES, NUM_FEATURES, Lexicon

DIS, DRU, ANA = (next(i for i, (c, _) in enumerate(CATEGORIES) if c == code) for code in ("DIS", "DRU", "ANA"))
BEGIN, INSIDE, END = 0, 1, 2


def on(feats, pos, cat):
    """The (begin, inside, end) bits of category `cat` at `pos`."""
    return tuple(int(x) for x in feats[pos, 3 * cat : 3 * cat + 3])


def test_every_occurrence_marks_begin_inside_end_per_category():
    lex = Lexicon([("DIS", "胃癌"), ("DIS", "胃癌根治"), ("ANA", "胃"), ("ANA", "腹腔"), ("DRU", "奥沙利铂")])
    text = "胃癌根治术后予奥沙利铂"
    f = lex.features(text)
    assert f.shape == (len(text), NUM_FEATURES) and f.dtype == np.uint8
    # 胃癌 (0–2) and 胃癌根治 (0–4) overlap: begin at 0, end at 1 and 3, inside at 1–2
    assert on(f, 0, DIS) == (1, 0, 0)
    assert on(f, 1, DIS) == (0, 1, 1)
    assert on(f, 2, DIS) == (0, 1, 0)
    assert on(f, 3, DIS) == (0, 0, 1)
    assert on(f, 4, DIS) == (0, 0, 0)
    # one-character terms are never matched (2–40 characters)
    assert on(f, 0, ANA) == (0, 0, 0) and "胃" not in lex.masks
    assert [on(f, p, DRU) for p in range(7, 11)] == [(1, 0, 0), (0, 1, 0), (0, 1, 0), (0, 0, 1)]
    assert f.sum() == 5 + 4  # DIS bits at 0–3 (the two terms share their begin), DRU bits at 7–10; 腹腔 absent


def test_terms_and_text_are_normalized_alike_and_one_term_may_be_in_several_lists():
    lex = Lexicon([("EXA", "ＣＴ检查"), ("CHK", "ct检查")])
    assert lex.masks == {"ct检查": 0b1000010}
    f = lex.features("行CT检查")  # upper-case ASCII is lowered, full-width folded: same as the vocabulary
    exa, chk = 1, 6
    assert on(f, 1, exa) == on(f, 1, chk) == (1, 0, 0) and on(f, 4, exa) == (0, 0, 1)


def test_save_load_round_trip_is_sorted_and_reproducible(tmp_path):
    lex = Lexicon([("DRU", "阿司匹林"), ("DIS", "高血压"), ("SYM", "高血压")])
    lex.save(tmp_path / "a.tsv")
    text = (tmp_path / "a.tsv").read_text(encoding="utf-8")
    assert text == "DRU\t阿司匹林\nDIS\t高血压\nSYM\t高血压\n"  # code-point order: 阿 U+963F < 高 U+9AD8
    again = Lexicon.load(tmp_path / "a.tsv")
    assert again.masks == lex.masks
    again.save(tmp_path / "b.tsv")
    assert (tmp_path / "b.tsv").read_text(encoding="utf-8") == text


def test_unknown_category_is_refused():
    with pytest.raises(ValueError, match="unknown lexicon category 'XYZ'"):
        Lexicon([("XYZ", "术后")])


def test_features_agree_with_a_brute_force_scan():
    rng = np.random.default_rng(3)
    alphabet = "胃癌肝肺左右叶术后"
    terms = {("".join(rng.choice(list(alphabet), size=rng.integers(2, 5))), CATEGORIES[rng.integers(8)][0]) for _ in range(60)}
    lex = Lexicon([(c, t) for t, c in terms])
    for _ in range(30):
        text = "".join(rng.choice(list(alphabet), size=rng.integers(1, 40)))
        want = np.zeros((len(text), NUM_FEATURES), dtype=np.uint8)
        for t, c in terms:
            ci = next(i for i, (code, _) in enumerate(CATEGORIES) if code == c)
            for s in range(len(text) - len(t) + 1):
                if text[s : s + len(t)] == t:
                    want[s, 3 * ci] = 1
                    want[s + 1 : s + len(t) - 1, 3 * ci + 1] = 1
                    want[s + len(t) - 1, 3 * ci + 2] = 1
        np.testing.assert_array_equal(lex.features(text), want)


def trie_features(a: dict, text: str) -> np.ndarray:
    """Lexicon features by walking the arrays of ``trie_arrays`` as src/pipeline/lexicon.ts does."""
    from cner_train.lexicon import normalize_term, unit_order

    root = dict(zip(a["root_keys"].tolist(), a["root_nodes"].tolist(), strict=True))
    cps = [unit_order(ord(c)) for c in normalize_term(text)]
    out = np.zeros((len(cps), NUM_FEATURES), dtype=np.uint8)
    for s in range(len(cps)):
        node = root.get(cps[s], 0)
        for e in range(s + 2, len(cps) + 1):
            if node == 0:
                break
            child = int(a["first_child"][node])
            while child and a["order"][child] < cps[e - 1]:
                child = int(a["next_sibling"][child])
            node = child if child and a["order"][child] == cps[e - 1] else 0
            mask = int(a["categories"][node]) if node else 0
            for c in range(len(CATEGORIES)):
                if mask >> c & 1:
                    out[s, 3 * c] = 1
                    out[s + 1 : e - 1, 3 * c + 1] = 1
                    out[e - 1, 3 * c + 2] = 1
    return out


# Astral characters and U+E000..U+FFFF order differently by code unit and by code point: both are here.
ALPHABET = ["胃", "癌", "肝", "肺", "左", "叶", "𠀀", "𝔸", "\ue000", "ｚ", "Z", "z"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([c for c, _ in CATEGORIES]), st.text(ALPHABET, min_size=1, max_size=5)),
                max_size=30),
       st.text(ALPHABET, max_size=30))
def test_the_trie_file_gives_the_features_of_the_lexicon(entries, text):
    """lexicon.trie's arrays, walked as the processor walks them, mark what Lexicon.features marks;
    siblings ascend and every child and sibling lies after its node (what lexicon.ts checks)."""
    from cner_train.lexicon import trie_arrays

    lex = Lexicon(entries)
    a = trie_arrays(lex.masks)
    assert int(a["terms"]) == len(lex.masks)
    assert np.array_equal(trie_features(a, text), lex.features(text))
    n = np.arange(len(a["order"]))
    fc, ns = a["first_child"], a["next_sibling"]
    assert ((fc == 0) | (fc > n)).all() and ((ns == 0) | (ns > n)).all()
    assert (a["order"][ns[ns > 0]] > a["order"][n[ns > 0]]).all()
    assert (np.diff(a["root_keys"]) > 0).all()


def test_trie_file_round_trips(tmp_path):
    import zlib

    from cner_train.lexicon import TRIE_MAGIC, save_trie, trie_arrays

    lex = Lexicon([("DIS", "胃癌"), ("DIS", "胃癌根治"), ("DRU", "奥沙利铂"), ("TES", "N端脑钠肽前体")])
    save_trie(lex, tmp_path / "lexicon.trie")
    raw = (tmp_path / "lexicon.trie").read_bytes()
    assert raw[:8] == TRIE_MAGIC
    terms, nodes, first = np.frombuffer(raw[8:20], dtype="<u4").tolist()
    words = np.frombuffer(zlib.decompress(raw[20:]), dtype="<i4")
    a = trie_arrays(lex.masks)
    assert (terms, nodes, first) == (4, len(a["order"]), len(a["root_keys"]))
    parts = ("root_keys", "root_nodes", "first_child", "next_sibling", "order", "categories")
    assert np.array_equal(words, np.concatenate([a[k] for k in parts]))
