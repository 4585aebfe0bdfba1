"""Fuzzing the public entry points (issue 17): seeded random combinations of good and bad
arguments to `forward`, `run_with_cache`, `generate`, `to_tokens`, `to_string`,
`to_str_tokens` and the patching functions, on a tiny model. Each call must give a
result without NaN, or a `LookingGlassError` (under `--jaxtyping-packages`, also the type
checker's error): never a raw `RuntimeError`, `IndexError`, `TypeError` from deep inside
torch.

The pools mix valid values (so that bad ones meet every other argument) with the kinds
of bad values an adversarial pass tried: wrong shapes, dtypes and ranges, strings where
flags go, NaN and infinities, caches from other runs."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch

from lookingglass.errors import LookingGlassError
from lookingglass.interventions import attribution_patching, patching
from lookingglass.interventions.path_patching import path_patch
from lookingglass.model.kv_cache import TransformerLensKeyValueCache as KV
from tests._helpers import make_model, make_tokenizer, one_cpu_thread, rejected

N_CASES = 300
SEED = 17
L, D, C = 2, 64, 64  # the fixture's layers, d_model, n_ctx


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_cpu_thread()


@pytest.fixture(scope="module")
def model():
    tokenizer = make_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    return make_model(tokenizer=tokenizer)


def _pools(V: int) -> dict[str, tuple[list, list]]:
    """Per argument: (valid values, bad values). Tensors come from thunks, so every call
    gets fresh ones."""
    gen = torch.Generator().manual_seed(0)

    def ids(*shape, high=V):
        return lambda: torch.randint(1, high, shape, generator=gen)

    strings = [lambda: "a b c", lambda: ["a", "b c d"], lambda: ["John and Mary"]]
    not_strings = [
        lambda: "",
        lambda: [],
        lambda: None,
        lambda: 5,
        lambda: ["a", 5],
        lambda: torch.tensor(3),
        lambda: [1, 2, 3],
    ]
    return {
        "tokens": (
            [ids(2, 6), ids(1, 5), ids(6), ids(1, 1), lambda: ids(2, 6)().int(), *strings],
            [ids(1, 2, 6), lambda: ids(2, 6)().to(torch.uint8), lambda: ids(2, 6)() > 3,
             lambda: ids(2, 6)().float(), lambda: ids(2, 6)().short(),
             lambda: torch.tensor([[1, -3, 2]]), lambda: torch.tensor([[1, V, 2]]),
             lambda: torch.zeros(1, 0, dtype=torch.long), ids(1, C + 1), *not_strings],
        ),
        "strings": (strings, not_strings),
        "residual": (
            [lambda: torch.randn(2, 6, D, generator=gen),
             lambda: torch.randn(1, 4, D, generator=gen)],
            [lambda: torch.randn(2, 6, D + 1), lambda: torch.randn(1, C + 2, D),
             lambda: torch.randn(6, D), ids(2, 6), lambda: torch.randn(2, 0, D)],
        ),
        "attention_mask": (
            [lambda s: None, lambda s: torch.ones(s, dtype=torch.long),
             lambda s: _with(torch.ones(s, dtype=torch.long), 0),
             lambda s: torch.ones(s, dtype=torch.bool), lambda s: torch.zeros(s, dtype=torch.long)],
            [lambda s: torch.ones(s[0], s[1] + 1), lambda s: torch.ones(s[0] + 1, s[1]),
             lambda s: _with(torch.ones(s), 2.0), lambda s: _with(torch.ones(s), 0.5),
             lambda s: [[1] * s[1]] * s[0]],
        ),
        "prepend_bos": ([None, True, False], ["yes", 1]),
        "padding_side": ([None, "left", "right"], ["middle", 0]),
        "layer": ([None, None, 0, 1, -1, L, -L], [L + 1, -L - 1, 1.5, "1"]),
        "return_type": (["logits", "loss", "both", None], ["bogus"]),
        "names_filter": (
            [None, "hook_embed", ["hook_embed", "blocks.0.attn.hook_pattern"],
             lambda n: n.endswith("resid_pre")],
            [5, [1, 2], "no_such_hook"],
        ),
        "pos_slice": ([None, 0, -1, (0, 2), slice(1, None), [0, 1]], [999, [0, 7], "x"]),
        "max_new_tokens": ([0, 1, 3], [-1, 2.5, 10 * C]),
        "temperature": ([0.0, 1.0, 0.7], [-1.0, math.nan, math.inf, "hot"]),
        "top_k": ([None, 1, 5, 10**6], [0, 2.5]),
        "top_p": ([None, 0.5, 1.0], [0.0, 1.5, math.nan]),
        "freq_penalty": ([0.0, 1.0, -1.0], [math.nan]),
        "gen_return_type": (["input", "str", "tokens", "embeds"], ["bogus"]),
        "eos_token_id": ([None, 0, 5, [0, V]], [V, -1, [], [V, V + 1], "eos"]),
        "to_string": (
            [lambda: 5, lambda: [1, 2, 3], ids(4), ids(2, 3), lambda: [ids(3)(), ids(3)()]],
            [lambda: torch.tensor([V + 3]), lambda: [-1], lambda: torch.tensor([1.5]),
             lambda: "abc", lambda: None, lambda: [[1, 2], [3]], lambda: ids(1, 2, 3)()],
        ),
        "metric": (
            [lambda logits: logits[:, -1, 0].sum(), lambda logits: logits[:, -1].mean()],
            [lambda logits: logits[:, -1], lambda logits: "x", lambda logits: None],
        ),
        "shape": ([(2, 5), (1, 5)], [(2, 7), (2, 4), (3, 5)]),
        "senders": ([[(0, 1)], [(1, 2), (0, 0)]], [[5], [(5, 1)], [(0, 1.5)]]),
        "receivers": (["resid_final", (1, 0), [(1, 2, "q"), "logits"]],
                      ["bogus", [5], [(1, 0, "x")], []]),
        "receiver_positions": ([None, [-1], [0, 2]], [[99], [-7]]),
        "past_kv_cache": (
            [lambda m, b: None, lambda m, b: None, lambda m, b: KV.init_cache(m.cfg, batch_size=b),
             lambda m, b: _filled_cache(m, b)],
            [lambda m, b: _filled_cache(m, b + 1),
             lambda m, b: KV.init_cache(m.cfg.replace(n_layers=1)),
             lambda m, b: {"keys": []}],
        ),
    }  # fmt: skip


class Picker:
    """Draws each argument from its valid values, or with probability `p_bad` from its
    bad ones."""

    def __init__(self, rng: random.Random, pools, model, p_bad: float = 0.15) -> None:
        self.rng, self.pools, self.model, self.p_bad = rng, pools, model, p_bad

    def __call__(self, name: str):
        good, bad = self.pools[name]
        return self.rng.choice(bad if self.rng.random() < self.p_bad else good)

    def coin(self, p: float = 0.5) -> bool:
        return self.rng.random() < p


def _filled_cache(model, batch: int) -> KV:
    cache = KV.init_cache(model.cfg, batch_size=batch)
    model(torch.randint(1, 50, (batch, 3)), past_kv_cache=cache)
    return cache


def _with(mask, value):
    mask = mask.clone()
    if mask.numel():
        mask[0, 0] = value
    return mask


def _shape_of(tokens) -> tuple[int, int]:
    if isinstance(tokens, torch.Tensor) and tokens.dim() == 2:
        return tuple(tokens.shape)
    if isinstance(tokens, torch.Tensor) and tokens.dim() == 1:
        return (1, tokens.shape[0])
    return (2, 6)


def _forward_kwargs(pick: Picker):
    start = pick("layer")
    kwargs = dict(
        prepend_bos=pick("prepend_bos"),
        padding_side=pick("padding_side"),
        start_at_layer=start,
        stop_at_layer=pick("layer"),
        return_type=pick("return_type"),
        loss_per_token=pick.coin(0.3),
    )
    input = pick("residual" if start is not None and pick.coin(0.9) else "tokens")()
    shape = (input.shape[0], input.shape[1]) if _is_residual(input) else _shape_of(input)
    kwargs["attention_mask"] = pick("attention_mask")(shape)
    if pick.coin(0.3):
        kwargs["past_kv_cache"] = pick("past_kv_cache")(pick.model, shape[0])
    if start is not None and kwargs["return_type"] in ("loss", "both") and pick.coin():
        kwargs["tokens"] = torch.randint(1, 50, shape)
    return input, kwargs


def _is_residual(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() == 3


def _call_forward(model, pick: Picker):
    input, kwargs = _forward_kwargs(pick)
    return model(input, **kwargs)


def _call_run_with_cache(model, pick: Picker):
    input, kwargs = _forward_kwargs(pick)
    kwargs.update(
        names_filter=pick("names_filter"),
        pos_slice=pick("pos_slice"),
        remove_batch_dim=pick.coin(0.2),
    )
    if kwargs["return_type"] == "loss" and pick.coin():
        kwargs["incl_bwd"] = True
    out, cache = model.run_with_cache(input, **kwargs)
    return [out, *cache.values()]


def _call_generate(model, pick: Picker):
    return model.generate(
        pick("residual" if pick.coin(0.2) else "tokens")(),
        pick("max_new_tokens"),
        stop_at_eos=pick.coin(0.7),
        eos_token_id=pick("eos_token_id"),
        do_sample=pick.coin(0.7),
        top_k=pick("top_k"),
        top_p=pick("top_p"),
        temperature=pick("temperature"),
        freq_penalty=pick("freq_penalty"),
        use_past_kv_cache=pick.coin(0.7),
        prepend_bos=pick("prepend_bos"),
        padding_side=pick("padding_side"),
        return_type=pick("gen_return_type"),
        verbose=False,
    )


def _call_to_tokens(model, pick: Picker):
    return model.to_tokens(
        pick("strings")(),
        prepend_bos=pick("prepend_bos"),
        padding_side=pick("padding_side"),
        truncate=pick.coin(),
    )


def _call_to_string(model, pick: Picker):
    return model.to_string(pick("to_string")())


def _call_to_str_tokens(model, pick: Picker):
    input = pick("to_string" if pick.coin() else "strings")()
    return model.to_str_tokens(
        input, prepend_bos=pick("prepend_bos"), padding_side=pick("padding_side")
    )


_PATCHES = [
    patching.get_act_patch_resid_pre,
    patching.get_act_patch_attn_head_out_all_pos,
    patching.get_act_patch_attn_head_pattern_by_pos,
    attribution_patching.get_attr_patch_resid_pre,
    attribution_patching.get_attr_patch_attn_head_out_all_pos,
]


def _call_patching(model, pick: Picker):
    corrupted = pick.rng.choice(pick.pools["shape"][0])
    clean = pick("shape") if pick.coin(0.3) else corrupted
    corrupted_tokens = torch.randint(1, 300, corrupted)
    _, cache = model.run_with_cache(torch.randint(1, 300, clean))
    patch = pick.rng.choice(_PATCHES)
    return patch(model, corrupted_tokens, cache, pick("metric"))


def _call_path_patching(model, pick: Picker):
    corrupted = pick.rng.choice(pick.pools["shape"][0])
    clean = pick("shape") if pick.coin(0.2) else corrupted
    return path_patch(
        model,
        torch.randint(1, 300, clean),
        torch.randint(1, 300, corrupted),
        pick("senders"),
        pick("receivers"),
        pick("metric"),
        freeze_mlps=pick.coin(),
        receiver_positions=pick("receiver_positions"),
    )


ENTRY_POINTS = {
    "forward": _call_forward,
    "run_with_cache": _call_run_with_cache,
    "generate": _call_generate,
    "to_tokens": _call_to_tokens,
    "to_string": _call_to_string,
    "to_str_tokens": _call_to_str_tokens,
    "patching": _call_patching,
    "path_patching": _call_path_patching,
}


def _floats(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _floats(item)


def test_every_entry_point_gives_a_result_or_a_lookingglass_error(model):
    rng = random.Random(SEED)
    pick = Picker(rng, _pools(model.cfg.d_vocab), model)
    allowed = rejected(LookingGlassError)
    outcomes: Counter[tuple[str, str]] = Counter()
    failures = []
    for case in range(N_CASES):
        entry = rng.choice(list(ENTRY_POINTS))
        state = rng.getstate()
        try:
            result = ENTRY_POINTS[entry](model, pick)
        except allowed:
            outcomes[entry, "error"] += 1
            continue
        except Exception as error:  # noqa: BLE001 - what the test is looking for
            failures.append((case, entry, f"{type(error).__name__}: {error}"[:300], state))
            continue
        nan = [t for t in _floats(result) if t.is_floating_point() and bool(t.isnan().any())]
        if nan:
            failures.append((case, entry, "NaN in the result", state))
        outcomes[entry, "result"] += 1
    assert not failures, "\n".join(f"case {c} {e}: {why}" for c, e, why, _ in failures)
    # The pools reach both outcomes at every entry point.
    for entry in ENTRY_POINTS:
        assert outcomes[entry, "result"] and outcomes[entry, "error"], (entry, outcomes)
