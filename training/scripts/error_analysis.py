"""Where a bundle's dev errors are, per type: python training/scripts/error_analysis.py BUNDLE DATA/ccks2019/train.jsonl [TYPE]

Predicts the fixed dev split (150 records, seed 42) with ONNX Runtime as
`cner-train evaluate` does, then sorts every gold and predicted entity of each
type into: exact (a true positive), boundary (overlaps a gold entity of the same
type with other offsets), type (same offsets, other type), missed (gold, no
overlapping prediction of any type) and spurious (predicted, no overlapping gold).
For TYPE (default TES) it prints the most frequent boundary pairs and misses.
"""

import collections
import sys
from pathlib import Path

from cner_train.evaluate import bundle_predict, dev_records

bundle, data = Path(sys.argv[1]), Path(sys.argv[2])
focus = sys.argv[3] if len(sys.argv) > 3 else "TES"
records = dev_records(data, 150, 42)
preds = bundle_predict(bundle, records, threads=2)

counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
boundary_pairs: collections.Counter = collections.Counter()
missed: collections.Counter = collections.Counter()
spurious: collections.Counter = collections.Counter()
for rec, pred in zip(records, preds, strict=True):
    gold = {(s.start, s.end, s.code) for s in rec.spans}
    got = {(s.start, s.end, s.code) for s in pred}

    def overlaps(a, pool):
        return [b for b in pool if b[0] < a[1] and a[0] < b[1]]

    for g in gold:
        if g in got:
            counts[g[2]]["exact"] += 1
            continue
        near = overlaps(g, got)
        if any(b[2] == g[2] for b in near):
            counts[g[2]]["boundary"] += 1
            if g[2] == focus:
                b = next(b for b in near if b[2] == g[2])
                boundary_pairs[(rec.text[g[0]:g[1]], rec.text[b[0]:b[1]])] += 1
        elif any((b[0], b[1]) == (g[0], g[1]) for b in near):
            counts[g[2]]["type"] += 1
        else:
            counts[g[2]]["missed"] += 1
            if g[2] == focus:
                missed[rec.text[g[0]:g[1]]] += 1
    for p in got - gold:
        if not overlaps(p, gold):
            counts[p[2]]["spurious"] += 1
            if p[2] == focus:
                spurious[rec.text[p[0]:p[1]]] += 1

print("type  exact  boundary  type  missed  spurious")
for code in ("DIS", "EXA", "TES", "OPE", "DRU", "ANA"):
    c = counts[code]
    print(f"{code}   {c['exact']:5d}  {c['boundary']:8d}  {c['type']:4d}  {c['missed']:6d}  {c['spurious']:8d}")
print(f"\n{focus} boundary errors (gold → predicted):")
for (g, p), n in boundary_pairs.most_common(25):
    print(f"  {n:3d}  {g} → {p}")
print(f"\n{focus} missed:")
for t, n in missed.most_common(20):
    print(f"  {n:3d}  {t}")
print(f"\n{focus} spurious:")
for t, n in spurious.most_common(15):
    print(f"  {n:3d}  {t}")
