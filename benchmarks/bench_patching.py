"""Activation patching sweeps: lookingglass (batched) vs TransformerLens 3.9 `patching`.

One process, the same random-weight GPT-2-shaped models (vocab 50257) for both
libraries, CPU fp32, clean and corrupted prompts of 20 tokens, batch 1, a logit-difference
metric at the last position. Sweeps: resid_pre by layer x position, every head's output
at all positions, every head's output by position. Timings are interleaved medians; the
table gives the speedup over TransformerLens and the largest difference of the results.
"ours, positions=[-1]" declares that the metric reads only the last position
(`declare_metric`), which skips the other positions' unembedding.

TransformerLens runs one full forward pass per patched variant, so its time is linear in
the number of variants: sweeps larger than `--tl-sample` variants are timed on that many
randomly chosen variants (its `generic_activation_patch` with an `index_df`) and scaled
to the full sweep; the differences are taken on those variants. Ours always runs the
full sweep.

    .venv/bin/python benchmarks/bench_patching.py            # 6-layer d384 and 12-layer d768
    .venv/bin/python benchmarks/bench_patching.py --quick    # 6-layer d384 only
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from common import format_table, interleaved_medians, set_threads

SIZES = {
    "6L d384": dict(n_layers=6, d_model=384, n_heads=6, d_head=64),
    "12L d768": dict(n_layers=12, d_model=768, n_heads=12, d_head=64),
}
# label: (function, TransformerLens setter, activation, index axes)
SWEEPS = {
    "resid_pre (layer x pos)": (
        "get_act_patch_resid_pre",
        "layer_pos_patch_setter",
        "resid_pre",
        ("layer", "pos"),
    ),
    "head out, all pos (layer x head)": (
        "get_act_patch_attn_head_out_all_pos",
        "layer_head_vector_patch_setter",
        "z",
        ("layer", "head"),
    ),
    "head out by pos (layer x pos x head)": (
        "get_act_patch_attn_head_out_by_pos",
        "layer_pos_head_vector_patch_setter",
        "z",
        ("layer", "pos", "head"),
    ),
}


def build_models(size: dict):
    """Our model and TransformerLens's with the same random weights."""
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import HookedTransformerConfig

    from lookingglass import HookedTransformer, ModelConfig

    common = dict(d_vocab=50257, n_ctx=1024, act_fn="gelu_new", normalization_type="LN", **size)
    ours = HookedTransformer(ModelConfig(**common, seed=0)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tl = TLHookedTransformer(HookedTransformerConfig(**common), move_to_device=False).eval()
    tl.load_state_dict(ours.state_dict(), strict=False)
    return ours, tl


def run_size(name: str, size: dict, repeats: int, tl_sample: int) -> list[list[str]]:
    """Time every sweep on one model size; returns table rows."""
    from lookingglass.interventions import declare_metric

    ours, tl = build_models(size)
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 50257, (1, 20), generator=gen)
    corrupted = clean.clone()
    corrupted[0, 5:8] = torch.randint(0, 50257, (3,), generator=gen)

    def metric(logits):
        return logits[:, -1, 42].mean() - logits[:, -1, 4242].mean()

    with torch.no_grad():
        _, our_cache = ours.run_with_cache(clean)
        _, tl_cache = tl.run_with_cache(clean)
    runs = dict(ours=(ours, our_cache), tl=(tl, tl_cache), corrupted=corrupted)
    metrics = dict(plain=metric, last_only=declare_metric(metric, positions=[-1]))
    sizes = {"layer": size["n_layers"], "pos": clean.shape[1], "head": size["n_heads"]}
    rows = []
    for label, sweep in SWEEPS.items():
        rows.append([name, label, *time_sweep(sweep, runs, metrics, sizes, repeats, tl_sample)])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def time_sweep(sweep, runs, metrics, sizes, repeats: int, tl_sample: int) -> list[str]:
    """Interleaved timing of one sweep: TransformerLens (on a sample), ours, ours with the
    metric's position declared. Returns the table cells after the model and sweep names."""
    import pandas as pd
    from transformer_lens import patching as tl_patching

    from lookingglass import patching

    fn_name, setter, activation, axes = sweep
    every = pd.MultiIndex.from_product([range(sizes[a]) for a in axes]).to_frame(index=False)
    every.columns = list(axes)
    sample = every if len(every) <= tl_sample else every.sample(tl_sample, random_state=0)
    (ours, our_cache), (tl, tl_cache), corrupted = runs["ours"], runs["tl"], runs["corrupted"]
    results = {}

    def run_tl():
        results["tl"] = tl_patching.generic_activation_patch(
            tl,
            corrupted,
            tl_cache,
            metrics["plain"],
            getattr(tl_patching, setter),
            activation,
            index_df=sample,
        )

    def run_ours(key):
        def run():
            fn = getattr(patching, fn_name)
            results[key] = fn(ours, corrupted, our_cache, metrics[key]).flatten()

        return run

    ops = {"tl": run_tl, "plain": run_ours("plain"), "last_only": run_ours("last_only")}
    with _quiet_tqdm(), torch.no_grad():
        medians = interleaved_medians(ops, repeats=repeats, warmup=0)
    tl_time = medians["tl"] * len(every) / len(sample)
    picked = torch.tensor(sample.index.to_list())
    diff = max(
        (results[k][picked] - results["tl"]).abs().max().item() for k in ("plain", "last_only")
    )
    return [
        str(len(every)),
        "all" if len(sample) == len(every) else str(len(sample)),
        f"{tl_time:.2f}",
        f"{medians['plain']:.2f}",
        f"{tl_time / medians['plain']:.1f}x",
        f"{medians['last_only']:.2f}",
        f"{tl_time / medians['last_only']:.1f}x",
        f"{diff:.1e}",
    ]


class _quiet_tqdm:
    """TransformerLens prints a tqdm bar per sweep; silence it while timing."""

    def __enter__(self):
        import transformer_lens.patching as tl_patching

        self.module, self.saved = tl_patching, tl_patching.tqdm
        tl_patching.tqdm = lambda iterable, *args, **kwargs: iterable
        return self

    def __exit__(self, *exc):
        self.module.tqdm = self.saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6-layer d384 model only")
    parser.add_argument(
        "--sizes",
        nargs="+",
        choices=list(SIZES),
        default=None,
        help="models to run (default: both, or the small one with --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed rounds on the 6-layer model (the 12-layer model: 1)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--tl-sample",
        type=int,
        default=48,
        help="time TransformerLens on at most this many variants per sweep",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        set_threads()
    sizes = args.sizes or (["6L d384"] if args.quick else list(SIZES))
    start = time.perf_counter()
    rows = []
    for size in sizes:
        repeats = args.repeats if size == "6L d384" else 1
        rows += run_size(size, SIZES[size], repeats, args.tl_sample)
    header = [
        "model",
        "sweep",
        "variants",
        "TL timed on",
        "TL s",
        "ours s",
        "speedup",
        "ours pos=[-1] s",
        "speedup",
        "max abs diff",
    ]
    print(f"\ntorch threads: {torch.get_num_threads()}, total {time.perf_counter() - start:.0f} s")
    print(format_table(rows, header))


if __name__ == "__main__":
    main()
