import json
from collections import Counter

import pandas as pd
import pytest
from conftest import SHARED_DATA, toy_rows, write_card, write_csv

from pipelines.card.cards import load_card
from pipelines.data.loading import load_splits
from pipelines.errors import DataError


def _card(tmp_path, rows_train, rows_dev=None, fmt="csv", **overrides):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    files = {"train": f"train.{fmt}"}
    _write(data / f"train.{fmt}", rows_train, fmt)
    if rows_dev is not None:
        files["validation"] = f"dev.{fmt}"
        _write(data / f"dev.{fmt}", rows_dev, fmt)
    overrides.setdefault("dataset", {"local": {"format": fmt, "files": files}})
    return load_card(str(write_card(tmp_path, **overrides))), data


def _write(path, rows, fmt):
    frame = pd.DataFrame(rows)
    if fmt == "csv":
        write_csv(path, rows)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif fmt == "xlsx":
        frame.to_excel(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "xlsx", "parquet"])
def test_every_local_format_loads_with_label_ids_by_card_order(tmp_path, fmt):
    card, data = _card(tmp_path, toy_rows(20), toy_rows(6, seed=3), fmt=fmt)
    dsd = load_splits(card, data).splits
    assert set(dsd) == {"train", "validation"}
    assert len(dsd["train"]) == 20
    first = dsd["train"][0]
    assert first["text"] == toy_rows(20)[0]["text"]
    assert first["label"] == card.labels.index(toy_rows(20)[0]["label"])
    assert dsd["train"].features["label"].names == ["neg", "pos"]


def test_positional_and_mapped_raw_labels(tmp_path):
    rows = [{"text": f"t {i}", "label": str(i % 3)} for i in range(12)]
    card, data = _card(tmp_path, rows, rows, labels=["neg", "pos"], label_map={2: "pos"})
    labels = load_splits(card, data).splits["train"]["label"]
    assert labels[:3] == [0, 1, 1]  # 0 -> neg by position, 1 -> pos by position, 2 -> pos by label_map


def test_dropped_labels_remove_rows(tmp_path):
    rows = toy_rows(10) + [{"text": "no consensus", "label": "-"}]
    card, data = _card(tmp_path, rows, toy_rows(4), drop_labels=["-"])
    assert len(load_splits(card, data).splits["train"]) == 10


def test_unseen_label_is_a_clear_error(tmp_path):
    rows = toy_rows(6) + [{"text": "meh", "label": "neutral"}]
    card, data = _card(tmp_path, rows, toy_rows(4))
    with pytest.raises(DataError) as info:
        load_splits(card, data)
    msg = str(info.value)
    assert "split 'train'" in msg and "label value(s) 'neutral' (data row 7) in column `label`" in msg
    assert "add them to `labels` or `label_map`, or list them in `drop_labels` of toy.yaml" in msg


def test_missing_column_names_expected_and_found(tmp_path):
    rows = [{"sentence": r["text"], "label": r["label"]} for r in toy_rows(6)]
    card, data = _card(tmp_path, rows, rows)
    with pytest.raises(DataError, match=r"expected columns \['text', 'label'\], found \['sentence', 'label'\]; "
                                        r"set `text_columns` \(or dataset.\*.rename\) in toy.yaml"):
        load_splits(card, data)


def test_empty_and_nan_text_are_errors_unless_dropped(tmp_path):
    rows = toy_rows(6) + [{"text": "", "label": "pos"}, {"text": "   ", "label": "neg"}]
    card, data = _card(tmp_path, rows, toy_rows(4))
    with pytest.raises(DataError, match=r"2 row\(s\) with empty or missing text in column `text` \(data rows 7, 8\); "
                                        r"fix the file or add `drop_empty` to `preprocess`"):
        load_splits(card, data)
    card, data = _card(tmp_path, rows, toy_rows(4), preprocess=["drop_empty"])
    assert len(load_splits(card, data).splits["train"]) == 6


def test_undecodable_file_names_the_encoding(tmp_path):
    card, data = _card(tmp_path, toy_rows(4), toy_rows(4))
    (data / "train.csv").write_bytes("text,label\n영화 좋다,pos\n".encode("cp949"))
    with pytest.raises(DataError, match=r"train.csv: cannot decode byte 0xbf in data row 1 \(line 2\) as utf-8-sig; "
                                        r"set `encoding` in the card's dataset.local"):
        load_splits(card, data)


def test_missing_files_and_data_dir(tmp_path):
    card, data = _card(tmp_path, toy_rows(4), toy_rows(4))
    with pytest.raises(DataError, match="--data-dir .*nowhere is not a directory"):
        load_splits(card, tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no data file of card toy.yaml found: expected .*train.csv"):
        load_splits(card, empty)


def test_missing_validation_is_carved_stratified_and_seeded(tmp_path):
    rows = [{"text": f"row {i}", "label": "pos" if i % 4 == 0 else "neg"} for i in range(200)]
    card, data = _card(tmp_path, rows, None, split={"validation": 0.2, "stratify": True, "seed": 7})
    first = load_splits(card, data)
    again = load_splits(card, data).splits
    assert len(first.splits["validation"]) == 40 and len(first.splits["train"]) == 160
    assert Counter(first.splits["validation"]["label"]) == {0: 30, 1: 10}  # 25% positives kept
    assert first.splits["validation"]["text"] == again["validation"]["text"]
    assert any("stratified (seed 7)" in note for note in first.notes)


def test_test_then_validation_carving_as_in_the_imdb_recipe(tmp_path):
    rows = [{"text": f"row {i}", "label": "pos" if i % 2 else "neg"} for i in range(1000)]
    card, data = _card(tmp_path, rows, None, split={"test": 0.2, "validation": 0.3, "stratify": True})
    dsd = load_splits(card, data).splits
    assert (len(dsd["train"]), len(dsd["validation"]), len(dsd["test"])) == (560, 240, 200)


def test_preprocess_join_and_strip_feed_the_text_column(tmp_path):
    rows = [{"a": f" first {i} ", "b": f"second {i}", "label": "pos " if i % 2 else "neg"} for i in range(8)]
    card, data = _card(
        tmp_path, rows, rows,
        preprocess=[{"strip": {"columns": ["label"]}}, {"join": {"columns": ["a", "b"], "into": "text"}}],
    )
    train = load_splits(card, data).splits["train"]
    assert train[1]["text"] == "first 1 second 1" and train[1]["label"] == 1


def test_offline_hub_source_falls_back_to_the_bundled_sample_loudly(caplog):
    card = load_card("sst2")
    with caplog.at_level("WARNING"):
        loaded = load_splits(card)
    assert loaded.kind == "sample" and loaded.is_sample
    assert "USING THE BUNDLED" in caplog.text and "NOT meaningful" in caplog.text
    assert "pass --online to download" in loaded.notes[0]
    assert {"train", "validation"} <= set(loaded.splits)


@pytest.mark.parametrize("name", ["cola", "sst2", "imdb", "snli", "mnli", "klue_nli", "nsmc", "ko_emotion"])
def test_every_bundled_sample_goes_through_its_card(name):
    card = load_card(name)
    loaded = load_splits(card)
    sizes = {s: len(ds) for s, ds in loaded.splits.items()}
    assert sum(sizes.values()) >= 40, sizes
    train = loaded.splits["train"]
    assert set(train["label"]) == set(range(len(card.labels)))  # every class present
    for col in card.text_columns:
        assert all(isinstance(t, str) and t.strip() for t in train[col])


def test_snli_sample_drops_unlabelled_rows():
    raw = [json.loads(line) for line in load_card("snli").sample_path.read_text(encoding="utf-8").splitlines()]
    loaded = load_splits(load_card("snli"))
    kept = sum(len(ds) for ds in loaded.splits.values())
    assert kept == sum(1 for r in raw if r["label"] != -1) < len(raw)


def test_ko_emotion_reads_excel_with_korean_columns(tmp_path):
    card = load_card("ko_emotion")
    rows = [
        {"연령": "청년", "감정_대분류": label,
         "사람문장1": f"오늘 회사에서 일이 있었어 {i}", "사람문장2": f"정말 그랬어 {i}"}
        for i, label in enumerate(["분노", "슬픔 ", "불안", "상처", "당황", "기쁨"] * 4)
    ]
    frame = pd.DataFrame(rows)
    for name in card.dataset.local.files.values():
        frame.to_excel(tmp_path / name, index=False)
    dsd = load_splits(card, tmp_path).splits
    assert dsd["train"][1]["text"] == "오늘 회사에서 일이 있었어 1 정말 그랬어 1"
    assert dsd["train"][1]["label"] == card.labels.index("슬픔")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present")
@pytest.mark.slow
def test_real_cola_layout_and_klue_single_file():
    cola = load_splits(load_card("cola"), SHARED_DATA / "cola_public")
    assert (len(cola.splits["train"]), len(cola.splits["validation"])) == (8551, 527)
    assert "test" not in cola.splits
    # sentences with quotes survive (TSV read without quote handling)
    assert any('"' in s for s in cola.splits["train"]["sentence"])
    klue = load_splits(load_card("klue_nli"), SHARED_DATA / "klue_nli")
    sizes = {s: len(ds) for s, ds in klue.splits.items()}
    assert sizes == {"train": 2430, "validation": 270, "test": 300}
    assert Counter(klue.splits["test"]["label"]) == {0: 100, 1: 100, 2: 100}
