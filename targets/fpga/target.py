"""`fpga`: the model as an integer-only dataflow design, simulated bit-exactly with g++.

compile: trace the torch model after passes (BatchNorm folded here when a conv or linear
feeds it) -> int8 lowering calibrated on data (targets/fpga/lower/graph.py) -> HLS-style C++
project under fpga/ (targets/fpga/hls/project.py) -> g++ build of the C simulation (fpga/csim) ->
the C simulation must equal the numpy golden model exactly on the calibration images ->
resource and latency estimate for the chosen device (fpga/resources.json,
targets/fpga/resources/estimate.py). The runtime runs fpga/csim (runtime/engines/fpga_engine.py);
verification compares it with the golden model exactly and reports agreement with the float
model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ember.progress import Progress
from ember.targets.base import ModuleSource, Payload, check_known_options
from ember.targets.fpga.build import BINARY, PROJECT, RESOURCES
from ember.targets.fpga.devices import DEVICES, device

DEFAULT_DEVICE = "zu9eg"


class FpgaTarget:
    name = "fpga"
    description = "integer dataflow: HLS C++ project, g++ C simulation, resource model (fpga/)"
    executable = True
    options = {"device": str, "lanes": int, "calibration_images": int}

    def available(self) -> tuple[bool, str]:
        compiler = shutil.which("g++")
        if compiler is None:
            return False, "the C simulation needs g++ (apt install g++)"
        return True, f"g++ at {compiler}"

    def check_options(self, options: dict[str, Any]) -> None:
        check_known_options(self.name, options, self.options)
        if options.get("device", DEFAULT_DEVICE) not in DEVICES:
            raise ValueError(f"target option 'device' must be one of {', '.join(DEVICES)}")
        if not 1 <= options.get("lanes", 1) <= 1 << 16:
            raise ValueError("target option 'lanes' must be 1..65536 (MAC units per layer)")
        if not 1 <= options.get("calibration_images", 256) <= 100_000:
            raise ValueError("target option 'calibration_images' must be 1..100000")

    def support(self, source: ModuleSource) -> str | None:
        from ember.targets.fpga.build import decline_reason

        return decline_reason(source)

    def compile(self, source: ModuleSource, out_dir: Path, options: dict[str, Any],
                progress: Progress) -> Payload:
        from ember.targets.fpga.build import build_design

        dev = device(options.get("device", DEFAULT_DEVICE))
        design = build_design(source, dev, options.get("lanes"),
                              options.get("calibration_images", 256), out_dir / PROJECT,
                              progress)
        (out_dir / RESOURCES).write_text(json.dumps(design.resources, indent=1))
        files = [f"{PROJECT}/{name}" for name in design.files] + [BINARY, RESOURCES]
        return Payload(format="fpga", files=files, info=design.info, golden=design.golden)


TARGET = FpgaTarget()
