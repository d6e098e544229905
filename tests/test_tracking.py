"""Experiment tracking with --report_to: TensorBoard event files read back (curves, hyperparameters,
final metrics), seeds and resumed runs, trackio, and a missing backend's one-line error."""

import csv
import importlib.util
import sys

import pytest
from conftest import read_json

from pipelines.cli.run import main

LEARNS = ["--learning_rate", "1e-2", "--per_device_train_batch_size", "8"]


def _run(toy_task, tiny_model, out, *extra):
    card, data = toy_task
    return main(["--task", str(card), "--data-dir", str(data), "--model", str(tiny_model),
                 "--output-dir", str(out), *extra])


def _events(folder):
    """The events of the one run logged under OUT/runs/<run name> (each run has a folder of its own there)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = [p for p in folder.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    return events


def _scalars(events, tag):
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _hparams(events) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: v.string_value or v.number_value for k, v in values.items()}


@pytest.mark.slow
def test_tensorboard_gets_epoch_curves_hyperparameters_and_final_metrics(toy_task, tiny_model, tmp_path):
    out = tmp_path / "out"
    assert _run(toy_task, tiny_model, out, "--report_to", "tensorboard", "--num_train_epochs", "3", *LEARNS) == 0
    name = read_json(out / "run_config.json")["training_arguments"]["run_name"]
    assert name == f"toy-{tiny_model.name}-seed42"  # card, model, seed
    events = _events(out / "runs" / name)
    rows = list(csv.DictReader(open(out / "epochs.csv", encoding="utf-8")))
    for tag, column in (("train/loss", "train_loss"), ("eval/loss", "validation_loss"),
                        ("eval/accuracy", "validation_accuracy"), ("eval/mcc", "validation_mcc"),
                        ("eval/f1", "validation_f1")):
        points = _scalars(events, tag)
        assert [step for step, _ in points] == [6, 12, 18], tag  # one point per epoch (6 steps each)
        assert [v for _, v in points] == pytest.approx([float(r[column]) for r in rows], abs=1e-5), tag
    summary = read_json(out / "metrics.json")
    for metric in ("accuracy", "mcc", "f1", "loss"):  # the restored best checkpoint's, as in metrics.json
        (step, value), = _scalars(events, f"final/validation_{metric}")
        assert step == 18 and value == pytest.approx(summary["validation"][metric], abs=1e-5)
    hparams = _hparams(events)
    assert hparams["task"] == "toy" and hparams["model"] == str(tiny_model) and hparams["seed"] == 42
    assert hparams["tags"] == f"toy,{tiny_model.name},seed-42,en"
    assert hparams["card/select_by"] == "accuracy" and hparams["card/defaults/num_train_epochs"] == 2
    assert hparams["args/num_train_epochs"] == 3 and hparams["args/learning_rate"] == pytest.approx(0.01)
    assert hparams["run/head"] == "linear" and hparams["run/layerwise_lr_decay"] == 1.0


@pytest.mark.slow
def test_seeds_get_a_run_each_and_a_resumed_run_continues_its_curves(toy_task, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "seeds"
    assert _run(toy_task, tiny_model, out, "--report_to", "tensorboard", "--num_train_epochs", "1",
                "--seeds", "1,2", *LEARNS) == 0
    for seed in (1, 2):
        events = _events(out / f"seed-{seed}" / "runs" / f"toy-{tiny_model.name}-seed{seed}")
        assert _hparams(events)["seed"] == seed and len(_scalars(events, "eval/accuracy")) == 1

    from pipelines.training import callbacks

    class Interrupt(Exception):
        pass

    def stop_after_second_save(self, args, state, control, **kwargs):
        if state.global_step >= 12:
            raise Interrupt("simulated crash after the epoch-2 checkpoint")

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(callbacks.LogCallback, "on_save", stop_after_second_save, raising=False)
    with pytest.raises(Interrupt):
        _run(toy_task, tiny_model, resumed, "--report_to", "tensorboard", "--num_train_epochs", "3", *LEARNS)
    monkeypatch.undo()
    assert _run(toy_task, tiny_model, resumed, "--report_to", "tensorboard", "--num_train_epochs", "3", "--resume",
                *LEARNS) == 0
    assert [p.name for p in (resumed / "runs").iterdir()] == [f"toy-{tiny_model.name}-seed42"]
    events = _events(resumed / "runs" / f"toy-{tiny_model.name}-seed42")
    # One run, continued: each epoch's point once (the two event files may be read in either order).
    assert sorted(step for step, _ in _scalars(events, "eval/accuracy")) == [6, 12, 18]
    # a fresh run of the same name gets a folder of its own beside it
    assert _run(toy_task, tiny_model, resumed, "--report_to", "tensorboard", "--num_train_epochs", "1", *LEARNS) == 0
    assert len(list((resumed / "runs" / f"toy-{tiny_model.name}-seed42").iterdir())) == 2
    assert [step for step, _ in _scalars(events, "final/validation_accuracy")] == [18]


@pytest.mark.slow
def test_trackio_run_has_the_config_and_final_metrics_offline(toy_task, tiny_model, tmp_path, monkeypatch):
    if "trackio" in sys.modules:
        pytest.skip("trackio was imported earlier in this process with another TRACKIO_DIR")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    out = tmp_path / "out"
    assert _run(toy_task, tiny_model, out, "--report_to", "trackio", "--num_train_epochs", "2", *LEARNS) == 0
    import trackio

    name = f"toy-{tiny_model.name}-seed42"
    logs = trackio.SQLiteStorage.get_logs("cardtune", name)
    assert [row["eval/accuracy"] for row in logs if "eval/accuracy" in row] and len(logs) >= 3
    final = [row for row in logs if "final/validation_accuracy" in row]
    summary = read_json(out / "metrics.json")
    assert len(final) == 1 and final[0]["final/validation_accuracy"] == pytest.approx(summary["validation"]["accuracy"])
    config = trackio.SQLiteStorage.get_run_config("cardtune", name)
    assert config["task"] == "toy" and config["card/select_by"] == "accuracy" and config["seed"] == 42


@pytest.mark.parametrize("backend", ["tensorboard", "trackio", "wandb"])
def test_missing_backend_is_one_line_with_the_install_command_before_any_work(
        backend, toy_task, tiny_model, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == backend else real(name, *a))
    out = tmp_path / "never"
    assert _run(toy_task, tiny_model, out, "--report_to", backend) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    assert f"--report_to {backend}: the `{backend}` package is not installed" in errors[0]
    install = 'pip install -e ".[tracking]"' if backend != "wandb" else "pip install wandb"
    assert install in errors[0]
    assert not out.exists()
