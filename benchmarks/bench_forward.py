"""Forward, cached-forward and loading benchmark: lookingglass vs Hugging Face vs TransformerLens.

One process, the same random-weight GPT-2-small-shaped model (12 layers, d_model 768,
vocab 50257) for all three, CPU fp32, batch 4 x 256 and 1 x 32. Prints median times and
ratios to the Hugging Face eager forward, the extra memory a full cache holds, and the
load time and peak extra memory of loading each library's model from the same folder.

    .venv/bin/python benchmarks/bench_forward.py [--repeats 10] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path

import torch
from common import (
    build_tl_from_folder,
    format_table,
    interleaved_medians,
    peak_rss_of,
    set_threads,
    tensor_bytes,
)

SIZES = {
    "full": dict(n_layer=12, n_embd=768, n_head=12),
    "quick": dict(n_layer=4, n_embd=256, n_head=8),
}
# ~110M parameters: GQA (12 query / 4 key-value heads), rotary, SwiGLU, RMSNorm.
LLAMA_SIZES = {
    "full": dict(
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
    ),
    "quick": dict(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
    ),
}


def make_checkpoint(folder: Path, size: str, family: str = "gpt2") -> None:
    import transformers

    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=50257, n_positions=1024, **SIZES[size])
        config.n_ctx = 1024  # TransformerLens reads it
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    else:
        config = transformers.LlamaConfig(
            vocab_size=32000, max_position_embeddings=1024, **LLAMA_SIZES[size]
        )
        transformers.LlamaForCausalLM(config).save_pretrained(folder)


def forward_table(folder: Path, repeats: int) -> str:
    from transformers import AutoModelForCausalLM

    from lookingglass import HookedTransformer

    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    ours = HookedTransformer.from_pretrained_no_processing(folder, device="cpu").eval()
    tl = build_tl_from_folder(folder, hf)
    vocab = hf.config.vocab_size
    rows = []
    for batch, seq in ((4, 256), (1, 32)):
        tokens = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diff = (hf(tokens).logits - ours(tokens)).abs().max().item()
            ops = {
                "Hugging Face forward (eager)": lambda tokens=tokens: hf(tokens),
                "lookingglass forward": lambda tokens=tokens: ours(tokens),
                "lookingglass run_with_cache (all hooks)": lambda tokens=tokens: (
                    ours.run_with_cache(tokens)
                ),
                "lookingglass run_with_cache (resid_post only)": lambda tokens=tokens: (
                    ours.run_with_cache(
                        tokens, names_filter=lambda n: n.endswith("hook_resid_post")
                    )
                ),
                "TransformerLens forward": lambda tokens=tokens: tl(tokens),
                "TransformerLens run_with_cache (all hooks)": lambda tokens=tokens: (
                    tl.run_with_cache(tokens)
                ),
            }
            medians = interleaved_medians(ops, repeats)
            _, our_cache = ours.run_with_cache(tokens)
            _, tl_cache = tl.run_with_cache(tokens)
        base = medians["Hugging Face forward (eager)"]
        for name, t in medians.items():
            cache_mb = ""
            if name == "lookingglass run_with_cache (all hooks)":
                cache_mb = f"{tensor_bytes(our_cache.values()) / 2**20:.0f}"
            if name == "TransformerLens run_with_cache (all hooks)":
                cache_mb = f"{tensor_bytes(tl_cache.values()) / 2**20:.0f}"
            rows.append([f"{batch}x{seq}", name, f"{t * 1000:.1f}", f"{t / base:.2f}x", cache_mb])
        rows.append([f"{batch}x{seq}", "max abs logit diff ours vs HF", f"{diff:.1e}", "", ""])
    return format_table(rows, ["batch x seq", "op", "median ms", "vs HF", "cache MiB"])


LOAD_SNIPPET = textwrap.dedent("""
    import json, time, torch, os
    torch.set_num_threads(os.cpu_count())
    folder = {folder!r}
    def status(field):  # kB values from /proc/self/status
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    import transformers, lookingglass
    {extra_imports}
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS to the current RSS
    before = status("VmRSS:"); start = time.perf_counter()
    {load}
    seconds = time.perf_counter() - start
    print(json.dumps(dict(seconds=seconds, peak_extra=status("VmHWM:") - before)))
""")

# Code is imported before measuring, so the numbers are the memory the weights need.
HF_IMPORTS = "import transformers.models.gpt2.modeling_gpt2, safetensors.torch"
OUR_IMPORTS = (
    HF_IMPORTS + "; import lookingglass.loading.pretrained, lookingglass.loading.converters"
)
LOADERS = {
    "Hugging Face from_pretrained": (
        HF_IMPORTS,
        "m = transformers.GPT2LMHeadModel.from_pretrained(folder)",
    ),
    "lookingglass from_pretrained_no_processing": (
        OUR_IMPORTS,
        "m = lookingglass.HookedTransformer.from_pretrained_no_processing(folder)",
    ),
    "lookingglass from_pretrained (all processing)": (
        OUR_IMPORTS,
        "m = lookingglass.HookedTransformer.from_pretrained(folder)",
    ),
}


def load_table(folder: Path) -> str:
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    rows = []
    for name, (imports, load) in LOADERS.items():
        result = peak_rss_of(
            LOAD_SNIPPET.format(folder=str(folder), extra_imports=imports, load=load)
        )
        rows.append(
            [
                name,
                f"{result['seconds']:.2f}",
                f"{result['peak_extra'] / 2**20:.0f}",
                f"{result['peak_extra'] / weights:.2f}x",
            ]
        )
    table = format_table(rows, ["loader", "seconds", "peak extra MiB", "x weights"])
    return f"weights on disk: {weights / 2**20:.0f} MiB\n\n{table}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="4-layer d_model 256 models, 3 repeats"
    )
    parser.add_argument("--family", choices=["gpt2", "llama", "both"], default="both")
    args = parser.parse_args()
    set_threads()
    size = "quick" if args.quick else "full"
    families = ["gpt2", "llama"] if args.family == "both" else [args.family]
    for family in families:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            make_checkpoint(folder, size, family)
            shape = SIZES[size] if family == "gpt2" else LLAMA_SIZES[size]
            print(
                f"## Forward ({family}-shaped, {shape}, CPU fp32, "
                f"{torch.get_num_threads()} threads)\n"
            )
            print(forward_table(folder, 3 if args.quick else args.repeats))
            if family == "gpt2":
                print("\n## Loading\n")
                print(load_table(folder))
            print()


if __name__ == "__main__":
    main()
