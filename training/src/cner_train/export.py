"""Model bundle export (docs/contract.md): model.onnx, crf.json, labels.json,
vocab.txt, config.json, manifest.json with the sha256 of every file."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .corpus import sha256_file
from .crf import CRF
from .lexicon import CATEGORIES, MAX_TERM, MIN_TERM, NUM_FEATURES, POSITIONS, TRIE_FILE, Lexicon, save_trie
from .models import ModelConfig, Tagger
from .text import ENTITY_TYPES, MAX_CHUNK_LEN, SECONDARY_TIERS, TAGS, WHITESPACE
from .vocab import PAD, SPACE, SPECIAL_TOKENS, UNK, UNK_ID, Vocab

log = logging.getLogger(__name__)

OPSET = 17
BUNDLE_FILES = ("model.onnx", "crf.json", "labels.json", "vocab.txt", "config.json")


@dataclass
class ExportConfig:
    run: str = field(metadata={"help": "training run folder (model.pt, metrics.json, vocab.txt)"})
    out: str = field(metadata={"help": "bundle folder to write"})
    version: str = field(default="", metadata={"help": "model version (default: date and training data hash)"})
    name: str = "cner-albert-idcnn-mha-crf"
    members: list[str] = field(default_factory=list, metadata={
        "help": "more runs (comma-separated) averaged with --run into one exported model: mean emissions, mean CRF scores"})
    member_weights: list[float] = field(default_factory=list, metadata={
        "help": "one weight per run (--run first, comma-separated, summing to 1) for a weighted mean instead of the plain one"})
    dev_metrics: str | None = field(default=None, metadata={
        "help": "metrics JSON (cner-train evaluate --out) to put in the manifest instead of the run's own dev metrics, "
                "e.g. the dev-protocol score of the recipe when the runs were trained on all records"})
    dev_protocol: str | None = field(default=None, metadata={"help": "protocol text that goes with --dev-metrics"})
    weights: str = field(default="float32", metadata={
        "help": "float32 | float16: float16 stores the large weights at half size, cast back to float32 once when "
                "ONNX Runtime loads the model (computation stays float32); the dev F1 of both is compared"})

    def __post_init__(self) -> None:
        if self.dev_metrics and not self.dev_protocol:
            raise SystemExit("--dev-metrics needs --dev-protocol: say how those numbers were measured")
        if self.weights not in ("float32", "float16"):
            raise SystemExit(f"--weights must be float32 or float16, not {self.weights!r}")


class Ensemble(nn.Module):
    """Several taggers exported as one model: the mean of their emissions and
    of their CRF scores. The mean of the members' path scores is itself a
    linear-chain CRF score (a product of experts), so the processor decodes it
    exactly like a single model: nothing changes on the TypeScript side."""

    def __init__(self, members: list[Tagger], remaps: list[torch.Tensor | None] | None = None,
                 weights: list[float] | None = None):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        # Members trained with another vocabulary than the bundle's read ids through a
        # lookup table (bundle id → member id, a constant Gather in the graph), so a
        # bge-small-zh tagger and a character tagger share one input.
        remaps = remaps or [None] * len(members)
        if len(remaps) != len(members):
            raise ValueError("one remap (or None) per member")
        self.remapped = [r is not None for r in remaps]
        for k, r in enumerate(remaps):
            if r is not None:  # a named initializer "remap<k>" in the graph [bundle vocab] → member id
                self.register_buffer(f"remap{k}", r)
        # A weighted mean of the members' scores is still one linear-chain CRF score; weights
        # matter when members are not calibrated alike (a peaky member otherwise dominates).
        weights = weights or [1.0 / len(members)] * len(members)
        if len(weights) != len(members) or any(w < 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
            raise ValueError(f"member weights must be {len(members)} non-negative numbers summing to 1, got {weights}")
        self.weights = list(weights)
        num_tags = members[0].cfg.num_tags
        self.crf = CRF(num_tags)
        with torch.no_grad():
            for name in ("start_transitions", "end_transitions", "transitions"):
                getattr(self.crf, name).copy_(sum(w * getattr(m.crf, name) for w, m in zip(self.weights, members, strict=True)))

        self.lexicon_features = members[0].cfg.lexicon_features
        if any(m.cfg.lexicon_features != self.lexicon_features for m in members):
            raise ValueError("ensemble members must all read lexicon features, or none")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lexicon_features: torch.Tensor | None = None) -> torch.Tensor:
        # input_ids, attention_mask: [batch, seq] → emissions [batch, seq, tags], averaged over members
        out = []
        for k, m in enumerate(self.members):
            ids = getattr(self, f"remap{k}")[input_ids] if self.remapped[k] else input_ids  # [batch, seq]
            out.append(self.weights[k] * m(ids, attention_mask, lexicon_features))
        return torch.stack(out).sum(0)


def union_vocab(vocabs: list[Vocab]) -> Vocab:
    """The first vocabulary, then every other member's characters it lacks, in their order."""
    tokens = list(vocabs[0].tokens)
    seen = set(tokens)
    for v in vocabs[1:]:
        new = [t for t in v.tokens if t not in seen]
        tokens += new
        seen.update(new)
    return Vocab(tokens)


def vocab_remap(bundle: Vocab, member: Vocab) -> torch.Tensor | None:
    """bundle id → member id by token (the member's [UNK] where it lacks one), or None
    when they are the same vocabulary. Both encode a text with the same
    normalization, so every character reaches the member as the id its own
    encoding gives it: its id where it knows the character, [UNK] where not."""
    if bundle.tokens == member.tokens:
        return None
    return torch.tensor([member.index.get(t, UNK_ID) for t in bundle.tokens], dtype=torch.long)


def lexicon_features_of(model: nn.Module) -> int:
    return model.lexicon_features if isinstance(model, Ensemble) else model.cfg.lexicon_features


def encoding_config(lexicon: bool = False) -> dict:
    cfg = {
        "max_length": MAX_CHUNK_LEN,
        "add_special_tokens": False,
        "pad_token": PAD,
        "unk_token": UNK,
        "space_token": SPACE,
        "special_tokens": list(SPECIAL_TOKENS),
        "normalization": {
            "per_code_point": True,
            "whitespace": sorted(f"U+{ord(c):04X}" for c in WHITESPACE),
            "whitespace_to": "U+0020, looked up as space_token",
            "fullwidth_ascii": "U+FF01..U+FF5E minus 0xFEE0",
            "lowercase": "A-Z only",
        },
        "chunking": {
            "max_length": MAX_CHUNK_LEN,
            "sentence_end": "。",
            "secondary_tiers": [sorted(t) if t is not WHITESPACE else "whitespace" for t in SECONDARY_TIERS],
            "pack": True,
        },
        "inputs": ["input_ids", "attention_mask", *(["lexicon_features"] if lexicon else [])],
        "output": "emissions",
        "entity_types": [{"code": c, "label": label} for c, label in ENTITY_TYPES],
    }
    if lexicon:
        cfg["lexicon"] = {
            "file": "lexicon.tsv",
            "format": "CATEGORY<TAB>term per line; terms already normalized like the characters",
            "trie": f"{TRIE_FILE}: the same terms as the trie the processor walks (docs/contract.md)",
            "categories": [c for c, _ in CATEGORIES],
            "positions": list(POSITIONS),
            "features": NUM_FEATURES,
            "feature_index": "3 × category index + position index",
            "term_length": [MIN_TERM, MAX_TERM],
            "matching": "every occurrence of a term in the chunk's normalized characters, overlaps included; "
                        "begin = its first character, end = its last, inside = the ones between",
            "input": "lexicon_features float32 [batch, seq, features], 0 or 1, 0 on padding",
        }
    return cfg


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    ids = torch.ones(2, 7, dtype=torch.int64)
    mask = torch.ones(2, 7, dtype=torch.int64)
    args: tuple = (ids, mask)
    names = ["input_ids", "attention_mask"]
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "emissions": {0: "batch", 1: "seq"}}
    if lexicon_features_of(model):
        args = (ids, mask, torch.zeros(2, 7, lexicon_features_of(model)))
        names.append("lexicon_features")
        axes["lexicon_features"] = {0: "batch", 1: "seq"}
    torch.onnx.export(
        model,
        args,
        str(path),
        input_names=names,
        output_names=["emissions"],
        dynamic_axes=axes,
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def store_float16(path: Path, min_elements: int = 1024) -> int:
    """Rewrites ``path`` so that float32 initializers of ``min_elements`` or more are
    stored as float16, each followed by a Cast back to float32 under its old name.
    ONNX Runtime folds those Casts when it loads the model, so inference runs in
    float32 on weights rounded once to float16. Scales and zero points of an int8
    (QDQ) model stay as they are: ONNX Runtime fuses QuantizeLinear/DequantizeLinear
    pairs only around constant initializers. Returns the bytes saved."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    quantization = {i for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for i in n.input[1:]}
    casts, saved = [], 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in quantization:
            continue
        weights = numpy_helper.to_array(init)
        if weights.size < min_elements:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(weights.astype(np.float16), f"{name}.float16"))
        casts.append(helper.make_node("Cast", [f"{name}.float16"], [name], to=TensorProto.FLOAT, name=f"{name}.cast"))
        saved += weights.size * 2
    nodes = casts + list(graph.node)  # the Casts first, so the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return saved


def write_bundle(model: nn.Module, vocab: Vocab, out: Path, manifest_extra: dict, lexicon: Lexicon | None = None) -> Path:
    write_bundle_files(model, vocab, out, lexicon)
    write_bundle_manifest(out, manifest_extra)
    return out


def write_bundle_files(model: nn.Module, vocab: Vocab, out: Path, lexicon: Lexicon | None = None) -> None:
    """Every bundle file but manifest.json."""
    if bool(lexicon_features_of(model)) != (lexicon is not None):
        raise ValueError("a model that reads lexicon features needs its lexicon, and only such a model takes one")
    out.mkdir(parents=True, exist_ok=True)
    (out / "lexicon.tsv").unlink(missing_ok=True)
    (out / TRIE_FILE).unlink(missing_ok=True)
    if lexicon is not None:
        lexicon.save(out / "lexicon.tsv")
        save_trie(lexicon, out / TRIE_FILE)
    export_onnx(model, out / "model.onnx")
    (out / "crf.json").write_text(json.dumps(model.crf.to_json()), encoding="utf-8")
    (out / "labels.json").write_text(json.dumps(list(TAGS)), encoding="utf-8")
    vocab.save(out / "vocab.txt")
    (out / "config.json").write_text(json.dumps(encoding_config(lexicon is not None), indent=2, ensure_ascii=False),
                                     encoding="utf-8")


def write_bundle_manifest(out: Path, manifest_extra: dict) -> None:
    manifest = {
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "git_commit": git_commit(),
        "opset": OPSET,
        "labels": list(TAGS),
        **manifest_extra,
        "files": {name: sha256_file(out / name) for name in BUNDLE_FILES + ("lexicon.tsv", TRIE_FILE) if (out / name).exists()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


def load_run(run: Path) -> tuple[Tagger, Vocab, dict]:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    vocab = Vocab.load(run / "vocab.txt")
    model = Tagger(ModelConfig(**metrics["model"]), len(vocab))
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu"))
    model.eval()
    return model, vocab, metrics


def load_run_lexicon(run: Path, model: Tagger) -> Lexicon | None:
    return Lexicon.load(run / "lexicon.tsv") if model.cfg.lexicon_features else None


def protocol_of(train_cfg: dict) -> str:
    dev, seed = train_cfg.get("dev_size", 0), train_cfg.get("split_seed")
    extra = " + the CCKS-2020 records" if train_cfg.get("ccks2020") else ""
    if train_cfg.get("extra"):
        extra += " + the records of " + ", ".join(Path(e).name for e in train_cfg["extra"]) + " (cner-train pseudo)"
    if not dev:
        return f"trained on all CCKS-2019 training records{extra}; no dev split (fixed epochs)"
    return (f"dev = {dev} of the 1,000 CCKS-2019 training records (seeded split, seed {seed}); "
            f"trained on the other {1000 - dev}{extra}; best dev epoch kept; strict entity-level metrics")


def export(cfg: ExportConfig) -> Path:
    runs = [Path(cfg.run), *(Path(m) for m in cfg.members)]
    loaded = [load_run(r) for r in runs]
    model, vocab, metrics = loaded[0]
    lexicon = load_run_lexicon(runs[0], model)
    # Members with their own vocabularies share one input: the union of the vocabularies,
    # mapped to each member's ids inside the graph.
    vocab = union_vocab([v for _, v, _ in loaded])
    remaps = [vocab_remap(vocab, v) for _, v, _ in loaded]
    if len(vocab) > len(loaded[0][1]):
        log.info("members have their own vocabularies: the bundle's has %d tokens, mapped to each member's", len(vocab))
    for r, (m, _, _) in zip(runs[1:], loaded[1:], strict=True):
        other = load_run_lexicon(r, m)
        if (other.masks if other else None) != (lexicon.masks if lexicon else None):
            raise SystemExit(f"{r} was trained with another lexicon than {runs[0]}: members must share one")
    sha = metrics.get("training_data_sha256", "")
    version = cfg.version or f"{dt.date.today():%Y.%m.%d}-{sha[:8]}"
    extra = {
        "name": cfg.name,
        "version": version,
        "training_data_sha256": sha,
        "model": metrics["model"],
        "training": metrics.get("config", {}),
    }
    if len(loaded) > 1:
        model = Ensemble([m for m, _, _ in loaded], remaps, cfg.member_weights or None)
        extra["ensemble"] = {
            "combination": ("weighted mean (weights " + ", ".join(f"{w:g}" for w in model.weights) + ")"
                            if cfg.member_weights else "mean") + " of member emissions and of member CRF scores",
            "weights": model.weights,
            "members": [{"run": str(r), "seed": m.get("config", {}).get("seed"), "model": m["model"], "vocab_size": len(v),
                         "dev_micro": (m.get("dev") or {}).get("micro")} for r, (_, v, m) in zip(runs, loaded, strict=True)],
        }
    if "encoder" in metrics:
        extra["encoder"] = metrics["encoder"]
    out = Path(cfg.out)
    write_bundle_files(model, vocab, out, lexicon)
    extra["parity_max_abs_diff"] = check_parity(model, out / "model.onnx", len(vocab))
    scored = None  # the exported bundle's dev scores, once measured
    if cfg.weights == "float16":
        extra["weights"], scored = float16_weights(cfg, out, loaded, model, len(vocab))
    extra["metrics"] = bundle_metrics(cfg, out, loaded, scored)  # an ensemble is scored as exported, so after the files
    write_bundle_manifest(out, extra)
    log.info("bundle %s written to %s", version, out)
    return out


def float16_weights(cfg: ExportConfig, out: Path, loaded: list[tuple[Tagger, Vocab, dict]], model: nn.Module,
                    vocab_size: int) -> tuple[dict, dict | None]:
    """Stores the exported model's weights as float16 (``store_float16``); scores
    the float32 and float16 graphs on the runs' dev split when they have one.
    Returns the manifest's ``weights`` entry and the float16 bundle's dev scores."""
    train_cfg = loaded[0][2].get("config", {})
    dev = None
    if train_cfg.get("dev_size"):
        from .evaluate import dev_records, score_bundle

        dev = dev_records(Path(train_cfg["ccks2019"]), train_cfg["dev_size"], train_cfg["split_seed"])
        f32 = score_bundle(out, dev)["micro"]["f1"]
    saved = store_float16(out / "model.onnx")
    worst = check_parity(model, out / "model.onnx", vocab_size, atol=0.05)
    info = {"storage": "float16 initializers cast to float32 at load; float32 computation",
            "bytes_saved": saved, "max_abs_diff_vs_float32": worst}
    scored = None
    if dev is not None:
        scored = score_bundle(out, dev)
        f16 = scored["micro"]["f1"]
        info.update({"dev_f1_float32": f32, "dev_f1_float16": f16})
        log.info("float16 weights: dev F1 %.2f (float32 %.2f), max |emission diff| %.2e", f16, f32, worst)
    return info, scored


def bundle_metrics(cfg: ExportConfig, bundle: Path, loaded: list[tuple[Tagger, Vocab, dict]],
                   scored: dict | None = None) -> dict:
    """Dev metrics for the manifest: given (--dev-metrics), the run's own for one
    model, or the exported bundle's on the members' common dev split (``scored``
    when already measured on it)."""
    if cfg.dev_metrics:
        dev = json.loads(Path(cfg.dev_metrics).read_text(encoding="utf-8"))
        return {"protocol": cfg.dev_protocol, "dev_micro": dev.get("micro"), "dev_per_type": dev.get("per_type")}
    train_cfg = loaded[0][2].get("config", {})
    if len(loaded) == 1:
        dev = loaded[0][2].get("dev") or {}
        return {"protocol": protocol_of(train_cfg), "dev_micro": dev.get("micro"), "dev_per_type": dev.get("per_type")}
    split = {(m.get("config", {}).get("dev_size"), m.get("config", {}).get("split_seed")) for _, _, m in loaded}
    if len(split) != 1 or not train_cfg.get("dev_size"):
        raise SystemExit("the members do not share one dev split: give --dev-metrics and --dev-protocol")
    from .evaluate import dev_records, score_bundle

    dev = scored or score_bundle(bundle, dev_records(Path(train_cfg["ccks2019"]), train_cfg["dev_size"], train_cfg["split_seed"]))
    return {"protocol": protocol_of(train_cfg) + f"; ensemble of {len(loaded)} runs, scored as exported (ONNX Runtime)",
            "dev_micro": dev["micro"], "dev_per_type": dev["per_type"]}


def check_parity(model: nn.Module, onnx_path: Path, vocab_size: int, atol: float = 1e-4) -> float:
    """Max |torch - onnxruntime| over a few shapes; raises above ``atol``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, seq in ((1, 1), (3, 17), (2, 128)):
        ids = rng.integers(1, vocab_size, size=(batch, seq)).astype(np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        if batch > 1:
            cut = max(1, seq // 2)
            ids[-1, cut:] = 0
            mask[-1, cut:] = 0
        feeds = {"input_ids": ids, "attention_mask": mask}
        torch_args = [torch.from_numpy(ids), torch.from_numpy(mask)]
        if lexicon_features_of(model):
            feats = ((rng.random((batch, seq, lexicon_features_of(model))) < 0.2) & (mask[:, :, None] > 0)).astype(np.float32)
            feeds["lexicon_features"] = feats
            torch_args.append(torch.from_numpy(feats))
        got = sess.run(["emissions"], feeds)[0]
        with torch.no_grad():
            ref = model(*torch_args).numpy()
        lengths = mask.sum(1)
        for b in range(batch):
            worst = max(worst, float(np.abs(ref[b, : lengths[b]] - got[b, : lengths[b]]).max()))
    if worst > atol:
        raise AssertionError(f"ONNX parity: max abs difference {worst:.2e} > {atol:.0e}")
    return worst


@dataclass
class LexiconTrieConfig:
    bundle: str = field(metadata={"help": "a model bundle with lexicon.tsv (written in place)", "positional": True})


def add_lexicon_trie(cfg: LexiconTrieConfig) -> Path:
    """Adds ``lexicon.trie`` to a bundle exported before bundles carried it: built from its
    ``lexicon.tsv`` (checked against the manifest first) and listed in the manifest's
    files; nothing else in the bundle or its manifest changes."""
    bundle = Path(cfg.bundle)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    files = manifest.get("files", {})
    if "lexicon.tsv" not in files:
        raise SystemExit(f"{bundle}: its manifest lists no lexicon.tsv (the model reads no lexicon features)")
    if sha256_file(bundle / "lexicon.tsv") != files["lexicon.tsv"]:
        raise SystemExit(f"{bundle}/lexicon.tsv does not match its manifest's sha256")
    save_trie(Lexicon.load(bundle / "lexicon.tsv"), bundle / TRIE_FILE)
    manifest["files"] = {**files, TRIE_FILE: sha256_file(bundle / TRIE_FILE)}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    log.info("%s: %s written (%d bytes)", bundle, TRIE_FILE, (bundle / TRIE_FILE).stat().st_size)
    return bundle
