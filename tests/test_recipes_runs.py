"""Run-level guard rails: early stopping, resume, seeds, the degenerate-run alarm, per-class reports."""

import csv

import pytest
import torch
from conftest import read_json
from safetensors.torch import load_file

from pipelines.cli.run import main

pytestmark = pytest.mark.slow  # full training runs through scripts/run.py

LEARNS = ["--learning_rate", "1e-2", "--per_device_train_batch_size", "8"]


def _run(toy_task, tiny_model, out, *extra):
    card, data = toy_task
    return main(["--task", str(card), "--data-dir", str(data), "--model", str(tiny_model),
                 "--output-dir", str(out), *extra])


def test_learning_run_has_no_alarm_and_consistent_confusion_matrix(toy_task, tiny_model, tmp_path):
    out = tmp_path / "out"
    assert _run(toy_task, tiny_model, out, "--num_train_epochs", "8", *LEARNS) == 0
    summary = read_json(out / "metrics.json")
    assert summary["validation"]["accuracy"] >= 0.9 and summary["alarm"] is None
    rows = list(csv.reader(open(out / "confusion_validation.csv", encoding="utf-8")))
    assert rows[0][1:] == ["neg", "pos"]
    counts = [[int(c) for c in row[1:]] for row in rows[1:]]
    assert sum(map(sum, counts)) == 16
    assert (counts[0][0] + counts[1][1]) / 16 == pytest.approx(summary["validation"]["accuracy"])
    per_class = list(csv.DictReader(open(out / "per_class_validation.csv", encoding="utf-8")))
    assert [r["label"] for r in per_class] == ["neg", "pos"]
    assert [int(r["support"]) for r in per_class] == [sum(counts[0]), sum(counts[1])]
    assert (out / "confusion_validation.png").read_bytes()[:4] == b"\x89PNG"
    assert "Per class (validation)" in (out / "summary.md").read_text(encoding="utf-8")


def test_single_class_run_raises_the_alarm_everywhere(toy_task, tiny_model, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert _run(toy_task, tiny_model, out, "--num_train_epochs", "1", "--learning_rate", "0") == 0
    alarm = read_json(out / "metrics.json")["alarm"]
    assert alarm.startswith("DEGENERATE RUN: the model predicts '") and "for every validation example" in alarm
    assert "learning rate" in alarm and "epochs" in alarm
    assert "DEGENERATE RUN" in caplog.text
    assert "WARNING: DEGENERATE RUN" in (out / "summary.md").read_text(encoding="utf-8")


def test_early_stopping_stops_when_the_metric_stalls(toy_task, tiny_model, tmp_path):
    out = tmp_path / "out"
    assert _run(toy_task, tiny_model, out, "--num_train_epochs", "6", "--learning_rate", "0",
                "--early_stopping_patience", "1") == 0
    rows = list(csv.DictReader(open(out / "epochs.csv", encoding="utf-8")))
    assert len(rows) == 2  # the first evaluation sets the best, the second does not improve: stop


class Interrupt(Exception):
    pass


def test_resume_after_an_interruption_gives_the_uninterrupted_result(toy_task, tiny_model, tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _run(toy_task, tiny_model, straight, "--num_train_epochs", "6", *LEARNS) == 0
    assert read_json(straight / "metrics.json")["validation"]["accuracy"] > 0.8  # a run that learned

    from pipelines.training import callbacks

    def stop_after_second_save(self, args, state, control, **kwargs):
        if state.global_step >= 12:
            raise Interrupt("simulated crash after the epoch-2 checkpoint")

    monkeypatch.setattr(callbacks.LogCallback, "on_save", stop_after_second_save, raising=False)
    with pytest.raises(Interrupt):
        _run(toy_task, tiny_model, resumed, "--num_train_epochs", "6", *LEARNS)
    assert not (resumed / "metrics.json").exists() and list(resumed.glob("checkpoint-*"))
    monkeypatch.undo()
    assert _run(toy_task, tiny_model, resumed, "--num_train_epochs", "6", "--resume", *LEARNS) == 0
    a, b = read_json(straight / "metrics.json"), read_json(resumed / "metrics.json")
    assert a["validation"] == pytest.approx(b["validation"], rel=1e-5)
    losses = [[float(r["train_loss"]) for r in csv.DictReader(open(d / "epochs.csv"))] for d in (straight, resumed)]
    assert len(losses[1]) == 6 and losses[0] == pytest.approx(losses[1], rel=1e-5)
    wa, wb = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_resume_without_checkpoint_is_a_clear_error(toy_task, tiny_model, tmp_path, capsys):
    assert _run(toy_task, tiny_model, tmp_path / "none", "--resume") == 2
    assert "--resume: no checkpoint-* folder in" in capsys.readouterr().err


def test_seeds_report_each_and_mean_and_std(toy_task, tiny_model, tmp_path, caplog):
    import statistics

    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        assert _run(toy_task, tiny_model, out, "--num_train_epochs", "2", "--seeds", "1,2,3", *LEARNS) == 0
    summary = read_json(out / "metrics.json")
    assert summary["seeds"] == [1, 2, 3]
    for seed in (1, 2, 3):
        own = read_json(out / f"seed-{seed}" / "metrics.json")
        assert own["recipe"]["seed"] == seed
        assert summary["runs"][str(seed)]["validation"] == own["validation"]
    values = [summary["runs"][s]["validation"]["mcc"] for s in ("1", "2", "3")]
    assert summary["validation"]["mcc"]["mean"] == pytest.approx(statistics.fmean(values))
    assert summary["validation"]["mcc"]["std"] == pytest.approx(statistics.stdev(values))
    assert "mean ± std" in (out / "summary.md").read_text(encoding="utf-8")
    assert "validation mcc over seeds [1, 2, 3]:" in caplog.text
