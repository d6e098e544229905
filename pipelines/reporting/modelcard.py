"""The model card (README.md) of a fine-tuned model, built from a finished output directory.

Everything comes from the files a run wrote (metrics.json, task_card.yaml, config.json,
run_config.json, epochs.md), never from a live run, so any finished run can be published later.
The YAML front matter is built with `huggingface_hub.ModelCardData` so the Hub reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import HubError
from pipelines.evaluation.metrics import METRICS
from pipelines.modeling.heads import HEADS
from pipelines.reporting import run_id, tables

PIPELINE_TAG = "text-classification"
# metrics.json key -> (model-index metric type known to the Hub, display name); the loss is not a card metric
METRIC_TYPES = {"loss": ("loss", "Loss"), **{m.name: (m.hub_type, m.display) for m in METRICS.values()}}
# run_config.json training_arguments shown in the card, in this order
HYPERPARAMETERS = (
    ("learning_rate", "learning rate"),
    ("num_train_epochs", "epochs"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation steps"),
    ("lr_scheduler_type", "scheduler"),
    ("warmup_steps", "warmup steps (a value below 1 is a fraction of all steps)"),
    ("weight_decay", "weight decay"),
    ("optim", "optimizer"),
    ("seed", "seed"),
)


@dataclass(frozen=True)
class RunFiles:
    """The parts of a finished output directory a model card is made of."""

    metrics: dict[str, Any]
    card: dict[str, Any]
    config: dict[str, Any]
    run_config: dict[str, Any]
    epochs_md: str | None


def read_run(out_dir: Path) -> RunFiles:
    """Read what the card needs (metrics.json, task_card.yaml, config.json; run_config.json, epochs.md)."""
    epochs = out_dir / "epochs.md"
    run_id.verify(out_dir)  # never describe a folder that mixes two runs
    return RunFiles(
        metrics=_load(out_dir / "metrics.json", json.loads),
        card=_load(out_dir / "task_card.yaml", yaml.safe_load),
        config=_load(out_dir / "config.json", json.loads),
        run_config=_load(out_dir / "run_config.json", json.loads) if (out_dir / "run_config.json").is_file() else {},
        epochs_md=epochs.read_text(encoding="utf-8").strip() if epochs.is_file() else None,
    )


def _load(path: Path, parse) -> dict[str, Any]:
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise HubError(f"cannot read {path} ({type(err).__name__}): is the output directory complete?") from None
    if not isinstance(data, dict):
        raise HubError(f"{path} does not hold a mapping: is the output directory complete?")
    return data


def render(run: RunFiles, repo_id: str) -> str:
    """README.md: YAML front matter the Hub understands, then a readable body."""
    return f"---\n{front_matter(run, repo_id)}\n---\n\n{body(run, repo_id)}"


def front_matter(run: RunFiles, repo_id: str) -> str:
    """library, pipeline tag, base model, datasets, language, license, and the model-index."""
    from huggingface_hub import ModelCardData

    card, metrics = run.card, run.metrics
    hub = (card.get("dataset") or {}).get("hub") or {}
    sample = metrics["data"]["kind"] == "sample"
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        base_model=metrics.get("base_model"),  # None (a local base model) is left out
        # Not claimed when the run fell back to the bundled sample: the model never saw that dataset.
        datasets=[hub["path"]] if hub.get("path") and not sample else None,
        language=list(card.get("language") or []) or None,
        license=card.get("license"),
        tags=["cardtune", PIPELINE_TAG, str(card.get("task") or metrics["task"])],
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(run) or None,
    )
    return data.to_yaml()


def eval_results(run: RunFiles) -> list:
    """One EvalResult per metric and split, values exactly as in metrics.json."""
    from huggingface_hub import EvalResult

    metrics, card = run.metrics, run.card
    hub = (card.get("dataset") or {}).get("hub") or {}
    if metrics["data"]["kind"] == "sample":
        hub = {}  # sample scores must not be filed under the real dataset (the Hub aggregates by it)
    task = str(card.get("task") or metrics["task"])
    results = []
    for split in ("validation", "test"):
        for key, value in (metrics.get(split) or {}).items():
            kind, name = METRIC_TYPES.get(key, (key, key))
            results.append(EvalResult(
                task_type=PIPELINE_TAG, task_name="Text Classification",
                dataset_type=hub.get("path") or task, dataset_name=_dataset_name(metrics, task),
                dataset_config=hub.get("name"), dataset_split=split,
                metric_type=kind, metric_name=name, metric_value=value,
            ))
    return results


def _dataset_name(metrics: dict[str, Any], task: str) -> str:
    kind, where = metrics["data"]["kind"], metrics["data"]["where"]
    if kind == "hub":
        return where
    if kind == "sample":
        return f"{task} (bundled cardtune sample, NOT the real data)"
    return f"{task} (local files)"


def body(run: RunFiles, repo_id: str) -> str:
    """Task, labels, data, per-epoch table, best-checkpoint metrics, hyperparameters, usage."""
    sections = [_intro(run, repo_id), _labels(run), _data(run), _training(run), _results(run),
                _hyperparameters(run), _usage(run, repo_id), _files()]
    return "\n\n".join(s.strip() for s in sections) + "\n"


def _intro(run: RunFiles, repo_id: str) -> str:
    metrics, card = run.metrics, run.card
    if metrics.get("base_model"):
        base = f"[`{metrics['base_model']}`](https://huggingface.co/{metrics['base_model']})"
    else:  # a local directory: its name only, a public card should not show the trainer's file system
        base = f"a local model (`{Path(str(metrics.get('model'))).name}`)"
    lines = [f"# {repo_id.split('/')[-1]}", ""]
    if metrics["data"]["kind"] == "sample":
        lines += [f"> **WARNING: {metrics.get('warning') or 'trained on the bundled sample, not the real data'}.** "
                  "This model only proves that the pipeline runs; do not use it.", ""]
    lines += [
        f"Fine-tuned from {base} for the cardtune task `{card.get('task') or metrics['task']}`: "
        f"{card.get('description', '').strip()}",
        *(["", f"Base model `{metrics['model']}`: {metrics['model_reason']}."] if metrics.get("model_reason") else []),
        "",
        "## Task",
        "",
        f"Text classification of {_inputs(card)} into {len(run.config.get('id2label') or {})} labels, "
        f"at most {run.run_config.get('max_length') or card.get('max_length')} tokens per example. "
        f"The best checkpoint was chosen by validation `{metrics['select_by']}`.",
    ]
    return "\n".join(lines)


def _inputs(card: dict[str, Any]) -> str:
    columns = list(card.get("text_columns") or ["text"])
    if len(columns) == 2:
        return f"sentence pairs (`{columns[0]}`, `{columns[1]}`)"
    return f"single texts (`{columns[0]}`)"


def _labels(run: RunFiles) -> str:
    id2label = run.config.get("id2label") or {}
    rows = [{"id": int(i), "label": name} for i, name in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
    return "## Labels\n\n" + tables.markdown_table(rows)


def _data(run: RunFiles) -> str:
    data, card = run.metrics["data"], run.card
    source = card.get("dataset") or {}
    if data["kind"] == "hub":
        path = source["hub"]["path"]
        where = f"the Hub dataset [`{data['where']}`](https://huggingface.co/datasets/{path})"
    elif data["kind"] == "sample":
        where = f"**the small sample bundled with cardtune (`{Path(data['where']).name}`), not the real data**"
    else:
        files = (source.get("local") or {}).get("files") or {}
        used = [s for s in ("train", "validation", "test") if s in files and s in data["sizes"]]
        where = "local files (" + ", ".join(f"{s}: `{files[s]}`" for s in used) + ")"
    rows = [{"split": split, "rows": size} for split, size in data["sizes"].items()]
    return (f"## Data\n\nTrained and evaluated on {where}. Rows per split, after preprocessing:\n\n"
            + tables.markdown_table(rows))


def _training(run: RunFiles) -> str:
    table = run.epochs_md or "(epochs.md was not found in the output directory)"
    best = run.metrics.get("best_epoch")
    return (f"## Training\n\nPer epoch; the checkpoint of epoch {best} (best validation "
            f"`{run.metrics['select_by']}`) was restored at the end.\n\n{table}\n\n"
            "![learning curve](learning_curve.png)")


def _results(run: RunFiles) -> str:
    probe = run.metrics.get("probe") or {}
    rows = []
    for split in ("validation", "test"):
        if run.metrics.get(split):
            rows.append({"split": split, "model": "this model", **run.metrics[split]})
            if probe.get(split):
                rows.append({"split": split, "model": "linear probe (frozen base encoder)", **probe[split]})
    text = (f"## Results\n\nMetrics of the restored best checkpoint (epoch {run.metrics.get('best_epoch')}), "
            "not of the last epoch; full precision in `metrics.json` and in the metadata above.")
    if probe:
        text += (" The linear probe is a logistic regression on the frozen base encoder's embeddings "
                 f"({probe.get('features')}) fitted on the same training split: the baseline fine-tuning has to beat.")
    if run.metrics.get("below_probe"):
        text += f"\n\n> **Warning:** {run.metrics['below_probe']}"
    return text + "\n\n" + tables.markdown_table(rows)


def _hyperparameters(run: RunFiles) -> str:
    args = run.run_config.get("training_arguments") or {}
    # Values as text: the table would print 2e-5 as 0.0000 (it rounds floats to 4 decimals).
    rows = [{"setting": label, "value": _show(args[key])} for key, label in HYPERPARAMETERS if key in args]
    train = run.metrics.get("train") or {}
    _actual_epochs(rows, args, train)
    if "effective_batch_size" in train:
        rows.append({"setting": "effective batch size", "value": train["effective_batch_size"]})
    if run.run_config.get("max_length"):
        rows.append({"setting": "max_length (tokens)", "value": run.run_config["max_length"]})
    if not rows:
        return "## Hyperparameters\n\nNot recorded (run_config.json was not found in the output directory)."
    versions = ", ".join(f"{k} {run.run_config[k]}" for k in ("cardtune", "transformers") if k in run.run_config)
    trained_with = f"\n\nTrained with {versions}." if versions else ""
    return "## Hyperparameters\n\n" + tables.markdown_table(rows) + trained_with


def _actual_epochs(rows: list[dict[str, Any]], args: dict[str, Any], train: dict[str, Any]) -> None:
    """--max_steps can stop training before the configured epochs: the card states what was trained."""
    trained, max_steps = train.get("epochs_trained"), args.get("max_steps") or -1
    planned = args.get("num_train_epochs")
    if trained is None or max_steps <= 0 or not isinstance(planned, (int, float)) or trained >= planned:
        return
    for row in rows:
        if row["setting"] == "epochs":
            row["value"] = f"{trained:g} (max_steps {max_steps} stopped training; {planned:g} configured)"


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _usage(run: RunFiles, repo_id: str) -> str:
    columns = list(run.card.get("text_columns") or ["text"])
    example = ('{"text": "The first sentence.", "text_pair": "The second sentence."}' if len(columns) == 2
               else '"Replace this with the text to classify."')
    length = run.run_config.get("max_length") or run.card.get("max_length") or 512
    custom = "cardtune_head" in run.config
    remote = ", trust_remote_code=True" if custom else ""
    text = (
        "## Usage\n\n```python\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("text-classification", model="{repo_id}"{remote})\n'
        f"print(classifier({example}, truncation=True, max_length={length}))\n```"
    )
    kept = {"tail": "their last tokens", "head_tail": "their first and last tokens (`head_tokens: "
            f"{run.card.get('head_tokens')}`)"}.get(run.card.get("truncation"))
    if kept and len(columns) == 1:  # the pipeline's truncation=True keeps the first tokens
        text += (f"\n\nIn training, texts longer than {length} tokens kept {kept}; the pipeline above keeps "
                 "their first tokens. cardtune's `scripts/predict.py` reads `task_card.yaml` and cuts long texts "
                 "as training did.")
    if custom:
        text += (f"\n\nThe head (`{run.config['cardtune_head']}`: {HEADS[run.config['cardtune_head']].help}) is "
                 "not one of transformers' own: its code, `pooled_classifier.py` and `heads.py`, is in this "
                 "repository, hence `trust_remote_code=True`.")
    return text


def _files() -> str:
    return (
        "## Files\n\nThe model (`model.safetensors`, `config.json` with the label names, and for cardtune's own "
        "heads their code), its tokenizer, "
        "`task_card.yaml` (the resolved cardtune task card of the run), `metrics.json` (final metrics, data "
        "source, split sizes, timing) and `learning_curve.png`."
    )
