import pytest
import torch

from cner_train.albert import AlbertConfig, AlbertForMLM
from cner_train.golden import TINY_BERT
from cner_train.models import ModelConfig, Tagger
from cner_train.train import TrainConfig, build_optimizer

TINY = AlbertConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32).to_dict()

VARIANTS = [
    dict(embedder="char", encoder="bilstm", heads=0),
    dict(embedder="char", encoder="idcnn", heads=0),
    dict(embedder="char", encoder="idcnn", heads=4),
    dict(embedder="albert", encoder="idcnn", heads=0, albert=TINY),
    dict(embedder="albert", encoder="idcnn", heads=4, albert=TINY),
    dict(embedder="bert", encoder="idcnn", heads=4, bert=dict(TINY_BERT)),
    dict(embedder="bert", encoder="idcnn", heads=4, bert=dict(TINY_BERT), char_concat=True),
]


def _variant_id(v: dict) -> str:
    return f"{v['embedder']}{'+char' if v.get('char_concat') else ''}-{v['encoder']}-h{v['heads']}"


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_forward_shapes_padding_invariance_and_learning(variant):
    torch.manual_seed(0)
    model = Tagger(ModelConfig(char_dim=16, filters=8, lstm_hidden=8, **variant), vocab_size=50)
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.int64)
    mask[2, 5:] = 0
    ids[2, 5:] = 0
    model.eval()
    em = model(ids, mask)
    assert em.shape == (3, 9, 13)  # [batch, seq, tags]
    # a padded row gives the same emissions as the same row alone, unpadded
    alone = model(ids[2:, :5], mask[2:, :5])
    torch.testing.assert_close(em[2, :5], alone[0], atol=1e-5, rtol=1e-4)
    model.train()
    tags = torch.randint(0, 13, (3, 9))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        loss = model.loss(ids, mask, tags)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


def test_mlm_loss_is_finite_and_learns():
    torch.manual_seed(0)
    model = AlbertForMLM(AlbertConfig(**TINY))
    ids = torch.randint(6, 50, (4, 12))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    inputs = ids.clone()
    inputs[:, 3] = 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model(inputs, torch.ones_like(ids), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_hybrid_concatenates_character_embeddings_that_learn_with_the_head():
    cfg = ModelConfig(embedder="bert", encoder="idcnn", heads=2, char_dim=16, filters=8, bert=dict(TINY_BERT), char_concat=True)
    model = Tagger(cfg, vocab_size=50)
    assert model.encoder.inp.in_channels == TINY_BERT["hidden_size"] + 16  # encoder states + character vectors
    opt = build_optimizer(model, TrainConfig(ccks2019="x", out="y", embedder="bert", pretrained="p", char_concat=True,
                                             lr=1e-3, lr_embedder=1e-5, optimizer="adam"))
    top, emb = opt.param_groups
    assert any(p is model.char.weight for p in top["params"]) and top["lr"] == 1e-3
    assert all(p is not model.char.weight for p in emb["params"])
    with pytest.raises(ValueError, match="char_concat"):
        ModelConfig(embedder="char", char_concat=True)


def test_layer_decay_slows_the_lower_encoder_layers():
    cfg = ModelConfig(embedder="bert", encoder="none", heads=0, bert=dict(TINY_BERT))
    model = Tagger(cfg, vocab_size=50)
    opt = build_optimizer(model, TrainConfig(ccks2019="x", out="y", embedder="bert", pretrained="p", lr=1e-3,
                                             lr_embedder=1e-4, layer_decay=0.5, optimizer="adam"))
    top, *emb = opt.param_groups
    layers = TINY_BERT["num_hidden_layers"]
    # embeddings, then each layer, top layer last at the full embedder rate
    assert [g["lr"] for g in emb][: layers + 1] == pytest.approx([1e-4 * 0.5 ** (layers - d) for d in range(layers + 1)])
    assert any(p is model.bert.embeddings.word_embeddings.weight for p in emb[0]["params"])
    every = [p for g in opt.param_groups for p in g["params"]]
    assert len(every) == len({id(p) for p in every}) == len(list(model.parameters()))
    assert top["lr"] == 1e-3
