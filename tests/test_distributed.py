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
    assert not (out / "trials").exists()  # tidied by the main process alone, after the last trial
    final = read_json(out / "final" / "metrics.json")
    assert final["train"]["world_size"] == 2
    learning_rate = read_json(out / "search.json")["best"]["params"]["learning_rate"]
    assert read_json(out / "final" / "run_config.json")["training_arguments"]["learning_rate"] == learning_rate


# Two "machines" on one host: a launcher each (--num_machines 2, --machine_rank 0|1), one process
# each, each with its own output folder, meeting on 127.0.0.1.

def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _machines(script_args, outs, port, log_dir):
    """Start both machines' launchers; (Popen, log path) per machine rank."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    started = []
    for rank, out in enumerate(outs):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
               "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(port), *script_args(out)]
        log = log_dir / f"machine{rank}.log"
        proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
        started.append((proc, log))
    return started


def _worker(launcher_pid):
    """The pid of the cardtune process a launcher started (its child running python)."""
    import glob

    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == launcher_pid:
            return int(stat.split("/")[2])
    return None


def _wait_for(log, text, proc, seconds=240):
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if text in log.read_text(encoding="utf-8", errors="replace"):
            return
        assert proc.poll() is None, log.read_text(encoding="utf-8")[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in {log} after {seconds} s")


def _finish(started, seconds=300):
    for proc, _ in started:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
    return [(proc.returncode, log.read_text(encoding="utf-8", errors="replace")) for proc, log in started]


def _wait_or_kill(started, seconds):
    """Machine 0's launcher ends within `seconds`; else every process is killed (none outlives the test)."""
    try:
        started[0][0].wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        for proc, _ in started:
            os.killpg(proc.pid, 9)
        raise AssertionError(f"machine 0 still running {seconds} s after its peer was lost") from None


def _error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error: ")]


def _predict_args(model, source, extra=()):
    return lambda out: [str(ROOT / "scripts" / "predict.py"), "--model", str(model), "--input", str(source),
                        "--output", str(out), "--chunk-size", "20", "--threads", "1", "--fp32", *extra]


def _train_args(toy_task, tiny_model, extra=()):
    card, data = toy_task
    return lambda out: [str(ROOT / "scripts" / "run.py"), "--task", str(card), "--data-dir", str(data), "--model",
                        str(tiny_model), "--output-dir", str(out), "--per_device_train_batch_size", "8", *extra]


def test_two_machines_train_and_predict_like_one(toy_task, carded_model, tiny_model, tmp_path):
    from conftest import toy_rows, write_csv

    outs = [tmp_path / "m0", tmp_path / "m1"]
    started = _machines(_train_args(toy_task, tiny_model, ["--max_steps", "4"]), outs, _free_port(), tmp_path)
    (code0, log0), (code1, log1) = _finish(started)
    assert code0 == 0 and code1 == 0, log0[-3000:] + log1[-3000:]
    summary = read_json(outs[0] / "metrics.json")  # machine 0 reports, once
    assert summary["train"]["world_size"] == 2 and not (outs[1] / "metrics.json").exists()

    source = write_csv(tmp_path / "in.csv", toy_rows(200))
    single = tmp_path / "single.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), *_predict_args(
        carded_model, source)(single)[1:]], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    started = _machines(_predict_args(carded_model, source), [o / "pred.csv" for o in outs], _free_port(), tmp_path)
    (code0, log0), (code1, log1) = _finish(started)
    assert code0 == 0 and code1 == 0, log0[-3000:] + log1[-3000:]
    assert (outs[0] / "pred.csv").read_bytes() == single.read_bytes()
    assert not (outs[1] / "pred.csv").exists()  # machine 0 writes the file


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_lost_machine_ends_prediction_with_one_line_and_it_resumes(carded_model, tmp_path, how):
    import signal
    import time

    from conftest import toy_rows, write_csv

    source = write_csv(tmp_path / "in.csv", toy_rows(20000))
    outs = [tmp_path / "m0" / "pred.csv", tmp_path / "m1" / "pred.csv"]
    for out in outs:
        out.parent.mkdir()
    args = _predict_args(carded_model, source, ["--ddp-timeout", "20"])
    started = _machines(args, outs, _free_port(), tmp_path)
    _wait_for(started[0][1], "rows done", started[0][0])
    victim = _worker(started[1][0].pid)
    os.kill(victim, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    lost_at = time.monotonic()
    _wait_or_kill(started, 240)
    assert time.monotonic() - lost_at < 120  # 20 s of timeout, plus start-up of nothing: well under 5 minutes
    if how == "stopped":
        os.kill(victim, signal.SIGKILL)
    (_, log0), _ = _finish(started)
    errors = _error_lines(log0)
    assert len(errors) == 1 and "--resume" in errors[0], log0[-3000:]
    assert ("died" if how == "killed" else "stopped answering") in errors[0]
    assert "exitcode: 2" in log0 or "exitcode  : 2" in log0  # cardtune's exit code, as the launcher reports it
    assert "Traceback" not in log0.split("ChildFailedError")[0].split("error: ")[0]  # none from cardtune
    assert not outs[0].exists() and outs[0].with_name("pred.csv.partial").exists()

    started = _machines(_predict_args(carded_model, source, ["--resume"]), outs, _free_port(), tmp_path)
    (code0, log0), (code1, _) = _finish(started)
    assert code0 == 0 and code1 == 0, log0[-3000:]
    assert "resumed after row" in log0
    single = tmp_path / "single.csv"
    proc = subprocess.run([sys.executable, *_predict_args(carded_model, source)(single)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and outs[0].read_bytes() == single.read_bytes()


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_lost_machine_ends_training_with_one_line_and_nothing_complete(toy_task, tiny_model, tmp_path, how):
    import signal
    import time

    outs = [tmp_path / "m0", tmp_path / "m1"]
    args = _train_args(toy_task, tiny_model, ["--num_train_epochs", "5000", "--ddp_timeout", "20",
                                              "--save_strategy", "no", "--eval_strategy", "no"])
    started = _machines(args, outs, _free_port(), tmp_path)
    _wait_for(started[0][1], "train: step", started[0][0])
    victim = _worker(started[1][0].pid)
    os.kill(victim, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    lost_at = time.monotonic()
    _wait_or_kill(started, 240)
    assert time.monotonic() - lost_at < 120
    if how == "stopped":
        os.kill(victim, signal.SIGKILL)
    (_, log0), _ = _finish(started)
    errors = _error_lines(log0)
    assert len(errors) == 1 and "--resume" in errors[0], log0[-3000:]
    assert ("died" if how == "killed" else "stopped answering") in errors[0]
    assert not (outs[0] / "metrics.json").exists() and not (outs[0] / "model.safetensors").exists()
