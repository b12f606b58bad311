"""Where the roles of each supported transformers decoder family live.

Paths are dotted module names: `embed`, `blocks` and `final_norm` from the causal LM, the rest
from one block. A family whose `prune` is None prunes through its exact Llama view
(passes/decoders/views.py) and so uses the Llama roles.

Which residual-stream scopes can be sliced exactly depends on the norm:

- RMSNorm (`g·x/rms(x)`) maps a zero channel to zero, and removing zero channels only rescales
  `rms` by `sqrt(d'/d)`, which the gains and eps absorb (passes/prune/llm/slice.py);
- LayerNorm subtracts the mean over every channel, so a channel that is zero still moves the
  mean the others see: no narrower LayerNorm computes the same thing, and `hidden` declines.
  GPT-2's and OPT's configs also derive `head_dim` as `hidden / heads`, so fewer heads of the
  same size cannot be written in their stock config, and `heads` declines.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn


@dataclass(frozen=True)
class PruneRoles:
    """The modules structural pruning reads and slices, block-relative.

    `attention_out` and `ffn_out` write into the residual stream; `ffn_in` hold one row per
    FFN channel (gate and up, or the single up projection) and `ffn_out` one column;
    `ffn_key` is the config key of the FFN width; `unsliceable` maps a scope that has no exact
    slice in this family to the reason."""

    attention_out: str
    ffn_in: tuple[str, ...]
    ffn_out: str
    ffn_key: str
    unsliceable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DecoderLayout:
    """`input_groups`: per block, the linears that read one tensor (the spike pass gives each
    group one activation mask); `norm` names the norm for reports; `conv1d`: the linears are
    GPT-2 `Conv1D`s; `positions`: a learned position embedding, if any."""

    embed: str
    blocks: str
    final_norm: str
    norm: str
    input_groups: tuple[tuple[str, ...], ...]
    prune: PruneRoles | None
    conv1d: bool = False
    positions: str | None = None

    def linear_names(self, num_blocks: int) -> list[str]:
        """Every decoder linear, model-relative, block by block."""
        return [f"{self.blocks}.{i}.{name}" for i in range(num_blocks)
                for group in self.input_groups for name in group]

    def kept_float(self) -> list[str]:
        """What stays float when the linears spike."""
        kept = [self.embed, "lm_head", f"norms ({self.norm})", "attention scores and softmax"]
        return kept if self.positions is None else [*kept, f"{self.positions} (positions)"]


_LAYERNORM_SCOPES = {
    "hidden": "LayerNorm centres each token over every residual channel, so a removed channel "
              "changes what the others see: no narrower LayerNorm is exact",
    "heads": "the stock config derives head_dim as hidden / heads, so fewer heads of the same "
             "size cannot be written in it",
}

LLAMA = DecoderLayout(
    embed="model.embed_tokens", blocks="model.layers", final_norm="model.norm", norm="RMSNorm",
    input_groups=(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                  ("self_attn.o_proj",), ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",)),
    prune=PruneRoles(attention_out="self_attn.o_proj", ffn_in=("mlp.gate_proj", "mlp.up_proj"),
                     ffn_out="mlp.down_proj", ffn_key="intermediate_size"))

LAYOUTS: dict[str, DecoderLayout] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "qwen3": LLAMA,
    "gemma": replace(LLAMA, norm="RMSNorm (1 + w)", prune=None),
    "phi3": replace(LLAMA, input_groups=(("self_attn.qkv_proj",), ("self_attn.o_proj",),
                                         ("mlp.gate_up_proj",), ("mlp.down_proj",)),
                    prune=None),
    "gpt2": DecoderLayout(
        embed="transformer.wte", blocks="transformer.h", final_norm="transformer.ln_f",
        norm="LayerNorm", positions="transformer.wpe", conv1d=True,
        input_groups=(("attn.c_attn",), ("attn.c_proj",), ("mlp.c_fc",), ("mlp.c_proj",)),
        prune=PruneRoles(attention_out="attn.c_proj", ffn_in=("mlp.c_fc",),
                         ffn_out="mlp.c_proj", ffn_key="n_inner",
                         unsliceable=_LAYERNORM_SCOPES)),
    "opt": DecoderLayout(
        embed="model.decoder.embed_tokens", blocks="model.decoder.layers",
        final_norm="model.decoder.final_layer_norm", norm="LayerNorm",
        positions="model.decoder.embed_positions",
        input_groups=(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                      ("self_attn.out_proj",), ("fc1",), ("fc2",)),
        prune=PruneRoles(attention_out="self_attn.out_proj", ffn_in=("fc1",), ffn_out="fc2",
                         ffn_key="ffn_dim", unsliceable=_LAYERNORM_SCOPES)),
}


def model_type(lm: nn.Module) -> str | None:
    return getattr(getattr(lm, "config", None), "model_type", None)


def decoder_layout(lm: nn.Module) -> DecoderLayout | None:
    """The layout of `lm`'s family, None for a family ember has no layout for."""
    return LAYOUTS.get(model_type(lm) or "")


def known_families() -> str:
    return ", ".join(LAYOUTS)
