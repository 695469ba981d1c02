"""``cner-train link-attach``: a model bundle carrying its linker in linker/, on the committed tiny fixtures
(the TypeScript side opens and publishes such bundles: test/model/model.test.ts, test/versions/archive.test.ts)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from cner_train.cli import main
from cner_train.link_attach import LinkAttachConfig, attach_linker
from cner_train.publish import build_records, pack_bundle

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "fixtures" / "tiny-bundle"
LINKER = ROOT / "fixtures" / "tiny-linker-bundle"
RERANKED = ROOT / "fixtures" / "tiny-reranked-linker-bundle"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def test_copies_the_tagger_with_the_linker_in_linker_and_lists_its_files(tmp_path: Path) -> None:
    out = attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(LINKER), out=str(tmp_path / "b")))
    m, tagger, linker = manifest(out), manifest(TINY), manifest(LINKER)
    assert m["version"] == f"{tagger['version']}+{linker['version']}" == "tiny-0+tiny-linker-0"
    assert m["linker"] == {"name": linker["name"], "version": linker["version"], "system": "ICD-10-BJ-v601", "metrics": linker["metrics"]}
    # the tagger's own files unchanged, the linker's (its manifest too) under linker/ with their sha256
    for name, digest in tagger["files"].items():
        assert m["files"][name] == digest == sha(out / name)
    linked = {k: v for k, v in m["files"].items() if k.startswith("linker/")}
    assert sorted(linked) == sorted(f"linker/{n}" for n in [*linker["files"], "manifest.json"])
    for key, digest in linked.items():
        assert digest == sha(out / key) == sha(LINKER / key.removeprefix("linker/"))
    assert sorted(p.name for p in (out / "linker").iterdir()) == sorted([*linker["files"], "manifest.json"])
    # everything else in the manifest is the tagger's
    assert {k: v for k, v in m.items() if k not in ("version", "files", "linker")} == {
        k: v for k, v in tagger.items() if k not in ("version", "files")}


def test_the_archive_carries_the_linker_as_linker_entries(tmp_path: Path) -> None:
    out = attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(LINKER), out=str(tmp_path / "b")))
    archive = pack_bundle(out)
    assert archive == pack_bundle(out)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = [m.name for m in tar.getmembers()]
        assert all(m.isfile() and m.mode == 0o644 and m.mtime == 0 for m in tar.getmembers())
        assert names == sorted(names)
        assert names == sorted([p.name for p in TINY.iterdir()] + [f"linker/{p.name}" for p in LINKER.iterdir()])
        assert tar.extractfile("linker/linker.onnx").read() == (LINKER / "linker.onnx").read_bytes()
    version, records = build_records(out, part_bytes=100_000)
    assert version == "tiny-0+tiny-linker-0"
    assert b"".join(v["data"] for _, (_, v) in records[1:]) == archive


def test_attaching_again_replaces_the_linker_and_its_version_suffix(tmp_path: Path) -> None:
    first = attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(RERANKED), out=str(tmp_path / "a")))
    assert (first / "linker" / "reranker.onnx").is_file()
    second = attach_linker(LinkAttachConfig(bundle=str(first), linker=str(LINKER), out=str(tmp_path / "b")))
    m = manifest(second)
    assert m["version"] == "tiny-0+tiny-linker-0"
    assert m["linker"]["version"] == "tiny-linker-0"
    assert not (second / "linker" / "reranker.onnx").exists()
    assert "linker/reranker.onnx" not in m["files"]
    carried = sorted(f"linker/{n}" for n in [*manifest(LINKER)["files"], "manifest.json"])
    assert sorted(k for k in m["files"] if k.startswith("linker/")) == carried


def test_version_can_be_named(tmp_path: Path) -> None:
    out = attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(LINKER), out=str(tmp_path / "b"), version="2026.12.06-x"))
    assert manifest(out)["version"] == "2026.12.06-x"
    with pytest.raises(SystemExit, match="must match"):
        LinkAttachConfig(bundle=str(TINY), linker=str(LINKER), out=str(tmp_path / "c"), version="bad/version")


def test_refuses_a_linker_whose_files_do_not_match_its_manifest(tmp_path: Path) -> None:
    tampered = tmp_path / "linker"
    shutil.copytree(LINKER, tampered)
    with (tampered / "names.tsv").open("a", encoding="utf-8") as f:
        f.write("伪造\tX99.999\n")
    with pytest.raises(SystemExit, match=r"linker bundle .* does not match its manifest: names.tsv has sha256"):
        attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(tampered), out=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()
    (tampered / "names.tsv").unlink()
    with pytest.raises(SystemExit, match="names.tsv is listed and missing"):
        attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(tampered), out=str(tmp_path / "b")))


def test_refuses_a_tagger_that_does_not_match_its_manifest(tmp_path: Path) -> None:
    tampered = tmp_path / "tagger"
    shutil.copytree(TINY, tampered)
    (tampered / "crf.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit, match="model bundle .* crf.json has sha256"):
        attach_linker(LinkAttachConfig(bundle=str(tampered), linker=str(LINKER), out=str(tmp_path / "b")))


def test_refuses_what_is_not_a_linker_and_an_occupied_out(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a linker bundle"):
        attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(TINY), out=str(tmp_path / "b")))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x", encoding="utf-8")
    with pytest.raises(SystemExit, match="not empty"):
        attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(LINKER), out=str(occupied)))
    with pytest.raises(SystemExit, match="new folder"):
        attach_linker(LinkAttachConfig(bundle=str(TINY), linker=str(LINKER), out=str(TINY)))


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["link-attach", str(TINY), "--linker", str(LINKER), "--out", str(tmp_path / "b")]) in (0, None)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"out": str(tmp_path / "b"), "version": "tiny-0+tiny-linker-0", "linker": "tiny-linker-0"}
    assert manifest(tmp_path / "b")["linker"]["version"] == "tiny-linker-0"
