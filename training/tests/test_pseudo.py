"""cner-train pseudo: a teacher bundle's confident chunks of unlabeled text become
training records; lines overlapping labeled records never do."""

import json

import numpy as np
import pytest

from cner_train.corpus import Record, read_ccks
from cner_train.crf import ConstrainedDecoder
from cner_train.evaluate import bundle_predict
from cner_train.export import ExportConfig, export
from cner_train.pseudo import PseudoConfig, pseudo_label
from cner_train.text import TAGS
from cner_train.train import TrainConfig, train
from cner_train.vocab import Vocab

UNLABELED = [
    "术后予奥沙利铂化疗，复查血常规示白细胞升高。胸部CT示右肺下叶结节。",
    "患者因胃癌行腹腔镜下胃癌根治术。",
    "短句。",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, mini_ccks):
    d = tmp_path_factory.mktemp("teacher")
    texts = [json.loads(line)["originalText"] for line in mini_ccks.read_text(encoding="utf-8").splitlines()]
    Vocab.build([], texts + UNLABELED).save(d / "vocab.txt")
    train(TrainConfig(ccks2019=str(mini_ccks), out=str(d / "run"), vocab=str(d / "vocab.txt"), embedder="char",
                      dev_size=2, epochs=3, batch_size=2, lr=1e-2, lr_embedder=1e-2))
    return export(ExportConfig(run=str(d / "run"), out=str(d / "bundle"), version="teacher-1"))


@pytest.fixture()
def corpus(tmp_path, mini_ccks):
    d = tmp_path / "corpus"
    d.mkdir()
    labeled = json.loads(mini_ccks.read_text(encoding="utf-8").splitlines()[0])["originalText"]
    # the last line repeats a labeled record: it must be dropped, whatever the teacher thinks of it
    (d / "emr.txt").write_text("\n".join([*UNLABELED, "入院。" + labeled]) + "\n", encoding="utf-8")
    return d


def _run(teacher, corpus, mini_ccks, tmp_path, **kw):
    cfg = PseudoConfig(bundle=str(teacher), corpus=str(corpus), ccks2019=str(mini_ccks), out=str(tmp_path / "p.jsonl"),
                       files=["emr.txt"], **kw)
    summary = pseudo_label(cfg)
    return summary, read_ccks(tmp_path / "p.jsonl")


def test_kept_chunks_carry_the_teachers_own_entities(teacher, corpus, mini_ccks, tmp_path):
    summary, kept = _run(teacher, corpus, mini_ccks, tmp_path, min_marginal=0.0, min_chars=5)
    assert summary["lines"] == 3 and summary["lines_dropped_overlap"] == 1
    assert summary["kept"] == len(kept) == 2  # "短句。" is under min_chars
    assert [r.text for r in kept] == UNLABELED[:2]  # corpus order
    # what the teacher predicts on the kept text itself, span for span
    assert [list(r.spans) for r in kept] == bundle_predict(teacher, [Record(r.id, r.text, ()) for r in kept])
    assert json.loads((tmp_path / "p.summary.json").read_text())["teacher"] == "teacher-1"


def test_an_unreachable_threshold_keeps_nothing(teacher, corpus, mini_ccks, tmp_path):
    summary, kept = _run(teacher, corpus, mini_ccks, tmp_path, min_marginal=1.01)
    assert summary["kept"] == 0 and kept == []


def test_tag_marginals_are_posteriors_that_sum_to_one():
    rng = np.random.default_rng(3)
    dec = ConstrainedDecoder(rng.normal(size=len(TAGS)), rng.normal(size=len(TAGS)), rng.normal(size=(len(TAGS), len(TAGS))))
    em = rng.normal(size=(7, len(TAGS))) * 3
    m = dec.tag_marginals(em)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-9)
    # an I- tag can never open a chunk under the BIO constraints
    assert all(m[0, i] == 0.0 for i, t in enumerate(TAGS) if t.startswith("I-"))
    # a span's posterior from span_confidence equals the marginal of its B- tag when it is one character
    b = TAGS.index("B-DIS")
    end_ok = dec.span_confidence(em, 2, 3, "DIS")
    assert end_ok <= m[2, b] + 1e-12


def test_train_adds_extra_records_to_the_training_side_only(teacher, corpus, mini_ccks, tmp_path):
    _run(teacher, corpus, mini_ccks, tmp_path, min_marginal=0.0, min_chars=5)
    from cner_train.train import load_data

    base, dev, _ = load_data(TrainConfig(ccks2019=str(mini_ccks), out=str(tmp_path / "x"), embedder="char", dev_size=2))
    more, dev2, paths = load_data(TrainConfig(ccks2019=str(mini_ccks), out=str(tmp_path / "x"), embedder="char",
                                              dev_size=2, extra=[str(tmp_path / "p.jsonl")]))
    assert len(more) == len(base) + 2 and dev2 == dev and paths[-1] == tmp_path / "p.jsonl"


def test_soft_mode_keeps_every_chunk_with_the_teachers_marginals(teacher, corpus, mini_ccks, tmp_path):
    from cner_train.pseudo import read_soft
    from cner_train.train import load_data

    summary, kept = _run(teacher, corpus, mini_ccks, tmp_path, min_marginal=1.01, min_chars=5, soft=True)
    assert summary["kept"] == 2 and summary["soft"]  # the threshold does not apply to soft targets
    recs, marginals = read_soft(tmp_path / "p.jsonl")
    assert [r.text for r in recs] == UNLABELED[:2]
    decoder = ConstrainedDecoder.from_json(json.loads((teacher / "crf.json").read_text(encoding="utf-8")))
    from cner_train.evaluate import bundle_emissions

    for (_, em), m in zip(sorted(bundle_emissions(teacher, recs), key=lambda p: p[0].record), marginals, strict=True):
        np.testing.assert_allclose(m, decoder.tag_marginals(em), atol=1e-3)  # stored as float16
    # a student trains on them: soft chunks join the training side, never dev
    cfg = TrainConfig(ccks2019=str(mini_ccks), out=str(tmp_path / "student"), vocab=str(teacher / "vocab.txt"),
                      embedder="char", dev_size=2, epochs=2, batch_size=2, lr=1e-2, lr_embedder=1e-2,
                      soft=[str(tmp_path / "p.jsonl")], soft_per_epoch=1)
    base, dev, _ = load_data(cfg)
    result = train(cfg)
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    assert len(result["history"]) == 2 and len(dev) == 2
