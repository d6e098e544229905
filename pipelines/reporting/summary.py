"""What metrics.json and summary.md say about a run, and the statistics over seeds."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainingArguments

from pipelines.card.cards import TaskCard
from pipelines.evaluation import probe
from pipelines.modeling import loading as model
from pipelines.reporting import run_id, staging, tables
from pipelines.training.loop import TrainResult

log = logging.getLogger(__name__)


def effective_batch_size(args: TrainingArguments) -> int:
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)


def metrics_summary(card, run, settings, args, data, feats, result, rows, alarm, params) -> dict[str, Any]:
    """What metrics.json holds: final metrics of the restored best checkpoint, and their context."""
    key = f"validation_{card.select_by}"
    scored = [r for r in rows if key in r]
    best = max(scored, key=lambda r: r[key])["epoch"] if scored else None
    test = result.test.metrics if result.test is not None else None
    return {
        "task": card.name,
        "model": settings.model,
        "model_reason": settings.model_reason,
        "base_model": model.base_model_id(settings.model),
        "data": {"kind": data.kind, "where": data.where, "notes": data.notes,
                 "sizes": {s: len(ds) for s, ds in feats.items()}},
        "warning": ("trained on the bundled SAMPLE, not the real data: metrics are not meaningful"
                    if data.is_sample else None),
        "alarm": alarm,
        "select_by": card.select_by,
        "best_epoch": best,
        "validation": _metric_values(result.validation.metrics),
        "test": _metric_values(test) if test else None,
        "probe": params.get("probe"),
        "below_probe": probe.verdict(card, {"validation": _metric_values(result.validation.metrics),
                                            "test": _metric_values(test) if test else None}, params.get("probe") or {}),
        "recipe": {"head": settings.head, "freeze": run.freeze, "trainable_parameters": params["trainable"],
                   "total_parameters": params["total"], "seed": args.seed,
                   "freeze_word_embeddings": settings.freeze_word_embeddings,
                   "warm_start": params.get("warm_start")},
        "train": _train_figures(args, rows, result),
    }


def _train_figures(args: TrainingArguments, rows: list[dict], result: TrainResult) -> dict[str, Any]:
    return {
        "epochs": len(rows),
        # below num_train_epochs when --max_steps stopped training earlier
        "epochs_trained": round(float(result.trainer.state.epoch or 0.0), 4),
        "steps": result.trainer.state.global_step,
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


def summary_markdown(summary: dict[str, Any], rows: list[dict[str, Any]], per_class: dict[str, list]) -> str:
    """A short human-readable report of the run."""
    lines = [f"# {summary['task']}: {summary['model']}", ""]
    if summary.get("model_reason"):
        lines += [f"Model `{summary['model']}`: {summary['model_reason']}.", ""]
    for banner in (summary["warning"], summary["alarm"], summary.get("below_probe")):
        if banner:
            lines += [f"> **WARNING: {banner}**", ""]
    recipe = summary["recipe"]
    lines += [f"Data: {summary['data']['kind']} ({summary['data']['where']}), sizes {summary['data']['sizes']}", "",
              f"Head {recipe['head']}, freeze {recipe['freeze']}: {recipe['trainable_parameters']:,} of "
              f"{recipe['total_parameters']:,} parameters trained; seed {recipe['seed']}", "",
              f"Best epoch by validation {summary['select_by']}: {summary['best_epoch']}", ""]
    for split in ("validation", "test"):
        if summary[split]:
            heading = f"## {split.capitalize()} (restored best checkpoint)"
            lines += [heading, "", tables.markdown_table(versus_probe(summary, split)), ""]
        if split in per_class:
            lines += [f"Per class ({split}):", "", tables.markdown_table(per_class[split]), ""]
    lines += ["## Epochs", "", tables.markdown_table(rows), ""]
    return "\n".join(lines)


def versus_probe(summary: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """Table rows of one split: the fine-tuned model, and the linear probe when the run fitted one."""
    rows = [{"model": "fine-tuned", **summary[split]}]
    scores = (summary.get("probe") or {}).get(split)
    if scores:
        rows.append({"model": "linear probe (frozen encoder)", **scores})
    return rows


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
        "run_id": run_id.new_run_id(), "task": card.name, "select_by": card.select_by, "seeds": list(per_seed),
        "runs": {str(seed): {"validation": s["validation"], "test": s["test"], "best_epoch": s["best_epoch"],
                             "folder": f"seed-{seed}"} for seed, s in per_seed.items()},
        "validation": stats["validation"], "test": stats["test"] or None,
        "alarm": {str(k): v for k, v in alarms.items()} or None,
        "warning": next(iter(per_seed.values())).get("warning"),
        "probe": next(iter(per_seed.values())).get("probe"),
    }
    means = {split: {m: v["mean"] for m, v in (stats[split] or {}).items()} for split in stats}
    summary["below_probe"] = probe.verdict(card, means, summary["probe"] or {})
    lines = [f"# {card.name}: {len(per_seed)} seeds", ""]
    if summary["warning"]:
        lines += [f"> **WARNING: {summary['warning']}**", ""]
    for seed, text in alarms.items():
        lines += [f"> **WARNING (seed {seed}): {text}**", ""]
    if summary["below_probe"]:
        lines += [f"> **WARNING (mean over seeds): {summary['below_probe']}**", ""]
    validation = stats["validation"]
    table = [{"seed": seed, **{m: s["validation"][m] for m in card.metrics}} for seed, s in per_seed.items()]
    table.append({"seed": "mean ± std",
                  **{m: f"{validation[m]['mean']:.4f} ± {validation[m]['std']:.4f}" for m in card.metrics}})
    probe_scores = (summary["probe"] or {}).get("validation")
    if probe_scores:
        table.append({"seed": "linear probe", **{m: probe_scores[m] for m in card.metrics}})
    lines += ["## Validation (restored best checkpoint of each seed)", "", tables.markdown_table(table), ""]
    stage = staging.staging_dir(out)
    tables.write_json(stage / "metrics.json", summary)
    (stage / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    staging.publish(stage, out)
    for m in card.metrics:
        log.info("validation %s over seeds %s: %.4f ± %.4f (per seed: %s)", m, list(per_seed),
                 validation[m]["mean"], validation[m]["std"],
                 ", ".join(f"{s['validation'][m]:.4f}" for s in per_seed.values()))
    return summary


