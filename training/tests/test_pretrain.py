import json

import torch

from cner_train.pretrain import PretrainConfig, pretrain

TINY = dict(embedding_size=8, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
            tokens_per_batch=256, holdout_segments=2, log_every=1, warmup_steps=1)


def corpus(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    lines = ["患者因胃癌入院，行胃癌根治术。术后恢复可。", "胸部CT示右肺结节。血常规正常。"] * 20
    (d / "a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def test_pretrain_resumes_and_continues(tmp_path, mini_ccks):
    c = corpus(tmp_path)
    out = tmp_path / "run"
    cfg = dict(corpus=str(c), ccks2019=str(mini_ccks), out=str(out), dev_size=1, **TINY)
    pretrain(PretrainConfig(total_steps=3, **cfg))
    first = torch.load(out / "checkpoint.pt", weights_only=False)
    assert first["state"]["step"] == 3
    pretrain(PretrainConfig(total_steps=5, **cfg))
    assert torch.load(out / "checkpoint.pt", weights_only=False)["state"]["step"] == 5
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # the second run continued, it did not start over
    enc = torch.load(out / "encoder.pt", weights_only=False)
    assert all(v.dtype == torch.float16 for v in enc["encoder"].values() if v.is_floating_point())

    # a new run initialised from the compact encoder starts from its weights
    out2 = tmp_path / "run2"
    pretrain(PretrainConfig(total_steps=1, init_from=str(out / "encoder.pt"), **{**cfg, "out": str(out2)}))
    assert (out2 / "vocab.txt").read_text() == (out / "vocab.txt").read_text()
