"""A training run of a card: data -> features -> model -> Trainer -> report folder; repeated
over seeds when asked."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import PreTrainedTokenizerBase, TrainingArguments

from pipelines import filesystem, hardware
from pipelines.card.cards import TaskCard
from pipelines.data import cache, features, label_coverage
from pipelines.data.loading import LoadedData, load_splits
from pipelines.data.readers import column
from pipelines.evaluation import probe
from pipelines.modeling import freezing
from pipelines.modeling import loading as model
from pipelines.modeling.heads import HEADS, linear_layers, masked_mean
from pipelines.reporting import run_id, staging
from pipelines.reporting.output_dir import write_outputs
from pipelines.reporting.summary import effective_batch_size, write_seed_summary
from pipelines.training import checkpoints, option_checks, search, tracking, warm_start
from pipelines.training.loop import train
from pipelines.training.options import RunArgs
from pipelines.training.settings import Settings, resolve

log = logging.getLogger(__name__)


def run_task(card: TaskCard, run: RunArgs, args: TrainingArguments, settings: Settings | None = None) -> dict[str, Any]:
    """Train `card` as configured; returns the contents of metrics.json (empty on non-main ranks).
    `settings`: the run's effective settings (`settings.resolve`, when the caller has not resolved them)."""
    if run.search is not None:
        search.check_ready(card, run)
    settings = settings or resolve(card, run, args)
    threads = hardware.configure_threads(None if settings.threads_follow_load else settings.threads)
    # A card's first choice passed over because it is not installed is worth a WARNING: the scores differ.
    (log.warning if settings.models_passed_over else log.info)(
        "model %s (%s)", settings.model, settings.model_reason)
    if not run.head:
        log.info("head %s: the one that reads this model as it was trained (its pooling)", settings.head)
    data = load_splits(card, run.data_dir, run.online)
    label_coverage.check(data.splits, card, data.where)
    tokenizer = model.load_tokenizer(settings.model, run.online)
    features.check_fast(tokenizer, settings.model)
    with args.main_process_first(desc="tokenize"):  # rank 0 fills the cache, the others read it
        feats = cache.cached_tokenize(card, data.splits, tokenizer, settings.max_length, run.pad_to_max_length,
                                      run.cache_features)
    for split, ds in feats.items():
        log.info("%s: %d rows, %d truncated at %d tokens", split, len(ds), sum(column(ds, "truncated")),
                 settings.max_length)
    log.info("%d CPU thread(s) per process; effective batch size %d", threads, effective_batch_size(args))
    trains = functools.partial(train_runs, card, data=data, feats=feats, tokenizer=tokenizer,
                               frozen=FrozenEncoder(settings.max_length))
    if run.search is not None:
        summary = search.run_search(card, run, args, feats, tokenizer, functools.partial(build_model, card), trains,
                                    settings.model)
    else:
        summary = trains(run, args, settings)
    if data.is_sample and summary:
        log.warning("REMINDER: this run used the bundled sample, not the real data: %s", data.notes[0])
    return summary


def parse_seeds(spec: str | None) -> list[int]:
    """'1,2,3' -> [1, 2, 3] (checked with every other option before any work: option_checks)."""
    return option_checks.parse_seeds(spec)


@dataclasses.dataclass
class FrozenEncoder:
    """What the pretrained encoder gives before any fine-tuning, computed once and shared by seeds and trials:
    the warm-start head per head shape, and the linear probe's scores. One forward pass per split serves both: the
    probe reads the mean embeddings normalised (single texts), the `mean` head's last layer reads them raw."""

    max_length: int
    warm: dict[tuple, warm_start.WarmStart] = dataclasses.field(default_factory=dict)
    probe: dict[str, Any] | None = None
    means: dict[str, Any] = dataclasses.field(default_factory=dict)  # split -> raw mean embeddings

    def _raw_means(self, splits: Any, classifier: torch.nn.Module, feats: datasets.DatasetDict,
                   tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        encoder = freezing.encoder_of(classifier)
        for split in splits:
            if split not in self.means:
                self.means[split] = probe.token_means(encoder, feats[split], tokenizer, normalize=False)
        return self.means

    def prepare(self, card: TaskCard, run: RunArgs, settings: Settings, args: TrainingArguments,
                classifier: torch.nn.Module, feats: datasets.DatasetDict,
                tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        """Warm-start `classifier` and fit the probe as the run asks; returns report entries."""
        extra: dict[str, Any] = {}
        # Every process fits it (the same rows, the same result): one process busy alone past the collective
        # timeout would read as a lost machine to the others.
        if run.baseline == "probe":
            if self.probe is None:
                # A pair's probe embeds each side apart: nothing to share with the head's joint reading.
                means = None if card.is_pair else self._raw_means(feats, classifier, feats, tokenizer)
                self.probe = probe.baseline(card, freezing.encoder_of(classifier), tokenizer, feats,
                                            self.max_length, args.seed, means)
            extra["probe"] = self.probe
        if run.warm_start and not run.resume:  # a resumed run's head comes from its checkpoint
            key = (settings.head, run.head_hidden)
            if key not in self.warm:
                head = HEADS[settings.head]
                reads_mean = head.layers is linear_layers and head.pool is masked_mean
                inputs = self._raw_means(["train"], classifier, feats, tokenizer)["train"] if reads_mean else None
                self.warm[key] = warm_start.fit(classifier, feats["train"], tokenizer, inputs=inputs)
            self.warm[key].apply(classifier)
            extra["warm_start"] = self.warm[key].summary()
        return extra


def run_once(
    card: TaskCard,
    run: RunArgs,
    settings: Settings,
    args: TrainingArguments,
    data: LoadedData,
    feats: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    frozen: FrozenEncoder,
) -> dict[str, Any]:
    """One seed: build the model, train, write the output directory."""
    transformers.set_seed(args.seed)  # the new head is initialised at load time
    tracking.name_run(card, settings, args)
    classifier, params = build_model(card, run, settings)
    params.update(frozen.prepare(card, run, settings, args, classifier, feats, tokenizer))
    result = train(card, args, feats, classifier, tokenizer, run, settings)
    if not result.trainer.is_world_process_zero():
        return {}
    tracking.log_final(result.trainer, card, run, settings, {"validation": result.validation.metrics,
                                                             "test": result.test.metrics if result.test else None})
    after = "nothing was published; once there is room, rerun with --resume"
    with staging.discarded_on_failure(args.output_dir), filesystem.writing(args.output_dir, "write the run's outputs",
                                                                           after):
        return write_outputs(card, run, settings, args, data, feats, result, params)


def build_model(card: TaskCard, run: RunArgs, settings: Settings) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The run's classifier with its freezing applied, and its parameter counts for the report."""
    classifier = model.load_model(card, settings.model, run.online, run.attn_implementation, settings.head,
                                  run.head_hidden, run.classifier_dropout)
    trainable, total = freezing.freeze(classifier, run.freeze, run.trainable_layers)
    if settings.freeze_word_embeddings:
        freezing.freeze_word_embeddings(classifier)
        trainable = sum(p.numel() for p in classifier.parameters() if p.requires_grad)
        log.info("word embeddings frozen (freeze_word_embeddings)")
    log.info("head %s, freeze %s: %s of %s parameters trainable (%.1f%%)", settings.head, run.freeze,
             f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return classifier, {"trainable": trainable, "total": total}


def train_runs(card: TaskCard, run: RunArgs, args: TrainingArguments, settings: Settings, *, data: LoadedData,
               feats: datasets.DatasetDict, tokenizer: PreTrainedTokenizerBase,
               frozen: FrozenEncoder) -> dict[str, Any]:
    """One run, or one per seed of `run.seeds`."""
    seeds = parse_seeds(run.seeds)
    if seeds:
        return run_seeds(card, run, settings, args, data, feats, tokenizer, seeds, frozen)
    return run_once(card, run, settings, args, data, feats, tokenizer, frozen)


def run_seeds(card, run, settings, args, data, feats, tokenizer, seeds: list[int],
              frozen: FrozenEncoder) -> dict[str, Any]:
    """The same run once per seed into OUT/seed-N, then mean and standard deviation in OUT."""
    per_seed = {}
    for seed in seeds:
        seed_args = copy.copy(args)
        seed_args.seed = seed
        seed_args.output_dir = str(Path(args.output_dir) / f"seed-{seed}")
        log.info("seed %d of %s -> %s", seed, seeds, seed_args.output_dir)
        if run.resume and seed_args.should_save and run_id.finished(seed_args.output_dir) is not None:
            log.info("--resume: seed %d already finished in %s; kept as it is", seed, seed_args.output_dir)
            per_seed[seed] = run_id.finished(seed_args.output_dir)
            continue
        # --resume continues the seed that was interrupted; seeds not started yet start afresh
        seed_run = dataclasses.replace(run, resume=run.resume and bool(checkpoints.checkpoints(seed_args.output_dir)))
        per_seed[seed] = run_once(card, seed_run, settings, seed_args, data, feats, tokenizer, frozen)
    if not any(per_seed.values()):
        return {}
    return write_seed_summary(card, Path(args.output_dir), per_seed)
