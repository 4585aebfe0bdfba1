"""`lookingglass harvest` on the shipped toy model lookingglass-attn2: shard contents against
`run_with_cache` on the same rows, manifest hashes against `hashlib`, recovery from SIGKILL,
and two gloo ranks under torchrun against a single process (byte-identical files)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lookingglass import HookedTransformer
from lookingglass.errors import HookError, InputError
from lookingglass.harvest import HarvestError, harvest, read_shard, verify
from lookingglass.training import load_corpus, tokenize_and_concatenate

MODEL = "lookingglass-attn2"
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z", "blocks.0.ln1.hook_normalized"]
SEQ_LEN, BATCH, SHARD_TOKENS, MAX_TOKENS = 16, 4, 64, 16 * 14  # 14 rows: 4 shards, last short
ROOT = Path(__file__).resolve().parents[2]


def _args(data: Path, out: Path) -> list[str]:
    return [
        "harvest", "--model", MODEL, "--hooks", *HOOKS, "--data", str(data), "--out", str(out),
        "--seq-len", str(SEQ_LEN), "--batch-size", str(BATCH), "--max-tokens", str(MAX_TOKENS),
        "--shard-tokens", str(SHARD_TOKENS), "--seed", "3", "--quiet",
    ]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    return env


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    return HookedTransformer.from_pretrained(MODEL)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three chapters of the shipped corpus, one document per line."""
    path = tmp_path_factory.mktemp("harvest_data") / "kjv3.txt"
    texts = [t.replace("\n", " ") for t in load_corpus().texts[:3]]
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(model: HookedTransformer, data_file: Path, tmp_path_factory) -> Path:
    """An uninterrupted single-process harvest, run in-process."""
    out = tmp_path_factory.mktemp("harvest_ref") / "out"
    harvest(
        model, HOOKS, str(data_file), out, seq_len=SEQ_LEN, batch_size=BATCH,
        max_tokens=MAX_TOKENS, shard_tokens=SHARD_TOKENS, seed=3, progress=False,
    )  # fmt: skip
    return out


def test_shards_hold_run_with_cache_activations(model, data_file, reference):
    manifest = verify(reference)
    texts = data_file.read_text(encoding="utf-8").splitlines()
    rows = tokenize_and_concatenate(texts, model.tokenizer, SEQ_LEN)[: MAX_TOKENS // SEQ_LEN]
    _, cache = model.run_with_cache(rows, names_filter=HOOKS)
    shards = [read_shard(reference / s["file"]) for s in manifest["shards"]]
    assert [len(s["tokens"]) for s in shards] == [64, 64, 64, 32]
    record = {key: torch.cat([s[key] for s in shards]) for key in shards[0]}
    # Shuffled on write: records are not in (row, pos) order inside a shard.
    key = record["row"] * SEQ_LEN + record["pos"]
    assert not torch.equal(key[:64], key[:64].sort().values)
    # Every (row, pos) exactly once: no duplicates, no gaps.
    assert torch.equal(key.sort().values, torch.arange(rows.numel()))
    order = key.argsort()
    assert torch.equal(record["tokens"][order], rows.reshape(-1))
    for name in HOOKS:
        expected = cache[name].reshape(rows.numel(), *cache[name].shape[2:])
        torch.testing.assert_close(record[name][order], expected, rtol=0, atol=1e-5)
        assert manifest["hooks"][name] == list(expected.shape[1:])


def test_manifest_hashes_verify(reference, tmp_path):
    manifest = verify(reference)
    assert manifest["n_tokens"] == MAX_TOKENS and manifest["n_shards"] == 4
    for shard in manifest["shards"]:
        digest = hashlib.sha256((reference / shard["file"]).read_bytes()).hexdigest()
        assert digest == shard["sha256"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for name, content in _files(reference).items():
        (broken / name).write_bytes(content)
    path = broken / manifest["shards"][1]["file"]
    content = bytearray(path.read_bytes())
    content[-1] ^= 1
    path.write_bytes(bytes(content))
    with pytest.raises(HarvestError, match="SHA-256"):
        verify(broken)


def test_sigkill_then_resume_gives_the_same_files(data_file, reference, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lookingglass.cli", *_args(data_file, out)]
    env = _env(LOOKINGGLASS_HARVEST_TEST_DELAY_S="2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for line in proc.stdout:
            if line.startswith("harvest: committed shard"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "shard-00003.json").exists()  # killed part-way
    with pytest.raises(HarvestError, match="not complete"):
        verify(out)
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "committed shard 0" not in done.stdout  # resumed, not redone
    assert _files(out) == _files(reference)


def test_torchrun_two_gloo_ranks_match_one_process(data_file, reference, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "lookingglass.cli", *_args(data_file, out),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _files(out) == _files(reference)


def test_bad_arguments_fail_before_work(model, data_file, tmp_path, capsys):
    from lookingglass.cli import main

    out = tmp_path / "out"
    with pytest.raises(HookError, match="Did you mean"):
        harvest(model, ["blocks.0.hook_resid_pots"], str(data_file), out, progress=False)
    assert not out.exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no text"):
        harvest(model, HOOKS, str(empty), out, progress=False)
    assert not out.exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="is a file"):
        harvest(model, HOOKS, str(data_file), a_file, progress=False)
    with pytest.raises(InputError, match="query, key"):
        harvest(model, ["blocks.0.attn.hook_pattern"], str(data_file), out, progress=False)
    assert main(_args(data_file, a_file)) == 2
    assert "is a file" in capsys.readouterr().err
