"""``cner-train``: one subcommand per step (pretrain, w2v, train, evaluate, export, golden, publish)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _field_type(tp: Any) -> tuple[Callable[[str], Any], bool]:
    """(parser, is_optional) for a dataclass field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _field_type(args[0])[0], True
    if tp is bool:
        return (lambda s: s.lower() in ("1", "true", "yes", "on")), False
    if origin in (list, tuple):
        inner = typing.get_args(tp)[0]
        return (lambda s: [inner(x) for x in s.split(",") if x]), False
    return tp, False


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    parser.add_argument("--config", help="JSON file with any of these options (command-line flags win)")
    for f in dataclasses.fields(cls):
        conv, _ = _field_type(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        help_text = f.metadata.get("help", "")
        if f.metadata.get("positional"):
            # `cner-train publish BUNDLE` as well as `--bundle BUNDLE`
            parser.add_argument(f"{f.name}_positional", metavar=f.name.upper(), nargs="?", type=conv,
                                default=argparse.SUPPRESS, help=f"{help_text} (or --{f.name.replace('_', '-')})")
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=conv,
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {default})" if not required else f"{help_text} (required)",
        )


def dataclass_from_args(cls: type, ns: argparse.Namespace) -> Any:
    values: dict[str, Any] = {}
    if getattr(ns, "config", None):
        values.update(json.loads(Path(ns.config).read_text(encoding="utf-8")))
    names = {f.name for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in vars(ns).items() if k in names})
    for k, v in vars(ns).items():
        if k.endswith("_positional") and k[: -len("_positional")] in names:
            values[k[: -len("_positional")]] = v
    unknown = set(values) - names
    if unknown:
        raise SystemExit(f"unknown options for {cls.__name__}: {sorted(unknown)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SystemExit("missing required options: " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**values)


def main(argv: list[str] | None = None) -> int:
    from . import commands

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="cner-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (cfg_cls, run, help_text) in commands.COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_dataclass_args(p, cfg_cls)
        p.set_defaults(_cfg=cfg_cls, _run=run)
    ns = parser.parse_args(argv)
    cfg = dataclass_from_args(ns._cfg, ns)
    result = ns._run(cfg)
    return int(result or 0) if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
