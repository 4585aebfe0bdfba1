"""TransformerLens 3.9's own unit tests of `HookPoint` and `HookedRootModule`
(tests/unit/test_hook_points.py and test_hooked_root_module.py on its dev-3.x branch),
run against ours: the same calls and the same expectations."""

from __future__ import annotations

from unittest.mock import Mock

from lookingglass.hooks import HookedRootModule, HookPoint


def _hook(x, hook):
    return None


def test_enable_hook_with_name_uses_the_context_level():
    model = HookedRootModule()
    model.mod_dict = {"linear": Mock(HookPoint)}
    model.context_level = 5
    hook = lambda x: False  # noqa: E731
    model._enable_hook_with_name("linear", hook=hook, dir="fwd")
    model.mod_dict["linear"].add_hook.assert_called_with(hook, dir="fwd", level=5)


def test_enable_hooks_for_points_only_where_enabled():
    model = HookedRootModule()
    model.mod_dict = {}
    model.context_level = 5
    hook_points = {"linear": Mock(HookPoint), "attn": Mock(HookPoint)}
    hook = lambda x: False  # noqa: E731
    model._enable_hooks_for_points(
        hook_points=hook_points.items(), enabled=lambda x: x == "attn", hook=hook, dir="bwd"
    )
    hook_points["attn"].add_hook.assert_called_with(hook, dir="bwd", level=5)
    hook_points["linear"].add_hook.assert_not_called()


def test_enable_hook_with_string_or_callable():
    model = HookedRootModule()
    model.mod_dict = {"linear": Mock(HookPoint)}
    model.hook_dict = {"linear": Mock(HookPoint), "attn": Mock(HookPoint)}
    model.context_level = 5
    hook = lambda x: False  # noqa: E731
    model._enable_hook("linear", hook=hook, dir="fwd")
    model.mod_dict["linear"].add_hook.assert_called_with(hook, dir="fwd", level=5)
    model.mod_dict["linear"].reset_mock()
    model._enable_hook(lambda x: x == "attn", hook=hook, dir="fwd")
    model.mod_dict["linear"].add_hook.assert_not_called()
    model.hook_dict["attn"].add_hook.assert_called_with(hook, dir="fwd", level=5)
    model.hook_dict["linear"].add_hook.assert_not_called()


def test_add_hook_lists_permanence_level_and_prepend_order():
    hook_point = HookPoint()
    hook_point.add_hook(_hook, dir="fwd")
    hook_point.add_hook(_hook, dir="bwd", is_permanent=True, level=5)
    assert len(hook_point.fwd_hooks) == 1 and len(hook_point.bwd_hooks) == 1
    assert hook_point.bwd_hooks[0].is_permanent and hook_point.bwd_hooks[0].context_level == 5
    first = hook_point.fwd_hooks[0].hook.id
    hook_point.add_hook(_hook, prepend=True)
    assert hook_point.fwd_hooks[0].hook.id > first and hook_point.fwd_hooks[1].hook.id == first


def test_has_hooks_by_direction_permanence_and_level():
    hook_point = HookPoint()
    assert not any(hook_point.has_hooks(dir=d) for d in ("fwd", "bwd", "both"))
    hook_point.add_hook(_hook, dir="fwd", level=0)
    hook_point.add_hook(_hook, dir="bwd", level=1, is_permanent=True)
    assert hook_point.has_hooks() and hook_point.has_hooks(dir="fwd", level=0)
    assert hook_point.has_hooks(dir="bwd", level=1)
    assert not hook_point.has_hooks(dir="fwd", level=1)
    assert not hook_point.has_hooks(dir="bwd", level=0)
    assert not hook_point.has_hooks(level=2) and hook_point.has_hooks(level=None)
    assert not hook_point.has_hooks(dir="bwd", including_permanent=False)
    assert hook_point.has_hooks(level=1, including_permanent=True)
    assert not hook_point.has_hooks(level=1, including_permanent=False)


def test_remove_hooks_including_permanent_ignores_the_level():
    hook_point = HookPoint()
    hook_point.add_hook(_hook, level=1)
    hook_point.add_hook(_hook, level=2, is_permanent=True)
    hook_point.remove_hooks("fwd", level=2)  # a permanent hook stays
    assert [h.context_level for h in hook_point.fwd_hooks] == [1, 2]
    hook_point.remove_hooks("fwd", level=2, including_permanent=True)  # everything goes
    assert hook_point.fwd_hooks == []
