"""A compact ALBERT (Lan et al., 2020): factorized embeddings and one transformer
layer shared across depth, with a masked-language-model head for pretraining.

Written out here (not imported from a hub library) so it exports to ONNX with
dynamic batch and sequence axes: attention reshapes use -1 and never bake the
traced batch size into the graph.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AlbertConfig:
    vocab_size: int
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position: int = 128
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")

    def to_dict(self) -> dict:
        return asdict(self)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with a key padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        # x: [batch, seq, dim]; mask_bias: [batch, 1, 1, seq], 0 or a large negative
        b, s, d = x.shape
        qkv = self.qkv(x).view(b, s, 3, self.heads, self.head_dim)  # [batch, seq, 3, heads, head_dim]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [batch, heads, seq, head_dim]
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [batch, heads, seq, seq]
        probs = self.dropout(torch.softmax(scores + mask_bias, dim=-1))
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, d)  # [batch, seq, dim]
        return self.out(ctx)


def mask_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # [batch, seq] of 1/0 → [batch, 1, 1, seq] of 0/-1e4 (finite, so an all-pad row stays NaN-free)
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * -1e4


class TransformerLayer(nn.Module):
    def __init__(self, cfg: AlbertConfig):
        super().__init__()
        self.attn = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.dropout)
        self.ln1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ln2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # post-LN, as BERT and ALBERT
        x = self.ln1(x + self.dropout(self.attn(x, bias)))
        return self.ln2(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


class AlbertEncoder(nn.Module):
    def __init__(self, cfg: AlbertConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.embedding_size, padding_idx=0)
        self.position = nn.Embedding(cfg.max_position, cfg.embedding_size)
        self.emb_ln = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(cfg.embedding_size, cfg.hidden_size)
        self.layer = TransformerLayer(cfg)  # one layer, applied num_layers times
        self.apply(_init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask: [batch, seq] → [batch, seq, hidden]
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device)[None, :]  # [1, seq]
        x = self.emb_ln(self.word(input_ids) + self.position(positions))
        x = self.project(self.emb_dropout(x))
        bias = mask_bias(attention_mask, x.dtype)
        for _ in range(self.cfg.num_layers):
            x = self.layer(x, bias)
        return x


class AlbertForMLM(nn.Module):
    """Encoder plus the MLM head, decoder tied to the word embeddings."""

    def __init__(self, cfg: AlbertConfig):
        super().__init__()
        self.encoder = AlbertEncoder(cfg)
        self.head_dense = nn.Linear(cfg.hidden_size, cfg.embedding_size)
        self.head_ln = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps)
        self.head_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        _init_weights(self.head_dense)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over positions whose label is not -100."""
        hidden = self.encoder(input_ids, attention_mask)  # [batch, seq, hidden]
        picked = labels != -100
        h = hidden[picked]  # [masked, hidden]: the vocabulary projection only where it is scored
        h = self.head_ln(F.gelu(self.head_dense(h)))  # [masked, emb]
        logits = h @ self.encoder.word.weight.t() + self.head_bias  # [masked, vocab]
        return F.cross_entropy(logits, labels[picked])


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
