"""Test setup: offline before any Hugging Face import; a tiny BERT; card and data writers."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
import tempfile

os.environ["CARDTUNE_CACHE"] = tempfile.mkdtemp(prefix="cardtune-test-cache-")  # never the user's cache

import json
import string
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

WORDS = (
    "the a an cat dog bird sat ran flew on in under mat tree house is was are were good bad great "
    "terrible movie film plot actor boring fun loved hated not very and or but it this that he she "
    "they we i you to of for with man woman child red blue jacket street park playing sleeping "
    "eating book read wrote gave john mary saw happy sad angry worried"
).split()


def tiny_vocab() -> dict[str, int]:
    """Special tokens, the words above, and single characters so nothing is out of vocabulary."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def build_tiny_model(folder: Path, num_labels: int = 2, labels: list[str] | None = None) -> Path:
    """A 2-layer, 32-wide BERT classifier saved with save_pretrained (same loading path as users)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    tokenizer = BertTokenizer(vocab=tiny_vocab())
    names = labels or [f"LABEL_{i}" for i in range(num_labels)]
    config = BertConfig(
        vocab_size=len(tiny_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=128, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_bert"))


def write_card(folder: Path, name: str = "toy", **overrides) -> Path:
    """A valid single-sentence card over local CSV files; `overrides` replace top-level keys."""
    card = {
        "description": "toy sentiment task for tests",
        "dataset": {"local": {"format": "csv", "files": {"train": "train.csv", "validation": "dev.csv"}}},
        "text_columns": ["text"],
        "label_column": "label",
        "labels": ["neg", "pos"],
        "metrics": ["accuracy", "mcc", "f1"],
        "select_by": "accuracy",
        "max_length": 32,
        "defaults": {"learning_rate": 1.0e-3, "num_train_epochs": 2, "per_device_train_batch_size": 8},
    }
    card.update(overrides)
    path = folder / f"{name}.yaml"
    path.write_text("# toy card written by a test\n" + yaml.safe_dump(card, allow_unicode=True), encoding="utf-8")
    return path


def toy_rows(n: int, seed: int = 0) -> list[dict]:
    """Separable toy sentiment rows: positives say 'good', negatives say 'bad'."""
    import random

    rng = random.Random(seed)
    subjects = ["the movie", "this film", "the plot", "the actor", "it"]
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        word = rng.choice(["good", "great", "fun"] if pos else ["bad", "terrible", "boring"])
        rows.append({"text": f"{rng.choice(subjects)} was very {word} {i}", "label": "pos" if pos else "neg"})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def toy_task(tmp_path) -> tuple[Path, Path]:
    """(card path, data dir) of a toy task with 48 train and 16 validation rows."""
    return make_toy_task(tmp_path)


def make_toy_task(base: Path) -> tuple[Path, Path]:
    """The toy task written into `base` (for module-scoped fixtures): (card path, data dir)."""
    data = base / "data"
    data.mkdir()
    write_csv(data / "train.csv", toy_rows(48))
    write_csv(data / "dev.csv", toy_rows(16, seed=1))
    return write_card(base), data


def interrupt_second_chunk(monkeypatch):
    """Make predict.py's second chunk a Ctrl-C (KeyboardInterrupt in `Classifier.score`); returns
    the function that lifts it, leaving the test's other patches in place."""
    from pipelines.prediction.classifier import Classifier

    real, calls = Classifier.score, []

    def score(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(Classifier, "score", score)
    return lambda: monkeypatch.setattr(Classifier, "score", real)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def sharpen(folder, seed=0):
    """A saved classifier whose head gives spread-out probabilities (an untrained head sits near
    uniform, where a comparison to 1e-5 would prove little)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)
        model.classifier.bias.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def carded_model(tmp_path_factory):
    """A tiny model saved the way scripts/run.py saves one: with its task card."""
    folder = build_tiny_model(tmp_path_factory.mktemp("carded"), labels=["neg", "pos"])
    sharpen(folder)
    write_card(folder, name="task_card", max_length=16)
    return folder
