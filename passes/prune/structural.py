"""`prune`: structural pruning that removes channels physically (design: pat.md).

Decoder LMs (SmolLM2; `hf:` Llama, Mistral, Qwen2/3, Phi-3, Gemma, GPT-2, OPT directories;
passes/decoders/ says how each family is read): `method=pat` learns one
shared mask per scope while tuning with LoRA and HSMs (PAT); `magnitude` and `taylor` score
the channels, fix the mask, and tune with the same budget (P -> FT). `scope` is `hidden`
(PAT's), `heads`, `ffn`, or a `+`-joined combination. `ratio=0` tunes the dense model with the
same LoRA budget (the reference a pruned model is compared with). GPT-2 and OPT (LayerNorm)
prune `ffn` only; the other scopes decline with the reason.

CNNs: dependency-graph channel groups (passes/prune/cnn/groups.py) scored by `magnitude`,
`taylor` or `bn`, sliced, then fine-tuned for `steps` on `data=digits` (labels) or by
distillation from the unpruned model.

Every run checks the masked model against the sliced one (fp32, <= 1e-4 of the output range)
and fails rather than hand on a model that differs. Tuning checkpoints land in the compile's
work directory (`.<output>.work/` beside the output) and a rerun of the same command resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ember.errors import ConfigError, UnsupportedModelError
from ember.passes.contract import PassContext, PassResult, Tolerance, check_data_spec
from ember.passes.decoders.views import canonical_form
from ember.passes.prune.cnn.prune import prune_cnn
from ember.passes.prune.errors import PruneError
from ember.passes.prune.llm.groups import decoder_groups
from ember.passes.prune.llm.prune import LLMPlan, keep_counts, prune_llm
from ember.passes.prune.llm.tune import TuneSettings
from ember.passes.prune.pat.hsm import FORMS
from ember.passes.prune.pat.model import SCOPES

LLM_METHODS = ("pat", "magnitude", "taylor")
CNN_METHODS = ("magnitude", "taylor", "bn")


@dataclass(frozen=True)
class StructuralPruning:
    """`ratio`: fraction of each pruned group removed; `steps`: tuning steps (LoRA for LMs,
    full fine-tuning for CNNs); `data`: text:NAME or digits; the rest tune PAT (pat.md)."""

    method: str = "pat"
    ratio: float = 0.25
    scope: str = "hidden"
    steps: int = 0
    batch: int = 4
    seq: int = 128
    lr: float = 3e-4
    lr_mask: float | None = None
    freeze_at: float = 0.8
    ramp: float = 0.0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    hsm_rank: int = 32
    hsm_form: str = "reference"
    identity_weight: float = 1.0
    count_weight: float = 10.0
    embedding: str = "mask"
    mask_init: str = "taylor"  # pat.md's reference starts at "zero"; see llm/prune.py LLMPlan
    loss: str = "ce"
    round_to: int = 8
    data: str = "text:pydoc"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lr", "lora_alpha", "identity_weight", "count_weight", "ratio"):
            if not isinstance(getattr(self, name), (int, float)):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}")
        if self.method not in (*LLM_METHODS, *CNN_METHODS):
            known = ", ".join(dict.fromkeys(LLM_METHODS + CNN_METHODS))
            raise ValueError(f"method must be one of {known}, got {self.method!r}")
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        bad = [s for s in self.scope.split("+") if s not in SCOPES]
        if bad or not self.scope:
            raise ValueError(f"scope must be a +-joined subset of {', '.join(SCOPES)}, "
                             f"got {self.scope!r}")
        for name in ("steps", "batch", "seq", "lora_rank", "hsm_rank", "round_to"):
            if getattr(self, name) < (0 if name in ("steps", "hsm_rank") else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hsm_form not in FORMS:
            raise ValueError(f"hsm_form must be one of {', '.join(FORMS)}, got {self.hsm_form!r}")
        if not 0 < self.freeze_at < 1:
            raise ValueError(f"freeze_at must be in (0, 1), got {self.freeze_at}")
        if not 0 <= self.ramp <= 2:
            raise ValueError(f"ramp must be in [0, 2] (a fraction of s0), got {self.ramp}")
        if self.loss not in ("ce", "distill"):
            raise ValueError(f"loss must be ce or distill, got {self.loss!r}")
        if self.mask_init not in ("zero", "magnitude", "taylor"):
            raise ValueError(f"mask_init must be zero, magnitude or taylor, got "
                             f"{self.mask_init!r}")
        if self.embedding not in ("mask", "hsm"):
            raise ValueError(f"embedding must be mask or hsm, got {self.embedding!r}")
        check_data_spec(self.data)

    @property
    def tolerance(self) -> Tolerance | None:
        """None: the artifact is verified against the pruned torch model, an exact rewrite
        (the larger activations of a pruned residual stream raise the fp32 noise the check
        allows: compiler/reference_noise.py)."""
        return None

    def support(self, model: nn.Module, example: torch.Tensor) -> tuple[str, str]:
        """("applies" | "partly" | "declines", what): the channel groups this pass would prune,
        found without tuning (an LM's group analysis; a CNN's dependency groups, planned on a
        copy), or why it cannot."""
        try:
            lm = _causal_lm(model)
            if lm is not None:
                g = decoder_groups(canonical_form(lm).model)
                keep_counts(g, tuple(self.scope.split("+")), self.ratio, self.round_to)
                return "applies", (f"{g.family}, {g.num_layers} blocks: hidden {g.hidden}, "
                                   f"{g.num_heads} heads ({g.num_kv_heads} KV), FFN "
                                   f"{g.intermediate}; scope {self.scope}")
            _decline_encoders(model)
        except (PruneError, UnsupportedModelError) as exc:
            return "declines", str(exc)
        _, stats = prune_cnn(model, example, ratio=self.ratio, method="magnitude",
                             round_to=self.round_to)  # planned on a copy: `model` stays
        declined = {k[len("declined:"):]: v for k, v in stats.items()
                    if k.startswith("declined:")}
        reasons = ", ".join(f"{n} x {why}" for why, n in declined.items())
        if not stats["groups"]:
            return "declines", f"no prunable channel group ({reasons})"
        return "partly", f"{stats['groups']} channel groups; kept whole: {reasons}"

    def __call__(self, model: nn.Module, ctx: PassContext) -> PassResult:
        try:
            lm = _causal_lm(model)
            if lm is not None:
                return self._prune_llm(model, lm, ctx)
            _decline_encoders(model)
            return self._prune_cnn(model, ctx)
        except (PruneError, UnsupportedModelError) as exc:
            raise UnsupportedModelError(f"prune: {str(exc).removeprefix('prune: ')}") from None

    def _prune_llm(self, wrapper: nn.Module, lm: nn.Module, ctx: PassContext) -> PassResult:
        if self.method not in LLM_METHODS:
            raise PruneError(f"method {self.method} is for CNNs; language models take "
                                f"{', '.join(LLM_METHODS)}")
        if not self.data.startswith("text:"):
            raise PruneError(f"language models tune on text: data=text:NAME, not {self.data}")
        windows = ctx.tuning_data(self.data).text_windows(self.data, self.seq)
        example = next(iter(ctx.example_inputs.values()))
        checkpoints = ctx.work_dir / "prune" if ctx.work_dir is not None else None
        pruned, stats = prune_llm(lm, self._plan(), windows, example, checkpoints, ctx.progress)
        stats["tuning_tokens"] = self.steps * self.batch * self.seq
        return PassResult(type(wrapper)(pruned).eval(), True, stats)

    def _plan(self) -> LLMPlan:
        settings = TuneSettings(steps=self.steps, batch=self.batch, lr=self.lr,
                                lr_mask=self.lr_mask, freeze_at=self.freeze_at,
                                ramp=self.ramp,
                                count_weight=self.count_weight,
                                identity_weight=self.identity_weight, loss=self.loss,
                                seed=self.seed)
        return LLMPlan(self.method, self.ratio, tuple(self.scope.split("+")), self.round_to,
                       self.lora_rank, self.lora_alpha, self.hsm_rank, self.hsm_form,
                       self.embedding, settings, self.mask_init)

    def _prune_cnn(self, model: nn.Module, ctx: PassContext) -> PassResult:
        if self.method not in CNN_METHODS:
            raise PruneError(f"method {self.method} is for language models; CNNs take "
                                f"{', '.join(CNN_METHODS)}")
        if self.data != "digits" and (self.steps > 0 or self.method == "taylor"):
            raise ConfigError(f"prune: CNNs fine-tune and score on labelled images (data="
                              f"digits), not {self.data}; method=magnitude with steps=0 "
                              f"needs no data")
        example = next(iter(ctx.example_inputs.values()))
        batches = (ctx.tuning_data(self.data).digit_batches(64, self.seed)
                   if self.data == "digits" else [])
        pruned, stats = prune_cnn(model, example, ratio=self.ratio, method=self.method,
                                  round_to=self.round_to, batches=batches, steps=self.steps,
                                  lr=self.lr, progress=ctx.progress)
        return PassResult(pruned, True, _plain(stats))


def _causal_lm(model: nn.Module) -> nn.Module | None:
    """The transformers causal LM inside ember's CausalLMLogits wrapper, if that is what this
    is (of any family: the group analysis declines the ones it does not know, by name)."""
    lm = getattr(model, "lm", None)
    return lm if lm is not None and hasattr(lm, "config") else None


def _decline_encoders(model: nn.Module) -> None:
    """A transformers encoder (ember's EncoderHidden wrapper) is declined by its model type."""
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(encoder, "config"):
        model_type = getattr(encoder.config, "model_type", "?")
        raise PruneError(f"model type {model_type!r} is an encoder; structural pruning takes "
                         f"decoder causal LMs and CNNs")


def _plain(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in stats.items()}
