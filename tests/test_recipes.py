"""Each fine-tuning technique changes what it promises to, on the tiny model."""

import math

import pytest
import torch
from transformers import TrainingArguments

from pipelines.card.cards import load_card
from pipelines.data import features
from pipelines.data.loading import load_splits
from pipelines.modeling import freezing
from pipelines.modeling import loading as model
from pipelines.training import arguments, loop, trainer
from pipelines.training.options import RunArgs


@pytest.fixture
def setup(toy_task, tiny_model, tmp_path):
    """(card, tokenized splits, tokenizer, a factory of TrainingArguments)."""
    card_path, data = toy_task
    card = load_card(str(card_path))
    tok = model.load_tokenizer(str(tiny_model))
    feats = features.tokenize(load_splits(card, data).splits, tok, card, card.max_length)

    def args(**kw):
        values = {**arguments.card_settings(card), "output_dir": str(tmp_path / "o"),
                  "disable_tqdm": True, "save_strategy": "no", "load_best_model_at_end": False, **kw}
        return TrainingArguments(**values)

    return card, feats, tok, args


def _model(card, tiny_model, **kw):
    torch.manual_seed(0)
    return model.load_model(card, str(tiny_model), **kw)


def _state(m):
    return {k: v.detach().clone() for k, v in m.named_parameters()}


FROZEN = [
    ("none", {"embeddings", "layer.0", "layer.1", "pooler", "classifier"}),
    ("encoder", {"classifier"}),
    ("all_but_pooler", {"pooler", "classifier"}),
    ("all_but_last", {"layer.1", "pooler", "classifier"}),
]


@pytest.mark.parametrize("strategy,trained", FROZEN)
def test_each_strategy_leaves_exactly_its_parts_trainable(setup, tiny_model, strategy, trained):
    card, *_ = setup
    clf = _model(card, tiny_model)
    trainable, total = freezing.freeze(clf, strategy, trainable_layers=1)
    expected = sum(p.numel() for n, p in clf.named_parameters() if any(part in n for part in trained))
    assert trainable == expected and total == sum(p.numel() for p in clf.parameters())
    for name, value in clf.named_parameters():
        assert value.requires_grad == any(part in name for part in trained), name


@pytest.mark.slow  # three Trainer steps per strategy
@pytest.mark.parametrize("strategy,trained", FROZEN)
def test_frozen_parameters_do_not_change_after_training_steps(setup, tiny_model, strategy, trained):
    card, feats, tok, args = setup
    clf = _model(card, tiny_model)
    freezing.freeze(clf, strategy, trainable_layers=1)
    before = _state(clf)
    loop.build_trainer(card, args(max_steps=3, eval_strategy="no"), feats, clf, tok).train()
    for name, value in clf.named_parameters():
        changed = not torch.equal(value, before[name])
        assert changed == any(part in name for part in trained), name


def test_mean_pooling_ignores_padding_and_heads_round_trip(setup, tiny_model, tmp_path):
    card, feats, tok, _ = setup
    for head in ("mlp", "mean"):
        clf = _model(card, tiny_model, head=head, head_hidden=16, dropout=0.0).eval()
        enc = tok(["the cat sat on the mat", "a dog"], padding=True, return_tensors="pt")
        with torch.no_grad():
            batch = clf(**enc).logits
            alone = clf(**tok(["a dog"], return_tensors="pt")).logits
        assert batch.shape == (2, 2)
        if head == "mean":  # the padded row equals the row encoded alone
            assert torch.allclose(batch[1], alone[0], atol=1e-5)
        folder = tmp_path / head
        clf.save_pretrained(folder)
        tok.save_pretrained(folder)
        again, _ = model.load_trained(folder)
        with torch.no_grad():
            assert torch.allclose(again(**enc).logits, batch, atol=1e-6)
        assert again.config.id2label == {0: "neg", 1: "pos"}


def _groups(trainer):
    trainer.create_optimizer()
    return trainer.optimizer.param_groups


def test_weight_decay_skips_biases_and_layernorm(setup, tiny_model):
    card, feats, tok, args = setup
    clf = _model(card, tiny_model)
    names = {id(p): n for n, p in clf.named_parameters()}
    for group in _groups(loop.build_trainer(card, args(weight_decay=0.01), feats, clf, tok)):
        for p in group["params"]:
            no_decay = "bias" in names[id(p)] or "LayerNorm" in names[id(p)]
            assert group["weight_decay"] == (0.0 if no_decay else 0.01), names[id(p)]


def test_layerwise_learning_rate_decay(setup, tiny_model):
    card, feats, tok, args = setup
    clf = _model(card, tiny_model)
    names = {id(p): n for n, p in clf.named_parameters()}
    run = RunArgs(layerwise_lr_decay=0.5)
    lr_of = {}
    for group in _groups(loop.build_trainer(card, args(learning_rate=1e-3), feats, clf, tok, run)):
        lr_of.update({names[id(p)]: group["lr"] for p in group["params"]})
    assert lr_of["classifier.weight"] == pytest.approx(1e-3)
    assert lr_of["bert.pooler.dense.weight"] == pytest.approx(1e-3)
    assert lr_of["bert.encoder.layer.1.output.dense.weight"] == pytest.approx(1e-3 * 0.5)
    assert lr_of["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(1e-3 * 0.25)
    assert lr_of["bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-3 * 0.125)


@pytest.mark.parametrize("kind,warmup", [("linear", 0.1), ("linear", 10), ("cosine", 0.1)])
def test_schedules_with_warmup_as_ratio_or_steps(setup, tiny_model, kind, warmup):
    card, feats, tok, args = setup
    trainer = loop.build_trainer(card, args(lr_scheduler_type=kind, warmup_steps=warmup, learning_rate=1.0),
                                  feats, _model(card, tiny_model), tok)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    middle = 0.5 * (1 + math.cos(math.pi * 45 / 90)) if kind == "cosine" else 1 - 45 / 90
    assert lrs[55] == pytest.approx(middle)


def test_proportional_pair_truncation_keeps_the_length_ratio(setup):
    _, _, tok, _ = setup
    first, second = " ".join(["cat"] * 30), " ".join(["dog"] * 10)
    prop = features.encode(tok, [first], [second], max_length=23, truncation="proportional")
    longest = features.encode(tok, [first], [second], max_length=23, truncation="longest_first")
    tokens = tok.convert_ids_to_tokens(prop["input_ids"][0])
    assert tokens.count("cat") == 15 and tokens.count("dog") == 5  # budget 20 split 30:10
    assert prop["token_type_ids"][0] == [0] * 17 + [1] * 6 and prop["truncated"] == [True]
    tokens = tok.convert_ids_to_tokens(longest["input_ids"][0])
    assert tokens.count("cat") == 10 and tokens.count("dog") == 10  # longest-first evens them out
    short = features.encode(tok, ["the cat"], ["a dog"], max_length=23, truncation="proportional")
    assert short["truncated"] == [False] and short["length"] == [7]


def test_class_weights_change_the_loss_as_weighted_cross_entropy(setup, tiny_model):
    card, feats, tok, args = setup
    clf = _model(card, tiny_model)
    batch = features.collator(tok)([{k: feats["train"][i][k] for k in ("input_ids", "token_type_ids",
                                    "attention_mask", "label")} for i in range(6)])
    batch["labels"] = batch.pop("label") if "label" in batch else batch["labels"]
    plain = loop.build_trainer(card, args(), feats, clf, tok)
    weighted = loop.build_trainer(card, args(), feats, clf, tok, RunArgs(class_weights="1.0,3.0"))
    clf.eval()
    with torch.no_grad():
        logits = clf(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss_plain = plain.compute_loss(clf, dict(batch))
        loss_weighted = weighted.compute_loss(clf, dict(batch))
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], weight=torch.tensor([1.0, 3.0]))
    assert loss_weighted == pytest.approx(expected.item(), rel=1e-5)
    assert loss_plain == pytest.approx(torch.nn.functional.cross_entropy(logits, batch["labels"]).item(), rel=1e-5)
    assert loss_weighted != pytest.approx(loss_plain.item())
    smoothed = loop.build_trainer(card, args(label_smoothing_factor=0.2), feats, clf, tok,
                                   RunArgs(class_weights="1.0,3.0"))
    with torch.no_grad():
        loss_smooth = smoothed.compute_loss(clf, dict(batch))
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], weight=torch.tensor([1.0, 3.0]),
                                                 label_smoothing=0.2)
    assert loss_smooth == pytest.approx(expected.item(), rel=1e-5)


def test_balanced_class_weights():
    weights = trainer.class_weights("balanced", [0, 0, 0, 1], 2)
    assert weights.tolist() == pytest.approx([4 / 6, 4 / 2])
    with pytest.raises(Exception, match="expected 'balanced' or 2 positive numbers"):
        trainer.class_weights("1,2,3", [0, 1], 2)
