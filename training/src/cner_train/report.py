"""Markdown tables of finished runs (their metrics.json files), in the shape of
the paper's Table 2 (models), Table 5 (optimizers) and Figure 5 (heads).
Rows with the same recipe and different seeds are averaged (mean ± sample std)."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TYPES = ("DIS", "EXA", "TES", "OPE", "DRU", "ANA")


@dataclass
class ReportConfig:
    results: str = field(default="training/results", metadata={"help": "folder of run metrics (*.json)"})


def model_name(m: dict) -> str:
    parts = ["ALBERT" if m["embedder"] == "albert" else "char"]
    if m["encoder"] != "none":
        parts.append({"idcnn": "IDCNN", "bilstm": "BiLSTM"}[m["encoder"]])
    if m["heads"]:
        parts.append(f"MHA(h={m['heads']})")
    return "-".join(parts) + "-CRF"


def recipe(run: dict) -> tuple:
    c = run["config"]
    return (model_name(run["model"]), c["optimizer"], "CCKS-2019 + 2020" if c.get("ccks2020") else "CCKS-2019",
            c["epochs"], c["lr"], c["lr_embedder"])


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def report(cfg: ReportConfig) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(Path(cfg.results).glob("*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        if run.get("dev"):
            groups[recipe(run)].append(run)
    head = "| model | optimizer | training data | epochs | seeds | dev P | dev R | dev F1 | " + " | ".join(TYPES) + " | wall min |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key, runs in sorted(groups.items(), key=lambda kv: kv[0]):
        name, opt, data, epochs, _, _ = key
        micro = [r["dev"]["micro"] for r in runs]
        per = [fmt([r["dev"]["per_type"][t]["f1"] for r in runs]) for t in TYPES]
        lines.append(
            f"| {name} | {opt} | {data} | {epochs} | {','.join(str(r['config']['seed']) for r in runs)} | "
            f"{fmt([m['precision'] for m in micro])} | {fmt([m['recall'] for m in micro])} | "
            f"**{fmt([m['f1'] for m in micro])}** | " + " | ".join(per) +
            f" | {fmt([r['wall_seconds'] / 60 for r in runs])} |")
    table = "\n".join(lines)
    print(table)
    return table
