"""The linear probe: a logistic regression on the frozen encoder's sentence embeddings.

Every run fits it on the same splits as the fine-tuned model, so a report can say whether fine-tuning
beat the cheapest honest baseline; the warm start (LP-FT) fits the same kind of model on the features
the head reads and copies it into the head. Embeddings are the masked mean of the token vectors,
L2-normalised (how the offline sentence encoders were trained and are read); a sentence pair is
read as `[u, v, |u - v|, u * v]` of its two sides embedded apart (SentEval's NLI features).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# Inverse regularisation strengths tried by cross-validation on the training split (10^-2 .. 10^3).
C_GRID = tuple(float(c) for c in np.logspace(-2, 3, 11))


def _sentence_vectors(encoder: torch.nn.Module, batch: dict[str, torch.Tensor], normalize: bool = True) -> np.ndarray:
    """The encoder's mean embeddings of one padded batch (heads.masked_mean, as the `mean` head reads),
    L2-normalised unless asked not to."""
    from pipelines.modeling.heads import masked_mean

    mean = masked_mean(encoder(**batch), batch["attention_mask"]).float()
    return (torch.nn.functional.normalize(mean, dim=-1) if normalize else mean).numpy()


def normalized(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as torch.nn.functional.normalize does)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@torch.inference_mode()
def embed(
    encoder: torch.nn.Module,
    encode: Callable[[list[str]], dict[str, torch.Tensor]],
    texts: Sequence[str],
    batch_size: int = 64,
) -> np.ndarray:
    """L2-normalised masked-mean embeddings of `texts`, in input order (batches sorted by length)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        out[rows] = _sentence_vectors(encoder, encode([texts[i] for i in rows]))
    encoder.train(was_training)
    return out


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """SentEval's features of a sentence pair from its two embeddings."""
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


@dataclass
class Probe:
    """A fitted probe: the classifier and the regularisation chosen on the training split."""

    classifier: Any  # sklearn LogisticRegression
    C: float
    seconds: float
    num_labels: int

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities with one column per label id (labels absent from training get 0)."""
        probs = self.classifier.predict_proba(features)
        full = np.zeros((len(features), self.num_labels))
        full[:, self.classifier.classes_] = probs
        return full


def fit(features: np.ndarray, labels: np.ndarray, num_labels: int, seed: int = 0) -> Probe:
    """Logistic regression with C chosen by 5-fold cross-validation (log loss) on these rows only."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    start = time.perf_counter()
    folds = int(min(5, np.bincount(labels).min())) if len(labels) else 0
    if folds >= 2:
        cv = LogisticRegressionCV(Cs=list(C_GRID), cv=folds, scoring="neg_log_loss", max_iter=2000,
                                  random_state=seed)
        with warnings.catch_warnings():  # scikit-learn 1.9 announces 1.10's defaults; the fit is the same
            warnings.simplefilter("ignore", FutureWarning)
            cv.fit(features, labels)
        chosen = float(np.atleast_1d(cv.C_)[0])
    else:  # a class with a single row: no folds to choose from
        chosen = 1.0
    clf = LogisticRegression(C=chosen, max_iter=2000, random_state=seed).fit(features, labels)
    return Probe(clf, chosen, time.perf_counter() - start, num_labels)


FEATURES = {False: "masked mean of the token vectors, L2-normalised",
            True: "[u, v, |u - v|, u * v] of the two texts' normalised mean embeddings, embedded apart"}


@torch.inference_mode()
def token_means(encoder: torch.nn.Module, ds: Any, tokenizer: Any, batch_size: int = 64,
                normalize: bool = True) -> np.ndarray:
    """Masked-mean embeddings of a tokenized split (the run's own inputs), in row order; normalised unless asked
    not to (the `mean` head's warm start reads them raw)."""
    from pipelines.data import features

    out = np.zeros((len(ds), encoder.config.hidden_size), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    for rows, batch in features.length_batches(ds, tokenizer, batch_size):
        out[rows] = _sentence_vectors(encoder, batch, normalize)
    encoder.train(was_training)
    return out


def split_features(card: Any, encoder: torch.nn.Module, tokenizer: Any, feats: Any, max_length: int,
                   raw_means: dict[str, np.ndarray] | None = None) -> dict:
    """Probe features of every split: the run's tokenized single texts (from `raw_means` when the run already
    has them), or each side of a pair apart."""
    if not card.is_pair:
        raw_means = raw_means or {}
        return {split: normalized(raw_means[split]) if split in raw_means else token_means(encoder, ds, tokenizer)
                for split, ds in feats.items()}

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")

    first, second = card.text_columns[:2]
    return {split: pair_features(embed(encoder, encode, ds[first][:]), embed(encoder, encode, ds[second][:]))
            for split, ds in feats.items()}


def baseline(card: Any, encoder: torch.nn.Module, tokenizer: Any, feats: Any, max_length: int,
             seed: int = 0, raw_means: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The probe's scores on every labelled split but train, under the card's metrics (metrics.json's `probe`).
    `raw_means`: the splits' unnormalised mean embeddings when already computed (single-text cards)."""
    from pipelines.evaluation import metrics

    start = time.perf_counter()
    x = split_features(card, encoder, tokenizer, feats, max_length, raw_means)
    y = {split: np.asarray(ds["label"][:]) for split, ds in feats.items() if "label" in ds.column_names}
    fitted = fit(x["train"], y["train"], len(card.labels), seed)
    scores = {}
    for split in ("validation", "test"):
        if split in y:
            preds = fitted.predict_proba(x[split]).argmax(1)
            scores[split] = metrics.compute(y[split], preds, len(card.labels), card.metrics)
    result = {**scores, "features": FEATURES[card.is_pair], "C": fitted.C,
              "seconds": round(time.perf_counter() - start, 1)}
    log.info("linear probe on the frozen encoder (%s): %s", result["features"],
             ", ".join(f"{s} {card.select_by} {scores[s][card.select_by]:.4f}" for s in scores))
    return result


def verdict(card: Any, fine_tuned: dict[str, dict[str, float] | None], probe_scores: dict[str, Any]) -> str | None:
    """A warning when the fine-tuned model does not beat the probe on a split both were scored on."""
    metric = card.select_by
    lost = []
    for split in ("validation", "test"):
        ours, theirs = (fine_tuned.get(split) or {}).get(metric), (probe_scores.get(split) or {}).get(metric)
        if ours is not None and theirs is not None and ours <= theirs:
            lost.append(f"{split} {metric} {ours:.4f} vs probe {theirs:.4f}")
    if not lost:
        return None
    return ("the fine-tuned model does not beat a logistic regression on the frozen encoder's embeddings ("
            + "; ".join(lost) + "): try --warm_start, more epochs, a lower learning rate or another --model")
