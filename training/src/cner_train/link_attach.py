"""``cner-train link-attach``: a model bundle that carries its ICD-10 linker.

The tagger bundle is copied to ``--out`` with the linker bundle in its ``linker/``
folder (a complete linker bundle, its own manifest included), and the tagger's
manifest lists the linker's files as ``linker/<file>`` with their sha256 and gets a
``linker`` entry (the linker's name, version, code system and dev metrics). Published
on the model topic (``cner-train publish``), the linker then travels, is verified,
switched and rolled back with the tagger (docs/model-versions.md); a processor with
``CNER_LINKER_DIR=bundle`` (the default) links with it. Both bundles are checked
against their manifests first: a file whose sha256 differs from its manifest's is
refused, so the copy never certifies bytes nobody hashed.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpus import sha256_file
from .publish import LINKER_SUBDIR, SAFE_NAME, SAFE_VERSION

log = logging.getLogger(__name__)

#: What a linker bundle's manifest must list (src/model/linker-bundle.ts LINKER_FILES).
LINKER_FILES = ("linker.onnx", "names.tsv", "vocab.txt", "config.json")


@dataclass
class LinkAttachConfig:
    bundle: str = field(metadata={"help": "model (tagger) bundle directory: manifest.json, model.onnx, ...", "positional": True})
    linker: str = field(metadata={"help": "linker bundle directory (link-export, rerank-export, link-quantize)"})
    out: str = field(metadata={"help": "new folder: the tagger bundle with the linker in linker/ (must not exist, or be empty)"})
    version: str = field(default="", metadata={"help": "version of the new bundle (default: the tagger's version, without a linker "
                                                         "suffix it had, + '+' + the linker's version)"})

    def __post_init__(self) -> None:
        if self.version and not SAFE_VERSION.match(self.version):
            raise SystemExit(f"link-attach: --version {self.version!r} must match {SAFE_VERSION.pattern}")


def _manifest(directory: Path, what: str) -> dict[str, Any]:
    path = directory / "manifest.json"
    if not path.is_file():
        raise SystemExit(f"link-attach: {directory} has no manifest.json (not a {what} bundle)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("version"), str):
        raise SystemExit(f"link-attach: {path} must be an object with a version and a files map")
    return manifest


def _check_files(directory: Path, files: dict[str, str], what: str) -> None:
    """Every listed file exists and has the sha256 its manifest says; else refused, with every mismatch."""
    problems = []
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is listed and missing")
        elif sha256_file(path) != expected:
            problems.append(f"{name} has sha256 {sha256_file(path)}, manifest.json says {expected}")
    if problems:
        raise SystemExit(f"link-attach: the {what} bundle {directory} does not match its manifest: " + "; ".join(problems))


def attached_version(tagger: dict[str, Any], linker: dict[str, Any]) -> str:
    """``<tagger version>+<linker version>``, the tagger's earlier linker suffix (if it carried one) replaced."""
    version = tagger["version"]
    old = (tagger.get("linker") or {}).get("version")
    if isinstance(old, str) and version.endswith(f"+{old}"):
        version = version[: -len(old) - 1]
    return f"{version}+{linker['version']}"


def attach_linker(cfg: LinkAttachConfig) -> Path:
    src, linker_dir, out = Path(cfg.bundle), Path(cfg.linker), Path(cfg.out)
    if out.resolve() in (src.resolve(), linker_dir.resolve()):
        raise SystemExit("link-attach: --out must be a new folder, not the bundle or the linker")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"link-attach: --out {out} exists and is not empty")
    tagger = _manifest(src, "model")
    linker = _manifest(linker_dir, "linker")
    if linker.get("kind") != "linker":
        raise SystemExit(f"link-attach: {linker_dir} is not a linker bundle (its manifest.json has no \"kind\": \"linker\")")
    missing = [f for f in LINKER_FILES if f not in linker["files"]]
    bad_names = [f for f in linker["files"] if not SAFE_NAME.match(f)]
    if missing or bad_names:
        raise SystemExit(f"link-attach: the linker's manifest.json must list {', '.join(LINKER_FILES)} as plain file names "
                         f"(missing: {missing}, not plain: {bad_names})")
    _check_files(linker_dir, linker["files"], "linker")
    own = {k: v for k, v in tagger["files"].items() if not k.startswith(f"{LINKER_SUBDIR}/")}
    _check_files(src, own, "model")
    version = cfg.version or attached_version(tagger, linker)
    if not SAFE_VERSION.match(version):
        raise SystemExit(f"link-attach: version {version!r} must match {SAFE_VERSION.pattern} (set --version)")

    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(own):  # the files the tagger's manifest lists, nothing else its folder holds
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, out / name)
    (out / LINKER_SUBDIR).mkdir()
    for name in [*linker["files"], "manifest.json"]:
        shutil.copyfile(linker_dir / name, out / LINKER_SUBDIR / name)

    files = dict(own)
    for name in sorted([*linker["files"], "manifest.json"]):
        files[f"{LINKER_SUBDIR}/{name}"] = sha256_file(out / LINKER_SUBDIR / name)
    tagger["version"] = version
    tagger["files"] = files
    tagger["linker"] = {
        "name": str(linker.get("name") or ""),
        "version": linker["version"],
        "system": str(linker.get("system") or ""),
        "metrics": linker.get("metrics") or {},
    }
    (out / "manifest.json").write_text(json.dumps(tagger, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("model bundle %s with linker %s written to %s", version, linker["version"], out)
    print(json.dumps({"out": str(out), "version": version, "linker": linker["version"]}))
    return out
