"""Faults in what a user holds or types: checkpoints of another run or damaged ones, a damaged
feature cache, a folder mixing two runs, bad option values, and the messages that used to mislead.
Every case ends in exit 0 with the right result, or exit 2 with one line."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import make_toy_task, read_json, toy_rows, write_card, write_csv
from faultkit import LEARNS, leftovers, one_error, run_argv

from pipelines.cli import predict as predict_script
from pipelines.cli import push as push_script
from pipelines.cli.run import main as run_main
from pipelines.reporting import run_id
from pipelines.training import callbacks

pytestmark = pytest.mark.slow  # every test here trains the tiny model (checkpoints, caches, seeds)

TOKEN = "hf_cardtuneFakeToken0123456789abcdefXYZ"


class Interrupt(Exception):
    """Stands in for a crash after a checkpoint was saved."""


@pytest.fixture(scope="module")
def toy(tmp_path_factory, tiny_model):
    base = tmp_path_factory.mktemp("inputs")
    card, data = make_toy_task(base)
    return card, data, tiny_model, base


@pytest.fixture(scope="module")
def interrupted(toy):
    """A run stopped after its epoch-2 checkpoint: checkpoint-6 and checkpoint-12, both complete."""
    card, data, model, base = toy
    out = base / "interrupted"

    def crash(self, args, state, control, **kwargs):
        if state.global_step >= 12:
            raise Interrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(callbacks.LogCallback, "on_save", crash, raising=False)
        with pytest.raises(Interrupt):
            run_main(run_argv(card, data, model, out, "--num_train_epochs", "3", "--save_total_limit", "5", *LEARNS))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]
    return out


def _resume(toy, out, *extra):
    card, data, model, _ = toy
    return run_main(run_argv(card, data, model, out, "--num_train_epochs", "3", "--save_total_limit", "5", *LEARNS,
                             "--resume", *extra))


@pytest.mark.parametrize("change, expected", [
    (["--learning_rate", "5e-3"], "changed: learning_rate"),
    (["--seed", "3"], "changed: seed"),
    (["data"], "changed: data"),
    (["card"], "changed: card"),
    (["model"], "changed: model"),
])
def test_resume_refuses_a_checkpoint_of_another_run(toy, interrupted, tmp_path, capsys, change, expected):
    card, data, model, _ = toy
    out = shutil.copytree(interrupted, tmp_path / "out")
    if change == ["data"]:
        data = shutil.copytree(data, tmp_path / "data")
        write_csv(data / "train.csv", toy_rows(48, seed=5))
    elif change == ["card"]:
        card = write_card(tmp_path, select_by="mcc")
    elif change == ["model"]:
        model = shutil.copytree(model, tmp_path / "model")
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.3}))
    extra = [] if change[0] in ("data", "card", "model") else change
    assert _resume((card, data, model, None), out, *extra) == 2
    line = one_error(capsys.readouterr().err)
    assert "checkpoint-12" in line and "was saved by a run with other settings or inputs" in line and expected in line
    assert "run without --resume" in line and not (out / "metrics.json").exists()


def _cut(path):
    os.truncate(path, path.stat().st_size // 2)


def _flip(path):
    with open(path, "r+b") as fh:  # same size, other bytes: the kind of damage sizes cannot show
        fh.seek(path.stat().st_size // 2)
        fh.write(b"\x13\x37\x13\x37")


def _config_only(folder):
    for p in folder.iterdir():
        if p.name != "config.json":
            p.unlink()


DAMAGE = {"trainer_state.json cut": lambda c: _cut(c / "trainer_state.json"),
          "optimizer.pt cut": lambda c: _cut(c / "optimizer.pt"),
          "model.safetensors overwritten": lambda c: _flip(c / "model.safetensors"),
          "config only (a full disk)": _config_only}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_falls_back_to_the_last_intact_one_saying_so(toy, interrupted, tmp_path, caplog, damage):
    out = shutil.copytree(interrupted, tmp_path / "out")
    DAMAGE[damage](out / "checkpoint-12")
    with caplog.at_level("WARNING"):
        assert _resume(toy, out) == 0
    assert "checkpoint-12 is damaged (" in caplog.text and "resuming from checkpoint-6 instead" in caplog.text
    assert run_id.verify(out) and not leftovers(out)


def test_no_intact_checkpoint_says_which_is_damaged(toy, interrupted, tmp_path, capsys):
    out = shutil.copytree(interrupted, tmp_path / "out")
    _cut(out / "checkpoint-12" / "trainer_state.json")
    _config_only(out / "checkpoint-6")
    assert _resume(toy, out) == 2
    line = one_error(capsys.readouterr().err)
    assert "checkpoint-12 in" in line and "is damaged (trainer_state.json is cut or changed" in line
    assert line.endswith("delete it, or run without --resume")


def test_damaged_feature_cache_is_verified_and_rebuilt(toy, tmp_path, monkeypatch, caplog):
    card, data, model, _ = toy
    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path / "cache"))
    assert run_main(run_argv(card, data, model, tmp_path / "a", "--num_train_epochs", "1", *LEARNS)) == 0
    arrows = sorted((tmp_path / "cache").rglob("*.arrow"))
    assert arrows
    for damage, what in ((_flip, "was changed after it was written"), (_cut, "is cut or changed")):
        damage(arrows[0])  # token ids overwritten in place (same size), then a truncated file
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert run_main(run_argv(card, data, model, tmp_path / "b", "--num_train_epochs", "1", *LEARNS)) == 0
        assert "are damaged (" in caplog.text and what in caplog.text and "tokenizing again" in caplog.text
        assert read_json(tmp_path / "b" / "metrics.json")["validation"] == read_json(
            tmp_path / "a" / "metrics.json")["validation"]  # trained on the right features
    caplog.clear()
    assert run_main(run_argv(card, data, model, tmp_path / "c", "--num_train_epochs", "1", *LEARNS)) == 0
    assert "are damaged" not in caplog.text and "reusing tokenized features" in caplog.text  # trusted again


@pytest.fixture(scope="module")
def two_runs(toy):
    card, data, model, base = toy
    runs = []
    for seed in ("1", "2"):
        out = base / f"run{seed}"
        assert run_main(run_argv(card, data, model, out, "--num_train_epochs", "1", "--seed", seed, *LEARNS)) == 0
        runs.append(out)
    return runs


@pytest.mark.parametrize("taken", ["model.safetensors", "config.json", "metrics.json", "task_card.yaml"])
def test_a_folder_mixing_two_runs_is_refused_by_push_predict_and_model_card(two_runs, tmp_path, capsys, taken):
    mixed = shutil.copytree(two_runs[0], tmp_path / "mixed")
    shutil.copy(two_runs[1] / taken, mixed / taken)
    source = write_csv(tmp_path / "in.csv", toy_rows(4))
    assert push_script.main([str(mixed), "--hub-model-id", "alice/x", "--hub-dry-run", str(tmp_path / "dry")]) == 2
    assert f"{mixed} mixes files of different runs ({taken} " in one_error(capsys.readouterr().err)
    assert predict_script.main(["--model", str(mixed), "--input", str(source), "--output", str(tmp_path / "p")]) == 2
    assert f"{mixed} mixes files of different runs ({taken} " in one_error(capsys.readouterr().err)
    from pipelines.reporting import modelcard

    with pytest.raises(run_id.MixedRunError):
        modelcard.read_run(mixed)
    assert not (tmp_path / "dry").exists() and not (tmp_path / "p").exists()


def test_outputs_are_all_readable_alike(two_runs):
    modes = {p.name: p.stat().st_mode & 0o777 for p in two_runs[0].iterdir() if p.is_file() and p.name[0] != "."}
    assert len(set(modes.values())) == 1, modes  # model.safetensors was 0600 while the rest were 0644


def test_resume_of_seeds_keeps_finished_seeds_and_resumes_the_interrupted_one(toy, tmp_path, monkeypatch, caplog):
    card, data, model, _ = toy
    out, saves = tmp_path / "out", []

    def crash_in_seed_2(self, args, state, control, **kwargs):
        saves.append(args.output_dir)
        if len(saves) == 3:  # seed 1 saved epochs 1 and 2; this is seed 2's first checkpoint
            raise Interrupt

    argv = run_argv(card, data, model, out, "--num_train_epochs", "2", "--seeds", "1,2,3", *LEARNS)
    with monkeypatch.context() as m:
        m.setattr(callbacks.LogCallback, "on_save", crash_in_seed_2, raising=False)
        with pytest.raises(Interrupt):
            run_main(argv)
    first = run_id.verify(out / "seed-1")
    with caplog.at_level("INFO"):
        assert run_main(argv + ["--resume"]) == 0
    assert "seed 1 already finished" in caplog.text and "resuming from" in caplog.text
    assert run_id.verify(out / "seed-1") == first  # kept, not trained again
    assert read_json(out / "metrics.json")["seeds"] == [1, 2, 3] and not leftovers(out)
