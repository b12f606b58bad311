"""Where a generation artifact's decode step spends its time: ONNX Runtime's own per-node
profile of the one-token steps after a prompt, summed by operator type.

    python -m ember.tools.research.profile_decode ARTIFACT [--prompt-tokens 127] [--steps 32]

The artifact's session options are used (its thread count, all graph optimizations), with
ONNX Runtime's profiler on; the prefill's events are left out. Prints a Markdown table: per
op type, milliseconds per step and share of the step's node time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import onnxruntime as ort

    import ember.runtime as rt
    from ember.runtime.manifest import payload_path

    session = rt.load(args.artifact)
    info = session.manifest["generation"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = session.manifest["target_info"].get("threads", 0)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "decode")
        model = payload_path(Path(args.artifact), session.manifest, "model.onnx")
        ort_session = ort.InferenceSession(str(model), options,
                                           providers=["CPUExecutionProvider"])
        specs = {s["name"]: s for s in session.input_specs}
        cache = {name: np.zeros((1, specs[name]["shape"][1], 0, specs[name]["shape"][3]),
                                np.float32) for name in info["past_inputs"]}
        ids = np.arange(1, args.prompt_tokens + 1, dtype=np.int64)[None] % info["vocab_size"]
        mask = np.ones_like(ids)
        for _ in range(args.steps + 1):  # the prefill, then the decode steps
            feed = {"input_ids": ids, "attention_mask": mask, **cache}
            outputs = dict(zip([o.name for o in ort_session.get_outputs()],
                               ort_session.run(None, feed), strict=True))
            mask = np.ones((1, mask.shape[1] + 1), np.int64)
            cache = {p: outputs[q] for p, q in zip(info["past_inputs"],
                                                   info["present_outputs"], strict=True)}
            ids = np.array([[int(np.argmax(outputs["logits"][0, -1]))]], np.int64)
        events = json.loads(Path(ort_session.end_profiling()).read_text())
    print(_table(events, args.steps))


def _table(events: list[dict], steps: int) -> str:
    runs = [e for e in events if e.get("name") == "model_run"]
    decode_start = runs[1]["ts"]  # the first run is the prefill
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["ts"] >= decode_start and \
                event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e3
    step_ms = sum(r["dur"] for r in runs[1:]) / 1e3 / steps
    node_ms = sum(per_op.values()) / steps
    lines = [f"decode step: {step_ms:.2f} ms per call, of which {node_ms:.2f} ms in nodes", "",
             "| op type | ms per step | share of node time |", "|---|---|---|"]
    for op, total in sorted(per_op.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"| {op} | {total / steps:.2f} | {total / steps / node_ms:.1%} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("artifact", help="a generation artifact (ember compile --generate)")
    p.add_argument("--prompt-tokens", type=int, default=127)
    p.add_argument("--steps", type=int, default=32)
    return p


if __name__ == "__main__":
    main()
