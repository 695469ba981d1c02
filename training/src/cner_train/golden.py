"""Golden fixtures shared by the Python and TypeScript test suites.

``cner-train golden`` writes:
- ``fixtures/tiny-bundle/``: a tiny, randomly initialised ALBERT-IDCNN-MHA-CRF
  exported exactly like a real bundle (for unit tests only);
- ``fixtures/golden/golden.json``: for each text, the chunks, encoded ids,
  ONNX Runtime emissions of the tiny bundle, the constrained Viterbi tags and
  the entities with their confidences, all computed by this package;
- ``fixtures/tiny-lexicon-bundle/`` and ``fixtures/golden/golden-lexicon.json``:
  the same for a tiny random character model that also reads lexicon match
  features, with a small word list written for the fixtures; each chunk also
  carries its features, as ``[position, feature]`` pairs of the ones;
- ``fixtures/golden/link.json``: the ICD-10 linker's rules (parts of a diagnosis
  string, the keep-or-drop decision) on shared cases (``link.golden_link_cases``);
- ``fixtures/tiny-linker-bundle/`` and ``fixtures/golden/golden-linker.json``: a
  linker bundle over a tiny random BERT and 16 synthetic candidate names, and for
  each golden diagnosis string the nearest names of its parts through ONNX
  Runtime and the names kept;
- ``fixtures/tiny-reranked-linker-bundle/`` and ``fixtures/golden/golden-reranked-linker.json``:
  the tiny linker with a memory of synthetic training pairs and a tiny random
  cross-encoder re-ranker added, and for each golden string its nearest
  training pairs, its candidates and votes, those re-ranked, their
  probabilities and the names kept;
- ``fixtures/tiny-bert-bundle/`` and ``fixtures/golden/golden-bert.json``: a tiny
  random ``transformers`` BERT tagger built the way the bge-small-zh taggers are
  ([CLS]/[SEP] framing inside the graph, lexicon features, IDCNN-MHA-CRF), over
  the bge tagger vocabulary (``cner-train bge``'s vocab.txt, so its ids are the
  tokenizer's golden ids), with float16-stored weights as ``--weights float16``
  exports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .albert import AlbertConfig
from .crf import ConstrainedDecoder
from .export import store_float16, write_bundle, write_bundle_manifest
from .lexicon import NUM_FEATURES, Lexicon
from .models import ModelConfig, Tagger
from .text import LABEL_BY_CODE, TAGS, chunk_text, spans_from_tags
from .vocab import Vocab

# Synthetic EMR-like texts written for these fixtures (no dataset text), plus edge cases.
GOLDEN_TEXTS: tuple[str, ...] = (
    "患者因“反复上腹痛3月”入院，行胃镜检查示：胃窦溃疡。予奥美拉唑20mg qd口服抑酸治疗。",
    "2018-03-12于我院行腹腔镜下右半结肠切除术，术后病理：（升结肠）中分化腺癌，侵及浆膜下层。术后予奥沙利铂+卡培他滨化疗6周期。",
    "查血常规：WBC 12.5×10^9/L，CRP 45MG/L；胸部CT示双肺下叶少许炎症，腹部B超未见异常。",
    "ＣＥＡ　５．６ｎｇ／ｍｌ，ＡＦＰ正常，ＣＡ１９－９升高。",
    "体温 36.5℃\t脉搏80次/分\n血压120/80mmHg\r\n神志清，精神可。",
    "患者诉头痛😀，𠀀字测试，𝔸𝔹ℂ为数学字母。",
    "复查肝功能：ALT 56U/L，AST 48U/L，总胆红素18.2umol/L，直接胆红素6.1umol/L，白蛋白38g/L，球蛋白29g/L，"
    "肾功能：肌酐78umol/L，尿素氮5.6mmol/L，尿酸320umol/L，电解质：钾4.1mmol/L，钠139mmol/L，氯101mmol/L，"
    "钙2.31mmol/L，血糖5.8mmol/L，凝血功能：PT 11.8s，APTT 32.5s，INR 1.02，D-二聚体0.35mg/L。",
    "0123456789" * 30 + "。",
    "。。。",
    "。",
    "入院诊断：1.直肠癌术后；2.高血压病3级 很高危组；3.2型糖尿病，" + "予以对症支持治疗，" * 12 + "病情稳定后出院。",
    "罕见字符㊣与⚕及\u200b零宽空格、\u00a0不换行空格和\u3000全角空格。",
    "左侧乳腺癌改良根治术后2年，骨扫描示：胸椎、腰椎多发骨转移。口服来曲唑2.5mg qd内分泌治疗，唑来膦酸4mg静滴q4w。",
)

# The word list of the lexicon fixtures: terms of the golden texts (and near misses), in several lists,
# with overlaps, normalization cases (upper case, full-width) and an astral character.
GOLDEN_LEXICON: tuple[tuple[str, str], ...] = (
    ("DIS", "胃窦溃疡"), ("DIS", "溃疡"), ("DIS", "中分化腺癌"), ("DIS", "腺癌"), ("DIS", "直肠癌"), ("DIS", "高血压病"),
    ("DIS", "2型糖尿病"), ("DIS", "乳腺癌"), ("DIS", "骨转移"), ("SYM", "头痛"), ("SYM", "上腹痛"),
    ("EXA", "胃镜"), ("EXA", "胸部CT"), ("EXA", "腹部B超"), ("EXA", "骨扫描"), ("CHK", "胃镜检查"),
    ("TES", "血常规"), ("TES", "CRP"), ("TES", "ＣＥＡ"), ("TES", "afp"), ("TES", "肝功能"), ("TES", "总胆红素"),
    ("TES", "直接胆红素"), ("TES", "肌酐"), ("CHK", "血常规"), ("CHK", "凝血功能"),
    ("OPE", "腹腔镜下右半结肠切除术"), ("OPE", "右半结肠切除术"), ("OPE", "改良根治术"), ("OPE", "乳腺癌改良根治术"),
    ("DRU", "奥美拉唑"), ("DRU", "奥沙利铂"), ("DRU", "卡培他滨"), ("DRU", "来曲唑"), ("DRU", "唑来膦酸"),
    ("ANA", "胃窦"), ("ANA", "升结肠"), ("ANA", "双肺下叶"), ("ANA", "肺下叶"), ("ANA", "胸椎"), ("ANA", "腰椎"),
    ("ANA", "浆膜下层"), ("ANA", "右半结肠"), ("ANA", "𠀀字"),
)

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=130, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
TINY_ALBERT = dict(embedding_size=16, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=128)


@dataclass
class GoldenConfig:
    vocab: str = field(metadata={"help": "vocab.txt to give the tiny bundle (the real character vocabulary)"})
    out: str = field(default="fixtures", metadata={"help": "fixtures folder (tiny-bundle/ and golden/ are written in it)"})
    seed: int = 0
    bert_vocab: str | None = field(default=None, metadata={
        "help": "the bge tagger vocab.txt (cner-train bge) for the tiny BERT bundle; default: --vocab"})


def vary_tags(model: Tagger, vocab: Vocab, lexicon: Lexicon | None = None) -> Tagger:
    """Random CRF scores from N(0, 1), sharper emissions centred per tag on the
    golden texts, and O favoured a little: the decoded tags are varied (all
    kinds of tag occur), so the fixtures exercise transitions and the BIO
    constraints rather than one dominant tag."""
    with torch.no_grad():
        model.crf.start_transitions.normal_(0, 1)
        model.crf.end_transitions.normal_(0, 1)
        model.crf.transitions.normal_(0, 1)
        model.classifier.weight.mul_(8)
        ems = []
        for t in GOLDEN_TEXTS:
            if len(t) > 128:
                continue
            feats = None if lexicon is None else torch.from_numpy(lexicon.features(t)[None].astype(np.float32))
            ems.append(model(torch.tensor([vocab.encode(t)]), torch.ones(1, len(t), dtype=torch.int64), feats)[0])
        model.classifier.bias.sub_(torch.cat(ems).mean(0))
        model.classifier.bias[0] += 2.0
    return model


def tiny_model(vocab: Vocab, seed: int) -> Tagger:
    """A random tiny ALBERT-IDCNN-MHA-CRF with varied tags."""
    torch.manual_seed(seed)
    albert = AlbertConfig(vocab_size=len(vocab), **TINY_ALBERT).to_dict()
    cfg = ModelConfig(embedder="albert", encoder="idcnn", heads=2, filters=16, blocks=2, albert=albert)
    return vary_tags(Tagger(cfg, len(vocab)).eval(), vocab)


def tiny_lexicon_model(vocab: Vocab, lexicon: Lexicon, seed: int) -> Tagger:
    """A random tiny character model reading lexicon features, with the feature
    weights scaled up so that the features visibly decide tags."""
    torch.manual_seed(seed)
    cfg = ModelConfig(embedder="char", encoder="idcnn", heads=2, char_dim=16, filters=16, blocks=2,
                      lexicon_features=NUM_FEATURES)
    model = Tagger(cfg, len(vocab)).eval()
    with torch.no_grad():
        model.encoder.inp.weight[:, cfg.char_dim:, :].mul_(30)
    return vary_tags(model, vocab, lexicon)


def tiny_bert_model(vocab: Vocab, lexicon: Lexicon, seed: int) -> Tagger:
    """A random tiny BERT-IDCNN-MHA-CRF reading lexicon features, framed like the bge taggers."""
    torch.manual_seed(seed)
    cfg = ModelConfig(embedder="bert", encoder="idcnn", heads=2, filters=16, blocks=2, bert=dict(TINY_BERT),
                      lexicon_features=NUM_FEATURES)
    model = Tagger(cfg, len(vocab)).eval()
    with torch.no_grad():
        model.encoder.inp.weight[:, TINY_BERT["hidden_size"]:, :].mul_(10)
    return vary_tags(model, vocab, lexicon)


def golden_cases(sess, decoder: ConstrainedDecoder, vocab: Vocab, lexicon: Lexicon | None) -> list[dict]:
    cases = []
    for text in GOLDEN_TEXTS:
        chunks = chunk_text(text)
        case = {"text": text, "chunks": [list(c) for c in chunks], "input_ids": [], "emissions": [], "tags": [],
                "entities": []}
        if lexicon is not None:
            case["lexicon_features"] = []
        for s, e in chunks:
            ids = np.array([vocab.encode(text[s:e])], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if lexicon is not None:
                feats = lexicon.features(text[s:e])
                feeds["lexicon_features"] = feats[None].astype(np.float32)
                case["lexicon_features"].append([[int(t), int(f)] for t, f in zip(*np.nonzero(feats), strict=True)])
            em = sess.run(["emissions"], feeds)[0][0]
            path = decoder.viterbi(em)
            fb = decoder.forward_backward(em)
            case["input_ids"].append(ids[0].tolist())
            case["emissions"].append([[float(v) for v in row] for row in em.astype(np.float32)])
            case["tags"].append([TAGS[t] for t in path])
            for sp in spans_from_tags(path):
                case["entities"].append({
                    "start": sp.start + s, "end": sp.end + s, "type": sp.code, "label": LABEL_BY_CODE[sp.code],
                    "text": text[sp.start + s: sp.end + s],
                    "confidence": decoder.span_confidence(em, sp.start, sp.end, sp.code, fb),
                })
        cases.append(case)
    return cases


def golden(cfg: GoldenConfig) -> Path:
    import onnxruntime as ort

    out = Path(cfg.out)
    vocab = Vocab.load(Path(cfg.vocab))
    model = tiny_model(vocab, cfg.seed)
    bundle = write_bundle(model, vocab, out / "tiny-bundle", {
        "name": "cner-tiny-random", "version": "tiny-0", "training_data_sha256": "",
        "model": model.cfg.to_dict(), "metrics": {"note": "random weights, for tests only"},
    })
    gdir = out / "golden"
    gdir.mkdir(parents=True, exist_ok=True)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = ConstrainedDecoder.from_json(json.loads((bundle / "crf.json").read_text(encoding="utf-8")))
    cases = golden_cases(sess, decoder, vocab, None)
    from .link import golden_link_cases, golden_linker_cases, tiny_linker_bundle

    (gdir / "link.json").write_text(json.dumps(golden_link_cases(cfg.seed), ensure_ascii=False, indent=1), encoding="utf-8")
    linker = tiny_linker_bundle(out / "tiny-linker-bundle", cfg.seed)
    (gdir / "golden-linker.json").write_text(
        json.dumps({"bundle": "tiny-linker-bundle", "cases": golden_linker_cases(linker)}, ensure_ascii=False, indent=1),
        encoding="utf-8")
    from .rerank import golden_reranked_cases, tiny_reranked_linker_bundle

    reranked = tiny_reranked_linker_bundle(out / "tiny-reranked-linker-bundle", cfg.seed)
    (gdir / "golden-reranked-linker.json").write_text(
        json.dumps({"bundle": "tiny-reranked-linker-bundle", "cases": golden_reranked_cases(reranked)}, ensure_ascii=False, indent=1),
        encoding="utf-8")
    (gdir / "golden.json").write_text(json.dumps({"bundle": "tiny-bundle", "cases": cases}, ensure_ascii=False),
                                      encoding="utf-8")

    lexicon = Lexicon(GOLDEN_LEXICON)
    model = tiny_lexicon_model(vocab, lexicon, cfg.seed)
    bundle = write_bundle(model, vocab, out / "tiny-lexicon-bundle", {
        "name": "cner-tiny-random-lexicon", "version": "tiny-lexicon-0", "training_data_sha256": "",
        "model": model.cfg.to_dict(), "metrics": {"note": "random weights, for tests only"},
    }, lexicon)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = ConstrainedDecoder.from_json(json.loads((bundle / "crf.json").read_text(encoding="utf-8")))
    cases = golden_cases(sess, decoder, vocab, lexicon)
    (gdir / "golden-lexicon.json").write_text(
        json.dumps({"bundle": "tiny-lexicon-bundle", "cases": cases}, ensure_ascii=False), encoding="utf-8")

    bert_vocab = Vocab.load(Path(cfg.bert_vocab)) if cfg.bert_vocab else vocab
    model = tiny_bert_model(bert_vocab, lexicon, cfg.seed)
    bundle = out / "tiny-bert-bundle"
    manifest = {"name": "cner-tiny-random-bert", "version": "tiny-bert-0", "training_data_sha256": "",
                "model": model.cfg.to_dict(), "metrics": {"note": "random weights, for tests only"}}
    write_bundle(model, bert_vocab, bundle, manifest, lexicon)
    manifest["weights"] = {"storage": "float16 initializers cast to float32 at load; float32 computation",
                           "bytes_saved": store_float16(bundle / "model.onnx", min_elements=256)}
    write_bundle_manifest(bundle, manifest)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = ConstrainedDecoder.from_json(json.loads((bundle / "crf.json").read_text(encoding="utf-8")))
    cases = golden_cases(sess, decoder, bert_vocab, lexicon)
    (gdir / "golden-bert.json").write_text(
        json.dumps({"bundle": "tiny-bert-bundle", "cases": cases}, ensure_ascii=False), encoding="utf-8")
    return gdir
