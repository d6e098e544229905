"""The three training paths of benchmarks/bench_train.py; each runs in its own child process."""

from __future__ import annotations

import resource
import tempfile
import time
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments

from pipelines import hardware
from pipelines.card.cards import load_card
from pipelines.data import cache
from pipelines.data.loading import load_splits
from pipelines.data.readers import column
from pipelines.evaluation import metrics
from pipelines.modeling import loading as model
from pipelines.training import arguments, loop


def gemm_probe(n: int = 1024, reps: int = 20) -> float:
    """fp32 matmul FLOP/s of this machine with the default thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


class ShapeLog:
    """Wraps a collator to record (batch, padded length, real tokens) of every batch, in order."""

    def __init__(self, collate) -> None:
        self.collate, self.shapes = collate, []

    def __call__(self, rows):
        batch = self.collate(rows)
        mask = batch["attention_mask"]
        self.shapes.append((mask.shape[0], mask.shape[1], mask.sum(dim=1).tolist()))
        return batch


class StepTimer(TrainerCallback):
    """Wall time between the end of step `warmup` and the end of step `warmup + steps`."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.start, self.seconds = warmup, steps, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        if state.global_step == self.warmup + self.steps:
            self.seconds = time.perf_counter() - self.start


def _flops(clf: torch.nn.Module, shapes: list) -> tuple[float, float]:
    """(useful, executed) training FLOPs: 6 x non-embedding params per token, plus attention."""
    cfg = clf.config
    params = sum(p.numel() for n, p in clf.named_parameters() if "embeddings" not in n)
    useful = executed = 0.0
    for batch, padded, real in shapes:
        executed += 6 * params * batch * padded + 12 * cfg.num_hidden_layers * cfg.hidden_size * batch * padded**2
        useful += sum(6 * params * r + 12 * cfg.num_hidden_layers * cfg.hidden_size * r**2 for r in real)
    return useful, executed


def _result(opts, seconds: float, shapes: list, clf: torch.nn.Module) -> dict[str, Any]:
    timed = shapes[opts.warmup: opts.warmup + opts.steps]
    useful, executed = _flops(clf, timed)
    samples = sum(b for b, _, _ in timed)
    padded = sum(b * p for b, p, _ in timed)
    real = sum(sum(r) for _, _, r in timed)
    return {
        "samples_per_s": samples / seconds, "seconds": seconds, "mean_padded_len": padded / samples,
        "real_token_frac": real / padded, "useful_flops": useful / seconds, "executed_flops": executed / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _data(opts):
    card = load_card("cola")
    return card, load_splits(card, opts.data_dir / "cola_public").splits


def tutorial(opts) -> dict[str, Any]:
    """McCormick & Ryan's loop: pad to 64, AdamW 2e-5, linear schedule, clip 1.0."""
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset
    from transformers import get_linear_schedule_with_warmup

    card, splits = _data(opts)
    tok = model.load_tokenizer(None)
    torch.manual_seed(42)
    clf = model.load_model(card, None, attn_implementation=None)

    def tensors(ds):
        enc = tok(column(ds, "sentence"), padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        return TensorDataset(enc["input_ids"], enc["attention_mask"], torch.tensor(column(ds, "label")))

    train_set = tensors(splits["train"])
    loader = DataLoader(train_set, sampler=RandomSampler(train_set), batch_size=opts.batch_size)
    epochs = opts.epochs or 1
    total = len(loader) * epochs if opts.epochs else opts.warmup + opts.steps
    optimizer = torch.optim.AdamW(clf.parameters(), lr=2e-5, eps=1e-8)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, total)
    shapes, step, start, seconds = [], 0, time.perf_counter(), None
    clf.train()
    for _ in range(epochs):
        for ids, mask, labels in loader:
            if opts.epochs:
                ids, mask = _trim(ids, mask)
            shapes.append((mask.shape[0], mask.shape[1], mask.sum(dim=1).tolist()))
            clf.zero_grad()
            loss = clf(ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            if step == opts.warmup and not opts.epochs:
                start = time.perf_counter()
            if not opts.epochs and step == opts.warmup + opts.steps:
                seconds = time.perf_counter() - start
            if step == total:
                break
    if opts.epochs:
        return _quality_tutorial(clf, tensors(splits["validation"]), time.perf_counter() - start)
    return _result(opts, seconds, shapes, clf)


def _trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the all-padding columns of a right-padded batch.

    Masked positions are invisible to every real token, so this changes the time a quality run
    takes (an hour less for 4 epochs here), not its results; speed runs keep the padding.
    """
    n = int(mask.sum(dim=1).max())
    return ids[:, :n], mask[:, :n]


def _quality_tutorial(clf, dev, train_s: float) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    clf.eval()
    preds, gold = [], []
    with torch.inference_mode():
        for ids, mask, labels in DataLoader(dev, batch_size=64):
            ids, mask = _trim(ids, mask)
            preds += clf(ids, attention_mask=mask).logits.argmax(-1).tolist()
            gold += labels.tolist()
    return {**metrics.compute(gold, preds, 2), "train_s": train_s}


def hf_example(opts) -> dict[str, Any]:
    """Trainer with TrainingArguments defaults, inputs padded to 128 (run_glue's defaults)."""
    from transformers import Trainer, default_data_collator

    card, splits = _data(opts)
    tok = model.load_tokenizer(None)
    torch.manual_seed(42)
    clf = model.load_model(card, None, attn_implementation=None)
    feats = splits["train"].map(
        lambda b: tok(b["sentence"], padding="max_length", max_length=128, truncation=True), batched=True
    )
    collate = ShapeLog(default_data_collator)
    timer = StepTimer(opts.warmup, opts.steps)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=opts.batch_size,
                                 max_steps=opts.warmup + opts.steps, report_to="none", disable_tqdm=True)
        Trainer(model=clf, args=args, train_dataset=feats, processing_class=tok, data_collator=collate,
                callbacks=[timer]).train()
    return _result(opts, timer.seconds, collate.shapes, clf)


def cardtune(opts) -> dict[str, Any]:
    """The cola card's default path, as scripts/run.py builds it."""
    from pipelines.training.options import RunArgs

    card, splits = _data(opts)
    run = RunArgs(threads=opts.threads or None)
    hardware.configure_threads(run.threads)
    tok = model.load_tokenizer(None)
    torch.manual_seed(42)
    clf = model.load_model(card, None, attn_implementation=run.attn_implementation)
    feats = cache.cached_tokenize(card, splits, tok, card.max_length)
    timer = StepTimer(opts.warmup, opts.steps)
    with tempfile.TemporaryDirectory() as tmp:
        values = {**arguments.card_settings(card, "minilm"), "output_dir": tmp, "disable_tqdm": True,
                  "per_device_train_batch_size": opts.batch_size, "bf16": opts.bf16}
        if opts.epochs:
            values.update(num_train_epochs=opts.epochs, save_strategy="no", load_best_model_at_end=False)
        else:
            values.update(max_steps=opts.warmup + opts.steps, eval_strategy="no", save_strategy="no",
                          load_best_model_at_end=False)
        trainer = loop.build_trainer(card, TrainingArguments(**values), feats, clf, tok, run, [timer])
        collate = trainer.data_collator = ShapeLog(trainer.data_collator)
        start = time.perf_counter()
        trainer.train()
        if opts.epochs:
            # the last epoch's model, as the tutorial loop reports it (no best-checkpoint selection)
            scores = trainer.evaluate()
            return {"mcc": scores["eval_mcc"], "accuracy": scores["eval_accuracy"],
                    "train_s": time.perf_counter() - start}
    return _result(opts, timer.seconds, collate.shapes, clf)


def run(way: str, opts) -> dict[str, Any]:
    return {"tutorial": tutorial, "hf": hf_example, "cardtune": cardtune}[way](opts)

