"""`ember inspect DIR`: what an artifact holds and how it was made."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ember.tools.table import format_table, human_bytes, human_count

NAME = "inspect"
HELP = "summarize an artifact: model, target, passes, sizes, verification"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--trust", metavar="KEY.pub",
                   help="also check the artifact's signature against this public key")


def run(args: argparse.Namespace) -> int:
    from ember.errors import ArtifactError
    from ember.runtime.manifest import check_files, payload_path, read_manifest

    folder = Path(args.artifact)
    manifest = read_manifest(folder)
    if args.json:
        print(json.dumps(manifest, indent=1))
        return 0
    try:
        check_files(folder, manifest)
        integrity, intact = "all file checksums match" + _signature(folder, args.trust), True
    except ArtifactError as exc:  # inspect shows what it can, then exits 2
        integrity, intact = f"INTEGRITY PROBLEM: {exc}", False
    print(summary(folder, manifest, integrity))
    if manifest["format"] == "null" and intact:
        print()
        report = payload_path(folder, manifest, manifest["ops"]["report"])
        print(op_table(json.loads(report.read_text())))
    return 0 if intact else 2


def _signature(folder: Path, trusted_key: str | None) -> str:
    """The signature's state; with a trusted key, checked (an ArtifactError if invalid)."""
    from ember.errors import ArtifactError
    from ember.runtime.trust import SIGNATURE, check_signature, read_signature

    if trusted_key is not None:
        return f"; signature valid, by the trusted key {check_signature(folder, trusted_key)}"
    if not (folder / SIGNATURE).exists():
        return "; not signed"
    try:
        signer = read_signature(folder)[0]
    except ArtifactError as exc:
        return f"; {exc}"
    return f"; signed by key {signer} (not checked: pass --trust KEY.pub)"


def summary(folder: Path, m: dict[str, Any], integrity: str) -> str:
    model = m["model"]
    lines = [
        ("artifact", str(folder)),
        ("model", f"{model['spec']}: {model['description']}"),
        ("", f"{model['params']:,} parameters, weights sha256 {model['weight_sha256'][:16]}"),
        ("target", f"{m['target']} (format {m['format']}){_target_detail(m)}"),
        *[("passes" if i == 0 else "", _pass_line(r)) for i, r in enumerate(m["passes"])],
        *[("inputs" if i == 0 else "", text) for i, text in enumerate(_tensors(m, "inputs"))],
        *[("outputs" if i == 0 else "", text) for i, text in enumerate(_tensors(m, "outputs"))],
        *[("files" if i == 0 else "", f"{name}  {human_bytes(rec['bytes'])}  "
           f"sha256 {rec['sha256'][:16]}") for i, (name, rec) in enumerate(m["files"].items())],
        ("integrity", integrity),
        ("verified", verification_line(m["verification"])),
        ("ops", _ops_line(m["ops"]["totals"])),
        ("built", f"with ember {m.get('ember_version')}"),
        ("tools", ", ".join(f"{k} {v}" for k, v in m["tools"].items() if v)),
    ]
    if not m["passes"]:
        lines.insert(4, ("passes", "none"))
    if m.get("generation"):
        lines.insert(4, ("generate", _generation_line(m["generation"])))
    return "\n".join(f"{k:<10} {v}" for k, v in lines)


def _generation_line(g: dict[str, Any]) -> str:
    return (f"prefill and one-token decode over a KV cache of {g['layers']} layers x "
            f"{g['kv_heads']} KV heads x {g['head_dim']}, max_length {g['max_length']}, "
            f"stops at token ids {g['eos_token_ids']}")


def _tvm_weights(info: dict[str, Any]) -> str:
    functions = info.get("functions")
    if not functions:
        return f"{len(info['param_names'])} weight tensors"
    shared = len({n for spec in functions.values() for n in spec["param_names"]})
    calls = {name.split(".")[0]: spec["tokens"] for name, spec in functions.items()}
    per_call = ", ".join(f"{kind} {tokens} token{'s' * (tokens > 1)} a call"
                         for kind, tokens in calls.items())
    sizes = ", ".join(str(size) for size in info["cache_sizes"])
    return f"{shared} weight tensors shared by {len(functions)} libraries ({per_call}), " \
        f"static caches of {sizes} positions"


def _target_detail(m: dict[str, Any]) -> str:
    info = m["target_info"]
    if m["format"] == "tvm":
        return (f": {info['tvm_target']}, {_tvm_weights(info)}"
                f"{_schedule_detail(info.get('schedule') or {})}")
    if m["format"] == "onnx":
        return f": {info['execution_provider']}, opset {info['opset']}, threads {info['threads']}"
    if m["format"] == "fpga":
        est = info["estimate"]
        t = est["totals"]
        return (f": {len(info['layers'])} integer layers on {info['device']}, estimated "
                f"{t['dsp']} DSP, {t['lut']} LUT, {t['bram36']} BRAM36, {t['uram']} URAM, "
                f"latency {est['latency_us']:.1f} us at {est['clock_mhz']:g} MHz "
                f"(model estimate, not synthesis; fpga/resources.json)")
    return ""


def _schedule_detail(schedule: dict[str, Any]) -> str:
    """Rules, tuned operators (and this compile's trials), VNNI int8 products."""
    tuning = schedule.get("tuning")
    if not isinstance(tuning, dict):  # artifacts from before tuning existed
        return f", schedule {schedule.get('rules', 'none')}" if schedule else ""
    tuned = tuning.get("operators_tuned", 0)
    text = f", schedule {schedule['rules']}, {tuned} tuned operators"
    if tuning.get("trials"):
        text += f" ({tuning['trials']} trials, {tuning['seconds']:.0f} s)"
    if schedule.get("int8_products_vnni"):
        text += f", {schedule['int8_products_vnni']} int8 products on VNNI"
    return text


def _pass_line(record: dict[str, Any]) -> str:
    config = ",".join(f"{k}={v}" for k, v in record["config"].items())
    stats = ", ".join(f"{k}={v}" for k, v in record["stats"].items())
    state = "modified" if record["modified"] else "unchanged"
    return f"{record['name']}({config}): {state}; {stats} ({record['seconds']:.2f} s)"


def _tensors(m: dict[str, Any], side: str) -> list[str]:
    """One line per tensor; a generation artifact's cache tensors in one line."""
    specs = m["signature"][side]
    cache = set((m.get("generation") or {}).get(
        "past_inputs" if side == "inputs" else "present_outputs", []))
    lines = [_tensor(s) for s in specs if s["name"] not in cache]
    cached = [s for s in specs if s["name"] in cache]
    if cached:
        lines.append(f"{len(cached)} cache tensors {cached[0]['name']} ... {cached[-1]['name']}: "
                     f"{_tensor(cached[0]).split(': ', 1)[1]}")
    return lines


def _tensor(spec: dict[str, Any]) -> str:
    return f"{spec['name']}: {spec['dtype']}[{', '.join(str(d) for d in spec['shape'])}]"


def verification_line(v: dict[str, Any]) -> str:
    if v["status"] == "skipped":
        return f"verification skipped: {v['reason']}"
    if v["status"] != "passed" and v["status"] != "failed":
        return f"verification {v['status']}"
    tol = v["tolerance"]
    worst = max(v["outputs"].items(), key=lambda kv: kv[1]["max_abs"] or 0.0)
    bound = ("end to end reported, not bounded" if tol["atol"] == float("inf")
             else f"atol={tol['atol']:g}, rtol={tol['rtol']:g}")
    relative = worst[1].get("max_rel")
    line = (f"verification {v['status']}: max abs error {worst[1]['max_abs']:.3g}"
            + (f", relative {relative:.3g}" if relative is not None else "")
            + f" on {worst[0]!r} ({bound})")
    if v.get("reference"):
        line = line.replace("max abs error", f"{v['reference']}: max abs error")
    if v.get("device") == "cpu":  # a gpu program checked without a GPU
        line = line.replace("verification passed", "verification passed on the CPU (fp32, "
                            "kernel references; no GPU here)")
    for name, agreement in (v.get("float_model") or {}).items():
        line += f"; vs the float model on {name!r}: max error {agreement['max_abs_error']:.3g}"
        if "top1_agreement" in agreement:
            line += f", top-1 agreement {agreement['top1_agreement']:.3g}"
    layers = v.get("integer_layers")
    if layers:
        line += (f"; integer layers {layers['bit_exact']}/{layers['layers']} bit-exact, "
                 f"max {layers['max_relative_error']:.2g} of their range")
    return line + _degenerate_note(v) + _generation_note(v.get("generation"))


def _generation_note(g: dict[str, Any] | None) -> str:
    """Decode steps against the torch model's own generate (compiler/verify_generation.py)."""
    if not g:
        return ""
    logits = g["step_logits"]
    return (f"; greedy generation equals the torch model's for {g['greedy_tokens_equal']} of "
            f"{g['new_tokens']} tokens after a {g['prompt_tokens']}-token prompt, decode-step "
            f"logits max abs error {logits['max_abs']:.3g}"
            f"{'' if logits['passed'] else ' (beyond the tolerance)'}")


def _degenerate_note(v: dict[str, Any]) -> str:
    """A degenerate reference, and what the probe inputs showed (compiler/probe.py)."""
    degenerate = v.get("degenerate_reference") or {}
    if not degenerate:
        return ""
    names = ", ".join(f"{name!r} is {why}" for name, why in degenerate.items())
    probe = v.get("probe") or {}
    if probe.get("status") == "passed":
        worst = max(probe["outputs"].items(), key=lambda kv: kv[1]["max_rel"] or 0.0)
        return (f"; the reference {names}, so the artifact was also checked on "
                f"{probe['inputs']}: passed, max abs error {worst[1]['max_abs']:.3g}, "
                f"relative {worst[1]['max_rel']:.3g} on {worst[0]!r}")
    why = f" ({probe['reason']})" if probe.get("reason") else ""
    return f"; WARNING: the reference {names}, so this check proves little{why}"


def op_table(report: dict[str, Any]) -> str:
    rows = [[x["name"], x["op"], human_count(x["params"]), human_bytes(x["bytes"]),
             human_count(x["macs"]), human_count(x["mults"]), human_count(x["adds"]),
             f"{x['energy_uj']:.3g}"] for x in report["layers"]]
    t = report["totals"]
    rows.append(["total", "", human_count(t["params"]), human_bytes(t["bytes"]),
                 human_count(t["macs"]), human_count(t["mults"]), human_count(t["adds"]),
                 f"{t['energy_uj']:.3g}"])
    headers = ["layer", "op", "params", "bytes", "MACs", "mults", "adds", "energy uJ*"]
    table = format_table(headers, rows, right=[False, False, *[True] * 6])
    lowered = _lowered_table(report.get("lowered_convs") or [])
    spiking = _spiking_summary(report.get("spiking"))
    return f"{table}\n* {report['energy_model']}{lowered}{spiking}"


def _spiking_summary(spiking: dict[str, Any] | None) -> str:
    """The spike pass's operation count (ACE), bits and energy estimate, per token."""
    if not spiking:
        return ""
    ops = spiking["per_token"]
    uniform = human_count(ops["uniform_ops"])
    rows = [
        ["spiking operations (ACE)", human_count(ops["spiking_ops"]),
         f"{spiking['ratio_to_uniform']:.3f}x the uniform layers ({uniform})"],
        ["  of which MACs / accumulates",
         f"{human_count(ops['macs'])} / {human_count(ops['acs'])}",
         "multi-level spike x integer weight / ternary weight planes"],
        ["fp32 model", human_count(ops["fp32_macs"]), "MACs of the same layers in fp32"],
        ["bits per weight / activation", f"{spiking['weight_bits']:.2f} / "
         f"{spiking['activation_bits']:.2f}", "averaged over the spiking layers' weights"],
        ["energy per token*", f"{spiking['energy_uj_per_token']:.3g} uJ",
         f"fp32: {spiking['fp32_energy_uj_per_token']:.3g} uJ "
         f"({spiking['energy_uj_per_token'] / spiking['fp32_energy_uj_per_token']:.3f}x)"],
    ]
    table = format_table(["spiking layers, per token", "count", ""], rows,
                         right=[False, True, False])
    return f"\n\n{table}\n* {spiking['energy_model']}"


def _lowered_table(records: list[dict[str, Any]]) -> str:
    """Lowered convolutions (sfc pass): direct vs GEMM multiplications, transform work."""
    if not records:
        return ""
    rows = [[r["layer"], str(r["slots"]), "x".join(map(str, r["output"][2:])),
             human_count(r["direct_mults"]), human_count(r["gemm_mults"]),
             f"{r['mult_ratio']:.2f}x" if r["mult_ratio"] else "-",
             human_count(r["transform_mults"]), human_count(r["direct_adds"]),
             human_count(r["adds"])] for r in records]
    headers = ["lowered conv", "slots", "map", "direct mults", "GEMM mults", "ratio",
               "transform mults", "direct adds", "lowered adds"]
    return "\n\n" + format_table(headers, rows, right=[False, *[True] * 8])


def _ops_line(totals: dict[str, Any]) -> str:
    return (f"{human_count(totals['macs'])} MACs, {human_count(totals['mults'])} mults, "
            f"{human_count(totals['adds'])} adds, {human_bytes(totals['bytes'])} of weights, "
            f"~{totals['energy_uj']:.3g} uJ estimated{_unknown(totals)}")


def _unknown(totals: dict[str, Any]) -> str:
    count = totals.get("unknown_layers", 0)  # artifacts made before it was counted lack it
    return f" (a lower bound: {count} layers have shapes known only at run time)" if count \
        else ""
