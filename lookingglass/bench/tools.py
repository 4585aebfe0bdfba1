"""The bench's built-in tools: thin, documented wrappers over the analysis functions.

Each tool is built from the bench's model the first time it is used
(`bench.tool("logit_lens")`, or injected with `@bench.use_tools("logit_lens")`). Every
method that runs the model caches only the activations it needs and runs without
gradients. `input` is text, a list of texts, or token ids `[batch, pos]`.

| name                | what it gives                                                   |
|---------------------|-----------------------------------------------------------------|
| `attention`         | patterns (softmaxed scores), scores, top attended tokens, head ablation |
| `logit_lens`        | the logit lens (`analysis.logit_lens`) and per-layer logits     |
| `logit_attribution` | direct logit attribution per component and per head             |
| `residual`          | the residual stream decomposed and accumulated, with norms      |
| `write_read`        | composition scores: which heads write what a later head reads   |
| `causal_tracing`    | activation patching sweeps (`interventions.patching`)           |
| `circuits`          | full OV and QK circuits, copying scores                         |
| `neurons`           | MLP neuron activations and their top-activating tokens          |
| `sparsity`          | activation frequency, kurtosis, feature norms and interference  |
| `surgery`           | delete or replace a layer, knock out heads (reversible)         |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lookingglass.analysis import circuits
from lookingglass.analysis.logit_lens import LogitLensResult, logit_lens
from lookingglass.bench.surgery import Head, SurgeryTool, knock_out_heads
from lookingglass.errors import InputError

Input = str | list[str] | Int[Tensor, "batch pos"]
Reference = str | list[str] | Int[Tensor, "ref_batch ref_pos"]


class Tool:
    """Base class of the built-in tools: holds the model, runs it with a narrow cache."""

    def __init__(self, model) -> None:
        self.model = model

    def tokens(self, input: Input) -> Int[Tensor, "batch pos"]:
        """Token ids `[batch, pos]` for text or tokens."""
        if isinstance(input, Tensor):
            return input if input.dim() == 2 else input[None]
        return self.model.to_tokens(input)

    @torch.no_grad()
    def run_with_cache(self, input: Input, names: Sequence[str] | Callable[[str], bool]):
        """`(logits, cache)` caching only `names`."""
        return self.model.run_with_cache(self.tokens(input), names_filter=names)

    def _layers(self, layer: int | None) -> list[int]:
        n_layers = self.model.cfg.n_layers
        if layer is None:
            return list(range(n_layers))
        if not -n_layers <= layer < n_layers:
            raise InputError(f"layer {layer} is out of range for {n_layers} layers.")
        return [layer % n_layers]


class AttentionTool(Tool):
    """Attention patterns, scores, top attended tokens, and head ablation."""

    @torch.no_grad()
    def patterns(self, input: Input, layer: int | None = None) -> Tensor:
        """Attention patterns (the softmax of the masked scores, read from `hook_pattern`):
        `[batch, head, dest, src]` for one layer, `[layer, batch, head, dest, src]` for all."""
        return self._stacked(input, "pattern", layer)

    @torch.no_grad()
    def scores(self, input: Input, layer: int | None = None) -> Tensor:
        """Attention scores before the softmax (`hook_attn_scores`; -inf where masked),
        shaped as `patterns`."""
        return self._stacked(input, "attn_scores", layer)

    def _stacked(self, input: Input, name: str, layer: int | None) -> Tensor:
        layers = self._layers(layer)
        names = [f"blocks.{l}.attn.hook_{name}" for l in layers]
        _, cache = self.run_with_cache(input, names)
        values = torch.stack([cache[n] for n in names])
        return values if layer is None else values[0]

    @torch.no_grad()
    def top_attended(
        self, input: Input, layer: int, head: int, k: int = 3, batch: int = 0
    ) -> list[dict]:
        """For each destination position, the `k` source positions the head attends to
        most: `[{"dest": pos, "dest_token": str, "sources": [(pos, token, weight), ...]}]`."""
        tokens = self.tokens(input)
        pattern = self.patterns(tokens, layer)[batch, head]
        strings = _str_tokens(self.model, tokens[batch])
        rows = []
        for dest in range(pattern.shape[0]):
            weights, sources = pattern[dest, : dest + 1].topk(min(k, dest + 1))
            rows.append(
                {
                    "dest": dest,
                    "dest_token": strings[dest],
                    "sources": [
                        (int(s), strings[int(s)], float(w))
                        for w, s in zip(weights, sources, strict=True)
                    ],
                }
            )
        return rows

    @torch.no_grad()
    def ablate_heads(
        self,
        input: Input,
        heads: Sequence[Head],
        mode: str = "zero",
        reference: Reference | None = None,
        return_type: str = "logits",
    ) -> Any:
        """The model's output with `heads` knocked out (see `surgery.knock_out_heads`)."""
        tokens = self.tokens(input)
        with knock_out_heads(
            self.model, heads, mode, reference if reference is not None else tokens
        ):
            return self.model(tokens, return_type=return_type)

    @torch.no_grad()
    def head_ablation_effects(
        self, input: Input, mode: str = "zero"
    ) -> Float[Tensor, "n_layers n_heads"]:
        """Change in the mean next-token loss when each head alone is knocked out."""
        tokens = self.tokens(input)
        base = self.model(tokens, return_type="loss")
        cfg = self.model.cfg
        effects = torch.zeros(cfg.n_layers, cfg.n_heads)
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                effects[layer, head] = (
                    self.ablate_heads(tokens, [(layer, head)], mode, tokens, "loss") - base
                )
        return effects


class LogitLensTool(Tool):
    """The logit lens: each layer's residual stream read through the final norm and W_U."""

    @torch.no_grad()
    def run(
        self, input: Input, target_tokens: Any = None, top_k: int = 5, incl_mid: bool = False
    ) -> LogitLensResult:
        """`analysis.logit_lens` on a fresh run (summaries per layer, position and row)."""
        _, cache = self.run_with_cache(input, _resid_names(incl_mid))
        return logit_lens(self.model, cache, target_tokens, top_k=top_k, incl_mid=incl_mid)

    @torch.no_grad()
    def layer_logits(
        self, input: Input, incl_mid: bool = False
    ) -> tuple[Float[Tensor, "layer batch pos d_vocab"], list[str]]:
        """Full lens logits of every layer (`ln_final(resid) @ W_U + b_U`) and their labels;
        the last entry equals the model's logits."""
        _, cache = self.run_with_cache(input, _resid_names(incl_mid))
        resid, labels = cache.accumulated_resid(
            incl_mid=incl_mid, apply_ln=True, return_labels=True
        )
        return resid @ self.model.W_U + self.model.b_U, labels


def _resid_names(incl_mid: bool) -> Callable[[str], bool]:
    wanted = ("hook_resid_pre", "hook_resid_post") + (("hook_resid_mid",) if incl_mid else ())
    return lambda name: name.endswith(wanted)


class LogitAttributionTool(Tool):
    """Direct logit attribution: how much each component writes along a token's (or a
    token difference's) unembedding direction, after the final norm's scaling."""

    @torch.no_grad()
    def by_component(
        self, input: Input, tokens: Any, incorrect_tokens: Any = None, pos: int = -1
    ) -> tuple[Float[Tensor, "component batch"], list[str]]:
        """Attribution of embed, pos_embed and every attention and MLP output at `pos`."""
        _, cache = self.run_with_cache(
            input,
            lambda n: (
                n.startswith("hook_")
                or "hook_resid" in n
                or n.endswith(("hook_attn_out", "hook_mlp_out", "hook_scale"))
            ),
        )
        stack, labels = cache.decompose_resid(pos_slice=pos, return_labels=True)
        return cache.logit_attrs(stack, tokens, incorrect_tokens, pos_slice=pos), labels

    @torch.no_grad()
    def by_head(
        self, input: Input, tokens: Any, incorrect_tokens: Any = None, pos: int = -1
    ) -> Float[Tensor, "n_layers n_heads batch"]:
        """Attribution of every head's output at `pos`, `[n_layers, n_heads, batch]`."""
        _, cache = self.run_with_cache(
            input, lambda n: n.endswith(("hook_z", "hook_scale", "hook_resid_post"))
        )
        stack = cache.stack_head_results(pos_slice=pos)
        attrs = cache.logit_attrs(stack, tokens, incorrect_tokens, pos_slice=pos)
        return attrs.reshape(self.model.cfg.n_layers, self.model.cfg.n_heads, *attrs.shape[1:])


class ResidualTool(Tool):
    """The residual stream taken apart (what wrote it) and as it accumulates."""

    @torch.no_grad()
    def decompose(
        self, input: Input, layer: int | None = None, pos: int | None = None, apply_ln: bool = False
    ) -> tuple[Tensor, list[str]]:
        """`(stack, labels)`: the stream entering `layer` (None: the unembed) as embed,
        pos_embed and each earlier attention / MLP output; the stack sums to the stream."""
        _, cache = self.run_with_cache(
            input,
            lambda n: (
                "hook_resid" in n
                or n.endswith(
                    ("hook_embed", "hook_pos_embed", "hook_attn_out", "hook_mlp_out", "hook_scale")
                )
            ),
        )
        return cache.decompose_resid(layer, apply_ln=apply_ln, pos_slice=pos, return_labels=True)

    @torch.no_grad()
    def accumulated(
        self, input: Input, pos: int | None = None, incl_mid: bool = False
    ) -> tuple[Tensor, list[str]]:
        """`(stack, labels)`: resid_pre of every layer, then the final resid_post."""
        _, cache = self.run_with_cache(input, _resid_names(incl_mid))
        return cache.accumulated_resid(incl_mid=incl_mid, pos_slice=pos, return_labels=True)

    @torch.no_grad()
    def norms(
        self, input: Input, pos: int = -1
    ) -> tuple[Float[Tensor, "component batch"], list[str]]:
        """The L2 norm of each component's write at `pos`."""
        stack, labels = self.decompose(input, pos=pos)
        return stack.norm(dim=-1), labels


class WriteReadTool(Tool):
    """Read/write analysis between heads: a head in a later layer *reads* (with its Q, K
    or V side) the subspace an earlier head *writes* (with its OV circuit) when their
    composition score `||W_OV W_read||_F / (||W_OV||_F ||W_read||_F)` is high."""

    @torch.no_grad()
    def composition_scores(
        self, mode: Literal["q", "k", "v"] = "k"
    ) -> Float[Tensor, "n_layers n_heads n_layers n_heads"]:
        """Scores of every writer (first two dims) into every later reader (last two);
        kept until a weight changes."""
        mode = _mode(mode)
        key = (mode, _weights_key(self.model))
        if getattr(self, "_cached", (None,))[0] != key:
            self._cached = (key, circuits.all_composition_scores(self.model, mode))
        return self._cached[1]

    def identify_write_heads(
        self, read_layer: int, read_head: int, mode: str = "k", top_k: int = 5
    ) -> list[tuple[int, int, float]]:
        """The earlier heads that write most into what head (read_layer, read_head)
        reads: `[(layer, head, score), ...]`, best first."""
        scores = self.composition_scores(mode)[:read_layer, :, read_layer, read_head]
        return _top(scores, top_k)

    def identify_read_heads(
        self, write_layer: int, write_head: int, mode: str = "k", top_k: int = 5
    ) -> list[tuple[int, int, float]]:
        """The later heads that read most of what head (write_layer, write_head) writes."""
        scores = self.composition_scores(mode)[write_layer, write_head]
        scores = scores.clone()
        scores[: write_layer + 1] = float("nan")
        return _top(scores, top_k)


def _weights_key(model) -> tuple:
    # Changes when any parameter is replaced or edited in place.
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def _mode(mode: str) -> str:
    if mode.upper() not in ("Q", "K", "V"):
        raise InputError(f"mode must be 'q', 'k' or 'v', got {mode!r}.")
    return mode.upper()


def _top(scores: Float[Tensor, "layers heads"], top_k: int) -> list[tuple[int, int, float]]:
    flat = scores.flatten()
    valid = (~flat.isnan()).nonzero().flatten()
    order = valid[flat[valid].argsort(descending=True)][:top_k]
    n_heads = scores.shape[-1]
    return [(int(i) // n_heads, int(i) % n_heads, float(flat[i])) for i in order]


class CausalTracingTool(Tool):
    """Causal tracing = activation patching: patch clean activations into a corrupted run
    and measure how much of the clean behaviour each one restores."""

    SWEEPS = {
        "resid_pre": "get_act_patch_resid_pre",
        "resid_mid": "get_act_patch_resid_mid",
        "attn_out": "get_act_patch_attn_out",
        "mlp_out": "get_act_patch_mlp_out",
        "heads": "get_act_patch_attn_head_out_all_pos",
        "heads_by_pos": "get_act_patch_attn_head_out_by_pos",
        "blocks": "get_act_patch_block_every",
    }

    @torch.no_grad()
    def trace(
        self,
        clean: Input,
        corrupted: Input,
        metric: Callable[[Tensor], Any],
        what: str = "resid_pre",
        batch_size: int | None = None,
    ) -> Tensor:
        """Patch each `what` ("resid_pre", "resid_mid", "attn_out", "mlp_out": `[n_layers,
        pos]`; "heads": `[n_layers, n_heads]`; "heads_by_pos": `[n_layers, pos, n_heads]`;
        "blocks": `[3, n_layers, pos]`) from the clean run into the corrupted run and
        return `metric(logits)` for each."""
        from lookingglass.interventions import patching

        if what not in self.SWEEPS:
            raise InputError(f"what must be one of {sorted(self.SWEEPS)}, got {what!r}.")
        clean_tokens, corrupted_tokens = self.tokens(clean), self.tokens(corrupted)
        if clean_tokens.shape != corrupted_tokens.shape:
            raise InputError(
                f"Clean and corrupted inputs must have the same shape, got "
                f"{tuple(clean_tokens.shape)} and {tuple(corrupted_tokens.shape)}."
            )
        with torch.no_grad():
            _, clean_cache = self.model.run_with_cache(clean_tokens)
        sweep = getattr(patching, self.SWEEPS[what])
        return sweep(self.model, corrupted_tokens, clean_cache, metric, batch_size=batch_size)

    @torch.no_grad()
    def logit_diff_metric(
        self, clean: Input, corrupted: Input, answer: Any, wrong: Any
    ) -> Callable[[Tensor], Tensor]:
        """A metric for `trace`: the last position's logit difference answer - wrong,
        scaled so the corrupted run scores 0 and the clean run 1."""
        answer_id, wrong_id = (
            self.model.to_single_token(t) if isinstance(t, str) else int(t) for t in (answer, wrong)
        )

        def logit_diff(logits: Tensor) -> Tensor:
            last = logits[:, -1]
            return (last[:, answer_id] - last[:, wrong_id]).mean()

        clean_diff = logit_diff(self.model(self.tokens(clean)))
        corrupted_diff = logit_diff(self.model(self.tokens(corrupted)))
        return lambda logits: (logit_diff(logits) - corrupted_diff) / (clean_diff - corrupted_diff)


class CircuitsTool(Tool):
    """Weights-only circuits: full OV and QK circuits through the embedding and
    unembedding (`analysis.circuits`), as FactoredMatrix objects."""

    @torch.no_grad()
    def ov(self, layer: int, head: int):
        """`W_E W_V W_O W_U` of one head, `[d_vocab, d_vocab_out]` (factored)."""
        return circuits.full_ov_circuit(self.model)[layer, head]

    @torch.no_grad()
    def qk(self, layer: int, head: int, positional: bool = False):
        """`W_E W_Q W_K^T W_E^T` of one head (with `positional`, `W_pos` on both sides)."""
        embed = self.model.W_pos if positional else None
        return circuits.full_qk_circuit(self.model, embed, embed)[layer, head]

    @torch.no_grad()
    def copying_scores(self) -> Float[Tensor, "n_layers n_heads"]:
        """The OV copying score of every head (1: copies tokens; -1: suppresses them)."""
        return circuits.ov_copying_scores(self.model)

    @torch.no_grad()
    def top_ov_tokens(
        self, layer: int, head: int, token: int | str, k: int = 5
    ) -> list[tuple[int, float]]:
        """The `k` output logits a head raises most when it attends to `token`."""
        token_id = self.model.to_single_token(token) if isinstance(token, str) else int(token)
        attn = self.model.blocks[layer].attn
        row = self.model.W_E[token_id] @ attn.W_V[head] @ attn.W_O[head] @ self.model.W_U
        values, ids = row.topk(k)
        return [(int(i), float(v)) for v, i in zip(values, ids, strict=True)]


class NeuronTool(Tool):
    """MLP neurons: activations (`mlp.hook_post`) and the tokens that excite them most."""

    @torch.no_grad()
    def activations(self, input: Input, layer: int) -> Float[Tensor, "batch pos d_mlp"]:
        """Neuron activations of `layer`."""
        if self.model.cfg.attn_only:
            raise InputError("This model is attention-only: it has no MLP neurons.")
        name = f"blocks.{self._layers(layer)[0]}.mlp.hook_post"
        return self.run_with_cache(input, [name])[1][name]

    def top_activating(
        self, texts: Sequence[str], layer: int, neuron: int, k: int = 5, context: int = 5
    ) -> list[dict]:
        """The `k` (text, position) pairs where the neuron fires most, with the token and
        `context` tokens before it: `[{"activation", "text", "pos", "token", "context"}]`."""
        found = []
        for index, text in enumerate(texts):
            tokens = self.tokens(text)
            acts = self.activations(tokens, layer)[0, :, neuron]
            strings = _str_tokens(self.model, tokens[0])
            for pos, value in enumerate(acts.tolist()):
                found.append(
                    {
                        "activation": value,
                        "text": index,
                        "pos": pos,
                        "token": strings[pos],
                        "context": "".join(strings[max(0, pos - context) : pos + 1]),
                    }
                )
        return sorted(found, key=lambda row: -row["activation"])[:k]


class SparsityTool(Tool):
    """Superposition and sparsity statistics of activations and weights."""

    @torch.no_grad()
    def activation_stats(
        self, inputs: Input | Sequence[str], hook_name: str, threshold: float = 0.0
    ) -> dict[str, Tensor]:
        """Per feature (last dim of `hook_name`'s activation, over every row and position):
        `frequency` (fraction of positions above `threshold`), `mean`, `std`, `kurtosis`
        (Pearson's, 3 for a Gaussian; heavy tails mean rare large values), `max`."""
        acts = []
        for item in [inputs] if isinstance(inputs, str | Tensor) else inputs:
            _, cache = self.run_with_cache(item, [hook_name])
            value = cache[hook_name]
            acts.append(value.reshape(-1, value.shape[-1]))
        samples = torch.cat(acts).double()
        mean, std = samples.mean(0), samples.std(0, unbiased=False)
        centered = samples - mean
        kurtosis = (centered**4).mean(0) / (centered**2).mean(0) ** 2
        return {
            "frequency": (samples > threshold).double().mean(0),
            "mean": mean,
            "std": std,
            "kurtosis": kurtosis,
            "max": samples.max(0).values,
            "n_samples": torch.tensor(len(samples)),
        }

    def residual_kurtosis(self, input: Input, layer: int) -> Float[Tensor, " d_model"]:
        """Kurtosis of each residual-stream basis direction entering `layer` (large values
        suggest a privileged basis / outlier dimensions)."""
        return self.activation_stats(input, f"blocks.{layer}.hook_resid_pre")["kurtosis"]

    @torch.no_grad()
    def feature_norms(self, layer: int) -> dict[str, Tensor]:
        """Per neuron: the norm of its input weights (`W_in[:, n]`) and output weights
        (`W_out[n]`)."""
        block = self.model.blocks[self._layers(layer)[0]]
        if not hasattr(block, "mlp"):
            raise InputError("This model is attention-only: it has no MLP weights.")
        return {
            "w_in": block.mlp.W_in.detach().norm(dim=0),
            "w_out": block.mlp.W_out.detach().norm(dim=1),
        }

    @torch.no_grad()
    def interference(self, layer: int) -> dict[str, Tensor]:
        """How much the neurons' output directions overlap (superposition): per neuron
        the largest |cosine| with another neuron's `W_out` row, and its feature
        dimensionality `||W_i||^4 / sum_j (W_i . W_j)^2` (Elhage et al. 2022: 1 when the
        direction is orthogonal to all others, smaller when shared)."""
        W = self.model.blocks[self._layers(layer)[0]].mlp.W_out.detach().double()
        gram = W @ W.T
        norms = W.norm(dim=1)
        cosine = gram / (norms[:, None] * norms[None, :])
        cosine.fill_diagonal_(0.0)
        dimensionality = norms**4 / (gram**2).sum(dim=1)
        return {"max_abs_cosine": cosine.abs().max(dim=1).values, "dimensionality": dimensionality}


def _str_tokens(model, tokens: Int[Tensor, " pos"]) -> list[str]:
    if getattr(model, "tokenizer", None) is None:
        return [str(int(t)) for t in tokens]
    return model.to_str_tokens(tokens)


BUILTIN_TOOLS: dict[str, type] = {
    "attention": AttentionTool,
    "logit_lens": LogitLensTool,
    "logit_attribution": LogitAttributionTool,
    "residual": ResidualTool,
    "write_read": WriteReadTool,
    "causal_tracing": CausalTracingTool,
    "circuits": CircuitsTool,
    "neurons": NeuronTool,
    "sparsity": SparsityTool,
    "surgery": SurgeryTool,
}
