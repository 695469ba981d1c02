"""``cner-train publish``: put a model bundle on the compacted model-version topic.

The record layout is in ``docs/model-versions.md`` and ``schemas/ModelVersionEvent.avsc``:
the bundle directory (and its ``linker/`` subfolder, when it carries a linker:
``cner-train link-attach``; entries ``linker/<file>``, nothing deeper) becomes a
deterministic uncompressed ustar archive (sorted names,
mode 0644, uid/gid 0, mtime 0; the TypeScript publisher encodes the same headers with
another octal padding, so the two archives differ in bytes but both readers accept
either: the sha256 announced is that of the bytes published), announced under key ``version/<v>``, then carried in
parts of at most ``part_bytes`` under ``version/<v>/part/<i>``; ``--live`` then
writes the ``live`` control record. Values are Avro in the Confluent wire format,
registered under ``<topic>-value`` (TopicNameStrategy) through the registry's
Confluent-compatible REST API (Apicurio: ``/apis/ccompat/v7``) with ``requests``
and encoded with ``fastavro`` (confluent-kafka's own registry client needs
authlib/httpx/cachetools besides); Kafka through confluent-kafka (librdkafka).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import io
import json
import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_FILE = "ModelVersionEvent.avsc"
DEFAULT_PART_BYTES = 900 * 1024
SAFE_NAME = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._-]+$")
LINKER_SUBDIR = "linker"
SAFE_VERSION = re.compile(r"^[A-Za-z0-9._+-]{1,128}$")


@dataclass
class PublishConfig:
    bundle: str = field(metadata={"help": "model bundle directory (manifest.json, model.onnx, ...)", "positional": True})
    brokers: str = field(default="", metadata={"help": "Kafka bootstrap servers (default: $KAFKA_BROKERS)"})
    registry_url: str = field(default="", metadata={"help": "Confluent-compatible registry URL (default: $SCHEMA_REGISTRY_URL)"})
    topic: str = field(default="", metadata={"help": "model-version topic (default: $KAFKA_MODEL_TOPIC or ner.models.versions)"})
    live: bool = field(default=False, metadata={"help": "also make this version the live one"})
    reason: str = field(default="", metadata={"help": "why (recorded in the live record)"})
    uri: str = field(default="", metadata={"help": "announce the archive at this URI instead of carrying it in parts"})
    part_bytes: int = field(default=DEFAULT_PART_BYTES, metadata={"help": "largest part in bytes (stay under message.max.bytes)"})

    def __post_init__(self) -> None:
        import os

        self.brokers = self.brokers or os.environ.get("KAFKA_BROKERS", "")
        self.registry_url = self.registry_url or os.environ.get("SCHEMA_REGISTRY_URL", "")
        self.topic = self.topic or os.environ.get("KAFKA_MODEL_TOPIC", "") or "ner.models.versions"
        if not self.brokers:
            raise SystemExit("publish: set --brokers or KAFKA_BROKERS")
        if not self.registry_url:
            raise SystemExit("publish: set --registry-url or SCHEMA_REGISTRY_URL (Apicurio: http://host:8080/apis/ccompat/v7)")
        if not 1 <= self.part_bytes <= 1_000_000 - 16_384:
            raise SystemExit("publish: --part-bytes must be between 1 and 983616 (parts must fit a 1 MB message)")


def _plain_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_file() and SAFE_NAME.match(p.name)] if directory.is_dir() else []


def bundle_entries(directory: Path) -> list[tuple[str, Path]]:
    """(archive name, file), sorted by name: the bundle's plain files and its linker's as ``linker/<file>``."""
    entries = [(p.name, p) for p in _plain_files(directory)]
    entries += [(f"{LINKER_SUBDIR}/{p.name}", p) for p in _plain_files(directory / LINKER_SUBDIR)]
    return sorted(entries)


def pack_bundle(directory: Path) -> bytes:
    """The deterministic ustar archive of the bundle's files (what src/versions/archive.ts unpacks)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, path in bundle_entries(directory):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def split_archive(archive: bytes, part_bytes: int = DEFAULT_PART_BYTES) -> list[bytes]:
    return [archive[i : i + part_bytes] for i in range(0, len(archive), part_bytes)] or [b""]


def _created_ms(manifest: dict[str, Any]) -> int:
    created = manifest.get("created")
    if isinstance(created, str) and created:
        try:
            return int(dt.datetime.fromisoformat(created).timestamp() * 1000)
        except ValueError:
            pass
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def _type_metrics(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    per_type = (manifest.get("metrics") or {}).get("dev_per_type") or {}
    out: dict[str, dict[str, Any]] = {}
    if isinstance(per_type, dict):
        for code, m in per_type.items():
            if isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) for k in ("precision", "recall", "f1")):
                out[str(code)] = {
                    "precision": float(m["precision"]),
                    "recall": float(m["recall"]),
                    "f1": float(m["f1"]),
                    "support": int(m.get("support", m.get("number", 0)) or 0),
                }
    return out


def build_records(
    bundle: Path, part_bytes: int = DEFAULT_PART_BYTES, uri: str = "", by: str = ""
) -> tuple[str, list[tuple[str, tuple[str, dict[str, Any]]]]]:
    """(version, [(key, (record name, value))]): the announcement first, then the parts."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    labels = json.loads((bundle / "labels.json").read_text(encoding="utf-8"))
    version = manifest.get("version")
    if not isinstance(version, str) or not SAFE_VERSION.match(version):
        raise SystemExit(f"publish: manifest.json version {version!r} must match {SAFE_VERSION.pattern}")
    archive = pack_bundle(bundle)
    sha = hashlib.sha256(archive).hexdigest()
    parts = [] if uri else split_archive(archive, part_bytes)
    announcement = {
        "version": version,
        "name": str(manifest.get("name") or ""),
        "created": _created_ms(manifest),
        "metrics": _type_metrics(manifest),
        "labels": [str(x) for x in labels],
        "sha256": sha,
        "size": len(archive),
        "parts": len(parts),
        "uri": uri or None,
        "publishedBy": by,
    }
    records: list[tuple[str, tuple[str, dict[str, Any]]]] = [(f"version/{version}", ("health.cner.ModelVersion", announcement))]
    for i, data in enumerate(parts):
        part = {"version": version, "sha256": sha, "index": i, "count": len(parts), "data": data}
        records.append((f"version/{version}/part/{i}", ("health.cner.ModelBundlePart", part)))
    return version, records


def _schema_text() -> str:
    here = Path(__file__).resolve()
    for root in here.parents:
        candidate = root / "schemas" / SCHEMA_FILE
        if candidate.is_file():
            return json.dumps(json.loads(candidate.read_text(encoding="utf-8")), separators=(",", ":"), ensure_ascii=False)
    raise SystemExit(f"publish: schemas/{SCHEMA_FILE} not found above {here}")


def register_schema(registry_url: str, subject: str, schema_text: str, timeout: float = 10.0) -> int:
    """Registers (idempotently) and returns the schema id; a new subject gets BACKWARD compatibility."""
    import requests

    base = registry_url.rstrip("/")
    headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    res = requests.post(f"{base}/subjects/{subject}/versions", json={"schema": schema_text, "schemaType": "AVRO"},
                        headers=headers, timeout=timeout)
    if not res.ok:
        raise SystemExit(f"publish: the registry refused {subject} ({res.status_code}): {res.text[:300]}")
    schema_id = int(res.json()["id"])
    level = requests.get(f"{base}/config/{subject}", headers=headers, timeout=timeout)
    if level.status_code == 404:
        requests.put(f"{base}/config/{subject}", json={"compatibility": "BACKWARD"}, headers=headers, timeout=timeout)
    return schema_id


def encode(schema: Any, schema_id: int, value: Any) -> bytes:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary."""
    import fastavro

    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, schema, value)
    return out.getvalue()


def publish(cfg: PublishConfig) -> int:
    import fastavro
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    by = f"cner-train/{getpass.getuser()}"
    version, records = build_records(Path(cfg.bundle), cfg.part_bytes, cfg.uri, by)
    ensure_topic(AdminClient({"bootstrap.servers": cfg.brokers}), cfg.topic, NewTopic)

    text = _schema_text()
    schema = fastavro.parse_schema(json.loads(text))
    schema_id = register_schema(cfg.registry_url, f"{cfg.topic}-value", text)
    producer = Producer({"bootstrap.servers": cfg.brokers, "enable.idempotence": True, "acks": "all",
                         "message.max.bytes": 1_000_000, "linger.ms": 5})
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(f"{msg.key()!r}: {err}")

    if cfg.live:
        now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        records.append(("live", ("health.cner.LiveVersion", {"version": version, "by": by, "reason": cfg.reason, "at": now})))
    for key, value in records:
        producer.produce(cfg.topic, key=key.encode(), value=encode(schema, schema_id, {"body": value}), on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(60)
    if left or failures:
        raise SystemExit(f"publish: {left} records undelivered, failures: {failures[:3]}")
    log.info("published model version %s to %s (%d records%s)", version, cfg.topic, len(records), ", live" if cfg.live else "")
    sha = records[0][1][1]["sha256"]
    print(json.dumps({"version": version, "topic": cfg.topic, "records": len(records), "sha256": sha, "live": cfg.live}))
    return 0


def ensure_topic(admin: Any, topic: str, new_topic: Any) -> None:
    """Creates the model topic (one partition, compacted) unless it exists."""
    if topic in admin.list_topics(timeout=10).topics:
        return
    config = {"cleanup.policy": "compact", "max.message.bytes": "1048588"}
    futures = admin.create_topics([new_topic(topic, num_partitions=1, replication_factor=-1, config=config)])
    for f in futures.values():
        try:
            f.result(15)
        except Exception as e:  # noqa: BLE001 - TOPIC_ALREADY_EXISTS from a concurrent publisher is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
