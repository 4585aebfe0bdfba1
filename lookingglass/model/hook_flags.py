"""The `set_use_*` switches of `HookedTransformer`: optional hook points, added or
removed on a built model, with TransformerLens's method names, plus its
`check_hooks_to_add`.

Here an optional hook point exists only while its flag is on (TransformerLens keeps
them all and refuses hooks on those switched off), so a switched-off point costs
nothing; the check still refuses them with TransformerLens's reason.
"""

from __future__ import annotations

from typing import Any, Literal

from lookingglass.errors import HookSwitchedOffError
from lookingglass.hooks import HookPoint

_FLAG_OF_SUFFIX = {
    "attn.hook_result": "use_attn_result",
    "hook_q_input": "use_split_qkv_input",
    "hook_k_input": "use_split_qkv_input",
    "hook_v_input": "use_split_qkv_input",
    "mlp_in": "use_hook_mlp_in",
    "attn_in": "use_attn_in",
}


class HookFlags:
    """Mixin for `HookedTransformer` (which provides `cfg`, `blocks` and
    `_set_optional_hooks`)."""

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Add or remove `attn.hook_result` (each head's output, `[batch pos head d_model]`)."""
        self._set_flag(use_attn_result=use_attn_result)

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Add or remove `hook_q/k/v_input` (the block's input before ln1, per head)."""
        self._set_flag(use_split_qkv_input=use_split_qkv_input)

    def set_use_normalized_qkv_input(self, use_normalized_qkv_input: bool) -> None:
        """Add or remove `hook_q/k/v_normalized_input` (the attention input after ln1,
        per head; lookingglass's names for the copy-suppression fork's hooks)."""
        self._set_flag(use_normalized_qkv_input=use_normalized_qkv_input)

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Add or remove `hook_mlp_in` (the MLP's input before its norm)."""
        self._set_flag(use_hook_mlp_in=use_hook_mlp_in)

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """Add or remove `hook_attn_in` (the block's input before ln1, per head)."""
        self._set_flag(use_attn_in=use_attn_in)

    def set_ungroup_grouped_query_attention(self, ungroup_grouped_query_attention: bool) -> None:
        """With grouped-query attention, give `hook_k`/`hook_v` (and the per-head key/value
        inputs) one copy per query head."""
        self._set_flag(ungroup_grouped_query_attention=ungroup_grouped_query_attention)
        for block in self.blocks:
            if hasattr(block.attn, "_ungroup_hooks"):
                block.attn._ungroup_hooks = ungroup_grouped_query_attention

    def _set_flag(self, **flag: bool) -> None:
        self.cfg = self.cfg.replace(**flag)
        for block in self.blocks:
            block.set_hook_options(self.cfg)
        self._set_optional_hooks()

    def check_hooks_to_add(
        self,
        hook_point: HookPoint,
        hook_point_name: str,
        hook: Any,
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
        prepend: bool = False,
    ) -> None:
        """Refuse a hook on a point its `use_*` flag has switched off (TransformerLens's
        check; such points normally do not exist here at all)."""
        for suffix, flag in _FLAG_OF_SUFFIX.items():
            if hook_point_name.endswith(suffix) and not getattr(self.cfg, flag):
                raise HookSwitchedOffError(
                    f"Cannot add hook {hook_point_name} if {flag} is False: call "
                    f"model.set_{flag}(True) first."
                )
