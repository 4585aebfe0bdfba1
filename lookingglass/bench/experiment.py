"""Tracked experiments: what a version is, what a run records, and the logging wrapper.

A *version* of an experiment is the hash of its function's source together with the
sources of the functions and classes it calls that are defined in the same module
(found through the names its code refers to, recursively): edit a helper and the
experiment gets a new version, as it should; edit an unrelated function in the same file
and it does not.

A *run* records the bound arguments, the result, the model's identity (name, config hash,
weights hash), the seed, library versions, the git revision when the code lives in a
repository, start and end times, and the status: "ok", or "error" with the traceback (the
exception is re-raised after it is recorded).
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import inspect
import os
import platform
import random
import socket
import subprocess
import sys
import textwrap
import time
import traceback as traceback_module
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookingglass.bench.blobs import StoreError, encode
from lookingglass.bench.store import Store, VersionRecord

_current_run: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "lookingglass_run", default=None
)
_source_cache: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_git_cache: dict[str, dict[str, Any]] = {}
_weights_cache: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------- versions
def function_version(fn: Callable, name: str | None = None) -> VersionRecord:
    """The version of `fn`: its source and its same-module dependencies, hashed."""
    fn = inspect.unwrap(fn)
    source = _source(fn)
    dependencies = {qualname: _source(obj) for qualname, obj in _same_module_dependencies(fn)}
    digest = hashlib.sha256(source.encode())
    for qualname in sorted(dependencies):
        digest.update(b"\0" + qualname.encode() + b"\0" + dependencies[qualname].encode())
    return VersionRecord(
        name=name or experiment_name(fn),
        version=digest.hexdigest()[:12],
        source=source,
        dependencies=dependencies,
        module=getattr(fn, "__module__", None),
        qualname=getattr(fn, "__qualname__", None),
    )


def experiment_name(fn: Callable) -> str:
    """The default name of an experiment: the function's qualified name without the
    `<locals>` of enclosing functions (`Class.method`, `helper`, not `main.<locals>.helper`)."""
    return inspect.unwrap(fn).__qualname__.split("<locals>.")[-1]


def _source(obj: Any) -> str:
    """The source of a function or class without its decorators (kept per object: the
    code that runs is the code that was defined, even if the file changed since)."""
    try:
        return _source_cache[obj]
    except (KeyError, TypeError):
        pass
    try:
        lines, _ = inspect.getsourcelines(obj)
        source = textwrap.dedent("".join(lines))
        source = _strip_decorators(source)
    except (OSError, TypeError):
        source = _code_fingerprint(obj)
    try:
        _source_cache[obj] = source
    except TypeError:
        pass
    return source


def _strip_decorators(source: str) -> str:
    # The decorator lines say how a function is logged, not what it computes.
    import ast

    try:
        node = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return source
    if not getattr(node, "decorator_list", None):
        return source
    return "\n".join(source.splitlines()[node.lineno - 1 :]) + "\n"


def _code_fingerprint(obj: Any) -> str:
    """A stand-in for source that is unavailable (code typed at a bare REPL): a hash of the
    compiled code, stable across runs of the same code."""
    code = getattr(obj, "__code__", None)
    if code is None:
        return f"<no source for {getattr(obj, '__qualname__', obj)!r}>"
    digest = hashlib.sha256()
    stack = [code]
    while stack:
        current = stack.pop()
        digest.update(current.co_code + repr(current.co_names).encode())
        for const in current.co_consts:
            if inspect.iscode(const):
                stack.append(const)
            else:
                digest.update(repr(const).encode())
    return f"<no source for {code.co_name}; compiled code sha256 {digest.hexdigest()[:16]}>"


def _referenced_names(obj: Any) -> set[str]:
    """Names the code of a function (or a class's methods) refers to, nested code included."""
    codes = []
    if inspect.isclass(obj):
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)
            if inspect.isfunction(member):
                codes.append(member.__code__)
    elif hasattr(obj, "__code__"):
        codes.append(obj.__code__)
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        names.update(code.co_freevars)
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
    return names


def _same_module_dependencies(fn: Callable) -> list[tuple[str, Any]]:
    """Functions and classes defined in `fn`'s module that `fn` reaches by name."""
    module = getattr(fn, "__module__", None)
    namespace = getattr(fn, "__globals__", {})
    seen: dict[int, tuple[str, Any]] = {id(fn): ("", fn)}
    todo = [fn]
    while todo:
        current = todo.pop()
        for name in _referenced_names(current):
            target = namespace.get(name)
            if target is None or not (
                inspect.isfunction(target)
                or inspect.isclass(target)
                or hasattr(target, "__wrapped__")
            ):
                continue
            target = inspect.unwrap(target)
            if getattr(target, "__module__", None) != module or id(target) in seen:
                continue
            seen[id(target)] = (getattr(target, "__qualname__", name), target)
            todo.append(target)
    del seen[id(fn)]
    return sorted(seen.values(), key=lambda item: item[0])


# --------------------------------------------------------------------- environment
def model_identity(model: Any) -> dict[str, Any]:
    """Name, class, config hash and weights hash of a model (`{}` for no model)."""
    if model is None:
        return {}
    cfg = getattr(model, "cfg", None)
    identity: dict[str, Any] = {
        "name": getattr(cfg, "model_name", None) or type(model).__name__,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "cfg_hash": cfg.hash() if hasattr(cfg, "hash") else None,
    }
    if isinstance(model, torch.nn.Module):
        identity["weights_hash"] = weights_hash(model)
        identity["n_params"] = sum(p.numel() for p in model.parameters())
        first = next(model.parameters(), None)
        if first is not None:
            identity["device"], identity["dtype"] = str(first.device), str(first.dtype)
    return identity


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) of every parameter and buffer, by name. Recomputed only
    when a tensor was replaced or modified in place (PyTorch's version counters)."""
    tensors = sorted(model.state_dict(keep_vars=True).items())
    key = tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for name, t in tensors)
    cached = _weights_cache.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in tensors:
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    result = digest.hexdigest()[:16]
    _weights_cache[model] = (key, result)
    return result


def git_state(path: str | Path | None) -> dict[str, Any]:
    """`{"revision", "dirty"}` of the git repository holding `path` ({} outside one)."""
    folder = Path(path).resolve().parent if path else Path.cwd()
    key = str(folder)
    if key not in _git_cache:

        def git(*args: str) -> str | None:
            try:
                out = subprocess.run(
                    ["git", "-C", key, *args], capture_output=True, text=True, timeout=10
                )
            except (OSError, subprocess.SubprocessError):
                return None
            return out.stdout.strip() if out.returncode == 0 else None

        revision = git("rev-parse", "HEAD")
        state: dict[str, Any] = {}
        if revision:
            status = git("status", "--porcelain", "--untracked-files=no")
            state = {"revision": revision, "dirty": bool(status)}
        _git_cache[key] = state
    return _git_cache[key]


def environment(fn: Callable) -> dict[str, Any]:
    """Library versions, host, process and git state of a run."""
    import lookingglass

    try:
        source_file = inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:  # built-in or C function
        source_file = None
    return {
        "lookingglass": lookingglass.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": sys.argv[:8],
        "git": git_state(source_file),
    }


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fresh_seed() -> int:
    # Drawn from torch's global generator, so a script that seeds once at the top gets
    # the same sequence of per-run seeds every time, and every run is reproducible alone.
    return int(torch.randint(0, 2**31 - 1, ()).item())


# --------------------------------------------------------------------- the wrapper
PostProcess = Callable[[Any, Store], dict[str, tuple[str, str, str]]]


class Experiment:
    """A function whose every call is recorded as a run in a store.

    Calling it runs the function and returns its result; `last_run_id` is the id of the
    latest run. Made by `Bench.log_experiment`.
    """

    def __init__(
        self,
        fn: Callable,
        store_of: Callable[[], Store],
        model_of: Callable[[], Any],
        name: str | None = None,
        seed: int | None | bool = None,
        kind: str = "experiment",
        injected: tuple[str, ...] = (),
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or experiment_name(fn)
        self.seed = seed
        self.kind = kind
        self.injected = injected or getattr(fn, "__bench_tools__", ())
        self.post_processors: list[PostProcess] = []
        self.last_run_id: int | None = None
        self._store_of = store_of
        self._model_of = model_of
        self._signature = inspect.signature(fn)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Decorating a method: bind like a function would.
        return self if instance is None else functools.partial(self.__call__, instance)

    def version(self) -> VersionRecord:
        """The version a call would record now."""
        return function_version(self.fn, self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        store = self._store_of()
        recorded_args = self._bound_args(args, kwargs)
        args_skeleton, arg_blobs = encode(recorded_args, store.put_blob)
        seed = (
            None if self.seed is False else (fresh_seed() if self.seed is None else int(self.seed))
        )
        started = time.time()
        run_id = store.start_run(
            self.version(),
            self.kind,
            args_skeleton,
            arg_blobs,
            seed,
            model_identity(self._model_of()),
            environment(self.fn),
            started,
            _current_run.get(),
        )
        self.last_run_id = run_id
        token = _current_run.set(run_id)
        clock = time.perf_counter()
        try:
            if seed is not None:
                seed_everything(seed)
            result = self.fn(*args, **kwargs)
        except BaseException as error:
            duration = time.perf_counter() - clock
            _current_run.reset(token)
            message = f"{type(error).__name__}: {error}"
            _record_failure(store, run_id, error, message, duration)
            raise
        duration = time.perf_counter() - clock
        _current_run.reset(token)
        try:
            skeleton, blobs = encode(result, store.put_blob)
            attachments: dict[str, tuple[str, str, str]] = {}
            for post in self.post_processors:
                attachments.update(post(result, store))
        except BaseException as error:
            _record_failure(store, run_id, error, f"storing the result failed: {error}", duration)
            raise
        store.finish_run(
            run_id, "ok", skeleton, blobs, None, None, time.time(), duration, attachments
        )
        return result

    def _bound_args(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError:
            return {"args": list(args), "kwargs": dict(kwargs)}
        bound.apply_defaults()
        return {k: v for k, v in bound.arguments.items() if k not in self.injected}

    def __repr__(self) -> str:
        return f"<logged experiment {self.name!r}>"


def _record_failure(
    store: Store, run_id: int, error: BaseException, message: str, duration: float
) -> None:
    """Finish run `run_id` as "error". If the store cannot record it (a full disk), the
    caller's exception still propagates, with a note saying so (the store error would
    hide what went wrong in the experiment)."""
    try:
        store.finish_run(
            run_id,
            "error",
            None,
            [],
            message,
            traceback_module.format_exc(),
            time.time(),
            duration,
        )
    except StoreError as failure:
        error.add_note(f"lookingglass: recording this error in the store failed: {failure}")


def current_run_id() -> int | None:
    """The id of the logged run executing now (None outside one)."""
    return _current_run.get()
