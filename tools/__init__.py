"""The user-facing side of ember, above the library: the `ember` command (cli/), the
evaluator behind `ember bench` (bench/), the demo (demo.py), the offline asset install step
(assets.py), terminal tables (table.py), the GPU device check (gpu_check/) and the research
and benchmark scripts behind BENCHMARKS.md (research/). The library (compiler, passes,
targets, runtime) never imports anything from here.
"""
