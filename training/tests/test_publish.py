"""The model-version publisher without Kafka: archive, parts, records
(the TypeScript reader is tested on them in test/model/archive.test.ts)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from cner_train.publish import build_records, pack_bundle, split_archive

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "fixtures" / "tiny-bundle"


def test_archive_is_deterministic_and_holds_the_bundle(tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(TINY, copy)
    for p in copy.iterdir():
        p.chmod(0o600)  # file modes and times must not reach the archive
    a, b = pack_bundle(TINY), pack_bundle(copy)
    assert a == b
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(p.name for p in TINY.iterdir())
        for m in members:
            assert m.isfile() and m.mode == 0o644 and m.mtime == 0 and m.uid == 0
            assert tar.extractfile(m).read() == (TINY / m.name).read_bytes()


def test_parts_reassemble_and_records_describe_the_archive() -> None:
    version, records = build_records(TINY, part_bytes=100_000, by="test")
    manifest = json.loads((TINY / "manifest.json").read_text(encoding="utf-8"))
    assert version == manifest["version"]
    key, (name, announcement) = records[0]
    assert key == f"version/{version}" and name == "health.cner.ModelVersion"
    parts = records[1:]
    assert announcement["parts"] == len(parts) > 1
    assert [k for k, _ in parts] == [f"version/{version}/part/{i}" for i in range(len(parts))]
    archive = b"".join(v["data"] for _, (_, v) in parts)
    assert len(archive) == announcement["size"]
    assert hashlib.sha256(archive).hexdigest() == announcement["sha256"]
    assert announcement["labels"] == json.loads((TINY / "labels.json").read_text(encoding="utf-8"))
    assert all(len(v["data"]) <= 100_000 and v["count"] == len(parts) for _, (_, v) in parts)


def test_records_encode_with_the_registered_schema() -> None:
    fastavro = pytest.importorskip("fastavro")
    from cner_train.publish import _schema_text

    schema = fastavro.parse_schema(json.loads(_schema_text()))
    _, records = build_records(TINY, part_bytes=200_000)
    for _, value in records:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, {"body": value})
        back = fastavro.schemaless_reader(io.BytesIO(out.getvalue()), schema, return_record_name=True)
        assert back["body"][0] == value[0]


def test_uri_announcement_has_no_parts() -> None:
    _, records = build_records(TINY, uri="https://models.example/tiny.tar")
    assert len(records) == 1 and records[0][1][1]["parts"] == 0 and records[0][1][1]["uri"] == "https://models.example/tiny.tar"


def test_split_archive_sizes() -> None:
    assert split_archive(b"abcdef", 4) == [b"abcd", b"ef"]
    assert split_archive(b"", 4) == [b""]


def test_version_names_are_checked(tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(TINY, copy)
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = "bad/version"
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(SystemExit):
        build_records(copy)


def test_archive_holds_the_linker_folder_one_level_deep_and_nothing_else(tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(TINY, copy)
    (copy / "linker").mkdir()
    (copy / "linker" / "names.tsv").write_text("胃癌\tX01\n", encoding="utf-8")
    (copy / "linker" / "deeper").mkdir()
    (copy / "linker" / "deeper" / "x.txt").write_text("x", encoding="utf-8")
    (copy / "other").mkdir()
    (copy / "other" / "y.txt").write_text("y", encoding="utf-8")
    with tarfile.open(fileobj=io.BytesIO(pack_bundle(copy))) as tar:
        names = [m.name for m in tar.getmembers()]
    assert names == sorted([p.name for p in TINY.iterdir()] + ["linker/names.tsv"])
