"""The conformance cases, from data the onnx wheel ships and models built here (nothing is
downloaded).

An ONNX case is a model, one set of inputs (by graph input name) and the outputs expected for
them (by graph output name), with the tolerance its suite states: the node cases carry their
own rtol/atol; the model folders use the onnx backend runner's defaults (rtol 1e-3, atol
1e-7). The light zoo's expected outputs were made by the onnx reference evaluator on the
runner's dummy inputs (every float input = arange(n) / n), which are rebuilt here the same way.

A model case (`hf`, `vision`) is a compile config: a model ember loads and the passes to run
on it; it passes when the artifact verifies against that model. `hf`: each family of
families.py plain, pruned (Taylor, the scopes it slices; for an encoder, asked anyway) and
spiked, on text read through its own tokenizer. `vision`: each network of vision_nets.py
plain, after fold_bn + sfc, and after fold_bn + CNN pruning.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SUITES = ("onnx-node", "onnx-data", "onnx-zoo", "hf", "vision")
MODEL_SUITES = ("hf", "vision")  # compile configs, not ONNX graphs with expected outputs
DATA_FOLDERS = ("simple", "pytorch-converted", "pytorch-operator")
RTOL, ATOL = 1e-3, 1e-7  # onnx.backend.test.runner's defaults


@dataclass(frozen=True)
class Case:
    """`load` for an ONNX case; `config(work_dir)` (a compile config without target and
    output) for a model case."""

    suite: str
    name: str
    load: Callable[[], tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]] | None = None
    rtol: float = RTOL
    atol: float = ATOL
    config: Callable[[Path], dict[str, Any]] | None = None


def collect(suites: list[str], match: str | None = None) -> list[Case]:
    """Every case of the suites, in a fixed order; `match` keeps names that match the regex."""
    found = [case for suite in suites for case in _COLLECTORS[suite]()]
    pattern = re.compile(match) if match else None
    return [c for c in found if pattern is None or pattern.search(c.name)]


def data_root() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def graph_inputs(model: Any) -> list[Any]:
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _node_cases() -> list[Case]:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own overflow notes
        cases = collect_testcases(None)
    return [Case("onnx-node", c.name, functools.partial(_node_case, c), c.rtol, c.atol)
            for c in sorted(cases, key=lambda c: c.name) if c.data_sets]


def _node_case(case: Any) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    inputs, outputs = case.data_sets[0]
    return case.model, _named(graph_inputs(case.model), inputs), \
        _named(case.model.graph.output, outputs)


def _data_cases() -> list[Case]:
    return [Case("onnx-data", f"{folder}/{path.name}", functools.partial(_folder_case, path))
            for folder in DATA_FOLDERS
            for path in sorted((data_root() / folder).iterdir()) if path.is_dir()]


def _folder_case(path: Path) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    import onnx

    model = onnx.load(str(path / "model.onnx"))
    data = path / "test_data_set_0"
    inputs = [_tensor(p) for p in sorted(data.glob("input_*.pb"), key=_index)]
    outputs = [_tensor(p) for p in sorted(data.glob("output_*.pb"), key=_index)]
    return model, _named(graph_inputs(model), inputs), _named(model.graph.output, outputs)


def _zoo_cases() -> list[Case]:
    return [Case("onnx-zoo", path.stem, functools.partial(_zoo_case, path))
            for path in sorted((data_root() / "light").glob("*.onnx"))]


def _zoo_case(path: Path) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    import onnx

    model = onnx.load(str(path))
    inputs = {v.name: _dummy(v) for v in graph_inputs(model)}
    expected = _tensor(path.with_name(f"{path.stem}_output_0.pb"))
    return model, inputs, {model.graph.output[0].name: expected}


def _dummy(value: Any) -> np.ndarray:
    """onnx's backend runner's dummy data: arange(n) / n in the declared shape (1 where a dim
    is symbolic), float32."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1
                  for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _tensor(path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _named(values: Any, arrays: list[Any]) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    def as_array(item: Any) -> Any:
        """A tensor as an array; sequences, maps and optionals stay as they are (ember
        declines graphs that take or return them)."""
        if hasattr(item, "raw_data"):
            return numpy_helper.to_array(item)
        return item if isinstance(item, (list, dict)) or item is None else np.asarray(item)

    return {v.name: as_array(a) for v, a in zip(values, arrays, strict=False)}


def _index(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _hf_cases() -> list[Case]:
    from ember.tools.conformance.families import ALL_SCOPES, FAMILIES

    return [Case("hf", f"{name}{variant}", config=functools.partial(
                _hf_config, name, variant, FAMILIES[name][3] or ALL_SCOPES))
            for name in FAMILIES for variant in ("", "+prune", "+spike")]


def _hf_config(name: str, variant: str, scopes: str, work: Path) -> dict[str, Any]:
    from ember.tools.conformance.families import prune_config, save_family, spike_config

    folder = save_family(name, work / name)
    corpus = folder / "corpus.txt"
    passes = {"": [], "+prune": [prune_config(corpus, scopes)],
              "+spike": [spike_config(corpus)]}[variant]
    return {"model": f"hf:{folder}", "example": {"tokens": 8}, "passes": passes}


VISION_PASSES = {"": [], "+fold_bn+sfc": ["fold_bn", "sfc"],
                 "+fold_bn+prune": ["fold_bn", {"prune": {"method": "magnitude", "ratio": 0.25,
                                                          "steps": 0, "round_to": 4}}]}


def _vision_cases() -> list[Case]:
    from ember.tools.conformance.vision_nets import NETS

    return [Case("vision", f"{net}{variant}", config=functools.partial(
                _vision_config, net, VISION_PASSES[variant]))
            for net in NETS for variant in VISION_PASSES]


def _vision_config(net: str, passes: list[Any], work: Path) -> dict[str, Any]:
    del work  # the network is built by its factory
    return {"model": f"torch:ember.tools.conformance.vision_nets:{net}",
            "example": {"shape": [1, 3, 32, 32]}, "passes": passes}


_COLLECTORS: dict[str, Callable[[], list[Case]]] = {
    "onnx-node": _node_cases, "onnx-data": _data_cases, "onnx-zoo": _zoo_cases,
    "hf": _hf_cases, "vision": _vision_cases}
