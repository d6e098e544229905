import math

import datasets
import numpy as np
import pytest
from conftest import write_card

from pipelines.card.cards import load_card
from pipelines.data import features
from pipelines.evaluation import diagnostics, metrics


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_single_sentences_are_not_padded_and_lengths_recorded(tokenizer, tmp_path):
    card = load_card(str(write_card(tmp_path, max_length=8)))
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"text": ["the cat", "the cat sat on the mat under the tree", "a dog"], "label": [0, 1, 0]})})
    out = features.tokenize(dsd, tokenizer, card, card.max_length)["train"]
    assert [len(x) for x in out["input_ids"]] == out["length"] == [4, 8, 4]  # no padding; cut at 8
    assert out["truncated"] == [False, True, False]
    assert out["row"] == [0, 1, 2]
    assert set(out.column_names) >= {"text", "label", "attention_mask"}


def test_pairs_are_real_pairs_with_segment_ids(tokenizer, tmp_path):
    card = load_card(str(write_card(tmp_path, text_columns=["premise", "hypothesis"])))
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"premise": ["a man is sleeping"], "hypothesis": ["he ran"], "label": [1]})})
    row = features.tokenize(dsd, tokenizer, card, card.max_length)["train"][0]
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokens == ["[CLS]", "a", "man", "is", "sleeping", "[SEP]", "he", "ran", "[SEP]"]
    assert row["token_type_ids"] == [0] * 6 + [1] * 3


def test_sort_by_length_keeps_row_for_restoring_order(tokenizer, tmp_path):
    card = load_card(str(write_card(tmp_path)))
    texts = ["a", "the cat sat on the mat", "the cat", "the cat sat"]
    dsd = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": texts})})
    ordered = features.sort_by_length(features.tokenize(dsd, tokenizer, card, card.max_length)["test"])
    assert ordered["length"] == sorted(ordered["length"], reverse=True)
    restored = np.asarray(ordered["text"])[np.argsort(ordered["row"])]
    assert list(restored) == texts


def test_collator_pads_to_the_longest_in_the_batch(tokenizer):
    batch = features.collator(tokenizer)([{"input_ids": [2, 5, 3]}, {"input_ids": [2, 5, 6, 7, 3]}])
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_metrics_match_hand_computed_values():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    preds = [1, 1, 0, 0, 0, 1, 0, 1]
    tp, tn, fp, fn = 3, 3, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    out = metrics.compute(labels, preds, num_labels=2)
    assert out["accuracy"] == pytest.approx(6 / 8)
    assert out["mcc"] == pytest.approx(mcc)
    assert out["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_multiclass_f1_is_macro_and_constant_predictions_give_zero_mcc():
    out = metrics.compute([0, 1, 2, 2], [0, 1, 1, 2], num_labels=3)
    assert out["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert metrics.compute([0, 1, 1, 0], [1, 1, 1, 1], num_labels=2)["mcc"] == 0.0


def test_balanced_accuracy_is_the_mean_recall_over_classes():
    from sklearn.metrics import balanced_accuracy_score

    labels, preds = [0, 0, 0, 1], [0, 0, 1, 1]
    assert metrics.compute(labels, preds, 2, ["balanced_accuracy"]) == {"balanced_accuracy": pytest.approx(5 / 6)}
    labels, preds = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 1, 1, 1, 2]
    assert metrics.balanced_accuracy(np.array(labels), np.array(preds), 3) == pytest.approx(
        balanced_accuracy_score(labels, preds))


def test_compute_follows_the_names_and_their_order():
    out = metrics.compute([0, 1, 1, 0], [0, 1, 0, 0], 2, ["f1", "balanced_accuracy", "accuracy"])
    assert list(out) == ["f1", "balanced_accuracy", "accuracy"]
    assert list(metrics.compute([0, 1], [0, 1], 2)) == list(metrics.DEFAULT_METRICS)


def test_compute_metrics_for_trainer_uses_argmax_of_logits():
    from transformers import EvalPrediction

    fn = metrics.for_labels(2)
    pred = EvalPrediction(predictions=np.array([[2.0, -1.0], [0.1, 0.3]]), label_ids=np.array([0, 0]))
    assert fn(pred)["accuracy"] == 0.5
    assert metrics.for_labels(2, ["mcc"])(pred) == {"mcc": 0.0}
    assert metrics.softmax(np.array([[1000.0, 1000.0]])).tolist() == [[0.5, 0.5]]


def test_chance_alarm_names_a_model_of_another_language_first():
    from pipelines.reporting.output_dir import _language_causes

    korean = load_card("klue_nli")
    causes = _language_causes(korean, "minilm")
    assert causes == ["the offline model minilm was not trained on this card's language ko "
                      "(drop --model to get multilingual-e5-small, or --model klue/bert-base --online)"]
    assert _language_causes(korean, "klue/bert-base") == []
    assert _language_causes(korean, "multilingual-e5-small") == []
    assert _language_causes(load_card("cola"), "minilm") == []
    alarm = diagnostics.degenerate([0, 1, 2, 0], 0.01, ["e", "n", "c"], [0, 1, 2], causes)
    assert alarm.startswith("DEGENERATE RUN: validation MCC is 0.010")
    assert "Likely causes: the offline model minilm was not trained on" in alarm
    assert diagnostics.degenerate([0, 1, 2, 0], 0.5, ["e", "n", "c"], [0, 1, 2], causes) is None


def test_validation_alarm_computes_mcc_itself():
    """The alarm needs MCC even when the card does not list it."""
    names, train = ["neg", "pos"], [0, 1, 0, 1]
    assert "predicts 'neg' for every" in diagnostics.validation_alarm([0, 1, 0, 1], [0, 0, 0, 0], names, train)
    assert "MCC is 0.000" in diagnostics.validation_alarm([0, 1, 0, 1], [0, 0, 1, 1], names, train)
    assert diagnostics.validation_alarm([0, 1, 0, 1], [0, 1, 0, 1], names, train) is None
