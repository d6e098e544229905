"""The model card's metadata and text for each kind of data source (no training: a made-up run)."""

from fake_hub import model_index_metrics, split_card

from pipelines.reporting.modelcard import RunFiles, render

REPO = "alice/nli-model"


def made_up_run(kind: str, **metrics_overrides) -> RunFiles:
    """What read_run returns for a finished pair-task run whose data came from `kind`."""
    where = {"hub": "nyu-mll/glue (mnli)", "local": "/home/alice/data/mnli", "sample": "/x/samples/mnli.jsonl"}
    metrics = {
        "task": "mnli", "model": "bert-base-uncased", "base_model": "bert-base-uncased",
        "data": {"kind": kind, "where": where[kind], "notes": [], "sizes": {"train": 900, "validation": 100}},
        "warning": "trained on the bundled SAMPLE, not the real data" if kind == "sample" else None,
        "select_by": "accuracy", "best_epoch": 2,
        "validation": {"loss": 0.51234567, "accuracy": 0.8123456789, "mcc": 0.7, "f1": 0.8},
        "test": None, "train": {"effective_batch_size": 64},
        **metrics_overrides,
    }
    card = {"task": "mnli", "description": "Does the premise entail the hypothesis?", "language": ["en"],
            "license": "cc-by-4.0", "text_columns": ["premise", "hypothesis"], "max_length": 128,
            "dataset": {"hub": {"path": "nyu-mll/glue", "name": "mnli"},
                        "local": {"format": "tsv", "files": {"train": "train.tsv", "validation": "dev_matched.tsv"}}}}
    config = {"id2label": {"0": "entailment", "1": "neutral", "2": "contradiction"}}
    run_config = {"cardtune": "0.1.0", "transformers": "5.23.0", "max_length": 128,
                  "training_arguments": {"learning_rate": 2e-5, "num_train_epochs": 3.0, "warmup_steps": 0.1,
                                         "per_device_train_batch_size": 32, "hub_token": None}}
    return RunFiles(metrics, card, config, run_config, "| epoch | train_loss |\n|---|---|\n| 1 | 0.9000 |")


def test_hub_data_card():
    meta, body = split_card(render(made_up_run("hub"), REPO))
    assert meta["datasets"] == ["nyu-mll/glue"] and meta["license"] == "cc-by-4.0" and meta["language"] == ["en"]
    assert meta["base_model"] == "bert-base-uncased" and meta["model-index"][0]["name"] == "nli-model"
    dataset = meta["model-index"][0]["results"][0]["dataset"]
    assert dataset == {"name": "nyu-mll/glue (mnli)", "type": "nyu-mll/glue", "config": "mnli", "split": "validation"}
    assert model_index_metrics(meta) == {"validation": {  # exact, unrounded
        "loss": 0.51234567, "accuracy": 0.8123456789, "matthews_correlation": 0.7, "f1": 0.8}}
    assert "| 2 | contradiction |" in body
    assert "[`nyu-mll/glue (mnli)`](https://huggingface.co/datasets/nyu-mll/glue)" in body
    assert "| validation | this model | 0.5123 | 0.8123 | 0.7000 | 0.8000 |" in body and "| train | 900 |" in body
    assert "| learning rate | 2e-05 |" in body  # not rounded away to 0.0000
    assert "| warmup steps (a value below 1 is a fraction of all steps) | 0.1 |" in body
    assert "| effective batch size | 64 |" in body and "| 1 | 0.9000 |" in body
    assert '"text_pair": "The second sentence."}, truncation=True, max_length=128)' in body


def test_local_data_card_shows_no_local_paths():
    text = render(made_up_run("local", base_model=None, model="/home/alice/models/my-bert"), REPO)
    meta, body = split_card(text)
    assert "base_model" not in meta and meta["datasets"] == ["nyu-mll/glue"]
    assert "/home/alice" not in text and "a local model (`my-bert`)" in body
    assert "local files (train: `train.tsv`, validation: `dev_matched.tsv`)" in body


def test_sample_data_card_is_loud_and_claims_no_dataset():
    meta, body = split_card(render(made_up_run("sample"), REPO))
    assert "datasets" not in meta  # the model never saw the real dataset
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["type"] for r in results] == ["mnli"]  # not filed under nyu-mll/glue
    assert "NOT the real data" in results[0]["dataset"]["name"]
    assert body.lstrip().startswith("# nli-model\n\n> **WARNING: trained on the bundled SAMPLE, not the real data.**")


def test_every_registered_metric_is_filed_under_its_hub_type_and_name():
    """A card that lists balanced_accuracy gets it in the model-index and the results table."""
    run = made_up_run("hub", select_by="balanced_accuracy",
                      validation={"loss": 0.5, "balanced_accuracy": 0.75, "accuracy": 0.8})
    meta, body = split_card(render(run, REPO))
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["name"], m["value"]) for m in metrics] == [
        ("loss", "Loss", 0.5), ("balanced_accuracy", "Balanced accuracy", 0.75), ("accuracy", "Accuracy", 0.8)]
    assert "| split | model | loss | balanced_accuracy | accuracy |" in body
    assert "best validation `balanced_accuracy`" in body
