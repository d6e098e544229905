"""Progress lines when there are no progress bars: pacing, training and evaluation lines, model preparation."""

import functools
import io
import logging
from types import SimpleNamespace

import pytest
from conftest import write_card
from fake_e5 import tiny_bert, write_e5

from pipelines.cli.run import main
from pipelines.modeling.offline import convert_e5, packaged_zip
from pipelines.progress import Pace, duration, timing
from pipelines.training import loop
from pipelines.training.progress import ProgressLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pace_every_interval_or_fraction_whichever_first_but_not_faster_than_the_floor():
    clock = FakeClock()
    pace = Pace(1000, interval=30, fraction=0.05, floor=5, clock=clock)
    clock.now += 1
    assert not pace.due(100)  # 10% done, but 1 s after the start: under the floor
    clock.now += 5
    assert pace.due(100)  # 10% and 6 s
    clock.now += 10
    assert not pace.due(110)  # 1% more in 10 s
    clock.now += 20
    assert pace.due(120)  # 30 s since the last line
    clock.now += 5
    assert pace.due(170)  # 5% more after 5 s
    assert pace.timing(170) == "elapsed 41.0s, remaining ~3m20s"


def test_time_formats():
    assert duration(4.24) == "4.2s" and duration(187) == "3m07s" and duration(3723) == "1h02m03s"
    assert timing(0, 10, 5) == "elapsed 5.0s"
    assert timing(5, None, 5) == "elapsed 5.0s"
    assert timing(1, 4, 60) == "elapsed 1m00s, remaining ~3m00s"


def _args(disable_tqdm=True):
    return SimpleNamespace(disable_tqdm=disable_tqdm, train_batch_size=8, gradient_accumulation_steps=1,
                           world_size=1, eval_batch_size=16)


def _state(step, max_steps=100, epoch=0.0):
    return SimpleNamespace(global_step=step, max_steps=max_steps, epoch=epoch, is_world_process_zero=True)


def test_training_and_evaluation_lines_with_a_fake_clock(caplog):
    clock = FakeClock()
    callback = ProgressLog(interval=30, fraction=0.05, floor=5, clock=clock)
    args = _args()
    with caplog.at_level(logging.INFO, logger="pipelines.training.progress"):
        callback.on_train_begin(args, _state(0), None)
        for step in range(1, 101):
            clock.now += 1  # one second per step: a line every 5 steps (5% of 100) once 5 s have passed
            callback.on_step_end(args, _state(step, epoch=step / 50), None)
        batches = list(range(40))
        for _ in batches:
            clock.now += 2
            callback.on_prediction_step(args, _state(100), None, eval_dataloader=batches)
        callback.on_evaluate(args, _state(100), None)
    train = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train:")]
    assert len(train) == 20
    assert train[0] == "train: step 5/100 (5%), epoch 0.10, 8.0 samples/s, elapsed 5.0s, remaining ~1m35s"
    assert train[-1].startswith("train: step 100/100 (100%), epoch 2.00") and "remaining ~0.0s" in train[-1]
    evaluation = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluation:")]
    # 2 s per batch: 5% (2 batches, 4 s) is under the 5 s floor, so a line every 3 batches (6 s)
    assert evaluation[0] == "evaluation: batch 4/40 (10%), 10.7 samples/s, elapsed 6.0s, remaining ~54.0s"
    assert len(evaluation) == 13 and evaluation[-1].startswith("evaluation: batch 40/40 (100%)")


def test_silent_while_progress_bars_show(caplog):
    clock = FakeClock()
    callback = ProgressLog(interval=0, floor=0, clock=clock)
    with caplog.at_level(logging.INFO, logger="pipelines.training.progress"):
        callback.on_train_begin(_args(disable_tqdm=False), _state(0), None)
        for step in range(1, 5):
            clock.now += 60
            callback.on_step_end(_args(disable_tqdm=False), _state(step), None)
            callback.on_prediction_step(_args(disable_tqdm=False), _state(step), None, eval_dataloader=[1, 2])
    assert not caplog.records


@pytest.mark.slow
def test_a_run_logs_training_and_evaluation_progress(toy_task, tiny_model, tmp_path, caplog, monkeypatch):
    card, data = toy_task
    card = write_card(tmp_path, defaults={"learning_rate": 1.0e-3, "num_train_epochs": 1,
                                          "per_device_train_batch_size": 8, "per_device_eval_batch_size": 4})
    # pytest's stderr is not a terminal, so the bars are off; no pacing, to see a line per step
    monkeypatch.setattr(loop, "ProgressLog", functools.partial(ProgressLog, interval=0, floor=0))
    with caplog.at_level(logging.INFO):
        assert main(["--task", str(card), "--data-dir", str(data), "--model", str(tiny_model),
                     "--output-dir", str(tmp_path / "out")]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelines.training.progress"]
    train = [line for line in lines if line.startswith("train:")]
    assert [line.split(",")[0] for line in train] == [f"train: step {i}/6 ({100 * i / 6:.0f}%)" for i in range(1, 7)]
    assert all("samples/s" in line and "elapsed" in line for line in train)
    assert "remaining ~" in train[0]
    # 16 validation rows in batches of 4: during training and again for the restored model's predictions
    assert sum(line.startswith("evaluation: batch 4/4 (100%)") for line in lines) == 2


def test_model_preparation_lines_say_how_far_and_how_long(caplog, tmp_path):
    said = []
    model = tiny_bert()
    write_e5(tmp_path / "tiny-q4.bin", model)
    convert_e5.convert(tmp_path / "tiny-q4.bin", tmp_path / "out", progress=said.append)
    layers = model.config.num_hidden_layers
    steps = [line for line in said if line.startswith("dequantizing")]
    assert steps[0].startswith("dequantizing embeddings; elapsed")
    assert steps[-1].startswith(f"dequantizing layer {layers}/{layers}; elapsed") and "remaining ~" in steps[-1]
    with caplog.at_level(logging.INFO, logger="pipelines.modeling.offline.packaged_zip"):
        packaged_zip._copy(io.BytesIO(b"x" * (3 << 20)), io.BytesIO(), "model.safetensors", 3 << 20, every=0)
    assert caplog.records[0].getMessage().startswith("extracting model.safetensors: 1 of 3 MB; elapsed")
