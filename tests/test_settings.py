"""Each idea once: the effective settings resolved in one place, and the option facts they and the
resume fingerprint read (training/options.py, training/settings.py)."""

from __future__ import annotations

import dataclasses

import datasets
import pytest
from conftest import write_card
from transformers import TrainingArguments

from pipelines.card.cards import load_card
from pipelines.training import checkpoints, tracking
from pipelines.training.options import RunArgs
from pipelines.training.settings import resolve


@pytest.fixture
def card(tmp_path):
    return load_card(write_card(tmp_path, max_length=32))


@pytest.fixture
def args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)


def test_the_settings_resolve_each_unset_option_once(card, args, tiny_model):
    settings = resolve(card, RunArgs(), args)
    assert (settings.model, settings.max_length, settings.head) == ("minilm", 32, "mean")  # English: minilm
    assert settings.threads >= 1 and settings.threads_follow_load and settings.precision == "fp32"
    given = resolve(card, RunArgs(model=str(tiny_model), max_length=16, threads=1, head="mlp"), args)
    assert (given.model, given.max_length, given.head, given.threads) == (str(tiny_model), 16, "mlp", 1)
    assert not given.threads_follow_load and given.model_reason == "given with --model"
    assert resolve(card, RunArgs(model=str(tiny_model)), args).head == "linear"  # a BERT checkpoint's [CLS] pooler


def test_the_cards_model_sits_between_the_language_default_and_model(tmp_path, args, tiny_model):
    card = load_card(write_card(tmp_path, model=str(tiny_model)))
    assert resolve(card, RunArgs(), args).model == str(tiny_model)
    assert resolve(card, RunArgs(model="minilm"), args).model == "minilm"


def _fingerprint(card, run, args):
    splits = datasets.DatasetDict(train=datasets.Dataset.from_dict({"input_ids": [[1, 2], [3]], "label": [0, 1]}))
    return checkpoints.fingerprint(card, run, resolve(card, run, args), args, splits, "hub/model-id")


def test_only_options_declared_result_changing_change_the_fingerprint(card, args):
    base = _fingerprint(card, RunArgs(), args)
    # declared result=False: threads, seeds, sort_eval (RunArgs); logging_steps, report_to (TRAINING_ARGUMENTS)
    for neutral in (RunArgs(threads=1), RunArgs(seeds="1,2"), RunArgs(sort_eval=False), RunArgs(keep_checkpoints=True)):
        assert _fingerprint(card, neutral, args) == base
    assert _fingerprint(card, RunArgs(), dataclasses.replace(args, logging_steps=7, report_to=[])) == base
    for changing in (RunArgs(head="mlp"), RunArgs(max_length=16), RunArgs(layerwise_lr_decay=0.5)):
        assert _fingerprint(card, changing, args)["settings"] != base["settings"]
    assert _fingerprint(card, RunArgs(), dataclasses.replace(args, learning_rate=1e-3)) != base
    # an option left unset and the same value given resolve alike: the settings, not the spelling, count
    assert _fingerprint(card, RunArgs(max_length=32, head="mean"), args)["settings"]["max_length"] == 32
    assert _fingerprint(card, RunArgs(), args)["settings"]["head"] == "mean"


def test_trackers_get_the_effective_values_not_the_cards(card, args, tiny_model):
    run = RunArgs(model=str(tiny_model), max_length=16)
    hparams = tracking.hyperparameters(card, run, resolve(card, run, args), args)
    assert hparams["run/max_length"] == 16 and hparams["card/max_length"] == 32
    assert hparams["run/head"] == "linear" and hparams["run/precision"] == "fp32" and hparams["run/threads"] >= 1
    unset = tracking.hyperparameters(card, RunArgs(), resolve(card, RunArgs(), args), args)
    assert unset["run/max_length"] == 32 and unset["model"] == "minilm"
