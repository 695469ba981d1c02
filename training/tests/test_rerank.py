"""The re-ranker: pair encoding, candidate lists, the keep decision, the tiny bundle's golden answers."""

from __future__ import annotations

import json

import numpy as np

from cner_train.rerank import RerankDecision, candidate_list, golden_reranked_cases, pair_batch
from cner_train.vocab import CLS_ID, PAD_ID, SEP_ID, Vocab


def test_pairs_are_cls_text_sep_name_sep_with_token_types_right_padded():
    vocab = Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[SPACE]", "胃", "癌", "肿", "瘤"])
    ids, mask, types = pair_batch(vocab, ["胃癌", "癌"], ["胃肿瘤", "癌"])
    assert ids.tolist() == [[CLS_ID, 6, 7, SEP_ID, 6, 8, 9, SEP_ID], [CLS_ID, 7, SEP_ID, 7, SEP_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert mask.tolist() == [[1] * 8, [1] * 5 + [0] * 3]
    assert types.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0, 0]]


def test_candidates_are_the_whole_texts_top_and_each_parts_top_by_best_cosine():
    whole = (np.array([5, 1, 2, 9]), np.array([0.9, 0.8, 0.7, 0.6]))
    part = (np.array([3, 1, 4]), np.array([0.95, 0.85, 0.5]))
    assert candidate_list([whole, part], k_whole=3, k_part=2) == [3, 5, 1, 2]


def test_decision_keeps_what_clears_the_threshold_never_none_at_most_max():
    d = RerankDecision(threshold=0.5, max_names=2)
    assert d.choose([1, 2, 3], [0.6, 0.9, 0.7]) == [(2, 0.9), (3, 0.7)]
    assert d.choose([1, 2], [0.1, 0.3]) == [(2, 0.3)]
    assert d.choose([], []) == []


def test_decision_fuses_the_probability_with_the_cosine_by_its_weight():
    """The same numbers as test/pipeline/link.test.ts."""
    d = RerankDecision(threshold=0.6, max_names=3, cosine_weight=0.5)
    got = d.choose([1, 2, 3], [0.4, 0.9, 0.6], [0.9, 0.1, 0.8])  # by probability alone: 2, 3, 1
    assert [i for i, _ in got] == [3, 1]
    assert np.allclose([s for _, s in got], [0.7, 0.65])
    assert [i for i, _ in RerankDecision(0.9, 3, 0.5).choose([1, 2], [0.1, 0.9], [0.9, 0.1])] == [1]


def test_golden_reranked_fixture_is_what_the_tiny_bundle_answers(fixtures_dir):
    """fixtures/golden/golden-reranked-linker.json (checked by the TypeScript suite too)."""
    on_disk = json.loads((fixtures_dir / "golden" / "golden-reranked-linker.json").read_text(encoding="utf-8"))
    now = golden_reranked_cases(fixtures_dir / on_disk["bundle"])
    for a, b in zip(now, on_disk["cases"], strict=True):
        assert a["candidates"] == b["candidates"]
        assert np.allclose(a["probabilities"], b["probabilities"], atol=1e-6)
        assert [(c["name"], c["codes"]) for c in a["chosen"]] == [(c["name"], c["codes"]) for c in b["chosen"]]
