import json

import pytest

from cner_train.report import ReportConfig, load_groups, report, tables


def run(seed, f1, embedder="char", heads=0, optimizer="adam", lr=1e-3):
    per = {t: {"f1": f1, "precision": f1, "recall": f1} for t in ("DIS", "EXA", "TES", "OPE", "DRU", "ANA")}
    return {
        "config": {"optimizer": optimizer, "ccks2020": None, "epochs": 12, "lr": lr, "lr_embedder": lr, "seed": seed,
                   "embedder": embedder, "encoder": "idcnn", "heads": heads, "patience": 12, "dropout": 0.5,
                   "vectors": "/x/w2v/vectors.txt", "pretrained": "/x/encoder.pt" if embedder == "albert" else None},
        "model": {"embedder": embedder, "encoder": "idcnn", "heads": heads},
        "dev": {"micro": {"precision": f1, "recall": f1, "f1": f1}, "per_type": per},
        "wall_seconds": 60.0,
    }


def write(tmp_path, name, data):
    (tmp_path / f"{name}.json").write_text(json.dumps(data))


def rows(markdown):
    return markdown.splitlines()[2:]


def test_seeds_of_one_recipe_are_averaged_with_their_command(tmp_path):
    for seed, f1 in ((1, 78.0), (2, 80.0)):
        write(tmp_path, f"s{seed}", run(seed, f1))
    write(tmp_path, "other", run(1, 81.0, "albert", 4))
    models = rows(tables(load_groups(tmp_path))["models"])
    assert len(models) == 2
    char = next(r for r in models if "char-IDCNN-CRF" in r)
    assert "**79.00 ± 1.41**" in char and "| 1,2 |" in char
    assert "--seed {1,2}" in char and "--vectors runs/w2v/vectors.txt" in char and "--heads 0" in char
    assert "--lexicon" not in char
    albert = next(r for r in models if "ALBERT-IDCNN-MHA(h=4)-CRF" in r)
    assert "**81.00**" in albert and "--pretrained models/pretrained/encoder.pt" in albert


def test_lexicon_runs_are_their_own_recipe(tmp_path):
    plain, lex = run(1, 80.0, heads=4), run(1, 81.0, heads=4)
    lex["model"]["lexicon_features"] = 24
    lex["config"]["lexicon"] = "/data/lexicon/by_type"
    write(tmp_path, "plain", plain)
    write(tmp_path, "lex", lex)
    models = rows(tables(load_groups(tmp_path))["models"])
    assert len(models) == 2
    row = next(r for r in models if "char-IDCNN-MHA(h=4)-CRF + lexicon" in r)
    assert "--lexicon $DATA/lexicon/by_type" in row and "**81.00**" in row


def test_optimizer_and_head_tables_hold_only_the_ablation_recipe(tmp_path):
    write(tmp_path, "adam-h4", run(1, 80.0, heads=4))
    write(tmp_path, "radam-h4", run(1, 79.0, heads=4, optimizer="radam"))
    write(tmp_path, "adagrad-h4", run(1, 70.0, heads=4, optimizer="adagrad", lr=1e-2))
    write(tmp_path, "adam-h1", run(1, 78.0, heads=1))
    write(tmp_path, "adam-h0", run(1, 77.0, heads=0))
    write(tmp_path, "albert", run(1, 81.0, "albert", 4))
    t = tables(load_groups(tmp_path))
    opts = rows(t["optimizers"])
    assert [r.split("|")[1].strip() for r in opts] == ["adagrad (0.01)", "adam (0.001)", "radam (0.001)"]
    heads = rows(t["heads"])
    assert [r.split("|")[1].strip() for r in heads] == ["0", "1", "4"]


def test_update_rewrites_marked_sections_only(tmp_path):
    write(tmp_path, "adam-h4", run(1, 80.0, heads=4))
    md = tmp_path / "RESULTS.md"
    md.write_text("intro\n<!-- report:models -->\nold\n<!-- /report -->\nmiddle\n<!-- report:optimizers -->\n"
                  "<!-- /report -->\n<!-- report:heads -->\nx\n<!-- /report -->\nend\n", encoding="utf-8")
    report(ReportConfig(results=str(tmp_path), update=str(md)))
    text = md.read_text(encoding="utf-8")
    assert text.startswith("intro\n<!-- report:models -->\n| model |") and "old" not in text
    assert "middle\n<!-- report:optimizers -->\n| optimizer (lr) |" in text and text.endswith("<!-- /report -->\nend\n")
    md.write_text("no markers", encoding="utf-8")
    with pytest.raises(SystemExit, match="report:models"):
        report(ReportConfig(results=str(tmp_path), update=str(md)))
