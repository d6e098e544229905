"""The output directory of a run: model, resolved card, metrics, tables, plots, summaries."""

from __future__ import annotations

import logging
import platform
import shutil
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import transformers
import yaml
from transformers import TrainingArguments

import pipelines
from pipelines.evaluation import metrics
from pipelines.modeling import loading as model
from pipelines.reporting import report
from pipelines.card.cards import TaskCard
from pipelines.data.loading import LoadedData
from pipelines.card.options import RunArgs
from pipelines.data.readers import column
from pipelines.training.train import Predictions, TrainResult

log = logging.getLogger(__name__)
SUMMARY_METRICS = ("accuracy", "mcc", "f1")


def _language_causes(card: TaskCard, run: RunArgs) -> list[str]:
    """The default offline model knows English only; on other languages it cannot learn much."""
    if run.model not in (None, "", model.DEFAULT_MODEL) or "en" in card.language:
        return []
    better = f"--model {card.recommended_model} --online" if card.recommended_model else "--model"
    return [f"the default offline model is English and this card's language is {', '.join(card.language)} "
            f"(pass {better})"]


def write_outputs(card: TaskCard, run: RunArgs, args: TrainingArguments, data: LoadedData,
                  feats: datasets.DatasetDict, result: TrainResult, params: dict[str, int]) -> dict[str, Any]:
    """Stage every artefact, then move them into the output directory in one go."""
    out = Path(args.output_dir)
    stage = report.staging_dir(out)
    trainer = result.trainer
    trainer.model.save_pretrained(stage)
    trainer.processing_class.save_pretrained(stage)
    header = f"# Resolved task card '{card.name}' (from {card.path}), saved by cardtune {pipelines.__version__}\n"
    (stage / "task_card.yaml").write_text(
        header + yaml.safe_dump(card.to_dict(), allow_unicode=True, sort_keys=False, width=100), encoding="utf-8")
    rows = report.epoch_rows(result.history)
    report.write_tables(rows, stage)
    report.plot_curves(rows, card.select_by, stage / "learning_curve.png")
    per_class = {}
    for split, preds in (("validation", result.validation), ("test", result.test)):
        if preds is not None and preds.labels is not None:
            report.write_confusion(stage, split, metrics.confusion(preds.labels, preds.preds, len(card.labels)), card.labels)
            per_class[split] = metrics.per_class(preds.labels, preds.preds, card.labels)
            report.write_per_class(stage, split, per_class[split])
    if result.test is not None:
        texts = {c: column(feats["test"], c) for c in card.text_columns}
        report.write_predictions(stage / "test_predictions.csv", texts, card.labels, result.test.probs, result.test.labels)
    alarm = metrics.degenerate(result.validation.preds, result.validation.metrics["mcc"], card.labels,
                               column(feats["train"], "label"), _language_causes(card, run))
    summary = metrics_summary(card, run, args, data, feats, result, rows, alarm, params)
    report.write_json(stage / "run_config.json", run_config(run, args, card))
    (stage / "summary.md").write_text(summary_markdown(summary, rows, per_class), encoding="utf-8")
    report.write_json(stage / "metrics.json", summary)
    report.publish(stage, out)
    if not run.keep_checkpoints:
        for ckpt in out.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
    _log_summary(summary, out)
    return summary


def _log_summary(summary: dict[str, Any], out: Path) -> None:
    log.info("validation (best checkpoint, epoch %s): %s", summary["best_epoch"], _fmt(summary["validation"]))
    if summary["test"]:
        log.info("test: %s", _fmt(summary["test"]))
    if summary["alarm"]:
        log.warning(summary["alarm"])
    log.info("outputs written to %s", out)


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in values.items() if isinstance(v, float))


def effective_batch_size(args: TrainingArguments) -> int:
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)


def metrics_summary(card, run, args, data, feats, result, rows, alarm, params) -> dict[str, Any]:
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
        "alarm": alarm,
        "select_by": card.select_by,
        "best_epoch": best,
        "validation": _metric_values(result.validation.metrics),
        "test": _metric_values(test) if test else None,
        "recipe": {"head": run.head, "freeze": run.freeze, "trainable_parameters": params["trainable"],
                   "total_parameters": params["total"], "seed": args.seed},
        "train": _train_figures(args, rows, result),
    }


def _train_figures(args: TrainingArguments, rows: list[dict], result: TrainResult) -> dict[str, Any]:
    return {
        "epochs": len(rows),
        "runtime_s": round(result.train_metrics.get("train_runtime", 0.0), 2),
        "samples_per_second": result.train_metrics.get("train_samples_per_second"),
        "train_loss": result.train_metrics.get("train_loss"),
        "epoch_time_s": [r.get("epoch_time_s") for r in rows],
        "effective_batch_size": effective_batch_size(args),
        "world_size": max(1, args.world_size),
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


def summary_markdown(summary: dict[str, Any], rows: list[dict[str, Any]], per_class: dict[str, list]) -> str:
    """A short human-readable report of the run."""
    lines = [f"# {summary['task']}: {summary['model']}", ""]
    for banner in (summary["warning"], summary["alarm"]):
        if banner:
            lines += [f"> **WARNING: {banner}**", ""]
    recipe = summary["recipe"]
    lines += [f"Data: {summary['data']['kind']} ({summary['data']['where']}), sizes {summary['data']['sizes']}", "",
              f"Head {recipe['head']}, freeze {recipe['freeze']}: {recipe['trainable_parameters']:,} of "
              f"{recipe['total_parameters']:,} parameters trained; seed {recipe['seed']}", "",
              f"Best epoch by validation {summary['select_by']}: {summary['best_epoch']}", ""]
    for split in ("validation", "test"):
        if summary[split]:
            lines += [f"## {split.capitalize()} (restored best checkpoint)", "", report.markdown_table([summary[split]]), ""]
        if split in per_class:
            lines += [f"Per class ({split}):", "", report.markdown_table(per_class[split]), ""]
    lines += ["## Epochs", "", report.markdown_table(rows), ""]
    return "\n".join(lines)


def seed_statistics(per_seed: dict[int, dict[str, Any]], split: str) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (n - 1) of each metric over seeds."""
    values: dict[str, list[float]] = {}
    for summary in per_seed.values():
        for key, value in (summary.get(split) or {}).items():
            values.setdefault(key, []).append(value)
    return {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
            for k, v in values.items() if len(v) == len(per_seed)}


def write_seed_summary(card: TaskCard, out: Path, per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """OUT/metrics.json and OUT/summary.md over all seeds; each seed's own folder stays complete."""
    stats = {split: seed_statistics(per_seed, split) for split in ("validation", "test")}
    alarms = {seed: s["alarm"] for seed, s in per_seed.items() if s.get("alarm")}
    summary = {
        "task": card.name, "select_by": card.select_by, "seeds": list(per_seed),
        "runs": {str(seed): {"validation": s["validation"], "test": s["test"], "best_epoch": s["best_epoch"],
                             "folder": f"seed-{seed}"} for seed, s in per_seed.items()},
        "validation": stats["validation"], "test": stats["test"] or None,
        "alarm": {str(k): v for k, v in alarms.items()} or None,
        "warning": next(iter(per_seed.values())).get("warning"),
    }
    lines = [f"# {card.name}: {len(per_seed)} seeds", ""]
    if summary["warning"]:
        lines += [f"> **WARNING: {summary['warning']}**", ""]
    for seed, text in alarms.items():
        lines += [f"> **WARNING (seed {seed}): {text}**", ""]
    table = [{"seed": seed, **{m: s["validation"][m] for m in SUMMARY_METRICS}} for seed, s in per_seed.items()]
    table.append({"seed": "mean ± std", **{m: f"{stats['validation'][m]['mean']:.4f} ± {stats['validation'][m]['std']:.4f}"
                                           for m in SUMMARY_METRICS}})
    lines += ["## Validation (restored best checkpoint of each seed)", "", report.markdown_table(table), ""]
    stage = report.staging_dir(out)
    report.write_json(stage / "metrics.json", summary)
    (stage / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    report.publish(stage, out)
    for m in SUMMARY_METRICS:
        log.info("validation %s over seeds %s: %.4f ± %.4f (per seed: %s)", m, list(per_seed),
                 stats["validation"][m]["mean"], stats["validation"][m]["std"],
                 ", ".join(f"{s['validation'][m]:.4f}" for s in per_seed.values()))
    return summary
