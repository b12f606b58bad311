"""The conformance run: real third-party graphs through `ember compile` + `ember run`,
compared with the outputs shipped beside them.

    python -m ember.tools.conformance [--target cpu,tvm]
        [--suite onnx-node,onnx-data,onnx-zoo,hf,vision] [--match REGEX] [--limit N] [-o DIR]

Suites (cases.py): the onnx wheel's own backend tests, the single-op node cases
(`onnx-node`), the model folders simple/pytorch-converted/pytorch-operator (`onnx-data`) and
the light model zoo (`onnx-zoo`); models built here, the transformers families of
families.py plain, pruned and spiked (`hf`) and the vision networks of vision_nets.py plain
and after ember's CNN passes (`vision`). Each case ends as pass, declined (ember said no in
one line: the reason), wrong (verification caught a difference, or the outputs differ from the
expected ones beyond the case's tolerance) or internal (anything else: an internal error, a
crash of the worker, a timeout). `tvm-plain` is the anchor, not an ember target: TVM 0.27's
own `relax.frontend.onnx.from_onnx` + `tvm.compile` with its default pipeline on the same
case. A worker process runs the cases (worker.py), restarted when one crashes it; results
are written as they come (results.jsonl), then as report.json and report.md (report.py),
whose model table (case x target) is the README's "what models work" table.
"""
