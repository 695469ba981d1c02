from seqeval.metrics import classification_report, f1_score
from seqeval.scheme import IOB2

from cner_train.metrics import strict_prf
from cner_train.text import TAGS, Span, bio_tags


def test_strict_needs_exact_boundaries_and_type():
    gold = [[Span(0, 2, "DIS"), Span(3, 5, "ANA")]]
    pred = [[Span(0, 2, "DIS"), Span(3, 6, "ANA"), Span(7, 8, "DRU")]]
    m = strict_prf(gold, pred)
    assert m["micro"]["tp"] == 1 and m["micro"]["pred"] == 3 and m["micro"]["gold"] == 2
    assert round(m["micro"]["f1"], 4) == round(100 * 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5), 4)
    assert m["per_type"]["DIS"]["f1"] == 100.0
    assert m["per_type"]["ANA"]["f1"] == 0.0


def test_agrees_with_seqeval_strict_when_nothing_is_cut():
    gold = [[Span(0, 2, "DIS"), Span(4, 7, "OPE")], [Span(1, 3, "TES")]]
    pred = [[Span(0, 2, "DIS"), Span(4, 6, "OPE")], [Span(1, 3, "TES"), Span(5, 6, "DRU")]]
    lengths = [9, 7]
    g = [[TAGS[t] for t in bio_tags(n, s)] for n, s in zip(lengths, gold, strict=True)]
    p = [[TAGS[t] for t in bio_tags(n, s)] for n, s in zip(lengths, pred, strict=True)]
    ours = strict_prf(gold, pred)["micro"]["f1"] / 100
    assert abs(ours - f1_score(g, p, mode="strict", scheme=IOB2)) < 1e-9
    assert "DIS" in classification_report(g, p, mode="strict", scheme=IOB2)
