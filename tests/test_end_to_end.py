"""End to end with the real offline model on a small slice of real CoLA (a few optimizer steps)."""

import csv
import json

import pytest
from conftest import SHARED_DATA

from pipelines.cli.run import main

COLA = SHARED_DATA / "cola_public" / "raw"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not COLA.is_dir(), reason="../shared/data/cola_public not present")]


def _slice(src, dst, n):
    with open(src, encoding="utf-8") as fh:
        lines = fh.readlines()
    step = max(1, len(lines) // n)  # spread the slice over the file: both labels, many sources
    dst.write_text("".join(lines[::step][:n]), encoding="utf-8")


def test_cola_slice_with_the_offline_model(tmp_path):
    raw = tmp_path / "cola" / "raw"
    raw.mkdir(parents=True)
    _slice(COLA / "in_domain_train.tsv", raw / "in_domain_train.tsv", 160)
    _slice(COLA / "in_domain_dev.tsv", raw / "in_domain_dev.tsv", 64)
    out = tmp_path / "out"
    code = main(["--task", "cola", "--data-dir", str(tmp_path / "cola"), "--output-dir", str(out), "--model", "minilm",
                 "--num_train_epochs", "1", "--per_device_train_batch_size", "32"])
    assert code == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert (summary["model"], summary["model_reason"]) == ("minilm", "given with --model")
    assert summary["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert summary["data"] == {"kind": "local", "where": str(tmp_path / "cola"), "notes": summary["data"]["notes"],
                               "sizes": {"train": 160, "validation": 64}}
    assert -1 <= summary["validation"]["mcc"] <= 1 and 0 <= summary["validation"]["accuracy"] <= 1
    rows = list(csv.DictReader(open(out / "epochs.csv", encoding="utf-8")))
    assert len(rows) == 1 and float(rows[0]["train_loss"]) > 0

    from transformers import pipeline

    clf = pipeline("text-classification", model=str(out))
    preds = clf(["The cat sat on the mat.", "Mat the on sat cat the."])
    assert {p["label"] for p in preds} <= {"unacceptable", "acceptable"}
