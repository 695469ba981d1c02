"""128-d character vectors (word2vec skip-gram, gensim) for the non-ALBERT baselines."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import WindowFilter, corpus_lines, dev_split, read_ccks
from .vocab import Vocab

log = logging.getLogger(__name__)


@dataclass
class W2VConfig:
    corpus: str = field(metadata={"help": "folder of the unlabeled corpus"})
    ccks2019: str = field(metadata={"help": "CCKS-2019 train.jsonl (dev records are excluded from the corpus)"})
    vocab: str = field(metadata={"help": "vocab.txt whose characters get vectors"})
    out: str = field(default="runs/w2v/vectors.txt", metadata={"help": "word2vec text file to write"})
    dim: int = 128
    window: int = 5
    epochs: int = 5
    min_count: int = 2
    workers: int = 2
    dev_size: int = 150
    split_seed: int = 42
    seed: int = 1


class _Sentences:
    """Re-iterable normalized character sequences (gensim iterates once per epoch)."""

    def __init__(self, cfg: W2VConfig, vocab: Vocab, exclude: WindowFilter):
        self.cfg, self.vocab, self.exclude = cfg, vocab, exclude

    def __iter__(self):
        tokens = self.vocab.tokens
        for line in corpus_lines(Path(self.cfg.corpus), self.exclude):
            yield [tokens[i] for i in self.vocab.encode(line)]


def train_w2v(cfg: W2VConfig) -> Path:
    from gensim.models import Word2Vec

    records = read_ccks(Path(cfg.ccks2019))
    _, dev_idx = dev_split(len(records), cfg.dev_size, cfg.split_seed)
    exclude = WindowFilter([records[i].text for i in dev_idx])
    vocab = Vocab.load(Path(cfg.vocab))
    model = Word2Vec(_Sentences(cfg, vocab, exclude), vector_size=cfg.dim, window=cfg.window, min_count=cfg.min_count,
                     sg=1, workers=cfg.workers, epochs=cfg.epochs, seed=cfg.seed)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kv = model.wv
    with open(out, "w", encoding="utf-8") as f:
        words = list(kv.index_to_key)
        f.write(f"{len(words)} {cfg.dim}\n")
        for w in words:
            f.write(w + " " + " ".join(f"{x:.5f}" for x in kv[w]) + "\n")
    log.info("%d character vectors written to %s", len(words), out)
    return out
