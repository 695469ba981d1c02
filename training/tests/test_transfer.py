"""Intermediate-task fine-tuning on other-scheme CCKS sets: records sharing text with a protected
file are dropped, each set trains its own head over its own tags, and the encoder.pt it writes is a
drop-in ``train --pretrained`` whose rows are the ones it trained."""

import json

import pytest
import torch

from cner_train import bge
from cner_train.bge_mlm import row_names
from cner_train.corpus import dev_split, read_ccks
from cner_train.text import Span, bio_tags, spans_from_tags
from cner_train.train import TrainConfig, train
from cner_train.transfer import TransferConfig, tag_set, transfer

PROTECTED = "患者于三年前无明显诱因出现上腹部疼痛，伴恶心呕吐，行胃镜检查示胃窦溃疡。"
SET_A = [  # CCKS-2017-like labels
    ("患者左下肢肿胀疼痛两天，伴发热，体温最高三十九度。", [(2, 5, "身体部位"), (5, 9, "症状和体征"), (14, 16, "症状和体征")]),
    ("查体见右上腹压痛，肝区叩痛阳性，双肺呼吸音清。", [(3, 6, "身体部位"), (6, 8, "症状和体征"), (16, 18, "身体部位")]),
    ("入院后完善腹部彩超检查，予补液对症治疗后好转。", [(5, 7, "身体部位"), (13, 15, "治疗")]),
    ("患者自诉头晕乏力一周，无胸闷气促，饮食睡眠可。", [(4, 6, "症状和体征"), (6, 8, "症状和体征"), (12, 14, "症状和体征")]),
]
SET_B = [  # CCKS-2018-like labels; the first record is a protected text
    (PROTECTED, [(13, 16, "解剖部位"), (31, 33, "解剖部位")]),
    ("患者行腹腔镜下胆囊切除术，术后予头孢曲松抗感染治疗。", [(3, 12, "手术"), (16, 20, "药物")]),
    ("术后予奥沙利铂联合卡培他滨化疗六周期，复查肝功能正常。", [(3, 7, "药物"), (9, 13, "药物"), (21, 22, "解剖部位")]),
    ("全麻下行右半结肠根治术，术中见肿瘤位于升结肠。", [(4, 11, "手术"), (19, 22, "解剖部位")]),
]


def write(path, rows):
    path.write_text("".join(json.dumps({"originalText": t, "entities": [
        {"label_type": lab, "start_pos": s, "end_pos": e} for s, e, lab in spans]}, ensure_ascii=False) + "\n"
        for t, spans in rows), encoding="utf-8")
    return path


def test_other_label_sets_round_trip_through_their_own_tags(tmp_path):
    recs = read_ccks(write(tmp_path / "a.jsonl", SET_A), keep_labels=True)
    names = tag_set(recs)
    assert names == ("O", "B-治疗", "I-治疗", "B-症状和体征", "I-症状和体征", "B-身体部位", "I-身体部位")  # code-point order
    for r in recs:
        tags = bio_tags(len(r.text), r.spans, names=names)
        assert spans_from_tags(tags, names=names) == sorted(r.spans, key=lambda s: s.start)
    # the defaults are still CCKS-2019's tags
    assert spans_from_tags(bio_tags(4, [Span(1, 3, "DIS")])) == [Span(1, 3, "DIS")]


def test_transfer_drops_protected_records_and_feeds_training(tmp_path, mini_ccks, tiny_encoder):
    a = write(tmp_path / "a.jsonl", SET_A)
    b = write(tmp_path / "b.jsonl", SET_B)
    protect = write(tmp_path / "protected.jsonl", [(PROTECTED, [])])
    records = read_ccks(mini_ccks)
    dev_text = records[dev_split(len(records), 2, 42)[1][0]].text
    assert len(dev_text) >= 20  # long enough for a 20-character window
    b = write(tmp_path / "b.jsonl", SET_B + [(dev_text, [])])  # a dev record of the fine-tuning split: dropped
    texts = [t for t, _ in SET_A + SET_B] + [json.loads(x)["originalText"] for x in mini_ccks.read_text().splitlines()]
    encoder_path, vocab = tiny_encoder(texts)
    start = bge.pruned_state_dict(torch.load(encoder_path, weights_only=False), vocab)
    out = tmp_path / "transfer"
    result = transfer(TransferConfig(pretrained=str(encoder_path), sets=[f"a={a}", f"b={b}"], ccks2019=str(mini_ccks),
                                     dev_size=2, protect=[str(protect)], out=str(out), holdout=0.25, epochs=2, batch_size=2, bf16=False))
    sets = result["transfer"]["sets"]
    assert sets["a"] == {"records": 4, "dropped_protected": 0, "train": 3, "holdout": 1, "chunks": 3}
    assert sets["b"]["dropped_protected"] == 2 and sets["b"]["train"] + sets["b"]["holdout"] == 3
    assert result["transfer"]["tags"]["b"] == ("O", "B-手术", "I-手术", "B-药物", "I-药物", "B-解剖部位", "I-解剖部位")
    assert set(result["holdout"]) == {"a", "b"} and len(result["history"]) == 2
    assert set(result["holdout"]["a"]["per_type"]) == {"症状和体征", "治疗", "身体部位"}

    adapted = torch.load(out / "encoder.pt", weights_only=False)
    assert adapted["source"]["name"] == "tiny" and adapted["source"]["transfer"]["epochs"] == 2
    assert adapted["vocab"] == row_names(vocab)
    assert not adapted["state_dict"]["encoder.layer.0.attention.self.query.weight"].equal(
        start["encoder.layer.0.attention.self.query.weight"])
    assert (out / "vocab.txt").read_text(encoding="utf-8") == (encoder_path.parent / "vocab.txt").read_text(encoding="utf-8")

    run = train(TrainConfig(ccks2019=str(mini_ccks), out=str(tmp_path / "run"), pretrained=str(out / "encoder.pt"),
                            embedder="bert", encoder="none", heads=0, dev_size=2, epochs=1, batch_size=2,
                            optimizer="adamw", lr=1e-3, lr_embedder=1e-4))
    assert run["best_epoch"] == 1 and run["encoder"]["transfer"]["sets"]["b"]["dropped_protected"] == 2


@pytest.mark.parametrize("entry", ["ccks2017", "=x.jsonl", "2017=x.jsonl", "a-b=x.jsonl"])
def test_sets_need_name_equals_path(entry):
    with pytest.raises(ValueError, match="NAME=PATH"):
        TransferConfig(pretrained="e.pt", sets=[entry], ccks2019="train.jsonl")


def test_character_model_transfer_feeds_train_init(tmp_path, mini_ccks, fixtures_dir):
    from cner_train.vocab import Vocab

    a = write(tmp_path / "a.jsonl", SET_A)
    b = write(tmp_path / "b.jsonl", SET_B)
    texts = [t for t, _ in SET_A + SET_B] + [r.text for r in read_ccks(mini_ccks)]
    Vocab.build([], texts).save(tmp_path / "vocab.txt")
    lexicon = str(fixtures_dir / "tiny-lexicon-bundle" / "lexicon.tsv")
    out = tmp_path / "char-transfer"
    arch = dict(encoder="idcnn", heads=2, lexicon=lexicon)
    result = transfer(TransferConfig(sets=[f"a={a}", f"b={b}"], ccks2019=str(mini_ccks), dev_size=2, out=str(out),
                                     embedder="char", vocab=str(tmp_path / "vocab.txt"), lr=1e-3, dropout=0.5,
                                     holdout=0.25, epochs=1, batch_size=2, bf16=False, **arch))
    assert set(result["holdout"]) == {"a", "b"}
    body = torch.load(out / "body.pt", weights_only=False)
    assert body["model"]["lexicon_features"] == 24 and body["model"]["heads"] == 2
    assert not [k for k in body["state_dict"] if k.startswith(("classifier.", "crf."))]
    assert "encoder.inp.weight" in body["state_dict"] and "mha.attn.qkv.weight" in body["state_dict"]

    common = dict(ccks2019=str(mini_ccks), vocab=str(tmp_path / "vocab.txt"), embedder="char", dev_size=2, epochs=1,
                  batch_size=2, init=str(out / "body.pt"))
    run = train(TrainConfig(out=str(tmp_path / "run"), **common, **arch))
    assert run["init"]["transfer"]["sets"]["a"]["records"] == 4
    with pytest.raises(ValueError, match="another architecture than this run's \\(it differs in heads\\)"):
        train(TrainConfig(out=str(tmp_path / "run2"), **common, **{**arch, "heads": 4}))
    Vocab.build([], texts + ["另外的字"]).save(tmp_path / "vocab2.txt")
    with pytest.raises(ValueError, match="another vocabulary"):
        train(TrainConfig(out=str(tmp_path / "run3"), **{**common, "vocab": str(tmp_path / "vocab2.txt")}, **arch))
