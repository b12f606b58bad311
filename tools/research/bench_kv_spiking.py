"""KV-cache spiking on SmolLM2-135M: what quantizing the cached keys and values costs in
perplexity, before building it (design: spike.md §3.2, "KV cache").

The cache a decode step reads is quantized as a streaming cache must be: keys per channel
with static ranges calibrated on the first half of the corpus (a key beyond its range is
clipped), values per token with the token's own range. Both are uniform asymmetric codes of
`a` bits (0..2^a - 1); the salient fraction of each layer's head x channel entries spikes
twice (codes 0..2 (2^a - 1) over the same range: the (a+1)-bit form), chosen per KV head
by the spec's scores, pooled over the query heads that share the KV head:

    K:  score_c = diag((sum_h Q_h^T Q_h) K_g^T K_g)_c / l          (K after RoPE, as cached)
    V:  score_c = sum_h ||P_h V_g[:, c]||^2 / l                    (P: attention probabilities)

Perplexity is scored on held-out windows of the same corpus (the second half), with the
model's own fp32 weights, so the rows isolate the cache's quantization.

    python -m ember.tools.research.bench_kv_spiking [--corpus pydoc] [--windows 8]
        [--seq 512] [--calib-windows 16]

Attention runs through an eager attention function registered with transformers'
AttentionInterface, which quantizes K and V before use: quantization per channel with
fixed ranges and per token is elementwise in time, so quantizing at use equals quantizing
when the token is cached.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np
import torch

NAME = "ember_kv_spiking"


@dataclass
class KvStats:
    """Per layer: K ranges [kv, d] and the scores of K and V channels [kv, d]."""

    k_min: dict[int, torch.Tensor] = field(default_factory=dict)
    k_max: dict[int, torch.Tensor] = field(default_factory=dict)
    k_score: dict[int, torch.Tensor] = field(default_factory=dict)
    v_score: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class KvSetting:
    bits: int = 0  # 0: float cache
    salient: float = 0.0
    masks: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


STATE: dict[str, object] = {"mode": "float", "stats": KvStats(), "setting": KvSetting()}


def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention ([b, h, l, d] query; [b, kv, l, d] key and value) with the cache's
    quantization, or the calibration statistics, per STATE."""
    layer = module.layer_idx
    groups = query.shape[1] // key.shape[1]
    if STATE["mode"] == "quantize":
        key, value = _quantized(layer, key, value)
    k = key.repeat_interleave(groups, dim=1)
    v = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, k.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : k.shape[-2]]
    probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    if STATE["mode"] == "calibrate":
        _collect(layer, query, key, value, probs, groups)
    out = torch.matmul(probs, v).transpose(1, 2).contiguous()
    return out, probs


def _collect(layer: int, q, k, v, probs, groups: int) -> None:
    stats: KvStats = STATE["stats"]
    b, kv, length, d = k.shape
    lo, hi = k.amin(dim=(0, 2)), k.amax(dim=(0, 2))
    stats.k_min[layer] = torch.minimum(stats.k_min.get(layer, lo), lo)
    stats.k_max[layer] = torch.maximum(stats.k_max.get(layer, hi), hi)
    qg = q.reshape(b, kv, groups, length, d)
    q_gram = torch.einsum("bghld,bghle->bgde", qg, qg)  # sum over heads of the group
    k_gram = torch.einsum("bgld,bgle->bgde", k, k)
    k_score = torch.einsum("bgde,bged->bgd", q_gram, k_gram).sum(0) / length
    pv = torch.matmul(probs, v.repeat_interleave(groups, dim=1))  # [b, h, l, d]
    v_score = pv.pow(2).sum(2).reshape(b, kv, groups, d).sum((0, 2)) / length
    stats.k_score[layer] = stats.k_score.get(layer, 0) + k_score
    stats.v_score[layer] = stats.v_score.get(layer, 0) + v_score


def _quantized(layer: int, k, v):
    setting: KvSetting = STATE["setting"]
    if setting.bits == 0:
        return k, v
    stats: KvStats = STATE["stats"]
    top = 2 ** setting.bits - 1
    k_mask, v_mask = setting.masks.get(layer, (None, None))
    k_levels = _levels(k_mask, top, k.shape[1], k.shape[-1])[None, :, None, :]
    v_levels = _levels(v_mask, top, v.shape[1], v.shape[-1])[None, :, None, :]
    lo, hi = stats.k_min[layer][None, :, None, :], stats.k_max[layer][None, :, None, :]
    k = _fake_quant(k.clamp(lo, hi), lo, hi, k_levels)
    v_lo, v_hi = v.amin(-1, keepdim=True), v.amax(-1, keepdim=True)  # per token and head
    return k, _fake_quant(v, v_lo, v_hi, v_levels)


def _levels(mask, top: int, kv: int, d: int) -> torch.Tensor:
    levels = torch.full((kv, d), float(top))
    if mask is not None:
        levels[mask] = 2.0 * top  # two a-bit spikes
    return levels


def _fake_quant(x, lo, hi, levels):
    """Uniform asymmetric codes 0..levels over [lo, hi], back to floats."""
    step = (hi - lo).clamp(min=1e-8) / levels
    return torch.round((x - lo) / step).clamp(min=0).minimum(levels) * step + lo


def _masks(stats: KvStats, fraction: float) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """The top `fraction` of each layer's head x channel entries, for K and for V."""
    masks = {}
    for layer in stats.k_score:
        pair = []
        for score in (stats.k_score[layer], stats.v_score[layer]):
            count = int(np.ceil(fraction * score.numel()))
            mask = torch.zeros(score.numel(), dtype=torch.bool)
            if count:
                mask[torch.topk(score.flatten(), count).indices] = True
            pair.append(mask.reshape(score.shape))
        masks[layer] = (pair[0], pair[1])
    return masks


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    from ember.compiler.data.tuning import LocalData
    from ember.compiler.models.smollm2 import load_smollm2
    from ember.tools.bench import metrics

    torch.manual_seed(0)
    lm, tokenizer = load_smollm2()
    probe = torch.randint(0, lm.config.vocab_size, (1, 64))
    with torch.no_grad():
        reference = lm(input_ids=probe).logits
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, eager_mask)  # additive causal masks, as eager's
    lm.config._attn_implementation = NAME
    for module in lm.modules():  # the layers read the config they were built with
        if hasattr(module, "config") and module is not lm:
            module.config._attn_implementation = NAME
    with torch.no_grad():  # the eager function with a float cache is the model itself
        error = float((lm(input_ids=probe).logits - reference).abs().max())
    if error > 1e-5 * float(reference.abs().max()):
        raise SystemExit(f"the attention function differs from the model's own: {error:.3g}")
    corpus = f"text:{args.corpus}"
    calibration = LocalData(tokenizer).text_windows(corpus, args.seq)[: args.calib_windows]
    heldout = metrics.heldout_text_windows(args.corpus, tokenizer, args.seq, args.windows)

    def logits_of(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return lm(input_ids=torch.from_numpy(ids)).logits.float().numpy()

    STATE["mode"] = "calibrate"
    started = time.perf_counter()
    with torch.no_grad():
        for window in calibration:
            lm(input_ids=window[None])
    print(f"calibrated on {len(calibration)} x {args.seq} tokens in "
          f"{time.perf_counter() - started:.0f} s")
    STATE["mode"] = "quantize"
    rows = [("fp32 cache", 0, 0.0)] + [
        (f"{bits}-bit K/V" + (f", {frac:.0%} salient" if frac else ""), bits, frac)
        for bits in (8, 4, 3) for frac in (0.0, 0.1)]
    print(f"SmolLM2-135M, {corpus}, {len(heldout)} held-out windows of {args.seq} tokens\n")
    print("| KV cache | perplexity | vs fp32 cache |\n|---|---|---|")
    base = None
    for label, bits, frac in rows:
        STATE["setting"] = KvSetting(bits, frac, _masks(STATE["stats"], frac) if frac else {})
        ppl = metrics.perplexity(logits_of, heldout)
        base = base or ppl
        print(f"| {label} | {ppl:.2f} | {ppl / base - 1:+.1%} |")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default="pydoc")
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--calib-windows", type=int, default=16)
    return p


if __name__ == "__main__":
    main()
