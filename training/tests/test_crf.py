import itertools
from itertools import pairwise

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cner_train.crf import CRF, ConstrainedDecoder, bio_constraints
from cner_train.text import TAGS, spans_from_tags

START_OK, TRANS_OK = bio_constraints()


def valid_paths(n):
    for path in itertools.product(range(len(TAGS)), repeat=n):
        if START_OK[path[0]] and all(TRANS_OK[a, b] for a, b in pairwise(path)):
            yield path


def path_score(d, em, path):
    s = d.start[path[0]] + em[0, path[0]] + d.end[path[-1]]
    for t in range(1, len(path)):
        s += d.trans[path[t - 1], path[t]] + em[t, path[t]]
    return s


def random_decoder(rng):
    return ConstrainedDecoder(rng.normal(size=13), rng.normal(size=13), rng.normal(size=(13, 13)))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3))
def test_viterbi_matches_brute_force(seed, n):
    rng = np.random.default_rng(seed)
    d = random_decoder(rng)
    em = rng.normal(size=(n, 13)) * 2
    best = max(valid_paths(n), key=lambda p: path_score(d, em, p))
    got = d.viterbi(em)
    assert np.isclose(path_score(d, em, got), path_score(d, em, best))
    assert START_OK[got[0]] and all(TRANS_OK[a, b] for a, b in pairwise(got))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3))
def test_span_confidence_is_the_exact_posterior(seed, n):
    rng = np.random.default_rng(seed)
    d = random_decoder(rng)
    em = rng.normal(size=(n, 13))
    paths = list(valid_paths(n))
    scores = np.array([path_score(d, em, p) for p in paths])
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    for s in range(n):
        for e in range(s + 1, n + 1):
            for code in ("DIS", "ANA"):
                want = sum(p for path, p in zip(paths, probs, strict=True)
                           if any(sp.start == s and sp.end == e and sp.code == code for sp in spans_from_tags(path)))
                assert np.isclose(d.span_confidence(em, s, e, code), want, atol=1e-9)


def test_crf_nll_matches_enumeration():
    torch.manual_seed(0)
    crf = CRF(13)
    em = torch.randn(2, 3, 13)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    tags = torch.tensor([[1, 2, 0], [3, 4, 0]])
    total = 0.0
    for b in range(2):
        n = int(mask[b].sum())
        scores = []
        for path in itertools.product(range(13), repeat=n):
            s = crf.start_transitions[path[0]] + em[b, 0, path[0]] + crf.end_transitions[path[-1]]
            for t in range(1, n):
                s = s + crf.transitions[path[t - 1], path[t]] + em[b, t, path[t]]
            scores.append(s)
        log_z = torch.logsumexp(torch.stack(scores), 0)
        gold = tags[b, :n].tolist()
        g = crf.start_transitions[gold[0]] + em[b, 0, gold[0]] + crf.end_transitions[gold[-1]]
        for t in range(1, n):
            g = g + crf.transitions[gold[t - 1], gold[t]] + em[b, t, gold[t]]
        total += float((log_z - g).detach())
    assert np.isclose(float(crf.nll(em, tags, mask)), total / 2, atol=1e-4)
