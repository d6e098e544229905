import dataclasses

import pytest
from conftest import ROOT, write_card

from pipelines.card.cards import load_card, resolve_card_path, shipped_cards
from pipelines.card.keys import markdown_table
from pipelines.errors import CardError
from pipelines.evaluation.metrics import METRICS
from pipelines.modeling import offline
from pipelines.training.arguments import card_defaults

EXPECTED_CARDS = {"cola", "sst2", "imdb", "snli", "mnli", "klue_nli", "nsmc", "ko_emotion"}


def test_every_tutorial_task_has_a_card():
    assert EXPECTED_CARDS <= set(shipped_cards())


@pytest.mark.parametrize("name", sorted(EXPECTED_CARDS))
def test_shipped_card_is_valid_and_complete(name):
    card = load_card(name)
    assert card.name == name
    assert card.description and card.recommended_model
    assert card.select_by in card.metrics
    assert len(card.labels) >= 2
    assert card.sample_path is not None, f"{name} must bundle a sample for offline fallback"
    # the header comment names the source
    assert card.path.read_text(encoding="utf-8").startswith("# ")


def test_shipped_card_defaults_build_run_and_training_arguments(tmp_path):
    from pipelines.cli.run import build_parser

    for name in shipped_cards():
        card = load_card(name)
        run, args = build_parser(card).parse_args_into_dataclasses(args=["--output-dir", str(tmp_path)])
        assert args.metric_for_best_model == card.select_by
        chosen = offline.choose(None, card.language, card.model).name
        for key, value in card_defaults(card, chosen).items():  # every card default reaches one of the two
            assert getattr(args, key, None) == value or getattr(run, key, None) == value, (name, key)


def test_tutorial_specifics():
    assert load_card("klue_nli").is_pair and load_card("snli").is_pair and load_card("mnli").is_pair
    assert load_card("snli").drop_labels == ("-1", "-")
    assert load_card("mnli").dataset.hub.splits["validation"] == "validation_matched"
    emotion = load_card("ko_emotion")
    assert len(emotion.labels) == 6 and emotion.dataset.local.format == "xlsx"
    assert ("join", {"columns": ["사람문장1", "사람문장2"], "into": "text"}) in emotion.preprocess
    assert emotion.defaults["lr_scheduler_type"] == "cosine"
    assert dataclasses.asdict(load_card("imdb").split) == {"test": 0.2, "validation": 0.3, "stratify": True, "seed": 42}


def test_unknown_task_suggests_the_close_name():
    with pytest.raises(CardError, match=r"unknown task 'colaa' \(did you mean `cola`\?\); shipped tasks: .*cola"):
        resolve_card_path("colaa")


def test_card_by_path_and_missing_path(tmp_path):
    path = write_card(tmp_path)
    assert load_card(str(path)).name == "toy"
    with pytest.raises(CardError, match="card file .*nope.yaml not found"):
        load_card(str(tmp_path / "nope.yaml"))


def test_all_problems_reported_at_once_with_did_you_mean(tmp_path):
    path = write_card(
        tmp_path,
        labelz=["a", "b"],
        max_length="long",
        select_by="mmc",
        defaults={"learning_rate": "2e-5", "num_train_epoch": 3},
    )
    with pytest.raises(CardError) as info:
        load_card(str(path))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: 5 problem(s): ")
    assert "labelz: unknown key (did you mean `labels`?)" in msg
    assert "max_length: expected an integer from 8 to 8192, got the string 'long'" in msg
    assert f"select_by: expected one of {list(METRICS)}, got the string 'mmc' (did you mean `mcc`?)" in msg
    assert ("defaults.learning_rate: expected a number, got the string '2e-5' "
            "(YAML reads 2e-5 as a string: write it as 2.0e-5)") in msg
    assert ("defaults.num_train_epoch: not a TrainingArguments key or cardtune option "
            "(did you mean `num_train_epochs`?)") in msg


def test_missing_required_keys_and_labels_duplicates(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("description: x\nlabels: [a, a]\ndataset: {}\n", encoding="utf-8")
    with pytest.raises(CardError) as info:
        load_card(str(path))
    msg = str(info.value)
    for part in ("text_columns: missing (required)", "label_column: missing (required)",
                 "labels: duplicate items ['a']", "dataset: needs a `hub` source, a `local` source, or both"):
        assert part in msg


def test_preprocess_steps_are_checked_by_name_and_arguments(tmp_path):
    steps = ["strp", {"join": {"columns": ["a"], "sep": " "}}, {"strip": {"colums": ["a"]}}]
    path = write_card(tmp_path, preprocess=steps)
    with pytest.raises(CardError) as info:
        load_card(str(path))
    msg = str(info.value)
    assert "preprocess[0]: unknown preprocessing step `strp` (did you mean `strip`?)" in msg
    assert "preprocess[1] (join): missing argument(s) ['into']" in msg
    assert "preprocess[2] (strip): unknown argument(s) ['colums']" in msg


def test_cards_never_set_tokens_or_output(tmp_path):
    path = write_card(tmp_path, defaults={"hub_token": "hf_x", "output_dir": "x"})
    with pytest.raises(CardError, match="defaults.hub_token: not allowed in a card"):
        load_card(str(path))


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("description: x\nlabels: [a, b\n", encoding="utf-8")
    with pytest.raises(CardError, match=r"broken.yaml: line \d+: not valid YAML"):
        load_card(str(path))


def test_resolved_card_round_trips(tmp_path):
    import yaml

    card = load_card("ko_emotion")
    saved = tmp_path / "task_card.yaml"
    saved.write_text(yaml.safe_dump(card.to_dict(), allow_unicode=True), encoding="utf-8")
    again = load_card(str(saved))
    assert again.name == "ko_emotion"
    assert again.to_dict() == card.to_dict()
    assert again.sample_path == card.sample_path


def test_a_value_set_at_the_top_and_in_defaults_is_an_error(tmp_path):
    path = write_card(tmp_path, max_length=32, defaults={"max_length": 64, "learning_rate": 1.0e-3})
    with pytest.raises(CardError) as info:
        load_card(str(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}: 1 problem(s): ")
    assert "defaults.max_length: already set at the top level of the card (max_length: 32); keep one" in msg
    # Once is fine, in either place.
    once = write_card(tmp_path, max_length=None, defaults={"max_length": 64})
    assert load_card(str(once)).defaults["max_length"] == 64


def test_docs_key_table_is_the_one_generated_from_the_declarations():
    page = (ROOT / "docs" / "cards.md").read_text(encoding="utf-8")
    section = page.split("## Writing a card", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table == markdown_table(), "docs/cards.md's key table is stale: paste keys.markdown_table() there"
