"""A real investigation with the experiment bench: find the induction heads of the shipped
model, ablate them, test the hypothesis that they matter for in-context loss, and plot.

    python examples/bench_tutorial.py                 # the shipped model, lookingglass-attn2
    python examples/bench_tutorial.py --random        # a random model (checks the script runs)
    lookingglass experiments list --store reports/bench_tutorial/experiments.db

Every step is a logged experiment: its source, arguments, results, the model's identity
and a seed are kept in the store, so the investigation can be listed, compared and
reloaded later (`lookingglass experiments show RUN`).

The question. An induction head attends from a token to the token that followed an
earlier copy of it and copies that token forward, so on a sequence of random tokens
repeated twice it makes the second repeat predictable. The measure is the in-context
improvement of each prompt: its mean loss on the first repeat minus its mean loss on the
second. Knocking a head out also changes the loss everywhere (the first repeat too), and
the difference cancels that. The hypothesis has three parts, each a paired test over
the same prompts:

1. Knocking out the induction heads removes most of the improvement.
2. So does knocking out the previous-token heads of layer 0: an induction head finds its
   target through keys that a previous-token head wrote (K-composition), so the circuit
   needs both.
3. Knocking out the remaining heads (neither kind) leaves the improvement mostly intact.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

import torch

from lookingglass import HookedTransformer, ModelConfig, plot
from lookingglass.analysis import induction_scores, previous_token_scores, repeated_random_tokens
from lookingglass.bench import Bench, PlotSpec

PREVIOUS_TOKEN_THRESHOLD = 0.3
CONTROL_THRESHOLD = 0.2


def load_model(random: bool) -> HookedTransformer:
    """The shipped two-layer attention-only model, or a random model of that shape."""
    if random:
        cfg = ModelConfig(
            n_layers=2,
            d_model=64,
            n_heads=4,
            d_head=16,
            n_ctx=128,
            d_vocab=512,
            attn_only=True,
            seed=0,
            model_name="random-attn2",
        )
        return HookedTransformer(cfg).eval()
    return HookedTransformer.from_pretrained("lookingglass-attn2").eval()


def token_strings(model: HookedTransformer, tokens: torch.Tensor) -> list[str]:
    """Tokens as text when the model has a tokenizer, else their ids."""
    if model.tokenizer is None:
        return [str(int(t)) for t in tokens]
    return model.to_str_tokens(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--random", action="store_true", help="use a random model instead of the shipped one"
    )
    parser.add_argument(
        "--out", default="reports/bench_tutorial", help="folder for the store and the plots"
    )
    parser.add_argument(
        "--seq-len", type=int, default=24, help="length of each random half of a prompt"
    )
    parser.add_argument("--prompts", type=int, default=40, help="prompts in the hypothesis tests")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    model = load_model(args.random)
    bench = Bench(model, store=out / "experiments.db")
    cfg = model.cfg
    print(
        f"model {cfg.model_name}: {cfg.n_layers} layers x {cfg.n_heads} heads; "
        f"store {bench.store.url}"
    )

    # 1. Find the induction heads: attention from each token of the second repeat to the
    #    token after its first occurrence, averaged (`analysis.induction_scores`).
    @bench.plot_results(
        PlotSpec(
            "heatmap",
            data_keys={"values": "induction_scores"},
            name="induction_scores",
            options={
                "title": "Induction score per head",
                "x_title": "head",
                "y_title": "layer",
                "colorscale": "blues",
            },
        )
    )
    def find_induction_heads(seq_len: int, n_seq: int = 20, threshold: float = 0.3):
        scores = induction_scores(model, seq_len=seq_len, n_seq=n_seq)
        previous = previous_token_scores(model, seq_len=seq_len, n_seq=n_seq)
        order = scores.flatten().argsort(descending=True)
        ranked = [(int(i) // cfg.n_heads, int(i) % cfg.n_heads) for i in order]
        heads = [h for h in ranked if scores[h] > threshold] or ranked[:1]
        return {
            "induction_scores": scores,
            "previous_token_scores": previous,
            "heads": heads,
            "ranked": ranked,
        }

    found = find_induction_heads(args.seq_len)
    heads = found["heads"]
    previous = found["previous_token_scores"]
    # Previous-token heads: layer-0 heads that attend to the preceding token. The control:
    # every head that is neither kind (both scores low).
    previous_heads = [
        (0, h) for h in range(cfg.n_heads) if previous[0, h] > PREVIOUS_TOKEN_THRESHOLD
    ]
    control = [
        (layer, head)
        for layer in range(cfg.n_layers)
        for head in range(cfg.n_heads)
        if found["induction_scores"][layer, head] < CONTROL_THRESHOLD
        and previous[layer, head] < CONTROL_THRESHOLD
    ]
    print(
        f"induction heads (score > 0.3): {heads}; previous-token heads "
        f"(score > {PREVIOUS_TOKEN_THRESHOLD}): {previous_heads}; control heads (both scores "
        f"< {CONTROL_THRESHOLD}): {control}"
    )
    print("induction scores:\n", found["induction_scores"])
    print("previous-token scores:\n", previous)
    plot.heatmap(
        found["induction_scores"],
        x_labels=[f"H{h}" for h in range(cfg.n_heads)],
        title="Induction score per head",
        x_title="head",
        y_title="layer",
        colorscale="blues",
    ).to_html(out / "induction_scores.html")

    # 2. Look at the strongest induction head on one repeated sequence: a stripe one
    #    below the diagonal offset by seq_len - 1.
    example = repeated_random_tokens(model, args.seq_len, 1, seed=123)
    strings = token_strings(model, example[0])
    layer, head = heads[0]
    pattern = bench.tool("attention").patterns(example, layer)
    fig = plot.attention_patterns(
        pattern,
        strings,
        layer=layer,
        heads=[head],
        title=f"L{layer}H{head} on a repeated random sequence",
    )
    fig.to_html(out / "induction_head_attention.html")
    fig.to_image(out / "induction_head_attention.png")

    # 3. Per-token loss on that sequence, clean and with the induction heads knocked out.
    surgery = bench.tool("surgery")

    @bench.plot_results(
        PlotSpec("loss_per_token", data_keys={"tokens": "tokens", "losses": "losses"})
    )
    def per_token_loss(tokens: torch.Tensor, ablate: list):
        with torch.no_grad(), surgery.knock_out_heads(ablate) if ablate else nullcontext():
            losses = model(tokens, return_type="loss", loss_per_token=True)[0]
        return {"tokens": token_strings(model, tokens[0]), "losses": losses}

    clean = per_token_loss(example, [])
    ablated = per_token_loss(example, heads)
    # Loss entry i predicts token i + 1. After the BOS, tokens 1..seq_len are the first
    # repeat; the second repeat's tokens after its first are predictable by induction.
    first_repeat, second_repeat = slice(0, args.seq_len), slice(-(args.seq_len - 1), None)
    for name, run in (("clean", clean), ("induction heads ablated", ablated)):
        first, second = run["losses"][first_repeat].mean(), run["losses"][second_repeat].mean()
        print(f"{name}: loss on the first repeat {first:.3f}, on the second repeat {second:.3f}")
    plot.loss_per_token(clean["tokens"], clean["losses"], title="Loss per token (clean)").to_html(
        out / "loss_clean.html"
    )
    plot.loss_per_token(
        ablated["tokens"], ablated["losses"], title="Loss per token (induction heads ablated)"
    ).to_html(out / "loss_ablated.html")

    # 4. The hypothesis (module doc), over many prompts: the in-context improvement
    #    (first-repeat loss minus second-repeat loss) under each condition.
    prompts = [
        repeated_random_tokens(model, args.seq_len, 1, seed=1000 + i) for i in range(args.prompts)
    ]
    knocked_out = {
        "clean": [],
        "induction heads ablated": heads,
        "previous-token heads ablated": previous_heads,
        "control heads ablated": control,
    }

    def in_context_improvement(prompt: torch.Tensor, condition: str) -> float:
        ablate = knocked_out[condition]
        with torch.no_grad(), surgery.knock_out_heads(ablate) if ablate else nullcontext():
            losses = model(prompt, return_type="loss", loss_per_token=True)[0]
        return float(losses[first_repeat].mean() - losses[second_repeat].mean())

    results = {}
    for condition in list(knocked_out)[1:]:
        if not knocked_out[condition]:
            print(f"\n{condition}: no such heads in this model; skipped.")
            continue
        test = bench.test_hypothesis(
            prompts,
            ("clean", condition),
            alternative="less",
            name=f"in_context_improvement_{condition.split()[0].replace('-', '_')}",
        )(in_context_improvement)
        results[condition] = test()
        print(f"\n{results[condition]}")
        slug = condition.split()[0]
        plot.hypothesis_result(results[condition]).to_html(out / f"hypothesis_{slug}.html")
    plot.hypothesis_result(results["induction heads ablated"]).to_image(
        out / "hypothesis_induction.png"
    )
    clean_improvement = results["induction heads ablated"].mean_a
    print(f"\nclean in-context improvement: {clean_improvement:.3f} nats/token")
    kept = {c: r.mean_b / clean_improvement for c, r in results.items()}
    for condition, fraction in kept.items():
        print(f"  {condition}: keeps {fraction:.0%} of it")

    # 5. Every head's own effect on the in-context loss, and a profile of the model.
    @bench.plot_results(
        PlotSpec(
            "head_attribution",
            name="ablation_effects",
            options={"title": "Loss increase when each head is zero-ablated"},
        )
    )
    def ablation_effects(tokens: torch.Tensor):
        return bench.tool("attention").head_ablation_effects(tokens)

    effects = ablation_effects(torch.cat(prompts[:8]))
    print("\nloss increase per ablated head:\n", effects)
    forward = bench.profile_model(lambda: model(torch.cat(prompts)), name="profile_forward")
    profile = forward()
    print("\n" + profile.table(sort="self_ms", top=8))

    removed = [
        c
        for c in ("induction heads ablated", "previous-token heads ablated")
        if c in results and results[c].significant() and kept[c] < 0.5
    ]
    control_kept = kept.get("control heads ablated")
    supported = len(removed) == 2 and (control_kept is None or control_kept > 0.75)
    print(
        f"\nHypothesis (induction heads {heads} and previous-token heads {previous_heads} "
        f"carry the in-context improvement; the other heads {control} do not): "
        f"{'supported' if supported else 'not supported'}."
    )
    print(
        f"Plots in {out}/; the runs: "
        f"`lookingglass experiments list --store {out / 'experiments.db'}`"
    )
    for run in bench.runs():
        print(
            f"  run {run.run_id:>3} {run.name:<40} {run.kind:<10} {run.status} {run.duration:.2f}s "
            f"plots: {', '.join(run.attachments) or '-'}"
        )
    bench.close()


if __name__ == "__main__":
    main()
