import json

from cner_train.report import ReportConfig, report


def run(seed, f1, embedder="char", heads=0):
    per = {t: {"f1": f1, "precision": f1, "recall": f1} for t in ("DIS", "EXA", "TES", "OPE", "DRU", "ANA")}
    return {
        "config": {"optimizer": "adam", "ccks2020": None, "epochs": 12, "lr": 1e-3, "lr_embedder": 1e-3, "seed": seed},
        "model": {"embedder": embedder, "encoder": "idcnn", "heads": heads},
        "dev": {"micro": {"precision": f1, "recall": f1, "f1": f1}, "per_type": per},
        "wall_seconds": 60.0,
    }


def test_seeds_of_one_recipe_are_averaged(tmp_path):
    for seed, f1 in ((1, 78.0), (2, 80.0)):
        (tmp_path / f"s{seed}.json").write_text(json.dumps(run(seed, f1)))
    (tmp_path / "other.json").write_text(json.dumps(run(1, 81.0, "albert", 4)))
    table = report(ReportConfig(results=str(tmp_path)))
    rows = table.splitlines()[2:]
    assert len(rows) == 2
    assert any("char-IDCNN-CRF" in r and "**79.00 ± 1.41**" in r and "| 1,2 |" in r for r in rows)
    assert any("ALBERT-IDCNN-MHA(h=4)-CRF" in r and "**81.00**" in r for r in rows)
