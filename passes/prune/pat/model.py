"""The tuning graph of a decoder LM under pruning masks: hooks that apply the shared
masks (and PAT's HSMs) around the model's own modules, without changing its parameters.

    h0 = M_d ⊙ Embed(x)                       (embedding="mask", the default: tying kept)
       = M_d ⊙ HSM_emb(Embed(x))              (embedding="hsm": the faithful form, untied)
    h  = h + M_d ⊙ HSM_l,a(o_proj(M_heads,l ⊙ attn))
    h  = h + M_d ⊙ HSM_l,f(down_proj(M_ffn,l ⊙ act))

`M_d` is one mask shared by every writer of the residual stream (pat.md §2); `M_heads,l` and
`M_ffn,l` are per-layer rows of one mask each, so every layer keeps the same width. A scope
that is not pruned has no mask. Post-hoc methods use the same graph with hard masks fixed from
the start and no HSMs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ember.passes.prune.llm.groups import DecoderGroups
from ember.passes.prune.llm.slice import KeepSet
from ember.passes.prune.pat.gate import GateSchedule, SharedMask
from ember.passes.prune.pat.hsm import HSM, fold_into_embedding, fold_into_linear

SCOPES = ("hidden", "heads", "ffn")


class MaskedDecoder(nn.Module):
    """Masks (and HSMs) for `lm`, hooked in by `attach`. `keep` holds the kept count per
    pruned scope: hidden channels, query heads per layer, FFN channels per layer."""

    def __init__(self, groups: DecoderGroups, keep: dict[str, int], hsm_rank: int = 0,
                 hsm_form: str = "reference", embedding: str = "mask") -> None:
        super().__init__()
        self.groups = groups
        self.embedding = embedding
        self.masks = nn.ModuleDict()
        if "hidden" in keep:
            self.masks["hidden"] = SharedMask((groups.hidden,), keep["hidden"])
        if "heads" in keep:
            self.masks["heads"] = SharedMask((groups.num_layers, groups.num_heads),
                                             keep["heads"], blocks=groups.num_kv_heads)
        if "ffn" in keep:
            self.masks["ffn"] = SharedMask((groups.num_layers, groups.intermediate), keep["ffn"])
        self.hsms = nn.ModuleDict()  # keyed without dots (ModuleDict's rule)
        self.hsm_writers: dict[str, str] = {}  # HSM key -> the writer it follows
        if hsm_rank and "hidden" in keep:
            for name in self._writer_names(embedding == "hsm"):
                key = name.replace(".", "_")
                self.hsms[key] = HSM(groups.hidden, hsm_rank, hsm_form)
                self.hsm_writers[key] = name
        self._gates: dict[str, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []

    # -- gates -----------------------------------------------------------------------------

    def set_step(self, step: int, schedule: GateSchedule) -> None:
        """Compute every gate once for this optimiser step (shared by all hooks)."""
        self._gates = {name: mask.gate(step, schedule) for name, mask in self.masks.items()}

    def freeze(self) -> None:
        """Project every soft mask to hard; the gates of the current step start the ramp."""
        for name, mask in self.masks.items():
            if not mask.frozen:
                mask.freeze(self._gates.get(name))

    def initialize(self, scores: dict[str, torch.Tensor]) -> None:
        """Start each proxy from post-hoc channel scores instead of 0 (`mask_init`)."""
        for name, mask in self.masks.items():
            mask.initialize(scores[name])

    def harden(self, keep: KeepSet) -> None:
        """Fix the masks to `keep` (post-hoc methods: the choice is made before tuning)."""
        rows = {"hidden": [keep.hidden] if keep.hidden is not None else None,
                "heads": keep.heads, "ffn": keep.ffn}
        for name, mask in self.masks.items():
            hard = torch.zeros_like(mask.proxy).reshape(-1, mask.proxy.shape[-1])
            for row, kept in zip(hard, rows[name], strict=True):
                row[kept] = 1.0
            mask.hard = hard.reshape(mask.proxy.shape)

    def keep_set(self) -> KeepSet:
        kept = {name: mask.kept_indices() for name, mask in self.masks.items()}
        return KeepSet(hidden=kept["hidden"][0] if "hidden" in kept else None,
                       heads=kept.get("heads"), ffn=kept.get("ffn"))

    def regulariser(self, count_weight: float, identity_weight: float) -> torch.Tensor:
        """Sum of every mask's L_mask and every HSM's Identity Loss."""
        total = sum((m.regulariser(count_weight) for m in self.masks.values()),
                    torch.zeros(()))
        if identity_weight and len(self.hsms):
            total = total + identity_weight * sum(h.identity_loss() for h in self.hsms.values())
        return total

    # -- hooks -----------------------------------------------------------------------------

    def attach(self, lm: nn.Module) -> None:
        """Hook the masks and HSMs into `lm` (after any LoRA wrapping, so they see it)."""
        self.detach()
        groups, roles = self.groups, self.groups.layout.prune
        self._hook_output(lm.get_submodule(groups.layout.embed), self._hsm(groups.layout.embed))
        for layer_index in range(groups.num_layers):
            attention_out = groups.block(layer_index, roles.attention_out)
            ffn_out = groups.block(layer_index, roles.ffn_out)
            self._hook_output(lm.get_submodule(attention_out), self._hsm(attention_out))
            self._hook_output(lm.get_submodule(ffn_out), self._hsm(ffn_out))
            if "heads" in self.masks:
                self._handles.append(lm.get_submodule(attention_out).register_forward_pre_hook(
                    self._head_gate(layer_index)))
            if "ffn" in self.masks:
                self._handles.append(lm.get_submodule(ffn_out).register_forward_pre_hook(
                    self._row_gate("ffn", layer_index)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hsm(self, writer: str) -> HSM | None:
        key = writer.replace(".", "_")
        return self.hsms[key] if key in self.hsms else None

    def _hook_output(self, module: nn.Module, hsm: HSM | None) -> None:
        if hsm is None and "hidden" not in self.masks:
            return

        def hook(_module, _args, output):
            out = hsm(output) if hsm is not None else output
            return out * self._gates["hidden"] if "hidden" in self.masks else out
        self._handles.append(module.register_forward_hook(hook))

    def _head_gate(self, layer: int):
        head_dim = self.groups.head_dim

        def hook(_module, args):
            gate = self._gates["heads"][layer].repeat_interleave(head_dim)
            return (args[0] * gate, *args[1:])
        return hook

    def _row_gate(self, name: str, layer: int):
        def hook(_module, args):
            return (args[0] * self._gates[name][layer], *args[1:])
        return hook

    def _writer_names(self, with_embedding: bool) -> list[str]:
        groups, roles = self.groups, self.groups.layout.prune
        names = [groups.layout.embed] if with_embedding else []
        for layer in range(groups.num_layers):
            names += [groups.block(layer, roles.attention_out), groups.block(layer, roles.ffn_out)]
        return names

    # -- export ----------------------------------------------------------------------------

    def fold(self, lm: nn.Module) -> int:
        """Fold every HSM's transform into its writer (plain modules: LoRA merged first,
        pitfall 14); returns how many. The masks stay: slicing applies them."""
        for key, hsm in self.hsms.items():
            writer = lm.get_submodule(self.hsm_writers[key])
            transform = hsm.matrix().detach()
            if isinstance(writer, nn.Embedding):
                fold_into_embedding(writer, transform)
            else:
                fold_into_linear(writer, transform)
        return len(self.hsms)

