"""Analysis operations on the real model: lookingglass against the plain loop a user
writes with PyTorch hooks on Hugging Face's model (SDPA), on the same weights.

* activation patching sweeps: residual stream by layer x position, and each head's
  output (all positions) by layer x head; the HF loop runs one forward per variant
  (timed on a sample of variants, scaled to the sweep), ours `lookingglass.patching`;
* attribution patching (residual stream by layer x position): forward and backward
  passes counted on both sides;
* direct logit attribution of every head at the last position.
Each op reports both sides' seconds and the largest difference of their results.
"""

from __future__ import annotations

import random

import torch
from common import interleaved_medians


class PassCounter:
    """Counts a model's forward passes and the backward passes reaching its logits."""

    def __init__(self, model, logits_module) -> None:
        self.forward = self.backward = 0
        self.handles = [
            model.register_forward_pre_hook(lambda *_: self._count("forward")),
            logits_module.register_full_backward_pre_hook(lambda *_: self._count("backward")),
        ]

    def _count(self, kind: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)

    def remove(self) -> dict:
        for handle in self.handles:
            handle.remove()
        return dict(forward=self.forward, backward=self.backward)


def prompts(tokenizer, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Clean and corrupted token ids (one name swapped), and the two answer tokens."""
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupted = "When Mary and John went to the store, Mary gave a drink to"
    ids = [tokenizer(t, return_tensors="pt").input_ids[:, -n_tokens:] for t in (clean, corrupted)]
    # The last id: the tokenizer may prepend a BOS token.
    mary, john = (tokenizer(" " + n).input_ids[-1] for n in ("Mary", "John"))
    assert mary != john and ids[0].shape == ids[1].shape, "the prompts must differ by one name"
    return ids[0], ids[1], mary, john


def run(hf, ours, n_tokens: int, hf_sample: int, repeats: int, threads: int) -> list[dict]:
    """Every analysis op, timed side by side."""
    torch.set_num_threads(threads)
    clean, corrupted, mary, john = prompts(ours.tokenizer, n_tokens)

    def metric(logits):
        return logits[:, -1, mary].mean() - logits[:, -1, john].mean()

    layers = hf.model.layers
    results = [
        _patching(hf, ours, clean, corrupted, metric, layers, hf_sample, repeats, "resid"),
        _patching(hf, ours, clean, corrupted, metric, layers, hf_sample, repeats, "heads"),
        _attribution(hf, ours, clean, corrupted, metric, layers, repeats),
        _dla(hf, ours, clean, mary, john, layers, repeats),
    ]
    for r in results:
        r.update(threads=threads, tokens=clean.shape[1])
        print(
            f"[analysis] {r['op']}: HF loop {r['hf_s']:.2f} s, ours {r['ours_s']:.2f} s "
            f"({r['hf_s'] / r['ours_s']:.1f}x), max diff {r['max_abs_diff']:.1e}",
            flush=True,
        )
    return results


def _patching(hf, ours, clean, corrupted, metric, layers, hf_sample, repeats, what) -> dict:
    from lookingglass import patching

    cfg = ours.cfg
    d_head = cfg.d_head
    with torch.no_grad():
        if what == "resid":
            clean_hidden = hf(clean, output_hidden_states=True).hidden_states
            variants = [(i, pos) for i in range(cfg.n_layers) for pos in range(clean.shape[1])]
            names = lambda n: n.endswith("hook_resid_pre")  # noqa: E731
            fn = patching.get_act_patch_resid_pre
        else:
            clean_z = _inputs_of(hf, clean, [layer.self_attn.o_proj for layer in layers])
            variants = [(i, head) for i in range(cfg.n_layers) for head in range(cfg.n_heads)]
            names = lambda n: n.endswith("attn.hook_z")  # noqa: E731
            fn = patching.get_act_patch_attn_head_out_all_pos
    sample = random.Random(0).sample(variants, min(hf_sample, len(variants)))
    found = {}

    def hf_variant(layer: int, index: int) -> float:
        if what == "resid":

            def patch(module, args, kwargs):
                hidden = args[0].clone()
                hidden[:, index] = clean_hidden[layer][:, index]
                return (hidden, *args[1:]), kwargs

            handle = layers[layer].register_forward_pre_hook(patch, with_kwargs=True)
        else:

            def patch(module, args):
                z = args[0].clone()
                span = slice(index * d_head, (index + 1) * d_head)
                z[..., span] = clean_z[layer][..., span]
                return (z,)

            handle = layers[layer].self_attn.o_proj.register_forward_pre_hook(patch)
        try:
            return metric(hf(corrupted).logits).item()
        finally:
            handle.remove()

    def hf_loop():
        found["hf"] = torch.tensor([hf_variant(*v) for v in sample])

    def ours_sweep():
        counter = PassCounter(ours, ours.unembed)
        _, cache = ours.run_with_cache(clean, names_filter=names)
        found["ours"] = fn(ours, corrupted, cache, metric)
        found["passes"] = counter.remove()

    with torch.no_grad():
        medians = interleaved_medians(dict(hf=hf_loop, ours=ours_sweep), repeats, warmup=0)
    ours_values = torch.stack([found["ours"][v] for v in sample])
    label = "resid_pre (layer x pos)" if what == "resid" else "head out, all pos (layer x head)"
    return dict(
        op=f"activation patching sweep, {label}",
        variants=len(variants),
        hf_timed_on=len(sample),
        hf_s=medians["hf"] * len(variants) / len(sample),
        ours_s=medians["ours"],
        max_abs_diff=(ours_values - found["hf"]).abs().max().item(),
        passes=dict(hf=dict(forward=len(variants) + 1, backward=0), ours=found["passes"]),
    )


def _inputs_of(model, tokens, modules) -> list[torch.Tensor]:
    """The input of each of `modules` in a forward pass of `tokens`."""
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda _, args: seen.append(args[0])) for m in modules]
    try:
        model(tokens)
    finally:
        for h in handles:
            h.remove()
    return seen


def _attribution(hf, ours, clean, corrupted, metric, layers, repeats) -> dict:
    from lookingglass.interventions.attribution_patching import get_attr_patch_resid_pre

    found, passes = {}, {}

    def hf_attr():
        counter = PassCounter(hf, hf.lm_head)
        with torch.no_grad():
            clean_hidden = hf(clean, output_hidden_states=True).hidden_states[:-1]
        out = hf(corrupted, output_hidden_states=True)
        hidden = out.hidden_states[:-1]
        grads = torch.autograd.grad(metric(out.logits), hidden)
        pairs = zip(clean_hidden, hidden, grads, strict=True)
        found["hf"] = torch.stack([((c - h.detach()) * g).sum(-1)[0] for c, h, g in pairs])
        passes["hf"] = counter.remove()

    def ours_attr():
        counter = PassCounter(ours, ours.unembed)
        with torch.no_grad():
            _, cache = ours.run_with_cache(clean, names_filter=lambda n: n.endswith("resid_pre"))
        found["ours"] = get_attr_patch_resid_pre(ours, corrupted, cache, metric)
        passes["ours"] = counter.remove()

    medians = interleaved_medians(dict(hf=hf_attr, ours=ours_attr), repeats, warmup=1)
    return dict(
        op="attribution patching, resid_pre (layer x pos)",
        variants=found["ours"].numel(),
        hf_s=medians["hf"],
        ours_s=medians["ours"],
        max_abs_diff=(found["ours"] - found["hf"]).abs().max().item(),
        passes=passes,
    )


def _dla(hf, ours, tokens, mary, john, layers, repeats) -> dict:
    """Each head's direct contribution to logit(Mary) - logit(John) at the last position."""
    cfg = ours.cfg
    found = {}
    direction = hf.lm_head.weight[mary] - hf.lm_head.weight[john]

    def hf_dla():
        modules = [layer.self_attn.o_proj for layer in layers] + [hf.model.norm]
        *zs, final_resid = _inputs_of(hf, tokens, modules)
        last = final_resid[0, -1]
        norm = hf.model.norm
        scale = torch.rsqrt(last.pow(2).mean() + norm.variance_epsilon)
        rows = []
        for layer, z in zip(layers, zs, strict=True):
            W_O = layer.self_attn.o_proj.weight.view(cfg.d_model, cfg.n_heads, cfg.d_head)
            per_head = torch.einsum("hd,mhd->hm", z[0, -1].view(cfg.n_heads, cfg.d_head), W_O)
            rows.append((per_head * scale * norm.weight) @ direction)
        found["hf"] = torch.stack(rows)

    def ours_dla():
        _, cache = ours.run_with_cache(
            tokens, names_filter=lambda n: n.endswith(("hook_z", "ln_final.hook_scale"))
        )
        stack = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)
        answer = ours.tokens_to_residual_directions(torch.tensor([mary, john]))
        found["ours"] = (stack[:, 0] @ (answer[0] - answer[1])).view(cfg.n_layers, cfg.n_heads)

    with torch.no_grad():
        medians = interleaved_medians(dict(hf=hf_dla, ours=ours_dla), repeats, warmup=1)
    return dict(
        op="direct logit attribution, every head at the last position",
        variants=cfg.n_layers * cfg.n_heads,
        hf_s=medians["hf"],
        ours_s=medians["ours"],
        max_abs_diff=(found["ours"] - found["hf"]).abs().max().item(),
        passes=dict(hf=dict(forward=1), ours=dict(forward=1)),
    )
