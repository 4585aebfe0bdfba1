"""`lookingglass demo`: look inside the shipped default model, offline, in seconds.

Loads `lookingglass-attn2` (a 2-layer attention-only model trained on the King James
Bible by `lookingglass train-default`), runs it on a prompt in which a span repeats,
prints the top next-token predictions and the induction heads it finds, and writes one
self-contained HTML report (plotly.js inlined, no network): the attention pattern of
every head, the logit lens, and the direct logit attribution of the predicted token to
each head and to the embeddings.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import torch

from lookingglass.utils import write_atomic

# Genesis 5:12-16 (the corpus's own text). "begat Mahalaleel ... begat Mahalaleel" and
# "begat Jared: ... he begat" let an induction head predict " Jared".
DEFAULT_PROMPT = (
    "And Cainan lived seventy years and begat Mahalaleel:\n"
    "And Cainan lived after he begat Mahalaleel eight hundred and forty years, "
    "and begat sons and daughters:\n"
    "And all the days of Cainan were nine hundred and ten years: and he died.\n"
    "And Mahalaleel lived sixty and five years, and begat Jared:\n"
    "And Mahalaleel lived after he begat"
)
INDUCTION_THRESHOLD = 0.4
TOP_K = 5


def run_demo(
    model_name: str = "lookingglass-attn2",
    prompt: str | None = None,
    out_path: str | Path = "reports/demo.html",
) -> int:
    """Run the demo; returns a process exit code (0 on success).

    Args:
        model_name: a shipped model name or a model folder.
        prompt: the text to analyze (default: `DEFAULT_PROMPT`).
        out_path: where to write the HTML report.
    """
    from lookingglass.analysis.heads import induction_scores, previous_token_scores
    from lookingglass.model.transformer import HookedTransformer

    started = time.perf_counter()
    prompt = prompt or DEFAULT_PROMPT
    model = HookedTransformer.from_pretrained(model_name, device="cpu")
    with torch.no_grad():
        tokens = model.to_tokens(prompt)
        str_tokens = model.to_str_tokens(tokens)
        logits, cache = model.run_with_cache(tokens)
        top = logits[0, -1].softmax(-1).topk(TOP_K)
        predictions = [
            (model.to_single_str_token(int(t)), float(p)) for p, t in zip(*top, strict=True)
        ]
        scores = {
            "induction": induction_scores(model),
            "on prompt": _prompt_induction(model, tokens),
            "previous token": previous_token_scores(model),
        }
    found = _heads_above(scores, INDUCTION_THRESHOLD)

    print(
        f"model: {model_name} ({model.cfg.n_layers} layers, {model.cfg.n_heads} heads each, "
        f"d_model {model.cfg.d_model}, vocabulary {model.cfg.d_vocab})"
    )
    print(f"prompt ({tokens.shape[1]} tokens): ...{prompt[-80:]!r}")
    print("top next-token predictions:")
    for token, p in predictions:
        print(f"  {token!r:>16}  {p:6.1%}")
    if found:
        print(
            f"induction heads (score > {INDUCTION_THRESHOLD}: prefix-matching on repeated random "
            "tokens, or induction attention on this prompt):"
        )
        for layer, head in found:
            print(
                f"  L{layer}H{head}  induction {float(scores['induction'][layer, head]):.2f}  "
                f"on prompt {float(scores['on prompt'][layer, head]):.2f}  "
                f"previous-token {float(scores['previous token'][layer, head]):.2f}"
            )
    else:
        print(f"no head has an induction score above {INDUCTION_THRESHOLD}.")

    with torch.no_grad():
        report = _report_html(model, model_name, prompt, str_tokens, cache, predictions, scores)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, report)
    print(f"report: {out.resolve()}  ({time.perf_counter() - started:.1f} s)")
    return 0


def _prompt_induction(model, tokens: torch.Tensor) -> torch.Tensor:
    """`text_induction_attention` on the prompt (zeros when no token repeats)."""
    from lookingglass.errors import InputError
    from lookingglass.training.dynamics import text_induction_attention

    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    try:
        return text_induction_attention(model, tokens, ignore=(bos,) if bos is not None else ())
    except InputError:
        return torch.zeros(model.cfg.n_layers, model.cfg.n_heads)


def _heads_above(scores: dict[str, torch.Tensor], threshold: float) -> list[tuple[int, int]]:
    """Heads whose induction or prompt-induction score exceeds `threshold`, best first."""
    best = torch.maximum(scores["induction"], scores["on prompt"])
    heads = [tuple(lh) for lh in (best > threshold).nonzero().tolist()]
    return sorted(heads, key=lambda lh: -float(best[lh]))


# ------------------------------------------------------------------------ report
def _report_html(model, model_name, prompt, str_tokens, cache, predictions, scores) -> str:
    import plotly.offline

    from lookingglass import plot
    from lookingglass.analysis.logit_lens import logit_lens

    top_token = predictions[0][0]
    top_id = model.to_single_token(top_token)
    figures = []
    for layer in range(model.cfg.n_layers):
        figures.append(
            plot.attention_patterns(cache["pattern", layer][0], str_tokens, layer=layer, cols=2)
        )
    lens = logit_lens(model, cache, top_k=3)
    figures.append(
        plot.logit_lens(
            lens,
            str_tokens,
            model=model,
            title="Logit lens: the top token read from the residual stream entering each layer",
        )
    )
    heads, head_labels = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    head_attrs = cache.logit_attrs(heads, top_id, pos_slice=-1)[:, 0]
    figures.append(
        plot.head_attribution(
            head_attrs.reshape(model.cfg.n_layers, model.cfg.n_heads),
            title=f"Direct logit attribution of each head to {top_token!r} (last position)",
        )
    )
    parts, part_labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    figures.append(
        plot.logit_attribution(
            cache.logit_attrs(parts, top_id, pos_slice=-1)[:, 0],
            part_labels,
            title=f"Direct logit attribution of each component to {top_token!r} (last position)",
        )
    )

    rows = "".join(
        f"<tr><td>{html.escape(repr(t))}</td><td>{p:.1%}</td></tr>" for t, p in predictions
    )
    head_rows = "".join(
        f"<tr><td>L{l}H{h}</td>"
        + "".join(f"<td>{float(v[l, h]):.3f}</td>" for v in scores.values())
        + "</tr>"
        for l in range(model.cfg.n_layers)
        for h in range(model.cfg.n_heads)
    )
    head_header = "".join(f"<th>{html.escape(name)}</th>" for name in scores)
    divs = "\n".join(f.plotly.to_html(include_plotlyjs=False, full_html=False) for f in figures)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lookingglass demo: {html.escape(model_name)}</title>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}
pre{{background:#f6f6f6;padding:.5em;white-space:pre-wrap}}</style></head>
<body><h1>lookingglass demo: {html.escape(model_name)}</h1>
<p>{model.cfg.n_layers} layers, {model.cfg.n_heads} heads per layer, d_model {model.cfg.d_model},
vocabulary {model.cfg.d_vocab}, context {model.cfg.n_ctx}. Everything below was computed offline
from the shipped weights; this file needs no network.</p>
<h2>Prompt ({len(str_tokens)} tokens)</h2><pre>{html.escape(prompt)}</pre>
<h2>Top next-token predictions</h2><table><tr><th>token</th><th>probability</th></tr>{rows}</table>
<h2>Head scores</h2><p><i>induction</i>: prefix-matching score on repeated uniformly random
tokens (attention from a repeated token to the token after its first occurrence);
<i>on prompt</i>: the attention each head puts right after earlier occurrences of the current
token in this prompt; <i>previous token</i>: attention to the previous position. Heads above
{INDUCTION_THRESHOLD} on either induction measure count as induction heads.</p>
<table><tr><th>head</th>{head_header}</tr>{head_rows}</table>
<h2>Attention patterns, logit lens, direct logit attribution</h2>
{divs}
</body></html>
"""
