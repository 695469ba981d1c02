"""The paper's model family: {char embeddings | ALBERT | BERT} → {BiLSTM | IDCNN} → [MHA] → linear → CRF.

``Tagger.forward`` returns emissions only, so exactly that graph is exported to
ONNX; the CRF scores travel separately in ``crf.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .albert import AlbertConfig, AlbertEncoder, SelfAttention, mask_bias
from .crf import CRF
from .text import TAGS
from .vocab import CLS_ID, PAD_ID, SEP_ID


@dataclass
class ModelConfig:
    embedder: str = field(default="albert", metadata={"help": "albert | bert | char"})
    encoder: str = field(default="idcnn", metadata={"help": "idcnn | bilstm | none"})
    heads: int = field(default=4, metadata={"help": "multi-head self-attention heads after the encoder; 0 = no MHA"})
    char_dim: int = 128
    lstm_hidden: int = 128
    filters: int = 128
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 1, 2)
    blocks: int = 4
    dropout: float = 0.5
    attn_dropout: float = 0.1
    num_tags: int = len(TAGS)
    lexicon_features: int = field(default=0, metadata={"help": "lexicon match features per character (0 = none)"})
    char_concat: bool = field(default=False, metadata={
        "help": "embedder albert/bert: also learn char_dim-d character embeddings, concatenated to the encoder's states"})
    albert: dict | None = None  # AlbertConfig fields when embedder == "albert"
    bert: dict | None = None  # transformers BertConfig fields (vocab_size aside) when embedder == "bert"

    def __post_init__(self) -> None:
        if self.embedder not in ("albert", "bert", "char"):
            raise ValueError(f"embedder must be albert, bert or char, not {self.embedder!r}")
        if self.encoder not in ("idcnn", "bilstm", "none"):
            raise ValueError(f"encoder must be idcnn, bilstm or none, not {self.encoder!r}")
        if self.embedder == "albert" and not self.albert:
            raise ValueError("an albert embedder needs its AlbertConfig (from the pretrained encoder)")
        if self.embedder == "bert" and not self.bert:
            raise ValueError("a bert embedder needs its BertConfig (from cner-train bge's encoder.pt)")
        if self.char_concat and self.embedder == "char":
            raise ValueError("char_concat adds character embeddings to a pretrained encoder; embedder=char has them already")
        self.dilations = tuple(self.dilations)

    def to_dict(self) -> dict:
        return asdict(self)


class IDCNN(nn.Module):
    """Iterated dilated CNN (Strubell et al., 2017): one block of dilated
    convolutions (dilations 1, 1, 2 here), applied ``blocks`` times with shared
    weights; the outputs of all iterations are concatenated."""

    def __init__(self, in_dim: int, filters: int, kernel: int, dilations: tuple[int, ...], blocks: int, dropout: float):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, filters, kernel, padding=kernel // 2)
        self.layers = nn.ModuleList(
            nn.Conv1d(filters, filters, kernel, dilation=d, padding=d * (kernel // 2)) for d in dilations
        )
        self.blocks = blocks
        self.dropout = nn.Dropout(dropout)
        self.out_dim = filters * blocks

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: [batch, seq, in_dim]; mask: [batch, seq] → [batch, seq, filters * blocks]
        # Zero the pads before every convolution, so a padded row gives the same
        # emissions as the row alone (the processor batches chunks of different lengths).
        m = mask.unsqueeze(1).to(x.dtype)  # [batch, 1, seq]
        h = self.inp(x.transpose(1, 2) * m) * m  # [batch, filters, seq]
        outs = []
        for _ in range(self.blocks):
            for conv in self.layers:
                h = torch.relu(conv(h)) * m
            outs.append(h)
            h = self.dropout(h)
        return torch.cat(outs, dim=1).transpose(1, 2)


class BiLSTM(nn.Module):
    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: [batch, seq, in_dim] → [batch, seq, 2*hidden]; right padding, so packing is only needed
        # to keep the backward direction from reading pads first
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class MHA(nn.Module):
    """Self-attention over the encoder states with a residual connection and layer norm."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"encoder width {dim} is not divisible by {heads} heads")
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.attn(x, mask_bias(mask, x.dtype)))


def frame(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] + each row + [SEP], as the encoder was pretrained, inside the graph, so
    the model's inputs stay one token per code point (right padding: a row's [SEP]
    goes right after its last token, before its pads).
    input_ids, attention_mask: [batch, seq] → both [batch, seq + 2]."""
    edge = input_ids.new_zeros((input_ids.shape[0], 1))  # [batch, 1]
    ids = torch.cat([edge + CLS_ID, input_ids, edge + PAD_ID], dim=1)
    lengths = attention_mask.sum(dim=1, keepdim=True)  # [batch, 1]
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)  # [1, seq + 2]
    is_sep = positions == lengths + 1  # [batch, seq + 2]
    ids = torch.where(is_sep, torch.full_like(ids, SEP_ID), ids)
    mask = torch.cat([edge + 1, attention_mask, edge], dim=1) + is_sep.to(attention_mask.dtype)
    return ids, mask


HEAD_PREFIXES = ("classifier.", "crf.")  # a Tagger's weights above its features (train --init starts them fresh)


class Tagger(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        if cfg.embedder == "albert":
            self.albert = AlbertEncoder(AlbertConfig(**cfg.albert))
            dim = self.albert.cfg.hidden_size
        elif cfg.embedder == "bert":
            from .bge import build_bert

            self.bert = build_bert({k: v for k, v in cfg.bert.items() if k != "vocab_size"}, vocab_size)
            dim = self.bert.config.hidden_size
        else:
            dim = 0
        if cfg.embedder == "char" or cfg.char_concat:
            # The hybrid: context from the encoder plus a character's own (domain word2vec) vector.
            self.char = nn.Embedding(vocab_size, cfg.char_dim, padding_idx=0)
            dim += cfg.char_dim
        self.dropout = nn.Dropout(cfg.dropout)
        dim += cfg.lexicon_features  # concatenated to the (dropped-out) character representation
        if cfg.encoder == "idcnn":
            self.encoder = IDCNN(dim, cfg.filters, cfg.kernel, cfg.dilations, cfg.blocks, cfg.dropout)
            dim = self.encoder.out_dim
        elif cfg.encoder == "bilstm":
            self.encoder = BiLSTM(dim, cfg.lstm_hidden)
            dim = self.encoder.out_dim
        else:
            self.encoder = None
        self.mha = MHA(dim, cfg.heads, cfg.attn_dropout) if cfg.heads else None
        self.classifier = nn.Linear(dim, cfg.num_tags)
        self.crf = CRF(cfg.num_tags)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lexicon_features: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask: [batch, seq] int64; lexicon_features: [batch, seq, features] float32
        (required when the model was built with them) → emissions [batch, seq, tags] float32."""
        return self.classifier(self.dropout(self.features(input_ids, attention_mask, lexicon_features)))

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 lexicon_features: torch.Tensor | None = None) -> torch.Tensor:
        """Everything below the classifier: [batch, seq, classifier input] (``cner-train transfer``
        puts heads of other label sets on it)."""
        if self.cfg.embedder == "albert":
            x = self.albert(input_ids, attention_mask)
        elif self.cfg.embedder == "bert":
            ids, mask = frame(input_ids, attention_mask)  # [batch, seq + 2]
            x = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 1:-1]  # [batch, seq, hidden]
        else:
            x = self.char(input_ids)  # [batch, seq, char_dim]
        if self.cfg.char_concat:
            x = torch.cat([x, self.char(input_ids).to(x.dtype)], dim=-1)  # [batch, seq, hidden + char_dim]
        x = self.dropout(x)  # [batch, seq, dim]
        if self.cfg.lexicon_features:
            if lexicon_features is None:
                raise ValueError("this model reads lexicon features: pass lexicon_features")
            x = torch.cat([x, lexicon_features.to(x.dtype)], dim=-1)  # [batch, seq, dim + features]
        if self.encoder is not None:
            x = self.encoder(x, attention_mask)
        if self.mha is not None:
            x = self.mha(x, attention_mask)
        return x

    def loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, tags: torch.Tensor,
             lexicon_features: torch.Tensor | None = None) -> torch.Tensor:
        return self.crf.nll(self(input_ids, attention_mask, lexicon_features), tags, attention_mask)
