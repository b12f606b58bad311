"""A "graph" gpu program on its device: the traced CNN's nodes run in order, convolutions by
cuDNN, SFC layers by the fused Triton kernel (runtime/gpu/sfc/conv.py), whose plan is made
once from the layer's transformed weights U (P, C, K) as the sfc pass computed them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ember.runtime.gpu.sfc.conv import sfc_conv2d
from ember.runtime.gpu.sfc.plan import plan_from_transformed


class GraphProgram(torch.nn.Module):
    def __init__(self, program: dict[str, Any], tensors: dict[str, torch.Tensor],
                 dtype: torch.dtype, reference: bool) -> None:
        super().__init__()
        self.nodes = program["nodes"]
        self.output = program["output"]
        # the fused kernel in fp16 only (its transform entries, up to 2048, are exact there and
        # not in bf16); bf16 and fp32 programs convolve through its fp32 reference
        self.backend = "auto" if not reference and dtype == torch.float16 else "reference"
        self.params = {name: t.to(dtype) for name, t in tensors.items()
                       if not name.endswith(".u")}  # SFC weights live in their plans
        self.plans = {node["name"]: _plan(node, tensors, dtype) for node in self.nodes
                      if node["op"] == "sfc"}
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for node in self.nodes:
            args = [values[name] for name in node["inputs"]]
            values[node["name"]] = x.to(self.dtype) if node["op"] == "input" else \
                self._run(node, args)
        return values[self.output].float()

    def _run(self, node: dict[str, Any], args: list[torch.Tensor]) -> torch.Tensor:
        op, attrs, name = node["op"], node["attrs"], node["name"]
        p = lambda key: self.params.get(f"{name}.{key}")  # noqa: E731
        if op == "conv":
            return F.conv2d(args[0], p("weight"), p("bias"), stride=tuple(attrs["stride"]),
                            padding=tuple(attrs["padding"]), groups=attrs["groups"])
        if op == "sfc":
            return sfc_conv2d(args[0], self.plans[name], backend=self.backend)
        if op == "linear":
            return F.linear(args[0], p("weight"), p("bias"))
        if op == "batchnorm":
            return F.batch_norm(args[0], p("mean"), p("var"), p("weight"), p("bias"),
                                training=False, eps=attrs["eps"])
        if op == "relu":
            return F.relu(args[0])
        if op == "relu6":
            return F.relu6(args[0])
        if op == "add":
            return args[0] + args[1]
        if op == "flatten":
            return args[0].flatten(1)
        if op in ("maxpool", "avgpool"):
            return _pool(op, attrs, args[0])
        raise ValueError(f"node {name}: unknown operation {op!r}")


def _pool(op: str, attrs: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    if attrs.get("global"):
        return x.mean(dim=(2, 3), keepdim=True)
    pool = F.max_pool2d if op == "maxpool" else F.avg_pool2d
    return pool(x, tuple(attrs["kernel"]), tuple(attrs["stride"]))


def _plan(node: dict[str, Any], tensors: dict[str, torch.Tensor], dtype: torch.dtype):
    attrs, name = node["attrs"], node["name"]
    return plan_from_transformed(tensors[f"{name}.u"], tensors.get(f"{name}.bias"),
                                 attrs["algorithm"], attrs["symbolic"], attrs["padding"], dtype)
