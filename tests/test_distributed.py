"""Two data-parallel CPU processes (gloo) through accelerate's launcher, on the tiny model."""

import csv
import os
import subprocess
import sys

import pytest
from conftest import ROOT, read_json, write_card

pytestmark = pytest.mark.slow  # each test starts accelerate's launcher and real processes


def _launch(toy_task, tiny_model, out, *launcher, extra=()):
    card, data = toy_task
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--main_process_port", "0",
           str(ROOT / "scripts" / "run.py"), "--task", str(card), "--data-dir", str(data),
           "--model", str(tiny_model), "--output-dir", str(out), "--num_train_epochs", "2",
           "--per_device_train_batch_size", "8", *extra]
    # No deadline that a busy machine can miss: the launcher's own process-group timeout (30 min) is the bound.
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT)


def test_two_cpu_processes_train_data_parallel_with_one_output(toy_task, tiny_model, tmp_path):
    out = tmp_path / "out"
    proc = _launch(toy_task, tiny_model, out, "--multi_gpu", "--num_processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(out / "metrics.json")
    assert summary["train"]["world_size"] == 2
    assert summary["train"]["effective_batch_size"] == 16
    assert proc.stderr.count("outputs written to") == 1  # the main process writes, once
    rows = list(csv.DictReader(open(out / "epochs.csv", encoding="utf-8")))
    assert len(rows) == 2
    # 48 training rows, 8 per process and step, 2 processes: 3 optimizer steps per epoch
    state_steps = [line for line in proc.stderr.splitlines() if "train_runtime" in line]
    assert len(state_steps) == 1 and "step 6:" in state_steps[0]
    assert not list(out.glob("checkpoint-*"))


def test_plain_launcher_without_gpus_explains_how_to_get_processes(toy_task, tiny_model, tmp_path):
    proc = _launch(toy_task, tiny_model, tmp_path / "out", "--num_processes", "2")
    # run.py exits 2 with one line; accelerate's launcher then reports the failed child itself
    assert proc.returncode != 0 and "returned non-zero exit status 2" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "accelerate launch --multi_gpu --num_processes N" in errors[0]
    assert not (tmp_path / "out").exists()


def test_two_processes_search_with_the_main_process_driving_the_study(toy_task, tiny_model, tmp_path):
    space = {"learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True}}
    card = write_card(tmp_path, name="toysearch", search=space)
    out = tmp_path / "out"
    proc = _launch((card, toy_task[1]), tiny_model, out, "--multi_gpu", "--num_processes", "2",
                   extra=["--search", "2", "--search_final"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "trials.csv", encoding="utf-8")))
    assert [r["state"] for r in rows] == ["complete", "complete"]
    assert proc.stderr.count("search: trial 0 (1 of 2") == 1  # one process drives the study and logs
    final = read_json(out / "final" / "metrics.json")
    assert final["train"]["world_size"] == 2
    learning_rate = read_json(out / "search.json")["best"]["params"]["learning_rate"]
    assert read_json(out / "final" / "run_config.json")["training_arguments"]["learning_rate"] == learning_rate
