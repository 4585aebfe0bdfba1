"""`HookedAutoModel`: TransformerLens-style hooks on any Hugging Face causal LM.

Every submodule's input and output become hook points named by module path:
`model.layers.3.self_attn.o_proj.hook_in` / `.hook_out`. Where a module returns a tuple
(or a `ModelOutput`), each tensor in it gets its own point, `hook_out_0`, `hook_out_1`
(or `hook_out_<field>`), so no hook silently sees "the first element". Which points
exist is discovered once, by a probe forward on a two-token input, so `hook_dict`
lists exactly the points that fire.

PyTorch hooks are attached to the wrapped model only for the duration of a forward
call and only on modules whose points are hooked: an unhooked model runs as fast as
the plain Hugging Face model, and nothing stays attached after an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lookingglass import utils
from lookingglass.errors import InputError
from lookingglass.hooks import HookedRootModule, HookPoint


@dataclass
class _ModuleHooks:
    """The hook points of one submodule and where its tensors sit in its inputs/outputs."""

    module: nn.Module
    hook_in: HookPoint | None = None
    in_kwarg: str | None = None  # None: the first positional argument
    outputs: dict[int | str | None, HookPoint] = field(default_factory=dict)  # None: a bare tensor


class HookedAutoModel(HookedRootModule):
    """Wraps a Hugging Face `PreTrainedModel` (any architecture) with named hook points."""

    def __init__(
        self, model: nn.Module, tokenizer: Any = None, probe_tokens: Tensor | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self._modules_hooks: dict[str, _ModuleHooks] = {}
        self._discover(probe_tokens)
        self.setup()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, tokenizer: Any = None, **hf_kwargs: Any
    ) -> HookedAutoModel:
        """Load with `transformers.AutoModelForCausalLM` (a local folder or a hub id) and wrap."""
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(str(name_or_path), **hf_kwargs)
        if tokenizer is None and Path(name_or_path).is_dir():
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(name_or_path))
            except (OSError, ValueError):
                tokenizer = None
        return cls(model.eval(), tokenizer)

    # ------------------------------------------------------------------ discovery
    def _discover(self, probe_tokens: Tensor | None) -> None:
        """Run one small forward with temporary PyTorch hooks to learn each module's
        input and output structure, and make the hook points."""
        seen: dict[str, tuple[str | None | bool, Any]] = {}
        handles = []
        for path, module in self.model.named_modules():
            if path == "":
                continue
            handles.append(
                module.register_forward_pre_hook(_recorder(seen, path, "in"), with_kwargs=True)
            )
            handles.append(module.register_forward_hook(_recorder(seen, path, "out")))
        try:
            with torch.no_grad():
                tokens = (
                    probe_tokens
                    if probe_tokens is not None
                    else torch.zeros(1, 2, dtype=torch.long)
                )
                self.model(tokens.to(self._device()))
        finally:
            for handle in handles:
                handle.remove()
        modules = dict(self.model.named_modules())
        for path, module in modules.items():
            if path == "":
                continue
            spec = _ModuleHooks(module)
            in_where = seen.get(f"{path}|in")
            if in_where is not None:
                spec.hook_in, spec.in_kwarg = HookPoint(), in_where[1]
            out_keys = seen.get(f"{path}|out")
            for key in out_keys[1] if out_keys else []:
                spec.outputs[key] = HookPoint()
            if spec.hook_in is not None or spec.outputs:
                self._modules_hooks[path] = spec

    def setup(self) -> None:
        """Name the hook points by module path (they are not submodules of the HF model)."""
        self.hook_dict = {}
        for path, spec in self._modules_hooks.items():
            if spec.hook_in is not None:
                self.hook_dict[f"{path}.hook_in"] = spec.hook_in
            for key, hp in spec.outputs.items():
                suffix = "hook_out" if key is None else f"hook_out_{key}"
                self.hook_dict[f"{path}.{suffix}"] = hp
        for name, hp in self.hook_dict.items():
            hp.name = name
        self.mod_dict = {path: m for path, m in self.model.named_modules() if path}

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -------------------------------------------------------------------- forward
    def forward(
        self,
        input: str | list[str] | Tensor,
        return_type: Literal["logits", "loss", "both", "raw"] | None = "logits",
        attention_mask: Tensor | None = None,
        **hf_kwargs: Any,
    ) -> Any:
        """Run the wrapped model with the attached hooks.

        `input` is token ids `[batch, pos]` (or a string / list of strings with a
        tokenizer). Returns the logits (default), the mean next-token loss, both, the
        model's own output (`"raw"`), or None.
        """
        tokens = self._tokens(input)
        handles = self._attach()
        try:
            out = self.model(tokens, attention_mask=attention_mask, **hf_kwargs)
        finally:
            for handle in handles:
                handle.remove()
        if return_type == "raw":
            return out
        if return_type is None:
            return None
        logits = out.logits if hasattr(out, "logits") else out[0]
        if return_type == "logits":
            return logits
        loss = utils.lm_cross_entropy_loss(logits, tokens, attention_mask)
        return loss if return_type == "loss" else (logits, loss)

    def _tokens(self, input: str | list[str] | Tensor) -> Tensor:
        if isinstance(input, Tensor):
            return (input if input.dim() == 2 else input[None]).to(self._device())
        if self.tokenizer is None:
            raise InputError("This HookedAutoModel has no tokenizer; pass token ids.")
        if isinstance(input, str) and not input:
            raise InputError("The input string is empty.")
        return self.tokenizer(input, return_tensors="pt", padding=True)["input_ids"].to(
            self._device()
        )

    def _attach(self) -> list:
        """PyTorch hooks on the modules whose points are hooked, for one forward call."""
        handles = []
        for spec in self._modules_hooks.values():
            if spec.hook_in is not None and spec.hook_in.has_hooks():
                handles.append(
                    spec.module.register_forward_pre_hook(_run_input_hook(spec), with_kwargs=True)
                )
            if any(hp.has_hooks() for hp in spec.outputs.values()):
                handles.append(spec.module.register_forward_hook(_run_output_hooks(spec)))
        return handles


def _first_tensor_location(
    args: tuple, kwargs: Mapping[str, Any]
) -> tuple[bool, str | None] | None:
    if args and isinstance(args[0], Tensor):
        return True, None
    for name, value in kwargs.items():
        if isinstance(value, Tensor):
            return True, name
    return None


def _tensor_keys(output: Any) -> list[int | str | None]:
    if isinstance(output, Tensor):
        return [None]
    if isinstance(output, Mapping):
        return [k for k, v in output.items() if isinstance(v, Tensor)]
    if isinstance(output, tuple | list):
        return [i for i, v in enumerate(output) if isinstance(v, Tensor)]
    return []


def _recorder(seen: dict, path: str, kind: str):
    def record_in(module, args, kwargs):
        location = _first_tensor_location(args, kwargs)
        if location is not None:
            seen[f"{path}|in"] = location

    def record_out(module, args, output):
        keys = _tensor_keys(output)
        if keys:
            seen[f"{path}|out"] = (True, keys)

    return record_in if kind == "in" else record_out


def _run_input_hook(spec: _ModuleHooks):
    def pre_hook(module, args, kwargs):
        if spec.in_kwarg is None:
            return (spec.hook_in(args[0]), *args[1:]), kwargs
        return args, {**kwargs, spec.in_kwarg: spec.hook_in(kwargs[spec.in_kwarg])}

    return pre_hook


def _run_output_hooks(spec: _ModuleHooks):
    def post_hook(module, args, output):
        if isinstance(output, Tensor):
            return spec.outputs[None](output)
        if isinstance(output, Mapping):
            for key, hp in spec.outputs.items():
                output[key] = hp(output[key])
            return output
        items = list(output)
        for key, hp in spec.outputs.items():
            items[key] = hp(items[key])
        return type(output)(items) if isinstance(output, tuple | list) else output

    return post_hook
