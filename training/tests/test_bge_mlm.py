"""Domain MLM of a (tiny) BERT encoder: dev records stay out of the corpus, only the
head learns during head_steps, the run resumes, and its encoder.pt is a drop-in
``train --pretrained`` whose rows are the ones it trained."""

import json

import torch

from cner_train import bge
from cner_train.bge_mlm import BgeMlmConfig, MlmModel, adapt, row_names
from cner_train.corpus import dev_split, read_ccks
from cner_train.golden import TINY_BERT
from cner_train.train import TrainConfig, train


def test_adapts_resumes_and_feeds_training(tmp_path, mini_ccks, tiny_encoder):
    records = read_ccks(mini_ccks)
    texts = [r.text for r in records]
    encoder_path, vocab = tiny_encoder(texts)
    _, dev_idx = dev_split(len(records), 2, 42)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # every training text, and one dev text that must be dropped
    (corpus / "emr.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (corpus / "other.txt").write_text("这一行不在所选文件里。\n", encoding="utf-8")
    out = tmp_path / "mlm"
    cfg = dict(encoder=str(encoder_path), corpus=str(corpus), ccks2019=str(mini_ccks), out=str(out), files="emr.txt",
               dev_size=2, tokens_per_batch=256, holdout_segments=2, log_every=1, eval_every=2, head_steps=2,
               warmup_steps=1, bf16=False)
    start = bge.pruned_state_dict(torch.load(encoder_path, weights_only=False), vocab)

    adapt(BgeMlmConfig(total_steps=0, **cfg))  # head steps only: the encoder is unchanged
    after_head = torch.load(out / "encoder.pt", weights_only=False)
    assert after_head["state_dict"]["encoder.layer.0.attention.self.query.weight"].equal(
        start["encoder.layer.0.attention.self.query.weight"])
    assert after_head["source"]["domain_mlm"]["lines_dropped_dev_windows"] == len(dev_idx)
    assert after_head["source"]["domain_mlm"]["lines"] == len(texts) - len(dev_idx)

    adapt(BgeMlmConfig(total_steps=3, **cfg))  # resumes at step 2 and trains the encoder too
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if not r.get("final")] == [1, 2, 3, 4, 5]  # continued, not started over
    assert [r["step"] for r in logged if r.get("final")] == [2, 5]
    adapted = torch.load(out / "encoder.pt", weights_only=False)
    assert adapted["source"]["name"] == "tiny" and adapted["source"]["domain_mlm"]["steps"] == 5
    assert not adapted["state_dict"]["encoder.layer.0.attention.self.query.weight"].equal(
        start["encoder.layer.0.attention.self.query.weight"])
    # the same vocabulary maps back onto the same rows: row i is token i
    assert bge.embedding_rows(vocab, adapted["vocab"]) == list(range(len(vocab)))
    assert adapted["vocab"] == row_names(vocab)
    assert bge.pruned_state_dict(adapted, vocab)["embeddings.word_embeddings.weight"].equal(
        adapted["state_dict"]["embeddings.word_embeddings.weight"])

    run = train(TrainConfig(ccks2019=str(mini_ccks), out=str(tmp_path / "run"), pretrained=str(out / "encoder.pt"),
                            embedder="bert", encoder="idcnn", heads=2, dev_size=2, epochs=1, batch_size=2,
                            optimizer="adamw", lr=1e-3, lr_embedder=1e-4))
    assert run["best_epoch"] == 1


def test_decoder_is_tied_to_the_embeddings():
    model = MlmModel({**TINY_BERT, "vocab_size": 40}, 40)
    assert model.mlm.cls.predictions.decoder.weight is model.mlm.bert.embeddings.word_embeddings.weight
