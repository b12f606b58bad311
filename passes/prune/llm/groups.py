"""The coupled channel groups of a decoder causal LM (design: pat.md §2, §9.1).

Families reach this module in their canonical form (passes/decoders/views.py): Llama, Mistral,
Qwen2/3 as they are, Phi-3 and Gemma as their exact Llama models, GPT-2 (with `nn.Linear` for
`Conv1D`) and OPT with their own LayerNorm layouts, where only the FFN group slices exactly
(passes/decoders/layouts.py says why).

Three kinds of channel can be removed from a `LlamaForCausalLM`-shaped model without changing
what the rest computes, once they are zero:

- **hidden** (the residual stream, width `d`): one global index set shared by every writer
  into the stream (the embedding, each `o_proj`, each `down_proj`: output rows), every reader
  (`q/k/v_proj`, `gate/up_proj`, `lm_head`: input columns) and every RMSNorm gain. RMSNorm
  maps a zero channel to zero, so a channel zeroed at every writer is zero at every depth.
- **heads** (per layer): query head `h` owns rows `h*hd : (h+1)*hd` of `q_proj` and the same
  columns of `o_proj`. Under GQA query head `h` reads KV head `h // (H / H_kv)`, so a KV head
  (its `k/v_proj` rows) goes only when every query head of its group goes.
- **ffn** (per layer): intermediate channel `j` owns row `j` of `gate_proj` and `up_proj` and
  column `j` of `down_proj`.

`head_dim` itself is never split: RoPE pairs channels `i` and `i + hd/2` inside a head.

`decoder_groups` reads these sizes off the modules and refuses, with `PruneError`, anything the
slicer has no exact rule for: a family without a layout, a Llama-layout model with LayerNorm,
fused projections or extra weighted per-layer modules (Gemma-2's sandwich norms; Qwen3's
per-head q/k norms are known and kept whole), an `lm_head` bias, per-layer shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ember.passes.decoders.layouts import LLAMA, DecoderLayout, decoder_layout, known_families
from ember.passes.prune.errors import PruneError

_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
# Qwen3 normalizes each query and key head (RMSNorm over head_dim): pruning whole heads or
# residual channels leaves those per-head weights as they are
_HEAD_NORMS = {"qwen3": ("q_norm", "k_norm")}
_MLP = ("gate_proj", "up_proj", "down_proj")
_LAYER = ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm")




@dataclass(frozen=True)
class DecoderGroups:
    """The sizes that define the three channel groups; `tied` means `lm_head.weight` is the
    same Parameter as the embedding's; `layout` and `family` say where the modules live."""

    hidden: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    layout: DecoderLayout = LLAMA
    family: str = "llama"

    @property
    def unsliceable(self) -> dict[str, str]:
        """Scopes this family has no exact slice for, with the reason."""
        return self.layout.prune.unsliceable if self.layout.prune is not None else {}

    def block(self, index: int, role: str) -> str:
        """Model-relative name of a block's module, `role` block-relative."""
        return f"{self.layout.blocks}.{index}.{role}"

    def heads_per_group(self) -> int:
        """Query heads per KV head, `H / H_kv` (HF's `num_key_value_groups`)."""
        return self.num_heads // self.num_kv_heads


def decoder_groups(lm: nn.Module) -> DecoderGroups:
    """The channel groups of `lm` (in its canonical form), after checking its layout
    (PruneError if it is not one the slicer has exact rules for)."""
    config = getattr(lm, "config", None)
    model_type = getattr(config, "model_type", None)
    layout = decoder_layout(lm)
    if layout is None:
        raise PruneError(f"model_type {model_type!r} is not a decoder family ember can prune "
                         f"(supported: {known_families()})")
    if layout.prune is None:
        raise PruneError(f"model_type {model_type!r} is pruned through its Llama view "
                         "(passes/decoders/views.py canonical_form), not as it is")
    if layout is not LLAMA:
        return _layernorm_groups(lm, layout)
    return _llama_groups(lm)


def _llama_groups(lm: nn.Module) -> DecoderGroups:
    config = lm.config
    _exact_children(lm, "the causal LM", ("model", "lm_head"))
    _exact_children(_submodule(lm, "model"), "model", ("embed_tokens", "layers", "norm"))
    embed = _submodule(lm, "model.embed_tokens", nn.Embedding)
    head = _submodule(lm, "lm_head", nn.Linear)
    layers = _submodule(lm, "model.layers", nn.ModuleList)
    if len(layers) == 0:
        raise PruneError("model.layers is empty")
    if head.bias is not None:
        raise PruneError("lm_head has a bias, which the stock Llama class cannot hold")
    vocab, hidden = embed.weight.shape
    if tuple(head.weight.shape) != (vocab, hidden):
        raise PruneError(f"lm_head weight is {tuple(head.weight.shape)}, expected "
                         f"{(vocab, hidden)} (vocab x hidden)")
    _check_norm(_submodule(lm, "model.norm"), "model.norm", hidden)
    num_heads = int(config.num_attention_heads)
    num_kv_heads = int(getattr(config, "num_key_value_heads", None) or num_heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // num_heads)
    if num_heads % num_kv_heads:
        raise PruneError(f"num_attention_heads {num_heads} is not a multiple of "
                         f"num_key_value_heads {num_kv_heads}")
    intermediate = _submodule(lm, "model.layers.0.mlp.gate_proj", nn.Linear).out_features
    for i in range(len(layers)):
        _check_layer(lm, f"model.layers.{i}", hidden, num_heads * head_dim,
                     num_kv_heads * head_dim, intermediate)
        attn_head_dim = getattr(layers[i].self_attn, "head_dim", head_dim)
        if attn_head_dim != head_dim:
            raise PruneError(f"model.layers.{i}.self_attn.head_dim is {attn_head_dim}, "
                             f"config says {head_dim}")
    _check_eps(lm, len(layers))
    return DecoderGroups(hidden=hidden, num_layers=len(layers), num_heads=num_heads,
                         num_kv_heads=num_kv_heads, head_dim=head_dim,
                         intermediate=intermediate, tied=head.weight is embed.weight,
                         family=config.model_type)


def _layernorm_groups(lm: nn.Module, layout: DecoderLayout) -> DecoderGroups:
    """GPT-2 / OPT: the sizes, and uniform FFN shapes (the only group they slice)."""
    roles = layout.prune
    embed = _submodule(lm, layout.embed, nn.Embedding)
    head = _submodule(lm, "lm_head", nn.Linear)
    blocks = _submodule(lm, layout.blocks, nn.ModuleList)
    if len(blocks) == 0:
        raise PruneError(f"{layout.blocks} is empty")
    hidden = int(lm.config.hidden_size)
    heads = int(lm.config.num_attention_heads)
    intermediate = _submodule(lm, f"{layout.blocks}.0.{roles.ffn_in[0]}", nn.Linear).out_features
    for i in range(len(blocks)):
        prefix = f"{layout.blocks}.{i}"
        shapes = {**{name: (intermediate, hidden) for name in roles.ffn_in},
                  roles.ffn_out: (hidden, intermediate)}
        for name, shape in shapes.items():
            linear = _submodule(lm, f"{prefix}.{name}", nn.Linear)
            if tuple(linear.weight.shape) != shape:
                raise PruneError(f"{prefix}.{name} weight is {tuple(linear.weight.shape)}, "
                                 f"expected {shape} (non-uniform layers are not supported)")
    return DecoderGroups(hidden=hidden, num_layers=len(blocks), num_heads=heads,
                         num_kv_heads=heads, head_dim=hidden // heads,
                         intermediate=intermediate, tied=head.weight is embed.weight,
                         layout=layout, family=lm.config.model_type)


def norm_modules(lm: nn.Module, num_layers: int) -> list[str]:
    """Names of every RMSNorm on the residual stream: two per layer, then the final norm."""
    names = [f"model.layers.{i}.{n}" for i in range(num_layers)
             for n in ("input_layernorm", "post_attention_layernorm")]
    return [*names, "model.norm"]


def _submodule(lm: nn.Module, name: str, kind: type | None = None) -> nn.Module:
    try:
        module = lm.get_submodule(name)
    except AttributeError:
        raise PruneError(f"{type(lm).__name__} has no {name} (not the Llama module layout)"
                         ) from None
    if kind is not None and not isinstance(module, kind):
        raise PruneError(f"{name} is {type(module).__name__}, expected {kind.__name__}")
    return module


def _check_layer(lm: nn.Module, prefix: str, hidden: int, q_width: int, kv_width: int,
                 intermediate: int) -> None:
    """Exactly the Llama children with the uniform shapes (out, in) of nn.Linear weights."""
    layer = _submodule(lm, prefix)
    _exact_children(layer, prefix, _LAYER)
    head_norms = _HEAD_NORMS.get(lm.config.model_type, ())
    _exact_children(layer.self_attn, f"{prefix}.self_attn", (*_ATTENTION, *head_norms))
    _exact_children(layer.mlp, f"{prefix}.mlp", _MLP)
    shapes = {
        "self_attn.q_proj": (q_width, hidden), "self_attn.k_proj": (kv_width, hidden),
        "self_attn.v_proj": (kv_width, hidden), "self_attn.o_proj": (hidden, q_width),
        "mlp.gate_proj": (intermediate, hidden), "mlp.up_proj": (intermediate, hidden),
        "mlp.down_proj": (hidden, intermediate),
    }
    for name, shape in shapes.items():
        linear = _submodule(lm, f"{prefix}.{name}", nn.Linear)
        if tuple(linear.weight.shape) != shape:
            raise PruneError(f"{prefix}.{name} weight is {tuple(linear.weight.shape)}, expected "
                             f"{shape} (non-uniform layers are not supported)")
    for name in ("input_layernorm", "post_attention_layernorm"):
        _check_norm(layer.get_submodule(name), f"{prefix}.{name}", hidden)


def _exact_children(module: nn.Module, prefix: str, required: tuple[str, ...]) -> None:
    """The required children, plus only parameter-free extras (activations, rotary caches):
    an extra module with weights (a sandwich norm, a q/k norm) has no slicing rule here."""
    children = dict(module.named_children())
    missing = [n for n in required if n not in children]
    if missing:
        raise PruneError(f"{prefix} has no {', '.join(missing)} (fused or non-Llama layout: "
                         f"children are {', '.join(children) or 'none'})")
    extra = [n for n, m in children.items()
             if n not in required and any(True for _ in m.parameters())]
    if extra:
        raise PruneError(f"{prefix} has extra weighted modules {', '.join(extra)} "
                         "with no slicing rule")


def _check_norm(norm: nn.Module, name: str, hidden: int) -> None:
    """An RMSNorm `w * x / sqrt(mean(x^2) + eps)`: a gain of width d, no bias, an eps."""
    if isinstance(norm, nn.LayerNorm) or "RMSNorm" not in type(norm).__name__:
        raise PruneError(f"{name} is {type(norm).__name__}, not RMSNorm (LayerNorm is not "
                         "zero-preserving; convert it first)")
    weight = getattr(norm, "weight", None)
    if weight is None or tuple(weight.shape) != (hidden,):
        raise PruneError(f"{name} has no gain of width {hidden}")
    if getattr(norm, "bias", None) is not None:
        raise PruneError(f"{name} has a bias; a zero channel would not stay zero")
    if not isinstance(getattr(norm, "variance_epsilon", None), float):
        raise PruneError(f"{name} has no variance_epsilon")


def _check_eps(lm: nn.Module, num_layers: int) -> None:
    """One eps everywhere, the config's: the rebuilt model takes every norm's eps from it."""
    eps = {lm.get_submodule(n).variance_epsilon for n in norm_modules(lm, num_layers)}
    config_eps = getattr(lm.config, "rms_norm_eps", None)
    if eps != {config_eps}:
        raise PruneError(f"RMSNorm eps values {sorted(eps)} differ from config.rms_norm_eps "
                         f"{config_eps}")
