"""`ember compile CONFIG.yaml | --model M [--pass NAME:k=v,...] --target T -o DIR`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

NAME = "compile"
HELP = "compile a model into a verified artifact directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (flags below override it)")
    p.add_argument("--model", help="builtin:NAME | hf:DIR | torch:pkg.module:factory | onnx:FILE")
    p.add_argument("--pass", dest="passes", action="append", metavar="NAME[:k=v,...]",
                   help="a pass to run, in order (repeatable); replaces the config's passes")
    p.add_argument("--target", help="null | cpu | tvm | gpu | fpga")
    p.add_argument("--target-option", dest="target_options", action="append", default=[],
                   metavar="KEY=VALUE", help="target option, e.g. threads=2 or mcpu=znver4")
    p.add_argument("-o", "--output", help="artifact directory to write")
    p.add_argument("--tune", type=int, metavar="TRIALS",
                   help="tvm: tune the hot operators with MetaSchedule for up to TRIALS "
                        "measurements (database reused by later compiles)")
    p.add_argument("--tune-minutes", type=float, metavar="M",
                   help="tvm: stop tuning after M minutes (alone or with --tune)")
    p.add_argument("--tokens", type=int, help="example sequence length (language models)")
    p.add_argument("--shape", help="example input shape, e.g. 1,3,32,32 (tensor models)")
    p.add_argument("--inputs", metavar="FILE.npz",
                   help="example inputs of an onnx: model, one array per graph input")
    p.add_argument("--dynamic", action="store_true", help="export the sequence length as symbolic")
    p.add_argument("--seed", type=int, help="seed for example inputs")
    p.add_argument("--generate", action="store_true",
                   help="causal LMs: a text-generation artifact (prefill and KV-cache decode)")
    p.add_argument("--max-length", type=int, metavar="N",
                   help="with --generate: the longest prompt plus new tokens")
    p.add_argument("--force", action="store_true", help="replace an existing artifact")
    p.add_argument("--no-verify", action="store_true", help="skip verification (recorded)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from ember.compiler.api import compile_model
    from ember.progress import Progress

    config = _config(args)
    source = args.config or "flags"
    progress = Progress(verbose=False if args.quiet else None)
    out = compile_model(config, force=args.force, progress=progress, source=source)
    _print_summary(out)
    return 0


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping: the YAML file if given, with flags layered on top."""
    from ember.compiler.config import load_config_file, parse_pass_flag
    from ember.errors import ConfigError

    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{args.config}: expected a mapping of keys at the top level")
    if args.config is None and args.model is None:
        raise ConfigError("give a config file or --model")
    for key in ("model", "target", "output", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.passes is not None:
        data["passes"] = [parse_pass_flag(flag) for flag in args.passes]
    options = dict(_key_value(o) for o in args.target_options)
    tuning = {k: v for k, v in (("tune_trials", args.tune), ("tune_minutes", args.tune_minutes))
              if v is not None}
    if tuning and data.get("target") != "tvm":
        raise ConfigError("--tune and --tune-minutes need --target tvm")
    options.update(tuning)
    if options:
        data["target_options"] = {**_mapping(data, "target_options", args.config), **options}
    example = dict(_mapping(data, "example", args.config))
    if args.tokens is not None:
        example["tokens"] = args.tokens
    if args.shape is not None:
        example["shape"] = parse_shape(args.shape)
    if args.inputs is not None:
        example["inputs"] = args.inputs
    if args.dynamic:
        example["dynamic"] = True
    if example:
        data["example"] = example
    if args.generate or args.max_length is not None:
        generate = dict(_mapping(data, "generate", args.config))
        if args.max_length is not None:
            generate["max_length"] = args.max_length
        data["generate"] = generate
    if args.no_verify:
        data["verify"] = {**_mapping(data, "verify", args.config), "enabled": False}
    return data


def _mapping(data: dict[str, Any], key: str, source: str | None) -> dict[str, Any]:
    """A config section that flags are merged into; it must be a mapping."""
    from ember.errors import ConfigError

    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source or 'config'}: {key} must be a mapping, "
                          f"got {type(value).__name__}")
    return value


def _key_value(text: str) -> tuple[str, Any]:
    import yaml

    from ember.errors import ConfigError

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--target-option {text!r}: expected KEY=VALUE")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"--target-option {text!r}: the value is not valid YAML "
                          f"({problem})") from None


def parse_shape(text: str) -> list[int]:
    from ember.errors import ConfigError

    try:
        return [int(x) for x in text.replace("x", ",").split(",")]
    except ValueError:
        raise ConfigError(f"--shape {text!r}: expected integers like 1,3,32,32") from None


def _print_summary(out: Path) -> None:
    from ember.runtime.manifest import payload_path, read_manifest
    from ember.tools.cli.inspect import op_table, verification_line

    manifest = read_manifest(out)
    if manifest["format"] == "null":
        report = json.loads(payload_path(out, manifest, manifest["ops"]["report"]).read_text())
        print(op_table(report))
    print(f"wrote {out} ({manifest['target']}, {manifest['format']}); "
          f"{verification_line(manifest['verification'])}", file=sys.stdout)
