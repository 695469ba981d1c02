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


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 10_000))
def test_log_marginals_are_the_gradient_of_the_log_partition(lengths, seed):
    """Forward-backward marginals equal d log Z / d emissions (autograd), row by row, padding included."""
    torch.manual_seed(seed)
    crf = CRF(len(TAGS))
    seq = max(lengths)
    em = (torch.randn(len(lengths), seq, len(TAGS), dtype=torch.float64) * 2).requires_grad_()
    mask = torch.tensor([[1] * n + [0] * (seq - n) for n in lengths])
    crf = crf.double()
    log_z = crf._log_partition(em, mask.double())  # [batch]
    (grad,) = torch.autograd.grad(log_z.sum(), em)
    p = crf.log_marginals(em, mask).exp()  # [batch, seq, tags]
    m = mask.bool()
    torch.testing.assert_close(p[m], grad[m], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(p[m].sum(-1), torch.ones(int(m.sum()), dtype=torch.float64))


def test_a_soft_row_whose_target_is_the_crfs_own_marginals_costs_nothing():
    from cner_train.data import Example
    from cner_train.models import ModelConfig, Tagger
    from cner_train.train import batch_loss

    torch.manual_seed(0)
    model = Tagger(ModelConfig(embedder="char", encoder="idcnn", heads=4), 30)
    em = torch.randn(2, 5, len(TAGS))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    own = model.crf.log_marginals(em, mask).exp().detach().numpy()
    tags = torch.zeros(2, 5, dtype=torch.long)
    soft = [Example(i, 0, (5,) * n, (0,) * n, soft=own[i, :n]) for i, n in enumerate((5, 3))]
    assert batch_loss(model, em, soft, tags, mask, 1.0).item() < 1e-5
    # a gold row next to a soft one: its NLL, halved by the mean over the batch's two rows
    mixed = [Example(0, 0, (5,) * 5, (0,) * 5), soft[1]]
    nll = model.crf.nll_rows(em[:1], tags[:1], mask[:1]).item()
    assert abs(batch_loss(model, em, mixed, tags, mask, 1.0).item() - nll / 2) < 1e-4
