"""The compile configuration: a YAML file or equivalent CLI flags, validated with pydantic.

Unknown keys are errors everywhere. Pass and target names are checked against the literal
registries, and each pass's parameters are checked by constructing the pass, so a bad config
fails before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ember.errors import ConfigError, first_line


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExampleSpec(_Strict):
    """Example input: `tokens` for language models, `shape` for tensor models, or `inputs`, an
    .npz file holding one array per graph input of an `onnx:` model (its own data: shape
    vectors, indices, real images), used for the reference outputs and verification."""

    tokens: int | None = Field(default=None, gt=0)
    shape: list[int] | None = None
    inputs: str | None = None
    dynamic: bool = False  # language models: export the sequence length as a symbolic dim

    @model_validator(mode="after")
    def _one_kind(self) -> ExampleSpec:
        if sum(x is not None for x in (self.tokens, self.shape, self.inputs)) > 1:
            raise ValueError("give one of tokens, shape or inputs")
        if self.shape is not None and (not self.shape or min(self.shape) <= 0):
            raise ValueError("shape must be a non-empty list of positive sizes")
        return self


class VerifySpec(_Strict):
    """Verification after compile; atol/rtol override the tolerance chosen by the passes."""

    enabled: bool = True
    atol: float | None = Field(default=None, ge=0)
    rtol: float | None = Field(default=None, ge=0)


class GenerateSpec(_Strict):
    """A text-generation artifact (causal LMs): one graph that runs the prompt's prefill and
    then one-token decode steps against a KV cache. `max_length` bounds prompt plus new
    tokens (default: the model's max_position_embeddings, at most DEFAULT_MAX_LENGTH);
    `verify_tokens` greedy tokens of the stored prompt are checked against the torch
    model's own `generate` at compile time."""

    max_length: int | None = Field(default=None, gt=1)
    verify_tokens: int = Field(default=16, gt=0, le=1024)


class PassSpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> Any:
        from ember.passes import PASSES

        _check_param_types(PASSES[self.name], self.params)
        return PASSES[self.name](**self.params)


class CompileConfig(_Strict):
    model: str
    example: ExampleSpec = Field(default_factory=ExampleSpec)
    passes: list[PassSpec] = Field(default_factory=list)
    target: str = "cpu"
    target_options: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None
    verify: VerifySpec = Field(default_factory=VerifySpec)
    seed: int = Field(default=0, ge=0)
    generate: GenerateSpec | None = None  # a KV-cache generation artifact (causal LMs)

    @field_validator("passes", mode="before")
    @classmethod
    def _pass_list(cls, value: Any) -> Any:
        """Accept the YAML form `- fold_bn: {into: conv}` (or a bare `- fold_bn`)."""
        if not isinstance(value, list):
            return value
        return [_pass_entry(item) for item in value]

    @field_validator("passes")
    @classmethod
    def _passes_exist(cls, value: list[PassSpec]) -> list[PassSpec]:
        from ember.passes import PASSES

        for spec in value:
            if spec.name not in PASSES:
                raise ValueError(f"unknown pass {spec.name!r} (known: {', '.join(PASSES)})")
            try:
                spec.build()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"pass {spec.name}: {first_line(exc)}") from None
        return value

    @field_validator("target", mode="before")
    @classmethod
    def _unquoted_null(cls, value: Any) -> Any:
        """`target: null` unquoted is YAML's null: the null target is what it means."""
        return "null" if value is None else value

    @field_validator("target")
    @classmethod
    def _target_exists(cls, value: str) -> str:
        from ember.targets import TARGETS

        if value not in TARGETS:
            raise ValueError(f"unknown target {value!r} (known: {', '.join(TARGETS)})")
        return value

    @model_validator(mode="after")
    def _target_options_valid(self) -> CompileConfig:
        from ember.targets import TARGETS

        TARGETS[self.target].check_options(self.target_options)
        return self

    @model_validator(mode="after")
    def _generation_target(self) -> CompileConfig:
        if self.generate is not None and self.target not in GENERATION_TARGETS:
            raise ValueError(f"generate: the {self.target} target does not build generation "
                             f"artifacts yet (targets: {', '.join(GENERATION_TARGETS)}); "
                             f"{GENERATION_GAPS.get(self.target, '')}".rstrip("; "))
        generation_only = sorted(set(self.target_options) & GENERATION_OPTIONS)
        if self.generate is None and generation_only:
            raise ValueError(f"target option {generation_only[0]!r} applies to generation "
                             f"artifacts only: add --generate (YAML generate:)")
        return self


#: target options that shape a generation artifact (tvm: targets/tvm/static_cache.py)
GENERATION_OPTIONS = {"prefill_chunk", "first_cache"}
#: where generation artifacts build, and why not elsewhere (yet)
GENERATION_TARGETS = ("cpu", "tvm", "null")
GENERATION_GAPS = {
    "gpu": "its programs run a fixed-length prefill",
    "fpga": "it takes integer CNN layers",
}


def _check_param_types(pass_class: type, params: dict[str, Any]) -> None:
    """Each parameter against the pass's annotation (pydantic's lax rules: an int is a
    float, a number is not a string), so `scope: 1` is a config error, not a crash inside
    the pass. Unknown names are left to the constructor, which names them."""
    import typing

    from pydantic import TypeAdapter

    hints = typing.get_type_hints(pass_class)
    for key, value in params.items():
        if key not in hints:
            continue
        try:
            TypeAdapter(hints[key]).validate_python(value)
        except ValidationError:
            expected = getattr(hints[key], "__name__", None) or str(hints[key])
            raise ValueError(f"{key} must be {expected}, got {value!r}") from None


def _pass_entry(item: Any) -> Any:
    if isinstance(item, str):
        return {"name": item}
    if isinstance(item, dict) and len(item) == 1 and "name" not in item:
        (name, params), = item.items()
        return {"name": name, "params": params or {}}
    return item


def validate_config(data: dict[str, Any], source: str = "config") -> CompileConfig:
    """Validate a raw mapping; errors become one ConfigError line naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return CompileConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    if error["type"] == "missing":
        return f"missing key '{where}'"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping (not yet validated)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.__class__.__name__}") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path}: the YAML nests too deeply to be a config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty")
    return data


def parse_pass_flag(flag: str) -> dict[str, Any]:
    """`name:k=v,k2=v2` -> {"name": ..., "params": {...}}; values are read as YAML scalars."""
    name, _, rest = flag.partition(":")
    if not name:
        raise ConfigError(f"--pass {flag!r}: expected NAME or NAME:key=value,...")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--pass {flag!r}: {item!r} is not key=value")
        try:
            params[key] = _scalar(yaml.safe_load(raw))
        except yaml.YAMLError:
            params[key] = raw
    return {"name": name, "params": params}


def _scalar(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string; a flag value that is a number is one."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
