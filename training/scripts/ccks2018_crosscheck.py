"""Out-of-sample cross-check of two bundles on CCKS-2018 (same hospital source, other annotation
guidelines, never trained on): strict P/R/F1 on the three types both schemes share (ANA 解剖部位,
OPE 手术, DRU 药物), and the two bundles' agreement on all six types. Records whose first 50
characters occur in CCKS-2019 train are dropped (likely the same documents).

Usage: .venv/bin/python training/scripts/ccks2018_crosscheck.py DATA_DIR BUNDLE [OTHER_BUNDLE]
(DATA_DIR holds ccks2018/train.jsonl and ccks2019/train.jsonl; training/RESULTS.md cites its output)."""
import json
import sys
from pathlib import Path

from cner_train.corpus import Record
from cner_train.evaluate import bundle_predict
from cner_train.metrics import strict_prf
from cner_train.text import Span

D = Path(sys.argv[1])
shared = {'解剖部位': 'ANA', '手术': 'OPE', '药物': 'DRU'}
seen = {json.loads(line)['originalText'][:50] for line in open(D / 'ccks2019/train.jsonl', encoding='utf-8-sig') if line.strip()}
recs, gold = [], []
for line in open(D / 'ccks2018/train.jsonl', encoding='utf-8'):
    o = json.loads(line)
    if o['originalText'][:50] in seen:
        continue
    recs.append(Record(o['id'], o['originalText'], ()))
    gold.append([Span(e['start_pos'], e['end_pos'], shared[e['label_type']]) for e in o['entities'] if e['label_type'] in shared])
print(len(recs), 'CCKS-2018 records kept,', sum(map(len, gold)), 'gold ANA/OPE/DRU spans')
preds = {}
for b in sys.argv[2:]:
    p = bundle_predict(Path(b), recs, threads=2)
    preds[b] = p
    m = strict_prf(gold, [[s for s in r if s.code in shared.values()] for r in p])
    micro = m['micro']
    print(b, f"micro P/R/F1 {micro['precision']:.2f} {micro['recall']:.2f} {micro['f1']:.2f}",
          ' '.join(f"{t} {m['per_type'][t]['f1']:.2f}" for t in ('ANA', 'OPE', 'DRU')))
if len(preds) == 2:
    a, b = preds.values()
    m = strict_prf(a, b)
    print(f"agreement (strict F1 of the second against the first, all types): {m['micro']['f1']:.2f}")
