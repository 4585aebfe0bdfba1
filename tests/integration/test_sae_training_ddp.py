"""Data-parallel SAE training: two gloo ranks on localhost (`torch.distributed.run`)
train the same SAEs as one process on the same global batches (rank r takes rows
[r B/2, (r+1) B/2) and gradients are averaged), to float rounding; the dead-latent
counters agree exactly. Two SAEs (a top-k with aux-k loss and a standard one with L1
warm-up) train from the one stream, as `SAETrainer` does for several widths or hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys, torch
from safetensors.torch import save_file
from lookingglass.sae import SAE, SAEConfig
from lookingglass.sae.training import SAETrainer, TrainConfig
torch.set_num_threads(1)
saes = [
    SAE(SAEConfig(d_in=12, d_sae=40, architecture="topk", k=3, hook_name="a",
                  rescale_acts_by_decoder_norm=True,
                  normalize_activations="expected_average_only_in")),
    SAE(SAEConfig(d_in=12, d_sae=24, architecture="standard", hook_name="a")),
]
cfgs = [TrainConfig(lr=1e-2, dead_feature_window=2, b_dec_init="mean"),
        TrainConfig(lr=1e-2, l1_coefficient=0.1, l1_warm_up_steps=5, lr_warm_up_steps=3)]
trainer = SAETrainer(saes, cfgs, total_steps=25, verbose=False, seed=3)
gen = torch.Generator().manual_seed(7)
trainer.fit({"a": torch.randn(32, 12, generator=gen) * 3 + 1} for _ in range(25))
if trainer.rank == 0:
    out = {f"{i}.{k}": v.contiguous()
           for i, s in enumerate(saes) for k, v in s.state_dict().items()}
    out |= {f"{i}.since_fired": s.since_fired for i, s in enumerate(trainer.slots)}
    out |= {f"{i}.act_freq": s.act_freq for i, s in enumerate(trainer.slots)}
    save_file(out, sys.argv[1])
"""


def _run(tmp_path: Path, ranks: int) -> dict[str, torch.Tensor]:
    script, out = tmp_path / "train.py", tmp_path / f"out{ranks}.safetensors"
    script.write_text(SCRIPT)
    if ranks == 1:  # in this process (no process group)
        threads = torch.get_num_threads()
        old_argv = sys.argv
        try:
            sys.argv = ["train.py", str(out)]
            exec(compile(SCRIPT, str(script), "exec"), {"__name__": "__main__"})
        finally:
            sys.argv = old_argv
            torch.set_num_threads(threads)
        return load_file(str(out))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launch += ["--nproc_per_node", str(ranks)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*launch, str(script), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(str(out))


def test_two_gloo_ranks_train_what_one_process_trains(tmp_path):
    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    assert set(one) == set(two)
    for name in one:
        if name.endswith(("since_fired", "act_freq")):
            assert torch.equal(one[name], two[name]), name
        else:
            torch.testing.assert_close(two[name], one[name], atol=2e-5, rtol=2e-5, msg=name)
    assert one["0.since_fired"].max() > 2  # some latents went dead: the aux loss ran
