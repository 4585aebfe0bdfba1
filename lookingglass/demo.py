"""`lookingglass demo`: what a researcher looks for first in a model, measured, offline.

On the default model (SmolLM2-135M-Instruct, `DEFAULT_MODEL`; the shipped toy models
`lookingglass-attn2` / `lookingglass-mlp4` with `--model`) it measures and prints:

1. Induction heads: the prefix-matching score (Olsson et al., 2022) of every head on a
   batch of repeated random tokens after a BOS (`analysis.heads.induction_scores`), the
   top heads named with their score, beside each its induction attention and its
   previous-token attention on a natural prompt whose phrases repeat, and the
   uniform-attention baseline.
2. Indirect-object identification: on the built-in prompt set
   (`analysis.ioi_prompts`), the logit difference IO - S, its spread and accuracy, next
   to the ABC control (the repeated subject replaced by a third name); and the direct
   logit attribution of every head to IO - S (`analysis.ioi`): the heads that write it
   and those that write against it, beside the average head.
3. The logit lens on the first IOI prompt: where across the layers the IO name rises.

and writes one self-contained HTML report (plotly inlined, no network) with the
attention patterns of the named heads, the IOI attribution and the logit lens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.analysis.ioi import IOIAttribution
from lookingglass.analysis.ioi_prompts import IOIPrompt
from lookingglass.utils import write_atomic

# The model `lookingglass demo` looks at when no --model is given.
DEFAULT_MODEL = "smollm2-135m"

# A natural prompt whose phrases repeat, so induction heads have something to do.
DEFAULT_PROMPT = (
    "The committee on urban transport met on Tuesday in the old library on Harlow Street "
    "to discuss the new bicycle lanes. After two hours, the chair closed the meeting "
    "without a vote. The committee on urban transport met again on Friday in the old "
    "library on Harlow"
)
# Genesis 5:12-16, from the corpus the shipped toy models were trained on.
TOY_PROMPT = (
    "And Cainan lived seventy years and begat Mahalaleel:\n"
    "And Cainan lived after he begat Mahalaleel eight hundred and forty years, "
    "and begat sons and daughters:\n"
    "And all the days of Cainan were nine hundred and ten years: and he died.\n"
    "And Mahalaleel lived sixty and five years, and begat Jared:\n"
    "And Mahalaleel lived after he begat"
)
INDUCTION_SEQ_LEN = 45  # random tokens per half
INDUCTION_BATCH = 6
INDUCTION_SEED = 0
INDUCTION_THRESHOLD = 0.4
MAX_INDUCTION_HEADS = 8
IOI_PAIRS_PER_TEMPLATE = 2
TOP_IOI_HEADS = 5
TOP_K = 5


@dataclass
class InductionFindings:
    """Per-head scores `[n_layers, n_heads]` and the heads named as induction heads.

    `tokens` is the repeated-random-token batch the prefix-matching score was measured
    on; `named` the heads scoring above `INDUCTION_THRESHOLD`, best first (at most
    `MAX_INDUCTION_HEADS`); `uniform_baseline` the score of a head attending uniformly.
    """

    tokens: Int[Tensor, "batch pos"]
    prefix_matching: Float[Tensor, "n_layers n_heads"]
    on_prompt: Float[Tensor, "n_layers n_heads"]
    previous_token: Float[Tensor, "n_layers n_heads"]
    named: list[tuple[int, int]]
    uniform_baseline: float


@dataclass
class IOIFindings:
    """The IOI prompts, their attribution and the ABC control's, and the heads that
    write most for (`positive`) and against (`negative`) IO - S on average."""

    prompts: list[IOIPrompt]
    result: IOIAttribution
    control: IOIAttribution
    positive: list[tuple[int, int]]
    negative: list[tuple[int, int]]


def induction_batch(model) -> Int[Tensor, "batch pos"]:
    """The demo's repeated random tokens: BOS, then 45 random tokens twice, 6 rows."""
    from lookingglass.analysis.heads import repeated_random_tokens

    return repeated_random_tokens(
        model, INDUCTION_SEQ_LEN, INDUCTION_BATCH, INDUCTION_SEED, prepend_bos=True
    )


@torch.no_grad()
def measure_induction(model, prompt_tokens: Int[Tensor, "1 pos"]) -> InductionFindings:
    """Prefix-matching, on-prompt induction and previous-token scores of every head."""
    from lookingglass.analysis.heads import induction_scores, previous_token_scores

    tokens = induction_batch(model)
    prefix_matching = induction_scores(
        model, INDUCTION_SEQ_LEN, INDUCTION_BATCH, INDUCTION_SEED, prepend_bos=True
    )
    order = prefix_matching.flatten().argsort(descending=True).tolist()
    n_heads = model.cfg.n_heads
    named = [
        (i // n_heads, i % n_heads)
        for i in order[:MAX_INDUCTION_HEADS]
        if prefix_matching.flatten()[i] > INDUCTION_THRESHOLD
    ]
    first_query = tokens.shape[1] - INDUCTION_SEQ_LEN
    uniform = torch.arange(first_query, tokens.shape[1]).add(1).reciprocal().mean()
    return InductionFindings(
        tokens=tokens,
        prefix_matching=prefix_matching,
        on_prompt=_prompt_induction(model, prompt_tokens),
        previous_token=previous_token_scores(model, prompt_tokens),
        named=named,
        uniform_baseline=float(uniform),
    )


def measure_ioi(model) -> IOIFindings:
    """The IOI logit difference and its per-head attribution, with the ABC control.

    Raises:
        InputError: if the tokenizer has fewer than 3 of the built-in single-token names.
    """
    from lookingglass.analysis.ioi import ioi_attribution
    from lookingglass.analysis.ioi_prompts import ioi_prompts

    prompts = ioi_prompts(model.tokenizer, IOI_PAIRS_PER_TEMPLATE)
    io, s = [p.io for p in prompts], [p.s for p in prompts]
    result = ioi_attribution(model, [p.text for p in prompts], io, s)
    control = ioi_attribution(model, [p.abc_text for p in prompts], io, s)
    mean = result.head_dla.mean(0).flatten()
    n_heads = model.cfg.n_heads
    positive = [divmod(i, n_heads) for i in mean.argsort(descending=True)[:TOP_IOI_HEADS].tolist()]
    negative = [divmod(i, n_heads) for i in mean.argsort()[:TOP_IOI_HEADS].tolist()]
    return IOIFindings(prompts, result, control, positive, negative)


def run_demo(
    model_name: str = DEFAULT_MODEL,
    prompt: str | None = None,
    out_path: str | Path = "reports/demo.html",
) -> int:
    """Run the demo; returns a process exit code (0 on success).

    Args:
        model_name: a known model name or a model folder.
        prompt: the natural text to look at induction on (default: `DEFAULT_PROMPT`, or
            `TOY_PROMPT` for the shipped toy models).
        out_path: where to write the HTML report.
    """
    from lookingglass.analysis.logit_lens import logit_lens
    from lookingglass.demo_report import report_html
    from lookingglass.errors import InputError
    from lookingglass.model.transformer import HookedTransformer

    started = time.perf_counter()
    if prompt is None:
        prompt = TOY_PROMPT if str(model_name).startswith("lookingglass-") else DEFAULT_PROMPT
    model = HookedTransformer.from_pretrained(model_name, device="cpu")
    loaded = time.perf_counter() - started
    with torch.no_grad():
        tokens = model.to_tokens(prompt)
        top = model(tokens)[0, -1].softmax(-1).topk(TOP_K)
        predictions = [
            (model.to_single_str_token(int(t)), float(p)) for p, t in zip(*top, strict=True)
        ]
        induction = measure_induction(model, tokens)
        try:
            ioi = measure_ioi(model)
            lens_text = ioi.prompts[0].text
            lens_target = int(ioi.result.io_tokens[0])
        except InputError as error:
            ioi, ioi_skipped = None, str(error)
            lens_text, lens_target = prompt, None
        lens_tokens = model.to_tokens(lens_text)
        _, lens_cache = model.run_with_cache(
            lens_tokens,
            names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_resid_post")),
        )
        lens = logit_lens(model, lens_cache, target_tokens=lens_target, top_k=3)

    cfg = model.cfg
    print(
        f"model: {model_name} ({cfg.n_layers} layers x {cfg.n_heads} heads = "
        f"{cfg.n_layers * cfg.n_heads} heads, d_model {cfg.d_model}, vocabulary {cfg.d_vocab}; "
        f"loaded in {loaded:.1f} s)"
    )
    print(f"prompt ({tokens.shape[1]} tokens): ...{prompt[-80:]!r}")
    print("top next-token predictions:")
    for token, p in predictions:
        print(f"  {token!r:>16}  {p:6.1%}")
    _print_induction(induction)
    if ioi is None:
        print(f"indirect-object identification skipped: {ioi_skipped}")
    else:
        _print_ioi(ioi)
    _print_lens(model, lens, lens_text, lens_target)

    report = report_html(
        model, str(model_name), prompt, predictions, induction, ioi, lens_text, lens
    )
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


# ------------------------------------------------------------------ text summary
def _print_induction(found: InductionFindings) -> None:
    scores = found.prefix_matching
    n_above = int((scores > INDUCTION_THRESHOLD).sum())
    print(
        f"prefix-matching score of all {scores.numel()} heads (attention from each token of the "
        f"second half to the token after its first copy; {found.tokens.shape[0]} rows of BOS + "
        f"2 x {INDUCTION_SEQ_LEN} random tokens): median {float(scores.median()):.3f}, "
        f"a head attending uniformly would score {found.uniform_baseline:.3f}; "
        f"{n_above} heads above {INDUCTION_THRESHOLD}."
    )
    if found.named:
        print(
            f"induction heads (prefix-matching > {INDUCTION_THRESHOLD}; 'on prompt': induction "
            "attention on the prompt above; 'previous-token': attention to the previous "
            "position there):"
        )
        for layer, head in found.named:
            print(
                f"  L{layer}H{head}  induction {float(scores[layer, head]):.2f}  "
                f"on prompt {float(found.on_prompt[layer, head]):.2f}  "
                f"previous-token {float(found.previous_token[layer, head]):.2f}"
            )
        return
    best = scores.flatten().argsort(descending=True)[:3].tolist()
    n_heads = scores.shape[1]
    listed = ", ".join(
        f"L{i // n_heads}H{i % n_heads} {float(scores.flatten()[i]):.2f}" for i in best
    )
    print(f"no head has a prefix-matching score above {INDUCTION_THRESHOLD} (highest: {listed}).")


def _print_ioi(ioi: IOIFindings) -> None:
    result, control = ioi.result, ioi.control
    abba = torch.tensor([p.order == "ABBA" for p in ioi.prompts])
    n_templates = len({p.template for p in ioi.prompts})
    diff = result.logit_diff
    print(
        f"indirect-object identification ({len(ioi.prompts)} prompts: {n_templates} templates x "
        f"{IOI_PAIRS_PER_TEMPLATE} name pairs x ABBA/BABA, e.g. {ioi.prompts[0].text!r} -> "
        f"{' ' + ioi.prompts[0].io!r}):"
    )
    print(
        f"  logit(IO) - logit(S): mean {float(diff.mean()):.2f} (std {float(diff.std()):.2f}; "
        f"ABBA {float(diff[abba].mean()):.2f}, BABA {float(diff[~abba].mean()):.2f}); "
        f"IO above S in {result.accuracy:.1%} of prompts"
    )
    print(
        f"  control, S not repeated (ABC: a third name instead): mean "
        f"{float(control.logit_diff.mean()):.2f} (std {float(control.logit_diff.std()):.2f}); "
        f"IO above S in {control.accuracy:.1%}"
    )
    heads = result.head_dla.mean(0)
    control_heads = control.head_dla.mean(0)
    print(
        "  direct logit attribution to IO - S at the last position (each head's output over the "
        "final norm's scale, mean over prompts; the average head: "
        f"{float(heads.mean()):+.2f} +- {float(heads.std()):.2f}):"
    )
    for label, chosen in (("writes IO - S ", ioi.positive), ("writes against", ioi.negative)):
        cells = "  ".join(
            f"L{l}H{h} {float(heads[l, h]):+.2f} (ABC {float(control_heads[l, h]):+.2f})"
            for l, h in chosen
        )
        print(f"    {label}  {cells}")
    total = result.head_dla.sum((1, 2)) + result.other_dla.sum(1)
    mlp = [i for i, name in enumerate(result.other_labels) if name.endswith("mlp_out")]
    print(
        f"  all components sum to {float(total.mean()):.2f} (= the logit difference): heads "
        f"{float(result.head_dla.sum((1, 2)).mean()):+.2f}, MLPs "
        f"{float(result.other_dla[:, mlp].sum(1).mean()):+.2f}, the rest "
        f"{float(result.other_dla.sum(1).mean() - result.other_dla[:, mlp].sum(1).mean()):+.2f}"
    )


def _print_lens(model, lens, text: str, target: int | None) -> None:
    what = (
        f", rank and probability of {model.to_single_str_token(target)!r}"
        if target is not None
        else ""
    )
    print(f"logit lens on {text!r} (last position: top token by layer{what}):")
    n = len(lens.labels)
    for i in sorted({*range(0, n, max(1, n // 6)), *range(max(0, n - 4), n)}):
        top = model.to_single_str_token(int(lens.top_tokens[i, 0, -1, 0]))
        line = f"  {lens.labels[i]:>10}  {top!r:>12} {float(lens.top_probs[i, 0, -1, 0]):6.1%}"
        if target is not None and lens.target_ranks is not None:
            rank, prob = int(lens.target_ranks[i, 0, -1]), float(lens.target_probs[i, 0, -1])
            line += f"   rank {rank:>5}  {prob:6.1%}"
        print(line)
