"""Research and benchmark scripts: the measurements behind BENCHMARKS.md, each run by hand
(`python -m ember.tools.research.NAME` or the .sh files). Not part of the CLI or the suite.
"""
