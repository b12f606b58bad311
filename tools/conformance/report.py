"""The conformance report: report.json (every case's result) and report.md (a table of
outcomes per suite and target; for the model suites, a table of every case on every target,
which is the README's "what models work" table; then the most common reasons for declines,
wrong outputs and internal errors)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

STATUSES = ("pass", "declined", "wrong", "internal")
REASONS_SHOWN = 12


def write_report(results: list[dict[str, Any]], environment: dict[str, Any],
                 out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"schema": 1, "environment": environment, "summary": summary(results),
              "results": results}
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(render_markdown(report))


def summary(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """{suite: {target: {status: count}}}."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    for r in results:
        row = table.setdefault(r["suite"], {}).setdefault(r["target"], dict.fromkeys(STATUSES, 0))
        row[r["status"]] += 1
    return table


def render_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# ember conformance — {env.get('machine', '')}", "",
             f"{env.get('date', '')}; ember {env.get('ember')}, onnx {env.get('onnx')}, "
             f"onnxruntime {env.get('onnxruntime')}, apache-tvm {env.get('tvm')}. "
             "`tvm-plain` is TVM alone (its ONNX importer and default build), the anchor.", "",
             "| suite | target | cases | pass | declined | wrong | internal |",
             "|---|---|---|---|---|---|---|"]
    for suite, targets in report["summary"].items():
        for target, counts in targets.items():
            cells = " | ".join(str(counts[s]) for s in STATUSES)
            lines.append(f"| {suite} | {target} | {sum(counts.values())} | {cells} |")
    lines += models_table(report["results"])
    for status in STATUSES[1:]:
        lines += _reasons(report["results"], status)
    return "\n".join(lines) + "\n"


def models_table(results: list[dict[str, Any]]) -> list[str]:
    """Case x target for the model suites: `pass`, or the status and its reason."""
    from ember.tools.conformance.cases import MODEL_SUITES

    rows: dict[str, dict[str, str]] = {}
    targets: list[str] = []
    for r in results:
        if r["suite"] not in MODEL_SUITES:
            continue
        targets += [r["target"]] if r["target"] not in targets else []
        cell = r["status"] if r["status"] == "pass" else f"{r['status']}: {_reason(r['detail'])}"
        rows.setdefault(f"{r['suite']} | {r['case']}", {})[r["target"]] = cell
    if not rows:
        return []
    lines = ["", "## What models work", "", f"| suite | case | {' | '.join(targets)} |",
             "|---|---|" + "---|" * len(targets)]
    lines += [f"| {row} | {' | '.join(cells.get(t, '') for t in targets)} |"
              for row, cells in rows.items()]
    return lines


def _reasons(results: list[dict[str, Any]], status: str) -> list[str]:
    reasons = Counter((r["target"], _reason(r["detail"])) for r in results
                      if r["status"] == status)
    if not reasons:
        return []
    lines = ["", f"## {status}: most common reasons", "", "| target | cases | reason |",
             "|---|---|---|"]
    lines += [f"| {t} | {n} | {reason} |" for (t, reason), n in
              reasons.most_common(REASONS_SHOWN)]
    if len(reasons) > REASONS_SHOWN:
        lines.append(f"| | | ... and {len(reasons) - REASONS_SHOWN} more (report.json) |")
    return lines


def _reason(detail: str) -> str:
    """The detail without the parts that name one case (paths, node names), so alike
    reasons count together."""
    text = detail.split(": ", 1)[1] if detail.startswith("onnx:") else detail
    return text.replace("|", "/")[:160]
