"""Loading time and peak memory from a local safetensors folder, each loader in a fresh
Python process, with every weight touched afterwards.

Memory-mapped loaders (Hugging Face's) look free until the weights are read: their pages
enter the resident set when first touched. So each process loads, then sums every
parameter, and reports its peak resident set above what it held after its imports, as a
multiple of the weight files' size.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from common import load_average, peak_rss_of

SNIPPET = textwrap.dedent("""
    import json, time, torch
    torch.set_num_threads(1)
    def status(field):  # bytes, from /proc/self/status
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    import transformers, safetensors.torch, lookingglass
    import transformers.models.gpt2.modeling_gpt2, transformers.models.llama.modeling_llama
    import lookingglass.loading.pretrained, lookingglass.loading.converters
    import transformer_lens
    folder = {folder!r}
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS to the current RSS
    before = status("VmRSS:"); start = time.perf_counter()
    {load}
    seconds = time.perf_counter() - start
    loaded = status("VmHWM:") - before
    total = sum(float(p.float().sum()) for p in m.parameters())  # touch every weight
    print(json.dumps(dict(seconds=seconds, peak_loaded=loaded, peak=status("VmHWM:") - before)))
""")

LOADERS = {
    "HF from_pretrained (SDPA)": "m = transformers.AutoModelForCausalLM.from_pretrained(folder)",
    "lookingglass from_pretrained_no_processing": (
        "m = lookingglass.HookedTransformer.from_pretrained_no_processing(folder, device='cpu')"
    ),
    "lookingglass from_pretrained (processed)": (
        "m = lookingglass.HookedTransformer.from_pretrained(folder, device='cpu')"
    ),
    "TransformerLens (HF model + from_pretrained_no_processing)": (
        "hf = transformers.AutoModelForCausalLM.from_pretrained(folder)\n"
        "import sys; sys.path.insert(0, {bench!r}); from common import build_tl_from_folder\n"
        "m = build_tl_from_folder(__import__('pathlib').Path(folder), hf); del hf"
    ),
}


def run(label: str, folder: Path, repeats: int) -> dict:
    """Seconds (median over `repeats` fresh processes) and peak memory of every loader."""
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    bench = str(Path(__file__).parent)
    rows: dict[str, list[dict]] = {name: [] for name in LOADERS}
    load_before = load_average()
    for _ in range(repeats):  # interleaved: one process per loader per round
        for name, load in LOADERS.items():
            code = SNIPPET.format(folder=str(folder), load=load.format(bench=bench))
            rows[name].append(peak_rss_of(code))
    result = dict(model=label, weights_mib=round(weights / 2**20, 1), load_before=load_before)
    result["loaders"] = {
        name: dict(
            seconds=sorted(r["seconds"] for r in runs)[len(runs) // 2],
            peak_x=max(r["peak"] for r in runs) / weights,
            peak_before_touch_x=max(r["peak_loaded"] for r in runs) / weights,
        )
        for name, runs in rows.items()
    }
    result["load_after"] = load_average()
    for name, r in result["loaders"].items():
        print(
            f"[loading] {label} {name}: {r['seconds']:.2f} s, peak {r['peak_x']:.2f}x weights",
            flush=True,
        )
    return result
