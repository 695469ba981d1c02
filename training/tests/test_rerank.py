"""The re-ranker: pair encoding, candidate lists, the keep decision, the tiny bundle's golden answers."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np

from cner_train.rerank import (
    LinkCandidate,
    MemoryAnswer,
    RerankDecision,
    candidate_config,
    candidate_list,
    fit_rerank_decision,
    golden_reranked_cases,
    linking_candidates,
    memory_votes,
    pair_batch,
)
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


# The same numbers as test/pipeline/link.test.ts.
MEMORY = MemoryAnswer(scores=np.array([0.9, 0.85, 0.5]), rows=np.array([0, 1, 2]),
                      names=np.array([[1, 2], [2, -1], [3, -1]]), cosines=np.array([[0.8, 0.7], [0.7, 0.0], [0.4, 0.0]]))
DECISION = RerankDecision(probability=4, cosine=2, vote=3, bias=-6, threshold=0.5, max_names=3)


def test_votes_weigh_neighbours_by_exp_of_cosine_gap_over_temperature_normalized():
    votes = memory_votes(MEMORY, k=2, temperature=0.05)
    assert list(votes) == [1, 2]
    assert math.isclose(votes[1][0], 1 / (1 + math.exp(-1)), abs_tol=1e-12)
    assert math.isclose(votes[2][0], 1.0, abs_tol=1e-12)


def test_candidates_add_the_neighbours_gold_names_with_cosines_and_votes():
    r = candidate_config(3, 2, 2, 0.05)
    got = linking_candidates([(np.array([5, 1]), np.array([0.9, 0.8]))], MEMORY, r)
    assert [(c.row, c.cosine) for c in got] == [(5, 0.9), (1, 0.8), (2, 0.7)]
    assert [round(c.vote, 6) for c in got] == [0, 0.731059, 1]


def test_the_rerank_top_by_prescore_are_re_ranked_in_candidate_order():
    cands = [LinkCandidate(5, 0.9, 0), LinkCandidate(1, 0.8, 0.731059), LinkCandidate(2, 0.7, 1)]
    assert [c.row for c in replace(DECISION, rerank_top=2, pre_vote=1).to_rerank(cands)] == [1, 2]
    assert [c.row for c in replace(DECISION, rerank_top=2).to_rerank(cands)] == [5, 1]
    assert [c.row for c in DECISION.to_rerank(cands)] == [5, 1, 2]
    # prescore probabilities sigmoid(cosine - 1): 0.475, 0.450, 0.426
    assert [c.row for c in replace(DECISION, pre_bias=-1, rerank_floor=0.44).to_rerank(cands)] == [5, 1]
    assert [c.row for c in replace(DECISION, pre_bias=-1, rerank_floor=0.9).to_rerank(cands)] == [5]


def test_decision_scores_a_logistic_keeps_what_clears_the_threshold_never_none_at_most_max():
    cands = [LinkCandidate(1, 0.8, 0.731059), LinkCandidate(2, 0.7, 1)]
    got = DECISION.choose(cands, [0.2, 0.9])
    assert [r for r, _ in got] == [2] and math.isclose(got[0][1], 1 / (1 + math.exp(-2)), rel_tol=1e-9)
    assert [r for r, _ in replace(DECISION, threshold=0.95).choose(cands, [0.2, 0.9])] == [2]
    assert len(replace(DECISION, bias=0, max_names=2).choose([LinkCandidate(i, 0) for i in (1, 2, 3)], [0.9] * 3)) == 2
    assert DECISION.choose([], []) == []


def test_fitted_decision_separates_gold_from_wrong_candidates():
    rng = np.random.default_rng(0)
    names = [f"n{i}" for i in range(40)]
    cands, probs, gold = [], [], []
    for _ in range(60):
        rows = rng.choice(40, size=6, replace=False)
        g = set(rows[:2].tolist())
        cands.append([LinkCandidate(int(r), float(rng.uniform(0.7, 0.9) if r in g else rng.uniform(0.4, 0.8)),
                                    float(r in g) * 0.8) for r in rows])
        probs.append(np.array([rng.uniform(0.6, 1.0) if r in g else rng.uniform(0.0, 0.5) for r in rows]))
        gold.append([names[r] for r in g])
    decision, f1 = fit_rerank_decision(cands, probs, gold, names, rerank_top=4)
    assert f1 > 95 and decision.probability > 0 and decision.rerank_top == 4


def test_golden_reranked_fixture_is_what_the_tiny_bundle_answers(fixtures_dir):
    """fixtures/golden/golden-reranked-linker.json (checked by the TypeScript suite too)."""
    on_disk = json.loads((fixtures_dir / "golden" / "golden-reranked-linker.json").read_text(encoding="utf-8"))
    now = golden_reranked_cases(fixtures_dir / on_disk["bundle"])
    for a, b in zip(now, on_disk["cases"], strict=True):
        assert a["memory"]["names"] == b["memory"]["names"] and a["reranked"] == b["reranked"]
        assert [c["row"] for c in a["candidates"]] == [c["row"] for c in b["candidates"]]
        assert np.allclose([c["vote"] for c in a["candidates"]], [c["vote"] for c in b["candidates"]], atol=1e-6)
        assert np.allclose(a["probabilities"], b["probabilities"], atol=1e-6)
        assert [(c["name"], c["codes"]) for c in a["chosen"]] == [(c["name"], c["codes"]) for c in b["chosen"]]


def test_a_shorter_cross_encoder_takes_the_first_layers_and_refuses_anything_else():
    import pytest
    import torch

    from cner_train.bge import build_bert
    from cner_train.link import TINY_LINK_BERT
    from cner_train.rerank import CrossEncoder, _check_only_dropped_layers

    torch.manual_seed(0)
    four = CrossEncoder(build_bert({**TINY_LINK_BERT, "num_hidden_layers": 4}, 30))
    two = CrossEncoder(build_bert({**TINY_LINK_BERT, "num_hidden_layers": 2}, 30))
    _check_only_dropped_layers(two.load_state_dict(four.state_dict(), strict=False), "four")
    assert torch.equal(two.bert.encoder.layer[1].output.dense.weight, four.bert.encoder.layer[1].output.dense.weight)
    assert torch.equal(two.score.weight, four.score.weight)
    with pytest.raises(ValueError, match="missing"):
        _check_only_dropped_layers(four.load_state_dict(two.state_dict(), strict=False), "two")
