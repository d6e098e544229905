"""Faults about processes and the file system, injected for real: a lock held by a live process,
two runs at once, SIGKILL between two renames of the final publish, Ctrl-C during training, a
read-only folder and a full disk (a small tmpfs in a private mount namespace where the platform
allows it; an injected ENOSPC otherwise). Each test checks the exit code, the one error line and
what the output directory holds afterwards: the previous run intact, no leftovers, and push.py /
predict.py refusing a folder that mixes two runs."""

from __future__ import annotations

import errno
import json
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT, read_json, toy_rows, write_csv
from faultkit import (
    LEARNS,
    can_mount,
    child_env,
    folder_kib,
    hooked,
    in_namespace,
    leftovers,
    one_error,
    run_argv,
    run_child,
    sh,
)

from pipelines.cli import predict as predict_script
from pipelines.cli import push as push_script
from pipelines.cli.run import main as run_main
from pipelines.reporting import run_id

HOLD = ("import sys, time; from pipelines.reporting import run_lock\n"
        "with run_lock.hold(sys.argv[1]):\n    print('locked', flush=True); time.sleep(300)")


@pytest.fixture(scope="module")
def toy(tmp_path_factory, tiny_model):
    """(card, data dir, tiny model, a finished run's folder, its run id): the 'previous run'."""
    from conftest import make_toy_task

    base = tmp_path_factory.mktemp("faults")
    card, data = make_toy_task(base)
    prev = base / "prev"
    assert run_main(run_argv(card, data, tiny_model, prev, "--num_train_epochs", "1", "--seed", "1", *LEARNS)) == 0
    return card, data, tiny_model, prev, run_id.verify(prev)


def _copy_prev(toy, dest):
    shutil.copytree(toy[3], dest)
    return dest


def _refusals(out, tmp_path, capsys):
    """push.py and predict.py on `out`: [(exit code, error line)] of each."""
    source = write_csv(tmp_path / "in.csv", toy_rows(4))
    results = []
    push = [str(out), "--hub-model-id", "alice/x", "--hub-dry-run", str(tmp_path / "d")]
    predict = ["--model", str(out), "--input", str(source), "--output", str(tmp_path / "p.csv")]
    for main, argv in ((push_script.main, push), (predict_script.main, predict)):
        code = main(argv)
        results.append((code, one_error(capsys.readouterr().err)))
    return results


@pytest.mark.slow
def test_lock_held_by_a_live_process_refuses_everyone_and_dies_with_it(toy, tmp_path, capsys):
    card, data, model, _, old = toy
    out = _copy_prev(toy, tmp_path / "out")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              env=child_env(), text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_main(run_argv(card, data, model, out, "--max_steps", "2")) == 2
        assert f"output directory {out} is in use by another run (process {holder.pid})" in one_error(
            capsys.readouterr().err)
        source = write_csv(tmp_path / "in.csv", toy_rows(4))
        assert push_script.main([str(out), "--hub-model-id", "alice/x", "--hub-dry-run", str(tmp_path / "d")]) == 2
        assert f"being written by a run in progress (process {holder.pid})" in one_error(capsys.readouterr().err)
        assert predict_script.main(["--model", str(out), "--input", str(source), "--output", str(tmp_path / "p")]) == 2
        assert f"being written by a run in progress (process {holder.pid})" in one_error(capsys.readouterr().err)
        assert run_id.verify(out) == old  # refused runs touched nothing
    finally:
        holder.kill()  # SIGKILL: no chance to clean up, yet the kernel drops the lock
        holder.wait()
    assert run_main(run_argv(card, data, model, out, "--max_steps", "2")) == 0
    assert run_id.verify(out) not in (None, old) and not leftovers(out)


@pytest.mark.slow
def test_two_runs_started_together_one_refused_the_other_complete(toy, tmp_path):
    card, data, model, _, _ = toy
    out, flags = tmp_path / "out", tmp_path / "flags"
    flags.mkdir()
    first = subprocess.Popen(hooked("hold", str(flags)) + run_argv(card, data, model, out, "--seed", "7",
                                                                    "--num_train_epochs", "1", *LEARNS),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
    try:
        deadline = time.time() + 180
        while not (flags / "started").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert (flags / "started").exists(), first.communicate()[1][-3000:]
        second = run_child(hooked("none") + run_argv(card, data, model, out, "--seed", "8", "--num_train_epochs", "1",
                                                     *LEARNS))
        assert second.returncode == 2
        assert f"is in use by another run (process {first.pid})" in one_error(second.stderr)
    finally:
        (flags / "go").write_text("")
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert run_id.verify(out) and read_json(out / "metrics.json")["recipe"]["seed"] == 7  # the first run's, whole
    assert not leftovers(out)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["first", "middle", "before_manifest", "before_metrics"])
def test_sigkill_during_publish_never_leaves_a_folder_that_looks_complete(toy, tmp_path, capsys, which):
    card, data, model, _, old = toy
    out = _copy_prev(toy, tmp_path / "out")
    proc = run_child(hooked("kill_at_rename", which) + run_argv(card, data, model, out, "--seed", "2",
                                                                "--num_train_epochs", "1", *LEARNS))
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert not (out / "metrics.json").exists()  # the folder says "incomplete" at every step of the publish
    with pytest.raises(run_id.MixedRunError):
        run_id.verify(out)
    (push_code, push_line), (predict_code, predict_line) = _refusals(out, tmp_path, capsys)
    assert push_code == predict_code == 2
    assert "has no metrics.json: the run did not finish" in push_line  # push checks completeness first
    assert f"{out} holds an incomplete run" in predict_line or f"{out} mixes files of different runs" in predict_line
    # the next run repairs the folder: stale staging from the killed run removed, one complete run
    assert run_main(run_argv(card, data, model, out, "--seed", "2", "--num_train_epochs", "1", *LEARNS)) == 0
    assert run_id.verify(out) not in (None, old) and not leftovers(out)


@pytest.mark.slow
def test_ctrl_c_during_training_names_the_checkpoint_and_the_resume_command(toy, tmp_path):
    card, data, model, _, _ = toy
    out, straight = tmp_path / "out", tmp_path / "straight"
    args = ["--num_train_epochs", "2", *LEARNS]
    proc = run_child(hooked("sigint_at_step", "8") + run_argv(card, data, model, out, *args))
    assert proc.returncode == 130, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and not (out / "metrics.json").exists()
    assert last.startswith(f"interrupted at step 8 of 12 (epoch 1.33); checkpoint-6 in {out} is complete: "
                           "continue with `python scripts/run.py ")
    command = shlex.split(last.split("`")[1])
    assert command[:2] == ["python", "scripts/run.py"] and command[-1] == "--resume"
    assert run_main(command[2:]) == 0
    assert run_main(run_argv(card, data, model, straight, *args)) == 0
    resumed, whole = read_json(out / "metrics.json"), read_json(straight / "metrics.json")
    assert resumed["validation"] == pytest.approx(whole["validation"], rel=1e-4)
    # train_loss covers all 12 steps, not only the 4 run after the resume
    assert resumed["train"]["train_loss"] == pytest.approx(whole["train"]["train_loss"], rel=1e-4)
    assert not leftovers(out) and not list(out.glob("checkpoint-*"))


@pytest.mark.slow
def test_injected_full_disk_while_checkpointing_and_staging(toy, tmp_path, monkeypatch, capsys):
    import torch

    from pipelines.reporting import plots

    card, data, model, _, old = toy
    out = _copy_prev(toy, tmp_path / "out")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full)  # optimizer.pt of the first checkpoint
        assert run_main(run_argv(card, data, model, out, "--num_train_epochs", "1", *LEARNS)) == 2
    line = one_error(capsys.readouterr().err)
    assert f"cannot save checkpoint-6 in {out / 'checkpoint-6'}: no space left on the disk" in line
    assert "no checkpoint is complete" in line
    with monkeypatch.context() as m:
        m.setattr(plots, "plot_curves", full)  # half-way through staging the outputs
        assert run_main(run_argv(card, data, model, out, "--num_train_epochs", "1", *LEARNS)) == 2
    line = one_error(capsys.readouterr().err)
    assert f"cannot write the run's outputs in {out}: no space left on the disk" in line
    assert run_id.verify(out) == old and not leftovers(out)  # the previous run, untouched


def _tmpfs_run(toy, tmp_path, extra_kib, *extra):
    """run.py with the previous run's folder on a tmpfs `extra_kib` larger than it; returns
    (exit code, stderr, the folder as the run left it, the folder's path inside the namespace)."""
    card, data, model, prev, _ = toy
    mnt, host = tmp_path / "mnt", tmp_path / "host"
    mnt.mkdir()
    host.mkdir()
    cmd = hooked("none") + run_argv(card, data, model, mnt / "out", "--num_train_epochs", "1", *LEARNS, *extra)
    proc = in_namespace([
        f"mount -t tmpfs -o size={folder_kib(prev) + extra_kib}k tmpfs {mnt}",
        f"cp -a {prev} {mnt}/out",
        f"set +e; {sh(cmd)} 2> {host}/stderr; echo $? > {host}/rc; set -e",
        f"cp -a {mnt}/out {host}/after",
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int((host / "rc").read_text()), (host / "stderr").read_text(), host / "after", mnt / "out"


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs here (no user namespaces)")
def test_full_disk_while_checkpointing_leaves_no_half_checkpoint(toy, tmp_path):
    code, stderr, after, out = _tmpfs_run(toy, tmp_path, 150)
    assert code == 2
    assert f"cannot save checkpoint-6 in {out / 'checkpoint-6'}: no space left on the disk" in one_error(stderr)
    assert run_id.verify(after) == toy[4] and not list(after.glob("checkpoint-*")) and not leftovers(after)


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs here (no user namespaces)")
def test_full_disk_while_staging_keeps_the_previous_run(toy, tmp_path):
    code, stderr, after, out = _tmpfs_run(toy, tmp_path, 100, "--save_strategy", "no",
                                          "--load_best_model_at_end", "false")
    assert code == 2
    assert f"cannot write the run's outputs in {out}: no space left on the disk" in one_error(stderr)
    assert run_id.verify(after) == toy[4] and not leftovers(after)


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs here (no user namespaces)")
def test_full_disk_while_predicting_keeps_what_resume_needs(toy, tmp_path, capsys):
    prev = toy[3]
    rows = [{"text": f"{r['text']} and the dog sat on the mat {i}"} for i, r in enumerate(toy_rows(1500))]
    source = write_csv(tmp_path / "in.csv", rows)
    mnt, host = tmp_path / "mnt", tmp_path / "host"
    mnt.mkdir()
    host.mkdir()
    # fp32 on any CPU (a VNNI CPU's default is int8, whose batches set its bytes): the resume may batch anew
    cmd = [sys.executable, "scripts/predict.py", "--model", str(prev), "--input", str(source),
           "--output", str(mnt / "pred" / "out.csv"), "--chunk-size", "200", "--fp32"]
    proc = in_namespace([f"mount -t tmpfs -o size=96k tmpfs {mnt}",
                         f"set +e; {sh(cmd)} 2> {host}/stderr; echo $? > {host}/rc; set -e",
                         f"cp -a {mnt}/pred {host}/pred"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (host / "rc").read_text().strip() == "2"
    line = one_error((host / "stderr").read_text())
    assert f"cannot write out.csv.partial in {mnt / 'pred'}: no space left on the disk" in line
    state = json.loads((host / "pred" / "out.csv.partial.json").read_text())
    assert f"the first {state['rows_done']} rows are kept" in line and state["rows_done"] > 0
    assert (host / "pred" / "out.csv.partial").stat().st_size == state["bytes"]  # nothing unrecorded left
    # room again (here: the same files on a disk with space): --resume completes to the exact bytes
    assert predict_script.main(["--model", str(prev), "--input", str(source), "--output",
                                str(host / "pred" / "out.csv"), "--chunk-size", "300", "--resume", "--fp32"]) == 0
    reference = tmp_path / "ref.csv"
    assert predict_script.main(["--model", str(prev), "--input", str(source), "--output", str(reference),
                                "--fp32"]) == 0
    assert (host / "pred" / "out.csv").read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in (host / "pred").iterdir()) == ["out.csv", "out.csv.meta.json"]


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="cannot mount a read-only folder here (no user namespaces)")
def test_read_only_output_folders_are_one_line_and_untouched(toy, tmp_path):
    card, data, model, prev, old = toy
    ro, host = tmp_path / "ro", tmp_path / "host"
    host.mkdir()
    shutil.copytree(prev, ro / "out")
    source = write_csv(tmp_path / "in.csv", toy_rows(4))
    run = hooked("none") + run_argv(card, data, model, ro / "out", "--max_steps", "2")
    predict = [sys.executable, "scripts/predict.py", "--model", str(prev), "--input", str(source),
               "--output", str(ro / "pred.csv")]
    proc = in_namespace([f"mount --bind {ro} {ro}", f"mount -o remount,bind,ro {ro}", "set +e",
                         f"{sh(run)} 2> {host}/run; echo $? >> {host}/rc",
                         f"{sh(predict)} 2> {host}/predict; echo $? >> {host}/rc"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (host / "rc").read_text().split() == ["2", "2"]
    assert f"--output-dir {ro / 'out'}: {ro / 'out'} is on a read-only file system" in one_error(
        (host / "run").read_text())
    predicted = one_error((host / "predict").read_text())
    assert f"--output {ro / 'pred.csv'}: {ro} is on a read-only file system" in predicted
    assert run_id.verify(ro / "out") == old and not leftovers(ro / "out")
