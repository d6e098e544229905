"""One training run of a card: data -> features -> model -> Trainer -> report folder."""

from __future__ import annotations

import logging
import platform
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import transformers
import yaml
from transformers import TrainingArguments

import pipelines
from pipelines import cache, features, hardware, model, report
from pipelines.cards import TaskCard
from pipelines.data import LoadedData, load_splits
from pipelines.options import RunArgs
from pipelines.readers import column
from pipelines.train import TrainResult, train

log = logging.getLogger(__name__)


def run_task(card: TaskCard, run: RunArgs, args: TrainingArguments) -> dict[str, Any]:
    """Train `card` as configured; returns the contents of metrics.json (empty on non-main ranks)."""
    threads = hardware.configure_threads(run.threads)
    data = load_splits(card, run.data_dir, run.online)
    tokenizer = model.load_tokenizer(run.model, run.online)
    features.check_fast(tokenizer, run.model or model.DEFAULT_MODEL)
    transformers.set_seed(args.seed)  # the new classifier head is initialised at load time
    classifier = model.load_model(card, run.model, run.online, run.attn_implementation)
    max_length = run.max_length or card.max_length
    with args.main_process_first(desc="tokenize"):  # rank 0 fills the cache, the others read it
        feats = cache.cached_tokenize(card, data.splits, tokenizer, max_length, run.pad_to_max_length,
                                      run.cache_features)
    for split, ds in feats.items():
        log.info("%s: %d rows, %d truncated at %d tokens", split, len(ds), sum(column(ds, "truncated")), max_length)
    log.info("%d CPU thread(s) per process; effective batch size %d", threads, effective_batch_size(args))
    result = train(card, args, feats, classifier, tokenizer, sort_eval=run.sort_eval)
    if not result.trainer.is_world_process_zero():
        return {}
    summary = write_outputs(card, run, args, data, feats, result)
    if data.is_sample:
        log.warning("REMINDER: this run used the bundled sample, not the real data: %s", data.notes[0])
    return summary


def write_outputs(
    card: TaskCard,
    run: RunArgs,
    args: TrainingArguments,
    data: LoadedData,
    feats: datasets.DatasetDict,
    result: TrainResult,
) -> dict[str, Any]:
    """Stage every artefact, then move them into the output directory in one go."""
    out = Path(args.output_dir)
    stage = report.staging_dir(out)
    trainer = result.trainer
    trainer.model.save_pretrained(stage)
    trainer.processing_class.save_pretrained(stage)
    header = f"# Resolved task card '{card.name}' (from {card.path}), saved by cardtune {pipelines.__version__}\n"
    (stage / "task_card.yaml").write_text(
        header + yaml.safe_dump(card.to_dict(), allow_unicode=True, sort_keys=False, width=100), encoding="utf-8"
    )
    rows = report.epoch_rows(result.history, result.epoch_times)
    report.write_tables(rows, stage)
    report.plot_curves(rows, card.select_by, stage / "learning_curve.png")
    if result.test is not None:
        test = feats["test"]
        texts = {c: column(test, c) for c in card.text_columns}
        report.write_predictions(stage / "test_predictions.csv", texts, card.labels, result.test.probs, result.test.labels)
    summary = metrics_summary(card, run, args, data, feats, result, rows)
    report.write_json(stage / "run_config.json", run_config(run, args, card))
    (stage / "summary.md").write_text(summary_markdown(summary, rows), encoding="utf-8")
    report.write_json(stage / "metrics.json", summary)
    report.publish(stage, out)
    if not run.keep_checkpoints:
        for ckpt in out.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
    log.info("validation (best checkpoint, epoch %s): %s", summary["best_epoch"], _fmt(summary["validation"]))
    if summary["test"]:
        log.info("test: %s", _fmt(summary["test"]))
    log.info("outputs written to %s", out)
    return summary


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in values.items() if isinstance(v, float))


def effective_batch_size(args: TrainingArguments) -> int:
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)


def metrics_summary(card, run, args, data, feats, result, rows) -> dict[str, Any]:
    """What metrics.json holds: final metrics of the restored best checkpoint, and their context."""
    key = f"validation_{card.select_by}"
    scored = [r for r in rows if key in r]
    best = max(scored, key=lambda r: r[key])["epoch"] if scored else None
    test = result.test.metrics if result.test is not None else None
    return {
        "task": card.name,
        "model": run.model or model.DEFAULT_MODEL,
        "base_model": model.base_model_id(run.model),
        "data": {"kind": data.kind, "where": data.where, "notes": data.notes,
                 "sizes": {s: len(ds) for s, ds in feats.items()}},
        "warning": ("trained on the bundled SAMPLE, not the real data: metrics are not meaningful"
                    if data.is_sample else None),
        "select_by": card.select_by,
        "best_epoch": best,
        "validation": _metric_values(result.validation),
        "test": _metric_values(test) if test else None,
        "train": {
            "epochs": len(rows),
            "runtime_s": round(result.train_metrics.get("train_runtime", 0.0), 2),
            "samples_per_second": result.train_metrics.get("train_samples_per_second"),
            "train_loss": result.train_metrics.get("train_loss"),
            "epoch_time_s": [round(t, 2) for t in result.epoch_times],
            "effective_batch_size": effective_batch_size(args),
            "world_size": max(1, args.world_size),
        },
    }


def _metric_values(values: dict[str, float]) -> dict[str, float]:
    skip = ("runtime", "samples_per_second", "steps_per_second", "epoch")
    return {k: float(v) for k, v in values.items() if k not in skip and isinstance(v, (int, float, np.floating))}


def run_config(run: RunArgs, args: TrainingArguments, card: TaskCard) -> dict[str, Any]:
    """The resolved configuration, enough to repeat the run (tokens never included)."""
    training = {k: v for k, v in args.to_dict().items() if "token" not in k}
    return {
        "cardtune": pipelines.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "card": str(card.path),
        "run": asdict(run),
        "model_path": model.resolve(run.model),
        "max_length": run.max_length or card.max_length,
        "training_arguments": training,
    }


def summary_markdown(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A short human-readable report of the run."""
    lines = [f"# {summary['task']}: {summary['model']}", ""]
    if summary["warning"]:
        lines += [f"> **WARNING: {summary['warning']}.**", ""]
    lines += [f"Data: {summary['data']['kind']} ({summary['data']['where']}), sizes {summary['data']['sizes']}", ""]
    lines += [f"Best epoch by validation {summary['select_by']}: {summary['best_epoch']}", ""]
    for split in ("validation", "test"):
        if summary[split]:
            lines += [f"## {split.capitalize()} (restored best checkpoint)", "", report.markdown_table([summary[split]]), ""]
    lines += ["## Epochs", "", report.markdown_table(rows), ""]
    return "\n".join(lines)
