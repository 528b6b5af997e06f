"""Prefill compute profile of Llama-3-8B on this GPU, fitted to the twin's compute model.

Builds Llama-3-8B from its published configuration with ``transformers`` (random weights,
nothing downloaded: ``LlamaConfig(...)`` + ``LlamaForCausalLM(config)`` in bf16 on the
GPU, SDPA attention), then times under ``torch.no_grad``, with CUDA events, the median of
``--repeat`` runs after two warm-ups:

- prefills of ``new`` tokens with nothing cached (``--lengths``);
- prefills of ``new`` tokens after ``context`` tokens already in the KV cache
  (``--contexts``, pairs ``context:new``; the cache is cropped back after each run);
- one decode step (one token, batch 1) after ``--decode-contexts`` cached tokens.

Each case is timed two ways: eager wall time (CUDA events around the forward: the
kernels plus the gaps while Python launches them, some 1,500 launches per forward), and
GPU busy time (the sum of the forward's kernel durations, from the profiler: what an
engine that hides its launch overhead, with CUDA graphs or a faster host loop, would
take). It fits ``t = prefill_fixed + prefill_per_token * new + prefill_quadratic * new *
(context + new)`` (``flexkv_engine.config.ComputeModel.prefill_time``) by least squares
on relative error (each row divided by its time, so short prompts count as much as long
ones) to both, and ``decode_step`` as the median decode time; the YAML is the GPU busy
fit. Prints the figures as JSON
(``--json PATH`` also writes them) and the YAML ``compute`` section to paste into a
hardware profile.

    python bench/prefill_profile.py --json $OUT/prefill.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

# Llama-3-8B (meta-llama/Meta-Llama-3-8B config.json).
LLAMA3_8B = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}
DEFAULT_LENGTHS = (128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192)
DEFAULT_CONTEXTS = (
    "1024:256",
    "1024:1024",
    "2048:2048",
    "4096:512",
    "4096:2048",
    "6144:1024",
    "7168:1024",
)
DEFAULT_DECODE_CONTEXTS = (1024, 4096)


def build_model() -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**LLAMA3_8B, attn_implementation="sdpa")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(torch.bfloat16).eval()


def _forward(model: Any, ids: Any, cache: Any) -> Any:
    try:
        return model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    except TypeError:  # transformers before logits_to_keep
        return model(input_ids=ids, past_key_values=cache, use_cache=True)


def time_prefill(model: Any, new: int, context: int, repeat: int) -> tuple[list[float], float]:
    """Prefill of ``new`` tokens after ``context`` cached ones: the seconds of each timed
    run (CUDA events around the forward: kernels and the gaps between their launches),
    and the mean GPU busy seconds per run (the sum of its kernels' durations, from the
    profiler: the same work without the host's launch overhead)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, context + new), device="cuda")
    cache = None
    if context:
        cache = _forward(model, ids[:, :context], None).past_key_values

    def once() -> None:
        result = _forward(model, ids[:, context:], cache)
        if cache is not None:
            cache.crop(-new)  # drop the new tokens again
        del result

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for k in range(repeat + 2):
        torch.cuda.synchronize()
        start.record()
        once()
        end.record()
        end.synchronize()
        if k >= 2:
            out.append(start.elapsed_time(end) / 1e3)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeat):
            once()
        torch.cuda.synchronize()
    busy_us = 0.0
    for e in prof.key_averages():
        busy_us += getattr(e, "self_device_time_total", None) or getattr(
            e, "self_cuda_time_total", 0.0
        )
    return out, busy_us / 1e6 / repeat


def fit(points: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Least squares of ``point[key]`` on relative error; a term that comes out negative
    is dropped."""
    import numpy as np

    new = np.array([p["new"] for p in points], dtype=float)
    ctx = np.array([p["context"] for p in points], dtype=float)
    t = np.array([p[key] for p in points], dtype=float)
    columns = [np.ones_like(new), new, new * (ctx + new)]
    keep = [0, 1, 2]
    while True:
        a = np.stack([columns[k] / t for k in keep], axis=1)
        coef, *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
        if (coef >= 0).all() or len(keep) == 1:
            break
        keep.pop(int(np.argmin(coef)))
    full = [0.0, 0.0, 0.0]
    for k, c in zip(keep, coef, strict=True):
        full[k] = float(max(c, 0.0))
    model = full[0] + full[1] * new + full[2] * new * (ctx + new)
    rel = (model - t) / t
    return {
        "prefill_fixed_s": full[0],
        "prefill_per_token_s": full[1],
        "prefill_quadratic_s": full[2],
        "max_abs_rel_err": float(np.abs(rel).max()),
        "rms_rel_err": float(np.sqrt((rel**2).mean())),
    }


def _pairs(values: list[str]) -> list[tuple[int, int]]:
    out = []
    for v in values:
        ctx, new = v.split(":")
        out.append((int(ctx), int(new)))
    return out


def _yaml(result: dict[str, Any]) -> str:
    f = result["fit"]
    return "\n".join(
        [
            "compute:",
            f"  prefill_fixed: {f['prefill_fixed_s'] * 1e3:.3g}ms",
            f"  prefill_per_token: {f['prefill_per_token_s'] * 1e6:.3g}us",
            f"  prefill_quadratic: {f['prefill_quadratic_s'] * 1e9:.3g}ns",
            f"  decode_step: {result['decode_step_s'] * 1e3:.3g}ms",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lengths",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_LENGTHS),
        help="prompt lengths, nothing cached",
    )
    parser.add_argument(
        "--contexts",
        type=lambda s: s.split(","),
        default=list(DEFAULT_CONTEXTS),
        help="context:new pairs, the context already cached",
    )
    parser.add_argument(
        "--decode-contexts",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_DECODE_CONTEXTS),
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", dest="json_path", default=None, help="also write JSON here")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("prefill_profile: no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    try:
        import transformers
    except ImportError:
        print("prefill_profile: transformers is not installed", file=sys.stderr)
        return 2
    began = time.perf_counter()
    with torch.no_grad():
        model = build_model()
        print(f"model built in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        points = []
        cases = [(0, n) for n in args.lengths] + _pairs(args.contexts)
        for ctx, new in cases:
            secs, busy = time_prefill(model, new, ctx, args.repeat)
            med = statistics.median(secs)
            points.append(
                {
                    "context": ctx,
                    "new": new,
                    "busy_s": busy,
                    "wall_s": med,
                    "wall_min_s": min(secs),
                    "wall_max_s": max(secs),
                }
            )
            print(
                f"prefill context {ctx:5d} new {new:5d}: GPU busy {busy * 1e3:8.2f} ms, "
                f"eager wall {med * 1e3:8.2f} ms",
                file=sys.stderr,
            )
        decode = []
        for ctx in args.decode_contexts:
            secs, busy = time_prefill(model, 1, ctx, args.repeat)
            decode.append({"context": ctx, "busy_s": busy, "wall_s": statistics.median(secs)})
            print(
                f"decode  context {ctx:5d}: GPU busy {busy * 1e3:8.2f} ms, "
                f"eager wall {decode[-1]['wall_s'] * 1e3:8.2f} ms",
                file=sys.stderr,
            )
    props = torch.cuda.get_device_properties(0)
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": "Llama-3-8B (random weights, bf16, SDPA attention, batch 1)",
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "repeat": args.repeat,
        "points": points,
        "decode": decode,
        "fit": fit(points, "busy_s"),
        "decode_step_s": statistics.median(d["busy_s"] for d in decode),
        "fit_eager": fit(points, "wall_s"),
        "decode_step_eager_s": statistics.median(d["wall_s"] for d in decode),
    }
    for p in points:
        for key, f in (("fit_busy_s", result["fit"]), ("fit_wall_s", result["fit_eager"])):
            p[key] = (
                f["prefill_fixed_s"]
                + f["prefill_per_token_s"] * p["new"]
                + f["prefill_quadratic_s"] * p["new"] * (p["context"] + p["new"])
            )
    result["yaml"] = _yaml(result)
    text = json.dumps(result, indent=2)
    if args.json_path:
        with open(args.json_path, "w") as fh:
            fh.write(text + "\n")
    print(text)
    print(result["yaml"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
