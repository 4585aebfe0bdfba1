"""A real investigation with the experiment bench: find the heads of the shipped model
that carry its in-context learning, by ablation, and test that they do, against a
control of the same layer and size.

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
the difference cancels that.

Which heads to test is decided by ablation, not by thresholds on attention scores: each
head is knocked out alone on *selection* prompts, and it joins the group if its own
effect on the improvement clears the noise, i.e. a one-sided sign-flip permutation test
and a paired t-test both reject "no effect" at 0.05 divided by the number of heads
(Bonferroni). The induction and previous-token scores are reported beside, as
descriptions, not as the criterion. The hypothesis is then tested on fresh *test*
prompts, layer by layer:

1. Knocking out the layer's group removes most of the improvement (a significant drop
   that keeps under half of it).
   At most half a layer is tested (the screened heads with the largest effects), so
   that a control of the same size exists.
2. Knocking out a control, as many other heads of the same layer (seeded random choice),
   leaves it intact: no significant change in either direction. A control that is
   itself significant is reported as such, and then the group's effect is not specific.
"""

from __future__ import annotations

import argparse
import random
from contextlib import nullcontext
from pathlib import Path

import torch

from lookingglass import HookedTransformer, ModelConfig, plot
from lookingglass.analysis import induction_scores, previous_token_scores, repeated_random_tokens
from lookingglass.bench import Bench, PlotSpec
from lookingglass.bench.hypothesis import paired_test

ALPHA = 0.05


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

    # 1. Describe the heads: each one's induction score (attention from each token of the
    #    second repeat to the token after its first occurrence) and previous-token score.
    #    These describe; they do not choose the heads tested below.
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
    def describe_heads(seq_len: int, n_seq: int = 20):
        scores = induction_scores(model, seq_len=seq_len, n_seq=n_seq)
        previous = previous_token_scores(model, seq_len=seq_len, n_seq=n_seq)
        order = scores.flatten().argsort(descending=True)
        ranked = [(int(i) // cfg.n_heads, int(i) % cfg.n_heads) for i in order]
        return {"induction_scores": scores, "previous_token_scores": previous, "ranked": ranked}

    found = describe_heads(args.seq_len)
    induction, previous = found["induction_scores"], found["previous_token_scores"]
    print("induction scores:\n", induction)
    print("previous-token scores:\n", previous)
    plot.heatmap(
        induction,
        x_labels=[f"H{h}" for h in range(cfg.n_heads)],
        title="Induction score per head",
        x_title="head",
        y_title="layer",
        colorscale="blues",
    ).to_html(out / "induction_scores.html")

    # 2. Look at the head with the highest induction score on one repeated sequence: a
    #    stripe one below the diagonal offset by seq_len - 1.
    example = repeated_random_tokens(model, args.seq_len, 1, seed=123)
    strings = token_strings(model, example[0])
    layer, head = found["ranked"][0]
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

    # The metric, per prompt: first-repeat loss minus second-repeat loss, with some heads
    # knocked out (zero ablation). Loss entry i predicts token i + 1; after the BOS,
    # tokens 1..seq_len are the first repeat, and the second repeat's tokens after its
    # first are predictable by induction.
    surgery = bench.tool("surgery")
    first_repeat, second_repeat = slice(0, args.seq_len), slice(-(args.seq_len - 1), None)

    def losses_with(tokens: torch.Tensor, ablate: list) -> torch.Tensor:
        with torch.no_grad(), surgery.knock_out_heads(ablate) if ablate else nullcontext():
            return model(tokens, return_type="loss", loss_per_token=True)[0]

    def improvement(prompt: torch.Tensor, ablate: list) -> float:
        losses = losses_with(prompt, ablate)
        return float(losses[first_repeat].mean() - losses[second_repeat].mean())

    # 3. Screen every head alone on selection prompts (never reused for the test):
    #    does knocking it out lower the improvement by more than noise? The noise level
    #    comes from the sign-flip permutation test (and a t-test), Bonferroni-corrected.
    selection = [
        repeated_random_tokens(model, args.seq_len, 1, seed=2000 + i) for i in range(args.prompts)
    ]
    all_heads = [(lay, h) for lay in range(cfg.n_layers) for h in range(cfg.n_heads)]

    @bench.log_experiment
    def screen_heads(n_prompts: int, alpha: float = ALPHA):
        clean = [improvement(p, []) for p in selection[:n_prompts]]
        rows = {}
        for lay, h in all_heads:
            ablated = [improvement(p, [(lay, h)]) for p in selection[:n_prompts]]
            test = paired_test(  # the CI is not used here: few bootstrap resamples
                clean, ablated, ("clean", f"L{lay}H{h}"), alternative="less", n_bootstrap=200
            )
            rows[f"L{lay}H{h}"] = {
                "removed": 1 - test.mean_b / test.mean_a,
                "permutation_p": test.permutation_pvalue,
                "t_p": test.t_pvalue,
                "in_group": test.significant(alpha / len(all_heads)),
            }
        group = [hd for hd in all_heads if rows[f"L{hd[0]}H{hd[1]}"]["in_group"]]
        return {"heads": rows, "group": group, "alpha_per_head": alpha / len(all_heads)}

    screen = screen_heads(args.prompts)
    print(
        f"\nscreening: each head knocked out alone on {args.prompts} selection prompts; in the "
        f"group if p < {screen['alpha_per_head']:.4f} (0.05 / {len(all_heads)} heads), "
        "permutation and t-test:"
    )
    for lay, h in all_heads:
        row = screen["heads"][f"L{lay}H{h}"]
        print(
            f"  L{lay}H{h}: removes {row['removed']:6.1%} of the improvement, permutation p "
            f"{row['permutation_p']:.2g}, t-test p {row['t_p']:.2g}; induction score "
            f"{induction[lay, h]:.3f}, previous-token score {previous[lay, h]:.3f}"
            f"{'  -> group' if row['in_group'] else ''}"
        )

    # 4. The test, on fresh prompts, layer by layer: the layer's group against a control
    #    of as many other heads of the same layer.
    prompts = [
        repeated_random_tokens(model, args.seq_len, 1, seed=1000 + i) for i in range(args.prompts)
    ]
    generator = random.Random(0)
    verdicts = {}
    for lay in range(cfg.n_layers):
        screened = [hd for hd in screen["group"] if hd[0] == lay]
        if not screened:
            continue
        # A control needs as many other heads of the layer: test at most half the layer,
        # the screened heads with the largest effects alone.
        screened.sort(key=lambda hd: -screen["heads"][f"L{hd[0]}H{hd[1]}"]["removed"])
        group = sorted(screened[: cfg.n_heads // 2])
        others = [(lay, h) for h in range(cfg.n_heads) if (lay, h) not in group]
        label = ", ".join(f"L{hd[0]}H{hd[1]}" for hd in group)
        if len(screened) > len(group):
            left = ", ".join(f"L{hd[0]}H{hd[1]}" for hd in screened[len(group) :])
            print(
                f"\nlayer {lay}: {len(screened)} heads matter alone; testing the "
                f"{len(group)} largest, [{label}]; [{left}] also matter and may land in "
                "the control."
            )
        control = sorted(generator.sample(others, len(group)))
        conditions = {"group": group, "control": control}

        def in_context_improvement(prompt, condition: str, heads=conditions) -> float:
            return improvement(prompt, heads.get(condition, []))

        results = {}
        for condition, alternative in (("group", "less"), ("control", "two-sided")):
            test = bench.test_hypothesis(
                prompts,
                ("clean", condition),
                alternative=alternative,
                name=f"layer{lay}_{condition}_ablated",
            )(in_context_improvement)
            results[condition] = test()
            plot.hypothesis_result(results[condition]).to_html(
                out / f"hypothesis_layer{lay}_{condition}.html"
            )
        # The last tested layer's group test as an image (layer 1: the induction heads).
        plot.hypothesis_result(results["group"]).to_image(out / "hypothesis_induction.png")
        group_test, control_test = results["group"], results["control"]
        kept = group_test.mean_b / group_test.mean_a
        control_kept = control_test.mean_b / control_test.mean_a
        necessary = group_test.significant() and kept < 0.5
        control_intact = not control_test.significant()
        verdicts[lay] = (
            "supported"
            if necessary and control_intact
            else "not specific (the control matters too)"
            if necessary
            else "not supported"
        )
        control_label = ", ".join(f"L{hd[0]}H{hd[1]}" for hd in control)
        print(f"\nlayer {lay}:\n{group_test}\n{control_test}")
        print(
            f"layer {lay}: group [{label}] keeps {kept:.0%} (p = "
            f"{group_test.permutation_pvalue:.2g}); control [{control_label}] keeps "
            f"{control_kept:.0%} (p = {control_test.permutation_pvalue:.2g}, "
            f"{'intact' if control_intact else 'significant: not intact'}): {verdicts[lay]}"
        )

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

    tested = {lay: v for lay, v in verdicts.items() if v != "untested"}
    supported = bool(tested) and all(v == "supported" for v in tested.values())
    print(
        f"\nHypothesis (the heads that matter alone, {screen['group']}, carry the in-context "
        f"improvement, and as many other heads of their layer do not): "
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
