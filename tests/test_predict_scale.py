"""Prediction at scale: int8 and bf16, ONNX export, several processes writing one file, threads."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, interrupt_second_chunk, toy_rows, write_csv
from test_predict import _read

from pipelines import hardware
from pipelines.cli.export import main as export_main
from pipelines.cli.predict import main
from pipelines.prediction import backends
from pipelines.prediction.classifier import Classifier

# ONNX export, int8 quantization and launched processes: seconds to a minute and a half each.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(carded_model):
    return carded_model


@pytest.fixture(scope="module")
def rows_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("rows") / "in.csv", toy_rows(600))


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    return errors[0]


def _meta(out):
    return json.loads(out.with_name(out.name + ".meta.json").read_text(encoding="utf-8"))


def _labels_and_probs(path):
    header, *body = _read(path)
    probs = np.array([[float(r[header.index(c)]) for c in ("prob_neg", "prob_pos")] for r in body])
    return [r[header.index("predicted")] for r in body], probs


def test_int8_and_bf16_are_labelled_and_resume_never_mixes_precisions(model, rows_csv, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    base = ["--model", str(model), "--input", str(rows_csv), "--chunk-size", "100", "--output"]
    assert main(base + [str(tmp_path / "fp32.csv"), "--fp32"]) == 0
    for flag in ("--int8", "--bf16"):
        out = tmp_path / f"{flag[2:]}.csv"
        assert main(base + [str(out), flag]) == 0
        meta = _meta(out)
        assert meta["precision"] == flag[2:] and meta["rows"] == 600
        assert meta["seconds"] > 0 and meta["rows_per_s"] > 0 and meta["resumed_from"] == 0
        assert meta["backend"] == ("onnxruntime" if flag == "--int8" else "torch")
        assert f"{flag[2:]} {meta['backend']}" in capsys.readouterr().out
        labels, probs = _labels_and_probs(out)
        ref_labels, ref_probs = _labels_and_probs(tmp_path / "fp32.csv")
        assert sum(a == b for a, b in zip(labels, ref_labels)) >= 0.95 * len(labels)  # a tiny random model
        assert np.abs(probs - ref_probs).max() < 0.1 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)

    stop_interrupting = interrupt_second_chunk(monkeypatch)
    out = tmp_path / "mixed.csv"
    assert main(base + [str(out), "--fp32"]) == 130
    stop_interrupting()
    capsys.readouterr()
    assert main(base + [str(out), "--int8", "--resume"]) == 2
    assert "the interrupted run wrote fp32 predictions and this one would write int8" in _error_line(capsys)
    assert main(base + [str(out), "--fp32", "--resume"]) == 0
    assert out.read_bytes() == (tmp_path / "fp32.csv").read_bytes()


def test_int8_resume_refuses_a_partial_made_from_another_graph_recipe(model, rows_csv, tmp_path, monkeypatch, capsys):
    """An int8 file started by a cardtune that built its graph differently (e.g. sdpa attention) is not continued."""
    pytest.importorskip("onnxruntime")
    from pipelines.prediction import onnx_graph

    base = ["--model", str(model), "--input", str(rows_csv), "--chunk-size", "100", "--int8", "--output"]
    out = tmp_path / "int8.csv"
    with monkeypatch.context() as patch:
        interrupt_second_chunk(patch)
        patch.setattr(onnx_graph, "RECIPE", {**onnx_graph.RECIPE, "attention": "sdpa"})
        assert main(base + [str(out)]) == 130
    state = json.loads(out.with_name(out.name + ".partial.json").read_text(encoding="utf-8"))
    assert state["fingerprint"]["graph"]["attention"] == "sdpa"
    capsys.readouterr()
    assert main(base + [str(out), "--resume"]) == 2
    assert "graph" in _error_line(capsys)
    assert main(base + [str(out)]) == 0 and not out.with_name(out.name + ".partial.json").exists()


def test_onnx_export_loads_in_plain_onnxruntime_and_in_predict(model, rows_csv, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from transformers import AutoTokenizer

    folder = tmp_path / "exported"
    assert export_main([str(folder), "--onnx", "--model", str(model), "--sample", str(rows_csv)]) == 0
    printed = capsys.readouterr().out
    info = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    check = info["verification"]
    assert info["precision"] == "fp32" and check["rows"] == 600 and check["label_agreement"] == 1.0
    assert check["max_prob_diff"] < 1e-5 and "labels agree on 600/600 (100.00%)" in printed

    # plain onnxruntime, no cardtune: batch and sequence axes are dynamic
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    texts = ["the movie was very good", "bad", "the plot was terrible and the actor was boring"]
    enc = tokenizer(texts, padding=True, return_tensors="np")
    logits = session.run(None, {i.name: enc[i.name] for i in session.get_inputs()})[0]
    expected, _ = Classifier(model, "cpu").score(texts, None, 16, "longest_first", 8)
    assert np.abs(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True) - expected).max() < 1e-5

    base = ["--input", str(rows_csv), "--chunk-size", "100", "--output"]
    assert main(["--model", str(model), "--fp32"] + base + [str(tmp_path / "torch.csv")]) == 0
    assert main(["--model", str(folder)] + base + [str(tmp_path / "onnx.csv")]) == 0
    assert _meta(tmp_path / "onnx.csv")["backend"] == "onnxruntime"
    (labels, probs), (ref_labels, ref_probs) = (_labels_and_probs(tmp_path / f) for f in ("onnx.csv", "torch.csv"))
    assert labels == ref_labels and np.abs(probs - ref_probs).max() <= 2e-6
    capsys.readouterr()
    assert main(["--model", str(folder), "--int8"] + base + [str(tmp_path / "x.csv")]) == 2
    assert "was exported in fp32" in _error_line(capsys)
    assert export_main([str(folder), "--onnx", "--model", str(model), "--sample", str(rows_csv)]) == 2
    assert "exists and is not empty" in _error_line(capsys)
    assert export_main([str(tmp_path / "int8"), "--onnx", "--int8", "--model", str(model), "--sample",
                        str(rows_csv), "--sample-rows", "50"]) == 0
    info = json.loads((tmp_path / "int8" / "export.json").read_text(encoding="utf-8"))
    assert info["precision"] == "int8" and info["verification"]["rows"] == 50 and info["quantization"]
    assert main(["--model", str(tmp_path / "int8"), "--int8"] + base + [str(tmp_path / "i.csv")]) == 0


def _launch(script, model, source, out, *extra, env=None, processes=2):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--main_process_port", "0", str(script), "--model", str(model), "--input", str(source),
           "--output", str(out), "--chunk-size", "40", "--threads", "1", "--fp32", "--label-column", "label", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("dying_rank", ["1", "0"])
def test_two_processes_write_the_single_process_file_and_resume_after_one_dies(model, rows_csv, tmp_path, capsys,
                                                                               dying_rank):
    reference = tmp_path / "single.csv"
    assert main(["--model", str(model), "--input", str(rows_csv), "--output", str(reference), "--chunk-size", "40",
                 "--threads", "1", "--fp32", "--label-column", "label"]) == 0
    single_report = capsys.readouterr().out.splitlines()
    out = tmp_path / "multi.csv"
    if dying_rank == "1":  # once: an uninterrupted 2-process run gives the same bytes and report
        proc = _launch(ROOT / "scripts" / "predict.py", model, rows_csv, out)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert out.read_bytes() == reference.read_bytes()
        assert _meta(out)["processes"] == 2
        assert "600 rows, 600 predicted" in proc.stdout and "2 processes" in proc.stdout
        assert proc.stdout.splitlines()[1:] == single_report[1:]  # errors, truncation, metrics: the whole file's
        out.unlink()
    # a process is killed in its 3rd chunk (round 3): rounds 1 and 2 (4 chunks, 160 rows) are on disk
    dies = {"DIE_RANK": dying_rank, "DIE_AT": "3"}
    proc = _launch(ROOT / "tests" / "predict_dies.py", model, rows_csv, out, env=dies)
    assert proc.returncode != 0 and not out.exists()
    state = json.loads((tmp_path / "multi.csv.partial.json").read_text(encoding="utf-8"))
    assert state["rows_done"] == 160
    proc = _launch(ROOT / "scripts" / "predict.py", model, rows_csv, out, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed after row 160" in proc.stdout
    assert out.read_bytes() == reference.read_bytes()


def test_plain_launcher_without_gpus_is_one_error(model, rows_csv, tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--main_process_port", "0",
           str(ROOT / "scripts" / "predict.py"), "--model", str(model), "--input", str(rows_csv), "--output",
           str(tmp_path / "o.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 1
    assert "accelerate launch --multi_gpu --num_processes N scripts/predict.py" in errors[0]


def test_thread_governor_uses_the_cores_others_leave_free(monkeypatch):
    clock = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(hardware, "_machine_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(hardware.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(hardware.time, "process_time", lambda: clock["own"])
    threads = []
    import torch

    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads[-1] if threads else 4)
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)

    def tick(seconds, others, own):
        clock["wall"] += seconds
        clock["busy"] += seconds * (others + own)
        clock["own"] += seconds * own

    governor = hardware.ThreadGovernor(share=4, settle_s=0)
    for others, own, expected in [(0.0, 4.0, 4), (1.0, 3.0, 3), (2.7, 1.3, 1), (3.9, 0.1, 1), (0.2, 1.0, 4)]:
        tick(10, others, own)
        assert governor.update() == expected
    tick(0.05, 4.0, 0.0)  # too short a look to judge: unchanged
    assert governor.update() == 4


def test_default_precision_is_bf16_only_on_cpus_with_amx(monkeypatch):
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx512f", "avx512_bf16", "amx_bf16"})
    assert backends.auto_precision("cpu") == "bf16"
    assert backends.auto_precision("cuda") == "fp32"
    assert backends.auto_precision("cpu", calibrated=True) == "bf16"  # AMX has VNNI too: bf16 was measured
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "avx512_bf16"})  # bf16 untried without AMX
    assert backends.auto_precision("cpu") == "fp32"


def test_default_precision_is_int8_with_rescoring_on_cpus_with_vnni_or_avx2_and_a_calibrated_model(monkeypatch):
    monkeypatch.setattr(backends, "onnxruntime_installed", lambda: True)
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert backends.auto_precision("cpu", calibrated=True) == "int8"
    assert backends.auto_precision("cpu", calibrated=False) == "fp32"  # no rows to set the re-scoring threshold
    assert backends.auto_precision("cuda", calibrated=True) == "fp32"
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "fma"})  # AVX2's kernels: measured faster too
    assert backends.auto_precision("cpu", calibrated=True) == "int8"
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"sse4_2", "avx"})  # int8's speed unmeasured there
    assert backends.auto_precision("cpu", calibrated=True) == "fp32"
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "avx_vnni"})
    monkeypatch.setattr(backends, "onnxruntime_installed", lambda: False)
    assert backends.auto_precision("cpu", calibrated=True) == "fp32"
