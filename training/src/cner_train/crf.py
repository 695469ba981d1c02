"""Linear-chain CRF (names as in kmkurn/pytorch-crf) and its constrained decoding.

Training uses the unconstrained likelihood; decoding (here, in numpy, and in
the TypeScript Viterbi) forbids invalid BIO sequences, per docs/contract.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from .text import TAGS

NEG_INF = float("-inf")


def bio_constraints(tags: tuple[str, ...] = TAGS) -> tuple[np.ndarray, np.ndarray]:
    """(allowed_start [T], allowed_transition [T, T]) booleans for strict IOB2."""
    t = len(tags)
    start = np.ones(t, dtype=bool)
    trans = np.ones((t, t), dtype=bool)
    for j, name in enumerate(tags):
        if name.startswith("I-"):
            start[j] = False
            typ = name[2:]
            for i, prev in enumerate(tags):
                trans[i, j] = prev in (f"B-{typ}", f"I-{typ}")
    return start, trans


class CRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the batch.

        emissions: [batch, seq, tags]; tags, mask: [batch, seq]; every row has mask[:, 0] = 1
        and its ones first (right padding).
        """
        return self.nll_rows(emissions, tags, mask).mean()

    def nll_rows(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each row: [batch]."""
        mask_f = mask.to(emissions.dtype)
        return self._log_partition(emissions, mask_f) - self._score(emissions, tags, mask_f)

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log P(y_t = tag) under this (unconstrained) CRF by forward-backward: [batch, seq, tags].

        Differentiable, for distillation from a teacher's marginals; rows past a row's length
        hold garbage and must be masked by the caller.
        """
        batch, seq, tags = emissions.shape
        m = mask.to(torch.bool)
        alphas = list(self._alphas(emissions, mask.to(emissions.dtype)))  # each [batch, tags]
        log_z = torch.logsumexp(alphas[-1] + self.end_transitions, dim=1)  # [batch]
        # beta at a row's last real position is the end transition; padding carries it back unchanged
        end = self.end_transitions.expand(batch, tags)
        betas = [end]
        for t in range(seq - 2, -1, -1):
            # [batch, tags]: from tag i at t through every tag j at t + 1
            nxt = torch.logsumexp(self.transitions + (emissions[:, t + 1] + betas[-1]).unsqueeze(1), dim=2)
            betas.append(torch.where(m[:, t + 1].unsqueeze(1), nxt, end))
        alpha = torch.stack(alphas, dim=1)  # [batch, seq, tags]
        beta = torch.stack(betas[::-1], dim=1)  # [batch, seq, tags]
        return alpha + beta - log_z[:, None, None]

    def _score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = emissions.shape
        ar = torch.arange(batch)
        score = self.start_transitions[tags[:, 0]] + emissions[ar, 0, tags[:, 0]]  # shape: (batch,)
        for t in range(1, seq):
            step = self.transitions[tags[:, t - 1], tags[:, t]] + emissions[ar, t, tags[:, t]]
            score = score + step * mask[:, t]
        lengths = mask.sum(1).long()  # shape: (batch,)
        last = tags[ar, lengths - 1]
        return score + self.end_transitions[last]

    def _alphas(self, emissions: torch.Tensor, mask: torch.Tensor) -> Iterator[torch.Tensor]:
        """The forward scores at each position, [batch, tags] each (log space); a padded
        position repeats its row's last real one. mask: [batch, seq] float."""
        alpha = self.start_transitions + emissions[:, 0]  # shape: (batch, tags)
        yield alpha
        for t in range(1, emissions.shape[1]):
            # shape: (batch, tags, tags): previous tag i → next tag j
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1)
            m = mask[:, t].unsqueeze(1)  # shape: (batch, 1)
            alpha = nxt * m + alpha * (1 - m)
            yield alpha

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        *_, alpha = self._alphas(emissions, mask)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)  # shape: (batch,)

    def to_json(self) -> dict:
        return {
            "start": self.start_transitions.detach().double().tolist(),
            "end": self.end_transitions.detach().double().tolist(),
            "transitions": self.transitions.detach().double().tolist(),
        }


class ConstrainedDecoder:
    """Viterbi and posterior entity confidence over numpy arrays, with the
    BIO constraints of docs/contract.md (mirrors src/pipeline/viterbi.ts)."""

    def __init__(self, start: np.ndarray, end: np.ndarray, transitions: np.ndarray, tags: tuple[str, ...] = TAGS):
        allowed_start, allowed_trans = bio_constraints(tags)
        self.start = np.where(allowed_start, np.asarray(start, dtype=np.float64), NEG_INF)
        self.end = np.asarray(end, dtype=np.float64)
        self.trans = np.where(allowed_trans, np.asarray(transitions, dtype=np.float64), NEG_INF)
        self.tags = tags

    @classmethod
    def from_json(cls, crf: dict, tags: tuple[str, ...] = TAGS) -> ConstrainedDecoder:
        return cls(np.array(crf["start"]), np.array(crf["end"]), np.array(crf["transitions"]), tags)

    def viterbi(self, emissions: np.ndarray) -> list[int]:
        """emissions: [seq, tags] → best valid tag path. Ties go to the lower tag index."""
        em = np.asarray(emissions, dtype=np.float64)
        n, t = em.shape
        if n == 0:
            return []
        score = self.start + em[0]  # shape: (tags,)
        back = np.zeros((n, t), dtype=np.int64)
        for i in range(1, n):
            cand = score[:, None] + self.trans  # shape: (prev, next)
            back[i] = np.argmax(cand, axis=0)  # argmax returns the first maximum: lowest prev index
            score = cand[back[i], np.arange(t)] + em[i]
        score = score + self.end
        best = int(np.argmax(score))
        path = [best]
        for i in range(n - 1, 0, -1):
            best = int(back[i, best])
            path.append(best)
        return path[::-1]

    def forward_backward(self, emissions: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(alpha [seq, tags], beta [seq, tags], log Z) in log space."""
        em = np.asarray(emissions, dtype=np.float64)
        n, t = em.shape
        alpha = np.empty((n, t))
        beta = np.empty((n, t))
        alpha[0] = self.start + em[0]
        for i in range(1, n):
            alpha[i] = _logsumexp(alpha[i - 1][:, None] + self.trans, axis=0) + em[i]
        beta[n - 1] = self.end
        for i in range(n - 2, -1, -1):
            beta[i] = _logsumexp(self.trans + (em[i + 1] + beta[i + 1])[None, :], axis=1)
        log_z = float(_logsumexp(alpha[n - 1] + self.end, axis=0))
        return alpha, beta, log_z

    def tag_marginals(self, emissions: np.ndarray,
                      fb: tuple[np.ndarray, np.ndarray, float] | None = None) -> np.ndarray:
        """P(y_i = tag) under the constrained CRF: [seq, tags], each row summing to 1."""
        alpha, beta, log_z = fb if fb is not None else self.forward_backward(emissions)
        return np.exp(alpha + beta - log_z)

    def span_confidence(self, emissions: np.ndarray, start: int, end: int, code: str,
                        fb: tuple[np.ndarray, np.ndarray, float] | None = None) -> float:
        """P(y_start = B-X, y_start+1..end-1 = I-X, y_end != I-X) under the constrained CRF."""
        em = np.asarray(emissions, dtype=np.float64)
        alpha, beta, log_z = fb if fb is not None else self.forward_backward(em)
        b = self.tags.index(f"B-{code}")
        ii = self.tags.index(f"I-{code}")
        s = alpha[start, b]
        prev = b
        for t in range(start + 1, end):
            s += self.trans[prev, ii] + em[t, ii]
            prev = ii
        n = em.shape[0]
        if end < n:
            others = [y for y in range(len(self.tags)) if y != ii]
            s += _logsumexp(self.trans[prev, others] + em[end, others] + beta[end, others], axis=0)
        else:
            s += self.end[prev]
        return float(min(1.0, max(0.0, np.exp(s - log_z))))


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m_safe), axis=axis, keepdims=True)) + m_safe
    return np.squeeze(out, axis=axis)
