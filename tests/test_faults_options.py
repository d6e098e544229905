"""Option values checked before any work, one line each, for run.py, predict.py and push.py; the
messages that used to mislead (data rows, labels, tokens, the dry-run folder, the model card)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import build_tiny_model, toy_rows, write_card, write_csv
from faultkit import LEARNS, one_error, run_argv

from pipelines.card.cards import load_card
from pipelines.cli import predict as predict_script
from pipelines.cli import push as push_script
from pipelines.cli.run import main as run_main
from pipelines.data.loading import load_splits
from pipelines.errors import DataError
from pipelines.prediction.partial import PartialOutput

TOKEN = "hf_cardtuneFakeToken0123456789abcdefXYZ"


@pytest.fixture
def toy(toy_task, tiny_model):
    card, data = toy_task
    return card, data, tiny_model


@pytest.mark.parametrize("extra, message", [
    # the one token-limit range of a card's max_length and --max_length (training/options.TOKEN_LIMIT)
    (["--max-length", "0"], "--max-length 0: expected a whole number of at least 8 and at most 8192"),
    (["--max-length", "-5"], "--max-length -5: expected a whole number of at least 8 and at most 8192"),
    (["--max_length", "9000"], "--max_length 9000: expected a whole number of at least 8 and at most 8192"),
    (["--max-length", "4096"], "--max-length 4096 is more than model"),
    (["--learning_rate", "-1e-5"], "--learning_rate -1e-05: expected a number of at least 0"),
    (["--learning_rate", "inf"], "--learning_rate inf: expected a finite number"),
    (["--learning_rate", "fast"], "--learning_rate 'fast': expected a number"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: expected a whole number of at least 1"),
    (["--per_device_eval_batch_size", "-8"], "--per_device_eval_batch_size -8: expected a whole number of at least 1"),
    (["--num_train_epochs", "0"], "--num_train_epochs 0.0: expected a number of epochs above 0"),
    (["--num_train_epochs", "-2"], "--num_train_epochs -2.0: expected a number of at least 0"),
    (["--max_steps", "0"], "--max_steps 0: expected a whole number of steps, at least 1"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps 0: expected a whole number of at least 1"),
    (["--max_steps"], "--max_steps needs a value"),
    (["--threads", "0"], "--threads 0: expected a whole number of at least 1"),
    (["--bogus", "1"], "unknown option(s) ['--bogus', '1']"),
])
def test_run_option_values_are_one_line_before_any_work(toy, tmp_path, capsys, extra, message):
    card, data, model = toy
    out = tmp_path / "out"
    assert run_main(run_argv(card, data, model, out, *extra)) == 2
    assert message in one_error(capsys.readouterr().err)
    assert not out.exists()


def test_card_values_are_checked_too_and_named_as_the_cards(tmp_path, toy, capsys):
    _, data, model = toy
    card = write_card(tmp_path, name="long", max_length=512, defaults={"learning_rate": -0.1})
    assert run_main(run_argv(card, data, model, tmp_path / "out")) == 2
    assert "card long.yaml `defaults.learning_rate` -0.1: expected a number of at least 0" in one_error(
        capsys.readouterr().err)
    card = write_card(tmp_path, name="long", max_length=512)
    assert run_main(run_argv(card, data, model, tmp_path / "out")) == 2
    assert ("card long.yaml `max_length` 512 is more than model" in one_error(capsys.readouterr().err))


def test_predict_and_push_option_values_are_one_line(tmp_path, capsys):
    base = ["--model", "m", "--input", "i.csv", "--output", "o.csv"]
    at_least_1 = "expected a whole number of at least 1, got"
    token_limit = "expected a whole number of at least 8 and at most 8192, got"  # training/options.TOKEN_LIMIT
    for argv, message in ((base + ["--max-length", "0"], f"--max-length: {token_limit} 0"),
                          (base + ["--batch-size", "-1"], f"--batch-size: {at_least_1} -1"),
                          (base + ["--chunk-size", "x"], f"--chunk-size: {at_least_1} 'x'"),
                          (base + ["--encoding", "utf-9"], "--encoding: unknown encoding 'utf-9'"),
                          (["--model", "m"], "the following arguments are required: --input, --output")):
        assert predict_script.main(argv) == 2
        assert message in one_error(capsys.readouterr().err)
    assert push_script.main([]) == 2
    assert "the following arguments are required: output_dir" in one_error(capsys.readouterr().err)


def test_token_shaped_values_are_never_echoed(toy, tmp_path, capsys):
    card, data, model = toy
    assert run_main(run_argv(card, data, model, tmp_path / "o", "--max-length", TOKEN)) == 2
    assert predict_script.main(["--model", "m", "--input", "i", "--output", "o", "--batch-size", TOKEN]) == 2
    assert push_script.main([str(tmp_path / TOKEN), "--hub-model-id", "alice/x"]) == 2
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err and captured.err.count("hf_***") == 3


def test_output_paths_below_a_file_are_one_line(toy, tmp_path, capsys):
    card, data, model = toy
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert run_main(run_argv(card, data, model, blocker / "out")) == 2
    assert f"--output-dir {blocker / 'out'}: {blocker} is a file, not a folder" in one_error(capsys.readouterr().err)
    source = write_csv(tmp_path / "in.csv", toy_rows(2))
    assert predict_script.main(["--model", str(model), "--input", str(source), "--output",
                                str(blocker / "p.csv")]) == 2
    assert f"--output {blocker / 'p.csv'}: {blocker} is a file, not a folder" in one_error(capsys.readouterr().err)


def test_damaged_model_weights_are_one_line(tmp_path, toy, capsys):
    card, data, _ = toy
    model = build_tiny_model(tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    source = write_csv(tmp_path / "in.csv", toy_rows(2))
    assert predict_script.main(["--model", str(model), "--input", str(source), "--output", str(tmp_path / "p")]) == 2
    assert "its weights file is damaged (Error while deserializing header" in one_error(capsys.readouterr().err)
    assert run_main(run_argv(card, data, model, tmp_path / "out", "--max_steps", "1")) == 2
    assert "its weights file is damaged" in one_error(capsys.readouterr().err)


def test_empty_label_is_named_as_such_with_its_row(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = toy_rows(8)
    rows[4]["label"] = ""
    write_csv(data / "train.csv", rows)
    write_csv(data / "dev.csv", toy_rows(4))
    with pytest.raises(DataError, match=r"empty label in data row 5 \(column `label`\)") as err:
        load_splits(load_card(write_card(tmp_path)), data)
    assert "'None'" not in str(err.value)


def test_a_label_missing_from_train_is_refused_before_training(toy, tmp_path, capsys):
    card, data, model = toy
    write_csv(data / "train.csv", [r for r in toy_rows(48) if r["label"] == "pos"])
    out = tmp_path / "out"
    assert run_main(run_argv(card, data, model, out)) == 2
    line = one_error(capsys.readouterr().err)
    assert "split 'train' of" in line and "has no row labelled 'neg'" in line and not out.exists()


def test_tsv_output_names_the_row_and_column_it_cannot_write(tmp_path, capsys):
    folder = build_tiny_model(tmp_path / "m", labels=["neg", "pos"])
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,good movie\n2,"two\nlines"\n', encoding="utf-8")
    assert predict_script.main(["--model", str(folder), "--input", str(source), "--output", str(tmp_path / "o.tsv"),
                                "--text-column", "text"]) == 2
    assert "data row 2: column `text` holds a tab or a line break" in one_error(capsys.readouterr().err)


def test_predict_resume_sees_an_in_place_edit_of_the_rows_already_read(tmp_path, monkeypatch, capsys):
    folder = build_tiny_model(tmp_path / "m", labels=["neg", "pos"])
    source = write_csv(tmp_path / "in.csv", toy_rows(30))
    out = tmp_path / "out.csv"
    real, calls = PartialOutput.commit, []

    def stop_after_first_chunk(self, *args):
        calls.append(1)
        real(self, *args)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(PartialOutput, "commit", stop_after_first_chunk)
    argv = ["--model", str(folder), "--input", str(source), "--output", str(out), "--text-column", "text",
            "--chunk-size", "10"]
    assert predict_script.main(argv) == 130
    monkeypatch.undo()
    stat = source.stat()
    text = source.read_text(encoding="utf-8")
    source.write_text(text.replace("was very", "was VERY", 1), encoding="utf-8")  # same size, first row
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even the modification time is kept
    assert predict_script.main(argv + ["--resume"]) == 2
    assert f"cannot resume: {source} changed since the interrupted run read its first 10 rows" in one_error(
        capsys.readouterr().err)
    source.write_text(text, encoding="utf-8")
    assert predict_script.main(argv + ["--resume"]) == 0  # the original again: resumes


def test_hub_dry_run_folder_is_checked_before_training(toy, tmp_path, capsys):
    card, data, model = toy
    dry = tmp_path / "dry"
    dry.mkdir()
    (dry / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    assert run_main(run_argv(card, data, model, out, "--hub-model-id", "alice/x", "--hub-dry-run", str(dry))) == 2
    assert "holds files that are not part of this upload (notes.txt)" in one_error(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.slow
def test_model_card_states_the_epochs_max_steps_allowed(toy, tmp_path, capsys):
    card, data, model = toy
    out, dry = tmp_path / "out", tmp_path / "dry"
    assert run_main(run_argv(card, data, model, out, "--num_train_epochs", "3", "--max_steps", "4", *LEARNS)) == 0
    assert push_script.main([str(out), "--hub-model-id", "alice/x", "--hub-dry-run", str(dry)]) == 0
    readme = (dry / "README.md").read_text(encoding="utf-8")
    assert "| epochs | 0.6667 (max_steps 4 stopped training; 3 configured) |" in readme
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 4


def _outside(accepted) -> float:
    """A value just outside a declared range."""
    if accepted.low is not None:
        return accepted.low - 1 if accepted.low_in else accepted.low
    return accepted.high + 1 if accepted.high_in else accepted.high


def test_every_declared_range_is_enforced_from_the_command_line_and_from_card_defaults(toy, tmp_path, capsys):
    # The ranges come from the options' declarations (RunArgs field metadata), not from a list in the
    # checks: each one refuses a value outside it, given on the command line or in a card's defaults.
    # (TrainingArguments' own __post_init__ refuses some of its fields first: learning_rate is above.)
    import dataclasses

    from pipelines.option_fields import facts_of
    from pipelines.training.option_checks import RANGES
    from pipelines.training.options import RunArgs

    card, data, model = toy
    declared = {f.name: (facts_of(f).range, "int" in str(f.type)) for f in dataclasses.fields(RunArgs)
                if facts_of(f).range}
    assert {"max_length", "threads", "head_hidden", "classifier_dropout"} <= set(declared)
    for name, (accepted, whole) in declared.items():
        assert RANGES[name] is accepted
        value = int(_outside(accepted)) if whole else float(_outside(accepted))
        expected = accepted.problem(value)
        assert expected and expected.startswith("expected ")
        assert run_main(run_argv(card, data, model, tmp_path / "out", f"--{name}={value}")) == 2
        assert f"--{name} {value}: {expected}" in one_error(capsys.readouterr().err), name
        # max_length: the card's own key, so the card's `defaults:` may set it only when the top level does not
        carded = write_card(tmp_path, name="ranged", max_length=None, defaults={name: value})
        assert run_main(run_argv(carded, data, model, tmp_path / "out")) == 2
        assert f"card ranged.yaml `defaults.{name}` {value}: {expected}" in one_error(capsys.readouterr().err), name
    assert not (tmp_path / "out").exists()


def test_the_card_validator_reads_which_options_a_card_may_set_from_their_declarations(tmp_path):
    import dataclasses

    from pipelines.card.keys import setting_types
    from pipelines.errors import CardError
    from pipelines.option_fields import facts_of
    from pipelines.training.options import TRAINING_ARGUMENTS, RunArgs

    settable = setting_types()
    for f in dataclasses.fields(RunArgs):
        assert (f.name in settable) == facts_of(f).card, f.name
    for name, facts in TRAINING_ARGUMENTS.items():
        assert (name in settable) == facts.card, name
    refused = [f.name for f in dataclasses.fields(RunArgs) if not facts_of(f).card] + ["output_dir"]
    with pytest.raises(CardError) as err:
        load_card(write_card(tmp_path, defaults={name: None for name in refused}))
    assert str(err.value).count("not allowed in a card; pass it on the command line") == len(refused)


def test_a_model_folder_transformers_refuses_names_its_reason(tmp_path, capsys):
    # A ValueError from transformers (an unknown architecture, an attention it lacks) is reported with its
    # own first line: the generic "holds no loadable model" hid the saved-MPNet defect for a whole session.
    model = build_tiny_model(tmp_path / "model")
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**config, "model_type": "nonsense"}), encoding="utf-8")
    source = write_csv(tmp_path / "in.csv", toy_rows(2))
    assert predict_script.main(["--model", str(model), "--input", str(source), "--output", str(tmp_path / "p")]) == 2
    line = one_error(capsys.readouterr().err)
    assert f"cannot load the model in {model}: transformers refused it (" in line and "nonsense" in line
    assert not (tmp_path / "p").exists()
