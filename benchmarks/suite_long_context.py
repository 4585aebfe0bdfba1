"""Peak memory of `run_with_cache` on long inputs, each variant in a fresh process.

The bound we hold ourselves to: the peak resident memory above the loaded model (every
weight already touched: memory-mapped weights would otherwise enter the count as they
are first read) is at most the cached tensors' own bytes plus what Hugging Face's SDPA
forward of the same tokens needs (its logits and one layer's working set). Variants:
cache everything (TransformerLens's default), everything but the scores, and a
`names_filter` (the residual stream only). Times are in the forward suite.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from common import load_average, peak_rss_of

SNIPPET = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads({threads})
    sys.path.insert(0, {bench!r})
    def status(field):  # bytes, from /proc/self/status
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    from suite_models import ModelSpec, hf_model, our_model
    folder = __import__("pathlib").Path({folder!r})
    spec = ModelSpec("x", {family!r}, {{}})
    model = hf_model(folder, "sdpa") if {variant!r} == "hf" else our_model(spec, folder)
    vocab = model.config.vocab_size if {variant!r} == "hf" else model.cfg.d_vocab
    touched = sum(float(p.sum()) for p in model.parameters())
    tokens = torch.randint(1, vocab, (1, {seq}), generator=torch.Generator().manual_seed(0))
    filters = dict(everything=None, resid_post=lambda n: n.endswith("hook_resid_post"),
                   no_scores=lambda n: not n.endswith("hook_attn_scores"))
    with torch.no_grad():
        open("/proc/self/clear_refs", "w").write("5")
        before = status("VmRSS:")
        if {variant!r} == "hf":
            logits, cache = model(tokens).logits, dict()
        else:
            logits, cache = model.run_with_cache(tokens, names_filter=filters[{variant!r}])
        peak = status("VmHWM:") - before
    cached = sum(t.numel() * t.element_size() for t in dict(cache).values())
    print(json.dumps(dict(peak=peak, cache=cached, logits=logits.numel() * logits.element_size())))
""")

VARIANTS = {
    "HF SDPA forward (reference)": "hf",
    "lookingglass run_with_cache (everything)": "everything",
    "lookingglass run_with_cache (all but attn_scores)": "no_scores",
    "lookingglass run_with_cache (names_filter: resid_post)": "resid_post",
}


def run(label: str, family: str, folder: Path, seq: int, threads: int, skip=()) -> dict:
    """Peak memory of each variant at 1 x `seq` tokens; `skip` names variants left out
    (a full cache of a 30-layer model at 2048 tokens is ~9 GB)."""
    bench = str(Path(__file__).parent)
    result = dict(model=label, shape=f"1x{seq}", load_before=load_average(), variants={})
    for name, variant in VARIANTS.items():
        if variant in skip:
            result["variants"][name] = dict(skipped=True)
            continue
        fields = dict(folder=str(folder), family=family, variant=variant, seq=seq)
        code = SNIPPET.format(threads=threads, bench=bench, **fields)
        r = peak_rss_of(code)
        if variant == "hf":
            hf_peak = r["peak"]
        bound = r["cache"] + hf_peak
        r["bound"] = bound
        r["within_bound"] = r["peak"] <= bound
        result["variants"][name] = r
        print(
            f"[long] {label} 1x{seq} {name}: peak {r['peak'] / 2**20:.0f} MiB, cache "
            f"{r['cache'] / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB",
            flush=True,
        )
    return result
