"""SAE training throughput: lookingglass's `SAETrainer` against SAELens's `SAETrainer`
on the same activations, the same initial weights and the same settings.

Each op trains a fresh SAE for `--steps` steps of `--batch-size` tokens (Adam, gradient
clipping, dead-latent tracking, the architecture's loss) on the same list of batches:
harvested activations (`--acts FOLDER`, a `lookingglass harvest` folder) or Gaussian
ones. The ops run round-robin (`interleaved_medians`), so the machine's load hits both
alike; tokens/s = steps x batch / median seconds. SAELens's `TopKTrainingSAE` runs dense
(its default `use_sparse_activations=False`); ours picks the k latents without the
gradient and decodes only those.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sae_training.py --acts acts/ --threads 1
"""

from __future__ import annotations

import argparse
import os
import warnings

import torch
from common import format_table, interleaved_medians

from lookingglass.sae import SAE, SAEConfig
from lookingglass.sae.training import SAETrainer, ShardActivations, TrainConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer as LensTrainer


def _batches(args: argparse.Namespace) -> tuple[list[torch.Tensor], str]:
    if args.acts:
        with open(os.path.join(args.acts, "manifest.json")) as f:
            import json

            hook = args.hook or sorted(json.load(f)["hooks"])[0]
        data = ShardActivations(
            args.acts, [hook], args.batch_size, allow_incomplete=True, max_norm=args.max_norm
        )
        out = []
        for batch in data:
            out.append(batch[hook])
            if len(out) == args.steps:
                break
        return out, f"{hook} of {args.acts}"
    gen = torch.Generator().manual_seed(0)
    return [
        torch.randn(args.batch_size, args.d_in, generator=gen) for _ in range(args.steps)
    ], "Gaussian"


def _pair(arch: str, d_in: int, d_sae: int, k: int):
    if arch == "topk":
        ours = dict(architecture="topk", k=k, rescale_acts_by_decoder_norm=True)
        lens = TopKTrainingSAE, TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k)
        tc = TrainConfig(lr=4e-4, dead_feature_window=5)
    elif arch == "jumprelu":
        ours = dict(architecture="jumprelu")
        lens = (
            JumpReLUTrainingSAE,
            JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l0_coefficient=1e-3),
        )
        tc = TrainConfig(lr=4e-4, l0_coefficient=1e-3)
    else:
        ours = dict(architecture="standard")
        lens = (
            StandardTrainingSAE,
            StandardTrainingSAEConfig(
                d_in=d_in, d_sae=d_sae, l1_coefficient=1.0, l1_warm_up_steps=5
            ),
        )
        tc = TrainConfig(lr=4e-4, l1_coefficient=1.0, l1_warm_up_steps=5)
    return ours, lens, tc


def bench(arch: str, batches: list[torch.Tensor], args: argparse.Namespace) -> list[str]:
    d_in, steps, bs = batches[0].shape[1], len(batches), batches[0].shape[0]
    ours_kw, (lens_cls, lens_cfg), tc = _pair(arch, d_in, args.d_sae, args.k)
    template = SAE(SAEConfig(d_in=d_in, d_sae=args.d_sae, hook_name="h", **ours_kw))
    SAETrainer([template], tc, total_steps=1, verbose=False)  # SAELens's initialisation
    state = {k: v.clone() for k, v in template.state_dict().items()}

    def ours() -> None:
        sae = SAE(SAEConfig(d_in=d_in, d_sae=args.d_sae, hook_name="h", **ours_kw))
        sae.load_state_dict(state)
        SAETrainer([sae], tc, total_steps=steps, init=False, verbose=False).fit(
            {"h": b} for b in batches
        )

    def theirs() -> None:
        sae = lens_cls(lens_cfg)
        sae.load_state_dict(state)
        cfg = SAETrainerConfig(
            total_training_samples=steps * bs,
            train_batch_size_samples=bs,
            lr=tc.lr,
            lr_end=tc.lr,
            dead_feature_window=tc.dead_feature_window,
            logger=LoggingConfig(log_to_wandb=False),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            LensTrainer(cfg, sae, iter(batches)).fit()

    t = interleaved_medians({"lookingglass": ours, "SAELens": theirs}, args.repeats, warmup=1)
    tok = steps * bs
    return [
        arch,
        f"{args.d_sae}",
        f"{tok / t['SAELens']:.0f}",
        f"{tok / t['lookingglass']:.0f}",
        f"{t['SAELens'] / t['lookingglass']:.2f}",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--acts", help="a harvest folder (default: Gaussian activations)")
    p.add_argument("--hook")
    p.add_argument("--d-in", type=int, default=576)
    p.add_argument("--d-sae", type=int, default=2304)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-norm", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--archs", nargs="+", default=["topk", "standard", "jumprelu"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    batches, source = _batches(args)
    load_before = os.getloadavg()[0]
    rows = [bench(arch, batches, args) for arch in args.archs]
    print(
        f"\nSAE training, {source}, {len(batches)} steps x {batches[0].shape[0]} tokens, "
        f"{args.threads} thread(s), median of {args.repeats}; load average "
        f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}\n"
    )
    print(
        format_table(
            rows, ["architecture", "d_sae", "SAELens tok/s", "lookingglass tok/s", "ratio"]
        )
    )


if __name__ == "__main__":
    main()
