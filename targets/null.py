"""`null`: no execution; an op report (params, bytes, MACs, multiplications, additions and an
energy estimate per layer) that makes op-count claims testable anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ember.compiler.progress import Progress
from ember.targets.base import Payload, check_known_options
from ember.targets.opcount import count_ops

REPORT = "ops.json"


class NullTarget:
    name = "null"
    description = "op report only: params, bytes, MACs, mults, adds per layer (ops.json)"
    executable = False

    def available(self) -> tuple[bool, str]:
        return True, "always (no engine)"

    def check_options(self, options: dict[str, Any]) -> None:
        check_known_options(self.name, options, {})

    def compile(self, model, out_dir: Path, options: dict[str, Any], progress: Progress) -> Payload:
        report = count_ops(model)
        (out_dir / REPORT).write_text(json.dumps(report, indent=1))
        return Payload(format="null", files=[REPORT], info={"report": REPORT,
                                                            "totals": report["totals"]})


TARGET = NullTarget()
