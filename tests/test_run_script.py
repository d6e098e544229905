import csv
import json

import pytest
import yaml
from conftest import read_json, write_card

from pipelines.cli.run import main


def _run(card, data, model, out, *extra):
    argv = ["--task", str(card), "--model", str(model), "--output-dir", str(out)]
    if data is not None:
        argv += ["--data-dir", str(data)]
    return main(argv + list(extra))


@pytest.mark.slow
def test_toy_run_writes_every_output(toy_task, tiny_model, tmp_path):
    card, data = toy_task
    out = tmp_path / "out"
    assert _run(card, data, tiny_model, out, "--num_train_epochs", "3") == 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "task_card.yaml", "run_config.json",
                 "metrics.json", "epochs.csv", "epochs.md", "learning_curve.png", "summary.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".staging-*"))
    summary = read_json(out / "metrics.json")
    assert summary["task"] == "toy" and summary["data"]["kind"] == "local" and summary["warning"] is None
    assert set(summary["validation"]) >= {"accuracy", "mcc", "f1", "loss"}
    assert summary["data"]["sizes"] == {"train": 48, "validation": 16}
    rows = list(csv.DictReader(open(out / "epochs.csv", encoding="utf-8")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert all(float(r["train_loss"]) > 0 and float(r["epoch_time_s"]) > 0 for r in rows)
    # the reported validation metrics are those of the best epoch (restored), not the last one
    best = max(rows, key=lambda r: float(r["validation_accuracy"]))
    assert summary["best_epoch"] == int(best["epoch"])
    assert summary["validation"]["accuracy"] == pytest.approx(float(best["validation_accuracy"]))
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert read_json(out / "run_config.json")["attention"] == "sdpa"  # the attention used, not only the one asked
    assert yaml.safe_load((out / "task_card.yaml").read_text(encoding="utf-8"))["labels"] == ["neg", "pos"]


@pytest.mark.slow
def test_precedence_library_card_cli(toy_task, tiny_model, tmp_path):
    card, data = toy_task
    out = tmp_path / "out"
    assert _run(card, data, tiny_model, out, "--num_train_epochs", "1", "--weight_decay", "0.05") == 0
    args = read_json(out / "run_config.json")["training_arguments"]
    assert args["learning_rate"] == 1e-3  # card default over the library's 5e-5
    assert args["num_train_epochs"] == 1  # command line over the card's 2
    assert args["weight_decay"] == 0.05
    assert args["adam_beta1"] == 0.9  # library default kept
    assert args["eval_strategy"] == "epoch" and args["train_sampling_strategy"] == "group_by_length"


@pytest.mark.slow
def test_same_seed_same_result(toy_task, tiny_model, tmp_path):
    card, data = toy_task
    results = []
    for name in ("a", "b"):
        assert _run(card, data, tiny_model, tmp_path / name, "--num_train_epochs", "1") == 0
        results.append(read_json(tmp_path / name / "metrics.json")["validation"])
    assert results[0] == results[1]


@pytest.mark.slow
def test_test_split_gets_predictions_in_input_order(toy_task, tiny_model, tmp_path):
    card, data = toy_task
    import shutil

    shutil.copy(data / "dev.csv", data / "test.csv")
    card = write_card(tmp_path, dataset={"local": {"format": "csv", "files": {
        "train": "train.csv", "validation": "dev.csv", "test": "test.csv"}}})
    out = tmp_path / "out"
    assert _run(card, data, tiny_model, out, "--num_train_epochs", "1") == 0
    preds = list(csv.DictReader(open(out / "test_predictions.csv", encoding="utf-8")))
    gold = list(csv.DictReader(open(data / "test.csv", encoding="utf-8")))
    assert [p["text"] for p in preds] == [g["text"] for g in gold]
    assert [p["gold"] for p in preds] == [g["label"] for g in gold]
    for p in preds:
        probs = {k: float(v) for k, v in p.items() if k.startswith("prob_")}
        assert set(probs) == {"prob_neg", "prob_pos"} and sum(probs.values()) == pytest.approx(1, abs=1e-5)
        assert p["predicted"] == max(probs, key=probs.get)[5:]
    summary = read_json(out / "metrics.json")
    accuracy = sum(p["gold"] == p["predicted"] for p in preds) / len(preds)
    assert summary["test"]["accuracy"] == pytest.approx(accuracy)


@pytest.mark.slow
def test_sample_fallback_is_loud_in_log_and_outputs(tiny_model, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert main(["--task", "sst2", "--model", str(tiny_model), "--output-dir", str(out),
                     "--num_train_epochs", "1"]) == 0
    assert "USING THE BUNDLED" in caplog.text and "REMINDER" in caplog.text
    summary = read_json(out / "metrics.json")
    assert summary["data"]["kind"] == "sample" and "SAMPLE" in summary["warning"]
    assert "WARNING" in (out / "summary.md").read_text(encoding="utf-8")


def test_list_tasks(capsys):
    assert main(["--list-tasks"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert {"cola", "sst2", "imdb", "snli", "mnli", "klue_nli", "nsmc", "ko_emotion"} <= set(names)
    cola = next(line for line in lines if line.startswith("cola"))
    assert "grammatically acceptable" in cola and "bert-base-uncased" in cola


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    return errors[0]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(toy_task, tiny_model, tmp_path, capsys):
    card, data = toy_task
    out = tmp_path / "never"
    assert main(["--task", "colaa"]) == 2
    assert "unknown task 'colaa' (did you mean `cola`?)" in _error_line(capsys)

    assert main([]) == 2
    assert "--task is required" in _error_line(capsys)

    assert _run(card, data, tmp_path / "no_model", out) == 2
    assert "cannot load the tokenizer of model" in _error_line(capsys)

    bad = write_card(tmp_path, name="bad", text_columns=["sentence"])
    assert _run(bad, data, tiny_model, out) == 2
    assert "expected columns ['sentence', 'label'], found ['text', 'label']" in _error_line(capsys)

    (data / "train.csv").write_text("text,label\ngood movie,pos\n,neg\n", encoding="utf-8")
    assert _run(card, data, tiny_model, out) == 2
    assert "empty or missing text in column `text`" in _error_line(capsys)

    assert _run(card, data, tiny_model, out, "--lr_scheduler_type", "cosinus") == 2
    assert not out.exists()


def test_invalid_training_argument_combination_is_one_line(toy_task, tiny_model, tmp_path, capsys):
    card, data = toy_task
    assert _run(card, data, tiny_model, tmp_path / "o", "--eval_strategy", "no") == 2
    assert "invalid training arguments" in _error_line(capsys)


@pytest.mark.parametrize("script", ["run", "predict", "push", "export"])
@pytest.mark.parametrize("with_task", [False, True])
def test_help_prints_every_option(script, with_task, capsys):
    """--help lists the options and exits 0 (a bare % in a help text once crashed argparse here)."""
    import importlib

    argv = (["--task", "cola"] if with_task and script == "run" else []) + ["--help"]
    try:
        code = importlib.import_module(f"pipelines.cli.{script}").main(argv)
    except SystemExit as exit_:  # argparse's own --help exits
        code = exit_.code
    out = capsys.readouterr().out
    assert code in (0, None) and out.startswith("usage:")
    if script == "run":
        assert "--freeze_word_embeddings" in out and "80%" in out and "--learning_rate" in out
