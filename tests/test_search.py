"""Hyperparameter search: the card's `search:` space, trials on the tiny model, the report, the
final model, pruning, and a search that continues after an interruption."""

import csv
import importlib.util

import pytest
import yaml
from conftest import read_json, write_card

from pipelines.card.cards import load_card
from pipelines.card.keys import setting_types
from pipelines.card.search_space import resolve
from pipelines.cli.run import main
from pipelines.errors import CardError, CardtuneError
from pipelines.training import search

SPACE = {"learning_rate": {"low": 1.0e-3, "high": 3.0e-2, "log": True},
         "num_train_epochs": {"low": 1, "high": 2},
         "classifier_dropout": {"low": 0.0, "high": 0.3},
         "per_device_train_batch_size": {"choices": [8, 16]}}


@pytest.fixture
def search_task(toy_task, tmp_path):
    _, data = toy_task
    return write_card(tmp_path, name="toysearch", search=SPACE), data


def _search(task, tiny_model, out, *extra):
    card, data = task
    return main(["--task", str(card), "--data-dir", str(data), "--model", str(tiny_model),
                 "--output-dir", str(out), *extra])


def test_card_search_space_is_checked_with_every_problem_at_once(tmp_path):
    card = write_card(tmp_path, search={
        "learning_rat": {"low": 1e-5, "high": 1e-4},
        "per_device_train_batch_size": {"low": 8.0, "high": 32.0},
        "weight_decay": {"low": 0.1, "high": 0.0},
        "warmup_steps": {"low": 0.0, "high": 0.2, "log": True},
        "num_train_epochs": {"choices": ["many"]},
        "classifier_dropout": {"low": 0.0, "high": 0.5, "scale": "log"},
        "head": [1, 2],
    })
    with pytest.raises(CardError) as err:
        load_card(card)
    text = str(err.value)
    assert "7 problem(s)" in text
    assert "search.learning_rat: not a setting a card may set (did you mean `learning_rate`?)" in text
    assert "search.per_device_train_batch_size: expected an integer bounds" in text
    assert "search.weight_decay: expected numbers with low < high" in text
    assert "search.warmup_steps: log: true needs low > 0" in text
    assert "search.num_train_epochs.choices: expected a non-empty list of a number" in text
    assert "search.classifier_dropout: unknown key(s) ['scale']" in text
    assert "search.head: expected {low: A, high: B}" in text


def test_valid_space_and_the_command_line_override():
    space = resolve(SPACE, '{"learning_rate": {"low": 1e-5, "high": 1e-4, "log": true}, "classifier_dropout": null,'
                           ' "weight_decay": {"low": 0.0, "high": 0.1}}', setting_types())
    assert list(space) == ["learning_rate", "num_train_epochs", "per_device_train_batch_size", "weight_decay"]
    assert space["learning_rate"].low == 1e-5 and space["learning_rate"].log
    assert space["num_train_epochs"].is_int and not space["weight_decay"].is_int
    assert space["per_device_train_batch_size"].choices == (8, 16)
    assert resolve({}, "learning_rate: {low: 0.001, high: 0.01}", setting_types())["learning_rate"].high == 0.01
    with pytest.raises(CardError, match="--search needs a search space: add `search:` to the card"):
        resolve({}, None, setting_types())
    with pytest.raises(CardError, match="search.num_train_epochs: expected numbers with low < high"):
        resolve(SPACE, '{"num_train_epochs": {"low": 3, "high": 2}}', setting_types())


def test_a_study_left_by_a_killed_process_is_continued_and_another_space_refused(tmp_path, caplog):
    import optuna

    card = load_card(write_card(tmp_path, search=SPACE))
    space = resolve(card.search, None, setting_types())
    study = search.open_study(tmp_path / "out", card, space, 42)
    study.ask()  # a trial that was running when its process died
    with caplog.at_level("INFO"):
        again = search.open_study(tmp_path / "out", card, space, 42)
    assert [t.state for t in again.trials] == [optuna.trial.TrialState.FAIL]
    assert "search: trial 0 was still running when its process ended; marked failed" in caplog.text
    other = resolve(card.search, '{"weight_decay": {"low": 0.0, "high": 0.1}}', setting_types())
    with pytest.raises(CardtuneError, match="holds a search of task toy by accuracy over another space"):
        search.open_study(tmp_path / "out", card, other, 42)


def _trials(out):
    return list(csv.DictReader(open(out / "trials.csv", encoding="utf-8")))


@pytest.mark.slow
def test_three_trials_give_the_table_plots_snippet_and_final_model(search_task, tiny_model, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        assert _search(search_task, tiny_model, out, "--search", "3", "--search_final") == 0
    rows = _trials(out)
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"complete"}
    assert [r["seed"] for r in rows] == ["42", "43", "44"]  # a seed per trial, recorded
    assert list(rows[0]) == ["trial", "state", *sorted(SPACE), "seed", "best_accuracy", "best_epoch", "evaluations",
                             "time_s", "pruned"]
    assert all(int(r["evaluations"]) == int(r["num_train_epochs"]) and float(r["time_s"]) > 0 for r in rows)
    table = (out / "trials.md").read_text(encoding="utf-8")
    assert table.startswith("# Search on toysearch: 3 finished trial(s), 0 pruned") and table.count("| complete |") == 3
    for plot in ("search_history.png", "search_importance.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    summary = read_json(out / "search.json")
    best = summary["best"]
    scores = [float(r["best_accuracy"]) for r in rows]
    assert best["value"] == max(scores) and best["trial"] == scores.index(max(scores))
    snippet = yaml.safe_load((out / "best_defaults.yaml").read_text(encoding="utf-8"))["defaults"]
    assert snippet == best["params"]  # every default of the card is searched here
    # the final model: a normal output directory trained with the snippet's settings
    final = read_json(out / "final" / "run_config.json")
    assert final["training_arguments"]["learning_rate"] == best["params"]["learning_rate"]
    assert final["training_arguments"]["num_train_epochs"] == best["params"]["num_train_epochs"]
    assert final["run"]["classifier_dropout"] == best["params"]["classifier_dropout"]
    assert (out / "final" / "metrics.json").is_file() and summary["trials"]["finished"] == 3
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("search: trial 2 (3 of 3")]
    assert len(starts) == 1 and "2 finished (0 pruned)" in starts[0] and "remaining ~" in starts[0]


@pytest.mark.slow
def test_interrupted_search_continues_to_n_finished_trials(search_task, tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    real = search.run_trial

    def interrupt_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during trial 1
        return real(*args, **kwargs)

    monkeypatch.setattr(search, "run_trial", interrupt_second_trial)
    assert _search(search_task, tiny_model, out, "--search", "3") == 130  # Ctrl-C: one line, exit 130
    monkeypatch.undo()
    assert _search(search_task, tiny_model, out, "--search", "3") == 0
    rows = _trials(out)
    assert [(r["trial"], r["state"]) for r in rows] == [("0", "complete"), ("1", "fail"), ("2", "complete"),
                                                        ("3", "complete")]
    assert read_json(out / "search.json")["trials"] == {"complete": 3, "pruned": 0, "fail": 1, "finished": 3}
    # the same command once more: nothing left to run, the report is rebuilt from the study
    assert _search(search_task, tiny_model, out, "--search", "3") == 0
    assert len(_trials(out)) == 4


@pytest.mark.slow
def test_hopeless_trials_are_pruned_after_an_evaluation(search_task, tiny_model, tmp_path, monkeypatch):
    import optuna

    # A pruner that gives up on every score below 2: each trial stops after its first evaluation.
    monkeypatch.setattr(search, "make_pruner", lambda: optuna.pruners.ThresholdPruner(lower=2.0))
    out = tmp_path / "out"
    assert _search(search_task, tiny_model, out, "--search", "2", "--search_space",
                   '{"num_train_epochs": {"low": 3, "high": 4}}', "--search_final") == 0
    rows = _trials(out)
    assert [(r["state"], r["pruned"], r["evaluations"]) for r in rows] == [("pruned", "yes", "1")] * 2
    assert all(r["best_accuracy"] != "" for r in rows)  # the score it was pruned at
    assert not (out / "best_defaults.yaml").exists() and not (out / "final").exists()


def test_search_refuses_seeds_without_a_final_model_a_push_and_a_missing_optuna(search_task, tiny_model, tmp_path,
                                                                                 capsys, monkeypatch):
    out = tmp_path / "never"
    assert _search(search_task, tiny_model, out, "--search", "0") == 2
    assert "--search 0: expected a number of trials of at least 1" in capsys.readouterr().err
    assert _search(search_task, tiny_model, out, "--search", "2", "--seeds", "1,2") == 2
    assert "--seeds with --search sets the seeds of the final model: add --search_final" in capsys.readouterr().err
    assert _search(search_task, tiny_model, out, "--search", "2", "--hub-dry-run", str(tmp_path / "dry"),
                   "--hub-model-id", "alice/toy") == 2
    assert "publish the final model afterwards" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    assert _search(search_task, tiny_model, out, "--search", "2") == 2
    assert 'the `optuna` package is not installed; install it with `pip install -e ".[search]"`' in \
        capsys.readouterr().err
    assert not out.exists()


def test_the_settings_snippet_goes_to_the_searched_models_entry(tmp_path):
    from pipelines.card.cards import load_card
    from pipelines.reporting.search_report import snippet

    card = load_card(str(write_card(tmp_path, model_defaults={"minilm": {"num_train_epochs": 10}})))
    best = {"trial": 2, "value": 0.5, "epoch": 3, "seed": 42, "params": {"learning_rate": 3e-5}}
    counts = {"finished": 3, "pruned": 0}
    plain = yaml.safe_load(snippet(card, best, counts))
    assert plain == {"defaults": {**card.defaults, "learning_rate": 3e-5}}
    text = snippet(card, best, counts, "minilm")
    assert "Paste over the card's `model_defaults.minilm:`" in text
    assert yaml.safe_load(text) == {"model_defaults": {"minilm": {"num_train_epochs": 10, "learning_rate": 3e-5}}}
