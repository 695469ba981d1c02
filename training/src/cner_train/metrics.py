"""Strict entity-level metrics: an entity counts only with exact start, end and type."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from .text import ENTITY_TYPES, Span


def strict_prf(gold: Sequence[Iterable[Span]], pred: Sequence[Iterable[Span]],
               types: Sequence[str] = tuple(code for code, _ in ENTITY_TYPES)) -> dict:
    """Micro and per-type precision, recall, F1 (in percent) over aligned records; ``per_type`` lists
    ``types`` (CCKS-2019's six codes by default), the micro figures count every span."""
    if len(gold) != len(pred):
        raise ValueError("gold and pred must cover the same records")
    tp: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        gs = {(s.start, s.end, s.code) for s in g}
        ps = {(s.start, s.end, s.code) for s in p}
        for _, _, c in gs:
            n_gold[c] += 1
        for _, _, c in ps:
            n_pred[c] += 1
        for _, _, c in gs & ps:
            tp[c] += 1
    out = {"per_type": {}}
    for code in types:
        out["per_type"][code] = _prf(tp[code], n_pred[code], n_gold[code])
    out["micro"] = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return out


def _prf(tp: int, n_pred: int, n_gold: int) -> dict:
    p = 100.0 * tp / n_pred if n_pred else 0.0
    r = 100.0 * tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "pred": n_pred, "gold": n_gold}


def format_table(metrics: dict) -> str:
    rows = [("type", "P", "R", "F1", "gold")]
    for code, m in metrics["per_type"].items():
        rows.append((code, f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}", str(m["gold"])))
    m = metrics["micro"]
    rows.append(("micro", f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}", str(m["gold"])))
    return "\n".join(f"{a:<6} {b:>7} {c:>7} {d:>7} {e:>6}" for a, b, c, d, e in rows)
