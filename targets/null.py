"""`null`: no execution. Every artifact carries the op report `ops.json` (params, bytes, MACs,
multiplications, additions and an energy estimate per layer, see targets/opcount/nodes.py); a null
artifact is only that report, which makes op-count claims testable anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.progress import Progress
from ember.targets.base import ModuleSource, Payload, check_known_options


class NullTarget:
    name = "null"
    description = "op report only: params, bytes, MACs, mults, adds per layer (ops.json)"
    executable = False

    def available(self) -> tuple[bool, str]:
        return True, "always (no engine)"

    def check_options(self, options: dict[str, Any]) -> None:
        check_known_options(self.name, options, {})

    def support(self, source: ModuleSource) -> str | None:
        return None  # counts any ONNX graph

    def compile(self, source: ModuleSource, out_dir: Path, options: dict[str, Any],
                progress: Progress) -> Payload:
        return Payload(format="null", files=[])  # the pipeline writes ops.json for every target


TARGET = NullTarget()
