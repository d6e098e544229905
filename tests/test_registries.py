"""The metric, head and freezing registries drive what runs compute, build and report."""

import csv
import dataclasses
import subprocess
import sys

import pytest
from conftest import ROOT, read_json, write_card
from fake_hub import model_index_metrics, split_card

from pipelines.card.cards import load_card
from pipelines.cli.run import main
from pipelines.evaluation import metrics
from pipelines.modeling import freezing, heads
from pipelines.reporting.modelcard import read_run, render
from pipelines.training import arguments


@pytest.mark.slow
def test_a_card_listing_balanced_accuracy_computes_selects_by_and_reports_it(toy_task, tiny_model, tmp_path):
    _, data = toy_task
    card = write_card(tmp_path, "balanced", metrics=["balanced_accuracy", "accuracy"], select_by="balanced_accuracy")
    defaults = arguments.base_defaults(load_card(str(card)))
    assert defaults["metric_for_best_model"] == "balanced_accuracy" and defaults["greater_is_better"] is True
    out = tmp_path / "out"
    argv = ["--task", str(card), "--data-dir", str(data), "--model", str(tiny_model), "--output-dir", str(out)]
    assert main([*argv, "--num_train_epochs", "3", "--learning_rate", "1e-2"]) == 0
    summary = read_json(out / "metrics.json")
    assert [k for k in summary["validation"] if k != "loss"] == ["balanced_accuracy", "accuracy"]  # the card's order
    rows = list(csv.DictReader(open(out / "epochs.csv", encoding="utf-8")))
    best = max(rows, key=lambda r: float(r["validation_balanced_accuracy"]))
    assert summary["best_epoch"] == int(best["epoch"]) and summary["select_by"] == "balanced_accuracy"
    assert summary["validation"]["balanced_accuracy"] == pytest.approx(float(best["validation_balanced_accuracy"]))
    assert "validation_mcc" not in rows[0]
    assert read_json(out / "run_config.json")["training_arguments"]["metric_for_best_model"] == "balanced_accuracy"
    meta, body = split_card(render(read_run(out), "alice/balanced"))
    shown = model_index_metrics(meta)["validation"]
    assert shown["balanced_accuracy"] == summary["validation"]["balanced_accuracy"]
    assert "matthews_correlation" not in shown
    assert "best validation `balanced_accuracy`" in body


def test_a_lower_is_better_metric_flips_greater_is_better(toy_task, monkeypatch):
    monkeypatch.setitem(metrics.METRICS, "error_rate", metrics.Metric(
        "error_rate", lambda labels, preds, n: float((labels != preds).mean()), False, "error_rate", "Error rate"))
    card = dataclasses.replace(load_card(str(toy_task[0])), metrics=("error_rate",), select_by="error_rate")
    assert arguments.base_defaults(card)["greater_is_better"] is False
    assert metrics.compute([0, 1, 1, 1], [0, 1, 0, 0], 2, card.metrics) == {"error_rate": 0.5}


def test_a_metric_name_registers_once():
    with pytest.raises(ValueError, match="registered twice"):
        metrics.register_metric("accuracy")(metrics.accuracy)


@pytest.mark.slow
def test_run_options_offer_the_registered_names_without_importing_torch():
    code = ("import sys, typing; from pipelines.training.options import RunArgs; "
            "hints = typing.get_type_hints(RunArgs); head = typing.get_args(hints['head'])[0]; "
            "print([m.value for m in head], [m.value for m in hints['freeze']], 'torch' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert shown.strip() == f"{list(heads.HEADS)} {list(freezing.STRATEGIES)} False"


def test_the_head_registry_decides_the_pooler_and_the_model_class(toy_task, tiny_model):
    from pipelines.modeling import loading
    from pipelines.modeling.pooled_classifier import PooledClassifier

    card = load_card(str(toy_task[0]))
    for name, head in heads.HEADS.items():
        model = loading.load_model(card, str(tiny_model), head=name)
        assert isinstance(model, PooledClassifier) != head.is_models_own, name
        assert (freezing.encoder_of(model).pooler is not None) == head.uses_pooler, name
