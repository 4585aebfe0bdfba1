"""The HTML report of `lookingglass demo`: one self-contained file (plotly.js inlined).

Sections: the model and its predictions; induction heads (the prefix-matching score of
every head, a table of the named heads, their attention patterns on the prompt);
indirect-object identification (logit differences, the per-head attribution heatmap and
its ABC control, the attention of the top heads on the first IOI prompt, the other
components); the logit lens.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence

import torch

_STYLE = """body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}
pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}"""


@torch.no_grad()
def report_html(
    model, model_name: str, prompt: str, predictions, induction, ioi, lens_text: str, lens
) -> str:
    """The report as an HTML string (see the module docstring); `induction` and `ioi`
    are the demo's `InductionFindings` and `IOIFindings` (`ioi` may be None)."""
    import plotly.offline

    from lookingglass import plot

    cfg = model.cfg
    heads = [f"H{h}" for h in range(cfg.n_heads)]
    layers = [f"L{l}" for l in range(cfg.n_layers)]
    sections = [
        f"<h1>lookingglass demo: {html.escape(model_name)}</h1>"
        f"<p>{cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, vocabulary "
        f"{cfg.d_vocab}. Everything below was measured offline on this model; this file needs "
        "no network.</p>",
        f"<h2>Prompt</h2><pre>{html.escape(prompt)}</pre><h3>Top next-token predictions</h3>"
        + _table(["token", "probability"], [[repr(t), f"{p:.1%}"] for t, p in predictions]),
    ]

    shown = induction.named or _top(induction.prefix_matching, 3)
    sections.append(
        "<h2>Induction heads</h2><p><i>prefix-matching</i>: attention from each token of the "
        "second half of repeated random tokens (BOS + 2 x "
        f"{(induction.tokens.shape[1] - 1) // 2}, {induction.tokens.shape[0]} rows) to the token "
        f"after its first copy; a head attending uniformly scores "
        f"{induction.uniform_baseline:.3f}. <i>on prompt</i>: the attention each head puts right "
        "after earlier occurrences of the current token in the prompt; <i>previous token</i>: "
        "attention to the previous position in the prompt.</p>"
        + _table(
            ["head", "prefix-matching", "on prompt", "previous token"],
            [
                [f"L{l}H{h}"] + [f"{float(s[l, h]):.3f}" for s in _induction_scores(induction)]
                for l, h in shown
            ],
        )
        + _figure(
            plot.heatmap(
                induction.prefix_matching,
                x_labels=heads,
                y_labels=layers,
                title="Prefix-matching score of every head",
                x_title="head",
                y_title="layer",
                value_name="score",
            )
        )
        + _patterns(model, model.to_tokens(prompt), shown, "on the prompt")
    )
    if ioi is not None:
        sections.append(_ioi_section(model, ioi, heads, layers))
    lens_str_tokens = model.to_str_tokens(lens_text)
    color = "target_prob" if lens.target_probs is not None else "prob"
    sections.append(
        "<h2>Logit lens</h2><p>The residual stream entering each layer, through the final norm "
        "and the unembedding, at every position of the prompt below"
        + (" (colour: the probability of the indirect object)" if color == "target_prob" else "")
        + f".</p><pre>{html.escape(lens_text)}</pre>"
        + _figure(
            plot.logit_lens(
                lens,
                lens_str_tokens,
                model=model,
                color=color,
                title="Logit lens: the top token read from the residual stream entering each layer",
            )
        )
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lookingglass demo: {html.escape(model_name)}</title>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
<style>{_STYLE}</style></head>
<body>{"".join(sections)}</body></html>
"""


def _ioi_section(model, ioi, heads: list[str], layers: list[str]) -> str:
    from lookingglass import plot

    result, control = ioi.result, ioi.control
    mean_dla, control_dla = result.head_dla.mean(0), control.head_dla.mean(0)
    first = ioi.prompts[0]
    rows = [
        [
            name,
            f"{float(r.logit_diff.mean()):.3f}",
            f"{float(r.logit_diff.std()):.3f}",
            f"{r.accuracy:.1%}",
        ]
        for name, r in (("IOI prompts", result), ("ABC control (S not repeated)", control))
    ]
    head_rows = [
        [
            f"L{l}H{h}",
            side,
            f"{float(mean_dla[l, h]):+.3f}",
            f"{float(result.head_dla[:, l, h].std()):.3f}",
            f"{float(control_dla[l, h]):+.3f}",
        ]
        for side, chosen in (("for IO", ioi.positive), ("against IO", ioi.negative))
        for l, h in chosen
    ]
    return (
        f"<h2>Indirect-object identification</h2><p>{len(ioi.prompts)} prompts (ABBA and BABA "
        f"orders), e.g. <code>{html.escape(first.text)}</code> &rarr; "
        f"<code>{html.escape(' ' + first.io)}</code>. Logit difference logit(IO) - logit(S) at the "
        "last position; accuracy: the fraction with IO above S.</p>"
        + _table(["prompts", "mean logit diff", "std", "accuracy"], rows)
        + "<p>Direct logit attribution: each head's output at the last position divided by the "
        "final norm's scale, projected on W_U[:, IO] - W_U[:, S]; mean over prompts. "
        f"The average head: {float(mean_dla.mean()):+.3f} +- {float(mean_dla.std()):.3f}.</p>"
        + _table(["head", "writes", "mean DLA", "std over prompts", "ABC control"], head_rows)
        + _figure(
            plot.head_attribution(mean_dla, title="Direct logit attribution to IO - S per head")
        )
        + _figure(
            plot.head_attribution(control_dla, title="The same on the ABC control (S not repeated)")
        )
        + _patterns(
            model,
            model.to_tokens(first.text),
            ioi.positive + ioi.negative,
            "on the first IOI prompt",
        )
        + _figure(
            plot.logit_attribution(
                result.other_dla.T,
                result.other_labels,
                title="Direct logit attribution to IO - S of the other components (mean)",
            )
        )
    )


def _patterns(model, tokens, chosen: Sequence[tuple[int, int]], where: str) -> str:
    """The attention patterns of the `chosen` heads on `tokens`, a figure per layer."""
    from lookingglass import plot

    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, head in chosen:
        by_layer[layer].append(head)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in by_layer]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    str_tokens = model.to_str_tokens(tokens)
    return "".join(
        _figure(
            plot.attention_patterns(
                cache["pattern", layer][0],
                str_tokens,
                layer=layer,
                heads=sorted(set(head_list)),
                cols=2,
                title=f"Attention patterns {where}, layer {layer}",
            )
        )
        for layer, head_list in sorted(by_layer.items())
    )


def _induction_scores(induction):
    return induction.prefix_matching, induction.on_prompt, induction.previous_token


def _top(scores: torch.Tensor, k: int) -> list[tuple[int, int]]:
    return [
        divmod(i, scores.shape[1]) for i in scores.flatten().argsort(descending=True)[:k].tolist()
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(figure) -> str:
    return figure.plotly.to_html(include_plotlyjs=False, full_html=False)
