"""The evaluator behind `ember bench`: interleaved timing against a baseline, task metrics on
real data, op counts and energy estimates, and reports (JSON, Markdown, self-contained HTML)."""
