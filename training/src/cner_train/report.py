"""Markdown tables of finished runs (their metrics.json files), in the shape of
the paper's Table 2 (models), Table 5 (optimizers) and Figure 5 (heads).

Rows with the same recipe and different seeds are averaged (mean ± sample
std). Every row carries the command that reproduces it, rebuilt from the run's
own configuration. With ``--update RESULTS.md`` the tables replace what stands
between ``<!-- report:NAME -->`` and ``<!-- /report -->`` in that file.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TYPES = ("DIS", "EXA", "TES", "OPE", "DRU", "ANA")

# Table 5 and Figure 5 vary one thing on one fixed recipe: the character
# IDCNN model on CCKS-2019 only, 12 epochs (the ALBERT model costs 4× the CPU).
ABLATION_BASE = {"embedder": "char", "encoder": "idcnn", "ccks2020": False, "epochs": 12}


@dataclass
class ReportConfig:
    results: str = field(default="training/results", metadata={"help": "folder of run metrics (*.json)"})
    update: str | None = field(default=None, metadata={
        "help": "markdown file whose <!-- report:models|optimizers|heads --> sections are rewritten"})


def model_name(m: dict) -> str:
    parts = ["ALBERT" if m["embedder"] == "albert" else "char"]
    if m["encoder"] != "none":
        parts.append({"idcnn": "IDCNN", "bilstm": "BiLSTM"}[m["encoder"]])
    if m["heads"]:
        parts.append(f"MHA(h={m['heads']})")
    return "-".join(parts) + "-CRF" + (" + lexicon" if m.get("lexicon_features") else "")


def recipe(run: dict) -> tuple:
    c = run["config"]
    data = "CCKS-2019 + 2020" if c.get("ccks2020") else "CCKS-2019"
    if c.get("extra"):
        data += " + self-training (" + ", ".join(Path(e).name for e in c["extra"]) + ")"
    return (model_name(run["model"]), c["optimizer"], data, c["epochs"], c["lr"], c["lr_embedder"])


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def command_of(runs: list[dict]) -> str:
    """The `cner-train train` line of a recipe, paths shown relative to $DATA and runs/."""
    c = runs[0]["config"]
    seeds = ",".join(str(r["config"]["seed"]) for r in runs)
    parts = ["cner-train train --ccks2019 $DATA/ccks2019/train.jsonl"]
    if c.get("ccks2020"):
        parts.append("--ccks2020 $DATA/ccks2020/train_new.jsonl")
    if c.get("extra"):
        parts.append("--extra " + ",".join(f"runs/pseudo/{Path(e).name}" for e in c["extra"]))
    if c["embedder"] == "albert":
        parts.append("--pretrained models/pretrained/encoder.pt")
    elif c.get("vectors"):
        parts.append("--vectors runs/w2v/vectors.txt")
    parts.append("--vocab models/pretrained/vocab.txt")
    if c.get("lexicon"):
        parts.append("--lexicon $DATA/lexicon/by_type")
    parts.append(f"--embedder {c['embedder']} --encoder {c['encoder']} --heads {c['heads']}")
    parts.append(f"--optimizer {c['optimizer']} --lr {c['lr']:g} --lr-embedder {c['lr_embedder']:g}")
    parts.append(f"--epochs {c['epochs']} --patience {c['patience']}")
    if c.get("dropout", 0.5) != 0.5:
        parts.append(f"--dropout {c['dropout']:g}")
    parts.append(f"--seed {{{seeds}}} --out runs/<name>-s<seed>")
    return "`" + " ".join(parts) + "`"


def load_groups(results: Path) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(results.glob("*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        if run.get("dev"):
            groups[recipe(run)].append(run)
    for runs in groups.values():
        runs.sort(key=lambda r: r["config"]["seed"])
    return groups


def table(groups: dict[tuple, list[dict]], first: str, first_of) -> str:
    head = (f"| {first} | optimizer | training data | epochs | seeds | dev P | dev R | dev F1 | "
            + " | ".join(TYPES) + " | wall min | command |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key, runs in groups.items():
        _, opt, data, epochs, _, _ = key
        micro = [r["dev"]["micro"] for r in runs]
        per = [fmt([r["dev"]["per_type"][t]["f1"] for r in runs]) for t in TYPES]
        lines.append(
            f"| {first_of(key, runs)} | {opt} | {data} | {epochs} | {','.join(str(r['config']['seed']) for r in runs)} | "
            f"{fmt([m['precision'] for m in micro])} | {fmt([m['recall'] for m in micro])} | "
            f"**{fmt([m['f1'] for m in micro])}** | " + " | ".join(per) +
            f" | {fmt([r['wall_seconds'] / 60 for r in runs])} | {command_of(runs)} |")
    return "\n".join(lines)


def in_ablation(runs: list[dict]) -> bool:
    c, m = runs[0]["config"], runs[0]["model"]
    return (m["embedder"], m["encoder"], bool(c.get("ccks2020")), c["epochs"]) == tuple(ABLATION_BASE.values())


def tables(groups: dict[tuple, list[dict]]) -> dict[str, str]:
    ordered = dict(sorted(groups.items(), key=lambda kv: kv[0]))
    optimizers = {k: v for k, v in ordered.items() if in_ablation(v) and v[0]["model"]["heads"] == 4}
    heads = {k: v for k, v in sorted(ordered.items(), key=lambda kv: kv[1][0]["model"]["heads"])
             if in_ablation(v) and v[0]["config"]["optimizer"] == "adam"}
    return {
        "models": table(ordered, "model", lambda k, _: k[0]),
        "optimizers": table(optimizers, "optimizer (lr)", lambda k, r: f"{k[1]} ({r[0]['config']['lr']:g})"),
        "heads": table(heads, "heads h", lambda k, r: str(r[0]["model"]["heads"])),
    }


def update_markdown(path: Path, sections: dict[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- report:{name} -->\n).*?(<!-- /report -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{path} has no <!-- report:{name} --> … <!-- /report --> section")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    path.write_text(text, encoding="utf-8")


def report(cfg: ReportConfig) -> str:
    sections = tables(load_groups(Path(cfg.results)))
    out = "\n\n".join(f"## {name}\n{body}" for name, body in sections.items())
    print(out)
    if cfg.update:
        update_markdown(Path(cfg.update), sections)
    return out
