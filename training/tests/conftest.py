from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
MINI = Path(__file__).with_name("fixtures") / "mini_ccks.jsonl"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def mini_ccks() -> Path:
    return MINI


@pytest.fixture
def tiny_encoder(tmp_path):
    """A tiny random BERT in ``cner-train bge``'s format for ``texts``: rows named by a fake 'bert
    vocabulary' in another order than the tagger's, so the pruning really maps rows.
    Returns (encoder.pt, the tagger Vocab); the folder holds vocab.txt as ``bge`` writes it."""
    from cner_train import bge
    from cner_train.golden import TINY_BERT
    from cner_train.vocab import SPECIAL_TOKENS, Vocab

    def make(texts):
        d = tmp_path / "bge"
        d.mkdir()
        vocab = Vocab.build([], texts)
        vocab.save(d / "vocab.txt")
        bert_tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
            vocab.tokens[len(SPECIAL_TOKENS):], reverse=True)
        config = {**TINY_BERT, "vocab_size": len(bert_tokens)}
        torch.manual_seed(0)
        model = bge.build_bert(config)
        torch.save({"bert_config": config, "state_dict": model.state_dict(), "vocab": bert_tokens,
                    "source": {"name": "tiny"}}, d / "encoder.pt")
        return d / "encoder.pt", vocab

    return make
