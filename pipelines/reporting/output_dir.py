"""The output directory of a run: model, resolved card, metrics, tables, plots, summaries."""

from __future__ import annotations

import logging
import platform
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import datasets
import transformers
import yaml
from transformers import TrainingArguments

import pipelines
from pipelines.card.cards import TaskCard
from pipelines.data.loading import LoadedData
from pipelines.data.readers import column
from pipelines.evaluation import diagnostics
from pipelines.modeling import loading as model
from pipelines.modeling import offline
from pipelines.reporting import plots, run_id, staging, tables
from pipelines.reporting.summary import metrics_summary, summary_markdown
from pipelines.training.loop import TrainResult
from pipelines.training.options import RunArgs
from pipelines.training.settings import Settings

log = logging.getLogger(__name__)


def _language_causes(card: TaskCard, model_name: str) -> list[str]:
    """A named offline model that was not trained on the card's language cannot learn much from it."""
    entry = offline.find(model_name)
    unread = offline.unread_languages(entry, card.language) if entry else []
    if not unread:
        return []
    default = offline.choose(None, card.language, card.model).name
    better = f"drop --model to get {default}" if default != entry.name else "pass --model"
    if card.recommended_model:
        better += f", or --model {card.recommended_model} --online"
    return [f"the offline model {entry.name} was not trained on this card's language {', '.join(unread)} ({better})"]


def write_outputs(card: TaskCard, run: RunArgs, settings: Settings, args: TrainingArguments, data: LoadedData,
                  feats: datasets.DatasetDict, result: TrainResult, params: dict[str, int]) -> dict[str, Any]:
    """Stage every artefact, then move them into the output directory in one go."""
    out = Path(args.output_dir)
    stage = staging.staging_dir(out)
    trainer = result.trainer
    rid = run_id.new_run_id()  # in every file of the run: a folder mixing two runs is detectable
    trainer.model.config.cardtune_run_id = rid
    trainer.model.save_pretrained(stage)
    trainer.processing_class.save_pretrained(stage)
    header = run_id.card_header(rid)
    header += f"# Resolved task card '{card.name}' (from {card.path}), saved by cardtune {pipelines.__version__}\n"
    # The max length the model was trained at (--max_length wins over the card's): predictions read
    # it from here and cut long texts as training did.
    trained = replace(card, max_length=settings.max_length)
    (stage / "task_card.yaml").write_text(
        header + yaml.safe_dump(trained.to_dict(), allow_unicode=True, sort_keys=False, width=100), encoding="utf-8")
    rows = tables.epoch_rows(result.history)
    tables.write_tables(rows, stage)
    plots.plot_curves(rows, card.select_by, stage / "learning_curve.png")
    per_class = {}
    for split, preds in (("validation", result.validation), ("test", result.test)):
        if preds is not None and preds.labels is not None:
            counts = diagnostics.confusion(preds.labels, preds.preds, len(card.labels))
            plots.write_confusion(stage, split, counts, card.labels)
            per_class[split] = diagnostics.per_class(preds.labels, preds.preds, card.labels)
            tables.write_per_class(stage, split, per_class[split])
    # validation_predictions.csv also holds the texts that --int8 calibrates its cascade on (prediction/cascade.py)
    for split, preds in (("validation", result.validation), ("test", result.test)):
        if preds is not None:
            texts = {c: column(feats[split], c) for c in card.text_columns}
            tables.write_predictions(stage / f"{split}_predictions.csv", texts, card.labels, preds.probs, preds.labels)
    validation = result.validation
    alarm = diagnostics.validation_alarm(validation.labels, validation.preds, card.labels,
                                         column(feats["train"], "label"), _language_causes(card, settings.model))
    summary = {"run_id": rid, **metrics_summary(card, run, settings, args, data, feats, result, rows, alarm, params)}
    # The attention actually used: --attn_implementation asks, a model without sdpa falls back to eager.
    attention = getattr(getattr(trainer.model, "config", None), "_attn_implementation", None)
    tables.write_json(stage / "run_config.json", {"run_id": rid, **run_config(run, settings, args, card),
                                                  "attention": attention})
    (stage / "summary.md").write_text(summary_markdown(summary, rows, per_class), encoding="utf-8")
    tables.write_json(stage / "metrics.json", summary)
    staging.publish(stage, out)
    if not run.keep_checkpoints:
        for ckpt in out.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
    _log_summary(summary, out)
    return summary


def _log_summary(summary: dict[str, Any], out: Path) -> None:
    log.info("validation (best checkpoint, epoch %s): %s", summary["best_epoch"], _fmt(summary["validation"]))
    if summary["test"]:
        log.info("test: %s", _fmt(summary["test"]))
    if summary.get("probe"):
        log.info("linear probe: %s", "; ".join(f"{s} {_fmt(summary['probe'][s])}" for s in ("validation", "test")
                                              if summary["probe"].get(s)))
    for banner in (summary["alarm"], summary.get("below_probe")):
        if banner:
            log.warning("WARNING: %s", banner)
    log.info("outputs written to %s", out)


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in values.items() if isinstance(v, float))


def run_config(run: RunArgs, settings: Settings, args: TrainingArguments, card: TaskCard) -> dict[str, Any]:
    """The resolved configuration, enough to repeat the run (tokens never included): the options as given
    (`run`) and what they resolved to (`settings`)."""
    training = {k: v for k, v in args.to_dict().items() if "token" not in k}
    return {
        "cardtune": pipelines.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "card": str(card.path),
        "run": asdict(run),
        "settings": asdict(settings),
        "model_path": model.resolve(settings.model),
        "max_length": settings.max_length,
        "training_arguments": training,
    }

