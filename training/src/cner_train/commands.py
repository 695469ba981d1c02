"""The subcommands of ``cner-train``: name → (config dataclass, function, help)."""

from __future__ import annotations

from .pretrain import PretrainConfig, pretrain
from .export import ExportConfig, export
from .golden import GoldenConfig, golden
from .train import TrainConfig, train

COMMANDS = {
    "pretrain": (PretrainConfig, pretrain, "MLM-pretrain the compact ALBERT on the unlabeled medical corpus (resumable)"),
    "train": (TrainConfig, train, "fine-tune a tagger on CCKS-2019 with the fixed dev split; keeps the best epoch"),
    "export": (ExportConfig, export, "write the model bundle (ONNX, CRF, labels, vocab, config, manifest) of a training run"),
    "golden": (GoldenConfig, golden, "regenerate the tiny test bundle and the golden fixtures shared with the TypeScript tests"),
}
