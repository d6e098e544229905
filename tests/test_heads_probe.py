"""Issue 20: heads that read the encoder as it was trained, the warm start, and the probe in every report."""

import json

import numpy as np
import pytest
import torch
from conftest import read_json

from pipelines.modeling import offline, pooled_classifier
from pipelines.modeling.heads import DEFAULT_HEAD, HEADS
from pipelines.training import run as training_run
from pipelines.training import settings as training_settings


def test_every_offline_model_declares_a_pooling_with_a_default_head():
    for model in offline.OFFLINE_MODELS:
        assert model.pooling in DEFAULT_HEAD, model.name
        assert HEADS[DEFAULT_HEAD[model.pooling]].pooling == model.pooling
    # the three shipped encoders were trained on the mean of their token vectors
    assert {m.pooling for m in offline.OFFLINE_MODELS} == {"mean"}


def test_default_head_follows_the_models_pooling(tmp_path, tiny_model):
    for model in offline.OFFLINE_MODELS:
        assert training_settings.default_head(offline.choose(model.name, ("en",)), online=False) == "mean"
    plain = offline.choose(str(tiny_model), ("en",))
    assert training_settings.default_head(plain, online=False) == "linear"  # a BERT checkpoint: its [CLS] pooler
    st_folder = tmp_path / "st"
    (st_folder / "1_Pooling").mkdir(parents=True)
    (st_folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert training_settings.default_head(offline.choose(str(st_folder), ("en",)), online=False) == "mean"


def _mean_classifier(tiny_model):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model, num_labels=2)
    torch.manual_seed(0)
    return pooled_classifier.build(str(tiny_model), config, "mean", None, 0.1, "eager", True)


def test_a_mean_head_model_saves_its_code_and_loads_in_the_pipeline(tmp_path, tiny_model):
    from transformers import AutoTokenizer, pipeline

    model = _mean_classifier(tiny_model).eval()
    out = tmp_path / "saved"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    assert (out / "pooled_classifier.py").is_file() and (out / "heads.py").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"] == "pooled_classifier.PooledClassifier"
    texts = ["the movie was good", "the plot was very bad and boring"]
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        expected = model(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1).numpy()
        reloaded = pooled_classifier.load(out).eval()
        again = reloaded(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1).numpy()
    np.testing.assert_allclose(again, expected, atol=1e-6)
    clf = pipeline("text-classification", model=str(out), trust_remote_code=True, top_k=None)
    for row, scores in zip(expected, clf(texts)):
        got = {s["label"]: s["score"] for s in scores}
        np.testing.assert_allclose([got["LABEL_0"], got["LABEL_1"]], row, atol=1e-5)


def test_a_mean_head_over_an_encoder_without_fused_attention_loads_again(tmp_path, tiny_model):
    # MPNet (mpnet-base) has no sdpa attention in transformers: training falls back to eager, and
    # loading the saved model (predict.py, the pipeline) must too.
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel, pipeline

    encoder_dir = tmp_path / "tiny_mpnet"
    tok = AutoTokenizer.from_pretrained(tiny_model, model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(0)
    MPNetModel(MPNetConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=37)).save_pretrained(encoder_dir)
    tok.save_pretrained(encoder_dir)
    config = MPNetConfig.from_pretrained(encoder_dir, num_labels=2)
    model = pooled_classifier.build(str(encoder_dir), config, "mean", None, 0.1, "eager", True).eval()
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    texts = ["the movie was good", "the plot was very bad and boring"]
    with torch.no_grad():
        expected = model(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1).numpy()
        again = pooled_classifier.load(out).eval()(**tok(texts, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(again.softmax(-1).numpy(), expected, atol=1e-6)
    clf = pipeline("text-classification", model=str(out), trust_remote_code=True, top_k=None)
    for row, scores in zip(expected, clf(texts)):
        got = {s["label"]: s["score"] for s in scores}
        np.testing.assert_allclose([got["LABEL_0"], got["LABEL_1"]], row, atol=1e-5)


def test_warm_start_puts_the_logistic_regression_fit_into_the_head(tiny_model):
    from transformers import AutoTokenizer

    from pipelines.card.cards import TaskCard  # noqa: F401  (the card module loads the schema first)
    from pipelines.data import features
    from pipelines.evaluation import probe
    from pipelines.training import warm_start

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = [f"the movie was {'good great fun' if i % 2 else 'bad terrible boring'} {i}" for i in range(40)]
    enc = features.encode(tok, texts, None, 32)
    import datasets

    train = datasets.Dataset.from_dict({**enc, "label": [i % 2 for i in range(40)]})
    model = _mean_classifier(tiny_model)
    x = warm_start.head_inputs(model, train, tok)
    assert model.training  # head_inputs switches dropout off and restores the mode
    # what the head reads: the masked mean of the token vectors, dropout off
    model.eval()
    with torch.no_grad():
        batch = tok(texts[:3], padding=True, return_tensors="pt")
        hidden = model.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        np.testing.assert_allclose(x[:3], ((hidden * mask).sum(1) / mask.sum(1)).numpy(), atol=1e-5)
    warm = warm_start.fit(model, train, tok)
    warm.apply(model)
    reference = probe.fit(x, np.asarray(train["label"]), 2).classifier.predict_proba(x)
    with torch.no_grad():
        layer = warm_start.last_linear(model)
        ours = torch.softmax(torch.as_tensor(x) @ layer.weight.T + layer.bias, -1).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert warm.train_accuracy == pytest.approx(float((reference.argmax(1) == np.asarray(train["label"])).mean()))


def test_the_probe_and_the_mean_heads_warm_start_share_one_forward_pass(tiny_model, monkeypatch):
    import datasets
    from transformers import AutoTokenizer

    from pipelines.card.cards import TaskCard  # noqa: F401  (the card module loads the schema first)
    from pipelines.data import features
    from pipelines.evaluation import probe
    from pipelines.training import warm_start

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = [f"the movie was {'good great fun' if i % 2 else 'bad terrible boring'} {i}" for i in range(30)]
    train = datasets.Dataset.from_dict({**features.encode(tok, texts, None, 32), "label": [i % 2 for i in range(30)]})
    model = _mean_classifier(tiny_model)
    # the shortcut's premise: the mean head's last layer reads exactly the raw mean embeddings
    np.testing.assert_allclose(probe.token_means(model.encoder, train, tok, normalize=False),
                               warm_start.head_inputs(model, train, tok), atol=1e-5)
    np.testing.assert_allclose(probe.normalized(probe.token_means(model.encoder, train, tok, normalize=False)),
                               probe.token_means(model.encoder, train, tok), atol=1e-6)
    passes = []
    real = probe.token_means
    monkeypatch.setattr(probe, "token_means", lambda *a, **k: passes.append(1) or real(*a, **k))
    monkeypatch.setattr(warm_start, "head_inputs", lambda *a, **k: pytest.fail("a second pass over train"))
    card = type("Card", (), {"is_pair": False, "labels": ["neg", "pos"], "metrics": ["accuracy"],
                             "select_by": "accuracy", "text_columns": ["text"]})()
    run = type("Run", (), {"baseline": "probe", "warm_start": True, "resume": False, "head_hidden": None})()
    settings = type("Settings", (), {"head": "mean"})()
    args = type("Args", (), {"seed": 0})()
    frozen = training_run.FrozenEncoder(32)
    extra = frozen.prepare(card, run, settings, args, model, datasets.DatasetDict(train=train, validation=train), tok)
    assert len(passes) == 2 and set(extra) == {"probe", "warm_start"}  # train and validation, once each
    frozen.prepare(card, run, settings, args, _mean_classifier(tiny_model), datasets.DatasetDict(train=train), tok)
    assert len(passes) == 2  # a second seed reuses everything


def test_the_verdict_warns_only_when_the_probe_is_not_beaten():
    from pipelines.evaluation import probe

    class Card:
        select_by = "accuracy"

    probe_scores = {"validation": {"accuracy": 0.70}, "test": {"accuracy": 0.60}}
    assert probe.verdict(Card, {"validation": {"accuracy": 0.75}, "test": {"accuracy": 0.65}}, probe_scores) is None
    text = probe.verdict(Card, {"validation": {"accuracy": 0.75}, "test": {"accuracy": 0.60}}, probe_scores)
    assert text is not None and "test accuracy 0.6000 vs probe 0.6000" in text and "validation" not in text
    assert probe.verdict(Card, {"validation": {"accuracy": 0.5}, "test": None}, {}) is None


@pytest.mark.slow
def test_a_run_reports_its_probe_and_warns_below_it(toy_task, tiny_model, tmp_path, caplog):
    from pipelines.cli.run import main

    card, data = toy_task
    out = tmp_path / "out"
    # one step at a tiny learning rate, from a random head: the fine-tuned model cannot beat the probe
    argv = ["--task", str(card), "--model", str(tiny_model), "--data-dir", str(data), "--output-dir", str(out),
            "--max_steps", "1", "--learning_rate", "1e-9", "--warm_start", "false"]
    assert main(argv) == 0
    summary = read_json(out / "metrics.json")
    assert set(summary["probe"]["validation"]) == {"accuracy", "mcc", "f1"}
    assert summary["probe"]["features"].startswith("masked mean")
    below = summary["validation"]["accuracy"] <= summary["probe"]["validation"]["accuracy"]
    assert (summary["below_probe"] is not None) == below
    assert ("WARNING" in (out / "summary.md").read_text()) == below
    assert "linear probe" in (out / "summary.md").read_text()
    assert main(argv[:-2] + ["--baseline", "none", "--output-dir", str(tmp_path / "none")]) == 0
    assert read_json(tmp_path / "none" / "metrics.json")["probe"] is None
