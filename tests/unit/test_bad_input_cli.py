"""Bad arguments to the `experiments`, `train-default` and `replicate` commands, and
hostile snapshot folders (issue 17): each ends with exit status 2 and a message naming
the argument and what is allowed, before any slow work and without a traceback or a
silently written file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from lookingglass.bench import Bench
from lookingglass.cli import main
from lookingglass.errors import CheckpointError, InputError
from lookingglass.training.snapshots import Snapshots, SnapshotSaver


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with one run of `scale` that has an attachment."""
    path = tmp_path / "s.db"
    with Bench(None, str(path), progress=False) as bench:

        @bench.log_experiment
        def scale(n: int) -> torch.Tensor:
            return torch.ones(n)

        scale(2)
        bench.store.attach(
            1, "notes.txt", "text/plain", bench.store.put_blob(b"hi", ".txt"), ".txt"
        )
    return path


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "a_file").write_text("x")
    return tmp_path / "a_file"


# (arguments after `experiments`, with {store} and {tmp} filled in; text of the error;
#  the path that must not have been written)
EXPERIMENTS_CASES = [
    (["export", "{tmp}/out.jsonl", "--name", "nosuch"], "No runs of 'nosuch'", "{tmp}/out.jsonl"),
    (["export", "{tmp}/missing/x.jsonl"], "its folder does not exist", "{tmp}/missing"),
    (["export", "{tmp}"], "it is a folder", None),
    (["show", "1", "--save-attachments", "{tmp}/a_file"], "existing file, not a folder", None),
    (
        ["show", "1", "--save-attachments", "{tmp}/a_file/sub"],
        "cannot create --save-attachments",
        None,
    ),
    (["show", "99"], "no run 99", None),
    (["show", "nosuch"], "No experiment 'nosuch'", None),
    (["list", "nosuch"], "No runs of 'nosuch'", None),
]


@pytest.mark.parametrize("argv, reason, not_written", EXPERIMENTS_CASES)
def test_experiments_commands_refuse_bad_targets(
    store, tmp_path, capsys, argv, reason, not_written
):
    _a_file(tmp_path)
    fill = lambda text: text.format(store=store, tmp=tmp_path)  # noqa: E731
    code = main(["experiments", *[fill(a) for a in argv], "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2 and reason.lower() in err.lower() and "Traceback" not in err, err
    if not_written:
        assert not Path(fill(not_written)).exists()


@pytest.mark.parametrize(
    "name", ["../../evil.html", "/tmp/evil.html", "sub/evil.html", "..", "a\\..\\evil.html"]
)
def test_an_attachment_name_that_leaves_the_folder_is_not_written(store, tmp_path, capsys, name):
    with sqlite3.connect(store) as conn:  # a tampered record
        conn.execute("UPDATE attachments SET name = ? WHERE run_id = 1", (name,))
    out = tmp_path / "deep" / "plots"
    code = main(["experiments", "show", "1", "--store", str(store), "--save-attachments", str(out)])
    assert code == 2 and "not a plain file name" in capsys.readouterr().err
    assert list(out.iterdir()) == [] and not (tmp_path / "evil.html").exists()


def test_good_experiments_commands_still_work(store, tmp_path):
    out = tmp_path / "plots"
    assert (
        main(["experiments", "show", "1", "--store", str(store), "--save-attachments", str(out)])
        == 0
    )
    assert (out / "run1_notes.txt").read_bytes() == b"hi"
    assert main(["experiments", "export", str(tmp_path / "e.jsonl"), "--store", str(store)]) == 0
    assert json.loads((tmp_path / "e.jsonl").read_text())["name"] == "scale"
    assert (
        main(
            [
                "experiments",
                "export",
                str(tmp_path / "f.jsonl"),
                "--name",
                "scale",
                "--store",
                str(store),
            ]
        )
        == 0
    )


# --------------------------------------------------------------- training commands
@pytest.mark.parametrize(
    "argv, reason",
    [
        (["train-default", "--name", "lookingglass-attn2", "--steps", "0"], "--steps: must be"),
        (["train-default", "--name", "lookingglass-attn2", "--steps", "-5"], "--steps: must be"),
        (["train-default", "--name", "lookingglass-attn2", "--steps", "1.5"], "--steps: must be"),
        (["train-default", "--name", "lookingglass-attn2", "--threads", "0"], "--threads: must"),
        (["replicate", "induction-heads", "--threads", "0"], "--threads: must be"),
        (["replicate", "induction-heads", "--threads", "x"], "--threads: must be"),
    ],
)
def test_training_counts_are_checked_by_the_parser(capsys, argv, reason):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and reason in capsys.readouterr().err


@pytest.fixture
def no_slow_work(monkeypatch):
    """Training work fails the test if it starts: checks must come first."""
    import lookingglass.training.default_models as default_models
    import lookingglass.training.replicate as replicate

    def started(*args, **kwargs):
        pytest.fail("slow work started before the arguments were checked")

    monkeypatch.setattr(default_models, "corpus_data", started)
    monkeypatch.setattr(replicate, "make_data", started)


@pytest.mark.parametrize(
    "command, out, reason",
    [
        ("train-default", "{file}", "is an existing file"),
        ("train-default", "{file}/sub", "lies under"),
        ("replicate", "{file}", "is an existing file"),
        ("replicate", "{file}/sub/deeper", "lies under"),
    ],
)
def test_output_folders_are_checked_before_slow_work(
    tmp_path, capsys, no_slow_work, command, out, reason
):
    out = out.format(file=_a_file(tmp_path))
    argv = (
        ["train-default", "--name", "lookingglass-attn2", "--steps", "3"]
        if command == "train-default"
        else ["replicate", "induction-heads", "--quick"]
    )
    assert main([*argv, "--out", out]) == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err, err


@pytest.mark.parametrize("n_steps", [0, -1, 2.5, True, "10"])
def test_train_default_refuses_a_bad_step_count(no_slow_work, n_steps):
    from lookingglass.training.default_models import train_default

    with pytest.raises(InputError, match="n_steps must be a whole number >= 1"):
        train_default("lookingglass-attn2", n_steps=n_steps)


# ------------------------------------------------------------------------ snapshots
def _snapshot_folder(folder: Path, steps=(0, 10)) -> Path:
    for step in steps:
        (folder / f"step_{step:06d}").mkdir(parents=True)
        (folder / f"step_{step:06d}" / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    "index, reason",
    [
        (b"{not json", "unreadable"),
        (b"\xff\xfe\x00", "unreadable"),
        (b"", "unreadable"),
        (b"[0, 10]", "holds a list, not an object"),
        (b'{"steps": "0,10"}', '"steps" must be a list of non-negative integers'),
        (b'{"steps": [0, -10]}', '"steps" must be a list of non-negative integers'),
        (b'{"steps": [0, 1.5]}', '"steps" must be a list of non-negative integers'),
        (b'{"steps": [0, true]}', '"steps" must be a list of non-negative integers'),
        (b'{"steps": [0, 10, 20]}', "lists step(s) [20] with no step_XXXXXX folder"),
        (b'{"steps": [0], "train_loss": [1.0]}', '"train_loss" must map steps to losses'),
        (b'{"steps": [0], "eval_loss": {"a": 1.0}}', '"eval_loss" has an entry'),
        (b'{"steps": [0], "eval_loss": {"0": "low"}}', '"eval_loss" has an entry'),
    ],
)
def test_a_corrupt_snapshot_index_is_a_clear_error(tmp_path, index, reason):
    folder = _snapshot_folder(tmp_path / "snaps")
    (folder / "index.json").write_bytes(index)
    with pytest.raises(CheckpointError) as caught:
        Snapshots(folder)
    assert reason in str(caught.value) and "index.json" in str(caught.value)
    if "lists step" not in reason:  # the saver of a resumed run refuses it too
        with pytest.raises(CheckpointError, match="index.json"):
            SnapshotSaver(folder, [0, 10])


def test_a_good_snapshot_index_and_none(tmp_path):
    folder = _snapshot_folder(tmp_path / "snaps")
    assert Snapshots(folder).steps == [0, 10] and Snapshots(folder).losses()["eval_loss"] == {}
    (folder / "index.json").write_text('{"steps": [0, 10], "eval_loss": {"10": 2.5}}')
    assert Snapshots(folder).losses() == {"train_loss": {}, "eval_loss": {10: 2.5}}


def test_a_snapshot_folder_that_links_outside_is_refused(tmp_path):
    folder = _snapshot_folder(tmp_path / "snaps", steps=(0,))
    elsewhere = _snapshot_folder(tmp_path / "elsewhere", steps=(5,)) / "step_000005"
    (folder / "step_000005").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(CheckpointError, match="leads outside"):
        Snapshots(folder)
