"""--int8: the graph built once and cached, and the cascade that re-scores unsure rows in fp32."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import interrupt_second_chunk, toy_rows, write_csv
from test_predict import _read

from pipelines.cli.predict import main
from pipelines.prediction import cascade, plan

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def calibrated_model(carded_model, tmp_path_factory):
    """The tiny carded model with the validation texts a run writes (validation_predictions.csv)."""
    folder = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(carded_model, folder)
    rows = [{"text": r["text"], "gold": r["label"]} for r in toy_rows(300, seed=5)]
    write_csv(folder / "validation_predictions.csv", rows)
    return folder


@pytest.fixture(scope="module")
def rows_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("rows") / "in.csv", toy_rows(400, seed=7))


def _meta(out):
    return json.loads(out.with_name(out.name + ".meta.json").read_text(encoding="utf-8"))


def _graph_lines(caplog):
    return [r.getMessage() for r in caplog.records if "int8 graph" in r.getMessage()]


def test_the_int8_graph_is_built_once_then_loaded_and_rebuilt_when_damaged(calibrated_model, rows_csv, tmp_path,
                                                                          monkeypatch, caplog):
    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path / "cache"))
    base = ["--model", str(calibrated_model), "--input", str(rows_csv), "--int8", "--output"]
    with caplog.at_level(logging.INFO):
        assert main(base + [str(tmp_path / "a.csv")]) == 0
    first = _graph_lines(caplog)
    assert any(line.startswith("building the int8 graph") for line in first)
    assert any(line.startswith("built the int8 graph") and " s" in line for line in first)
    assert _meta(tmp_path / "a.csv")["graph_build_s"] > 0
    graphs = list((tmp_path / "cache" / "graphs").glob("int8-*"))
    assert len(graphs) == 1 and {p.name for p in graphs[0].iterdir()} >= {"model.onnx", "fp32.onnx", "calibration.json"}

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(base + [str(tmp_path / "b.csv")]) == 0
    second = _graph_lines(caplog)
    assert not any("build" in line for line in second) and any("loaded from the cache" in line for line in second)
    assert _meta(tmp_path / "b.csv")["graph_build_s"] is None
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()

    # a damaged graph (same size, one byte changed) is never run: a warning, then a fresh build
    graph = graphs[0] / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(base + [str(tmp_path / "c.csv")]) == 0
    assert any("does not match its sha256" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert any(line.startswith("built the int8 graph") for line in _graph_lines(caplog))
    assert (tmp_path / "c.csv").read_bytes() == (tmp_path / "a.csv").read_bytes()


HEAVY = ("torch", "datasets", "accelerate", "sklearn", "transformers.modeling_utils")


def test_a_cached_int8_graph_predicts_without_importing_torch(calibrated_model, rows_csv, tmp_path, monkeypatch):
    """The PyTorch model (torch, transformers' model code) loads only to build the graphs: a cached
    graph is a second of start-up less, and the same output."""
    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path / "cache"))
    base = ["--model", str(calibrated_model), "--input", str(rows_csv), "--int8", "--output"]
    assert main(base + [str(tmp_path / "built.csv")]) == 0  # builds: needs torch
    code = ("import sys; from pipelines.cli.predict import main; rc = main(sys.argv[1:]); "
            f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules]); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *base, str(tmp_path / "cached.csv")], capture_output=True,
                          text=True, cwd=Path(__file__).parents[1], env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded: []" in done.stdout
    assert (tmp_path / "cached.csv").read_bytes() == (tmp_path / "built.csv").read_bytes()


def test_prediction_reads_tokenizer_and_labels_as_transformers_does(calibrated_model, tiny_model):
    from transformers import AutoConfig, AutoTokenizer

    from pipelines.modeling import model_folder
    from pipelines.modeling.loading import load_tokenizer

    for folder in (calibrated_model, tiny_model):
        ours, auto = load_tokenizer(str(folder)), AutoTokenizer.from_pretrained(str(folder))
        assert type(ours) is type(auto) and ours.model_input_names == auto.model_input_names
        texts = ["it was very good", "the plot, however, was thin"]
        assert ours(texts, text_pair=texts[::-1])["input_ids"] == auto(texts, text_pair=texts[::-1])["input_ids"]
        config, light = AutoConfig.from_pretrained(str(folder)), model_folder.saved_config(folder)
        assert light.id2label == config.id2label and light.num_labels == config.num_labels
        assert light.problem_type == config.problem_type
        assert light.max_position_embeddings == config.max_position_embeddings


def test_the_onnx_runner_runs_batches_side_by_side_in_order(calibrated_model, rows_csv, tmp_path, monkeypatch):
    from pipelines.prediction import graph_cache
    from pipelines.prediction.backends import OnnxRunner

    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path / "cache"))
    assert main(["--model", str(calibrated_model), "--input", str(rows_csv), "--int8", "--output",
                 str(tmp_path / "a.csv")]) == 0
    graph = next((tmp_path / "cache" / "graphs").glob("int8-*")) / graph_cache.FP32_FILE
    rng = np.random.default_rng(0)
    batches = [{"input_ids": rng.integers(5, 60, (n, length)), "attention_mask": np.ones((n, length), np.int64),
                "token_type_ids": np.zeros((n, length), np.int64)} for n, length in [(8, 12), (3, 5), (16, 9), (8, 16)]]
    one, four = OnnxRunner(graph, "fp32", threads=1), OnnxRunner(graph, "fp32", threads=4)
    for a, b in zip(one.map(batches), four.map(batches), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_retrained_model_gets_its_own_graph(calibrated_model, tmp_path, monkeypatch):
    from pipelines.prediction import graph_cache

    other = tmp_path / "other"
    shutil.copytree(calibrated_model, other)
    assert graph_cache.model_digest(other) == graph_cache.model_digest(calibrated_model)
    (other / "validation_predictions.csv").write_text("text,gold\nanother text,pos\n", encoding="utf-8")
    assert graph_cache.model_digest(other) != graph_cache.model_digest(calibrated_model)


def test_cpus_with_and_without_vnni_keep_their_own_graph_and_calibration(monkeypatch):
    """Their int8 kernels differ (16-bit saturation without VNNI), so a calibration does not travel."""
    from pipelines.prediction import backends, graph_cache

    recipes = {}
    for kind, flags in {"vnni": {"avx2", "avx512_vnni"}, "avx_vnni": {"avx2", "avx_vnni"}, "avx2": {"avx2"}}.items():
        monkeypatch.setattr(backends, "cpu_flags", lambda flags=flags: flags)
        recipes[kind] = graph_cache.recipe_of({"opset": 17})
    assert recipes["vnni"] == recipes["avx_vnni"] != recipes["avx2"]


def test_on_a_cpu_with_vnni_the_default_is_the_int8_cascade_and_fp32_is_one_flag_away(calibrated_model, carded_model,
                                                                                      rows_csv, tmp_path, monkeypatch,
                                                                                      caplog):
    from pipelines.prediction import backends

    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    base = ["--input", str(rows_csv), "--output"]
    with caplog.at_level(logging.INFO):
        assert main(base + [str(tmp_path / "auto.csv"), "--model", str(calibrated_model)]) == 0
    assert any("the default on this CPU" in r.getMessage() for r in caplog.records)
    auto = _meta(tmp_path / "auto.csv")
    assert auto["precision"] == "int8" and auto["cascade"]["agreement_target"] == 0.995
    assert main(base + [str(tmp_path / "int8.csv"), "--model", str(calibrated_model), "--int8"]) == 0
    assert (tmp_path / "auto.csv").read_bytes() == (tmp_path / "int8.csv").read_bytes()
    assert main(base + [str(tmp_path / "fp32.csv"), "--model", str(calibrated_model), "--fp32"]) == 0
    assert _meta(tmp_path / "fp32.csv")["precision"] == "fp32"
    # without validation texts there is no threshold for the re-scoring: fp32, as with --agreement 0
    assert main(base + [str(tmp_path / "plain.csv"), "--model", str(carded_model)]) == 0
    assert _meta(tmp_path / "plain.csv")["precision"] == "fp32"
    assert main(base + [str(tmp_path / "a0.csv"), "--model", str(calibrated_model), "--agreement", "0"]) == 0
    assert _meta(tmp_path / "a0.csv")["precision"] == "fp32"


def test_every_process_of_a_launched_run_takes_the_main_process_s_default_precision(calibrated_model, monkeypatch):
    """Machines of one run may differ in CPU features; one output file may not mix precisions."""
    from pipelines.prediction import backends, shards, stream

    class OtherMachine(shards.Group):  # rank 1, whose CPU lacks VNNI and AVX2; rank 0 (VNNI) answers "int8"
        def on_main(self, work):
            return "int8"

    built = []
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"sse4_2", "avx"})
    monkeypatch.setattr(stream, "Classifier", lambda model_dir, device, precision, *rest: built.append(precision))
    stream._classifier(OtherMachine(rank=1, size=2), calibrated_model, stream.PredictOptions())
    stream._classifier(shards.Group(), calibrated_model, stream.PredictOptions())  # alone: its own CPU decides
    assert built == ["int8", "fp32"]


def test_an_int8_resume_keeps_the_batching_because_it_sets_the_bytes(calibrated_model, rows_csv, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.csv"
    stop_interrupting = interrupt_second_chunk(monkeypatch)
    base = ["--model", str(calibrated_model), "--input", str(rows_csv), "--int8", "--output"]
    assert main(base + [str(out), "--chunk-size", "100"]) == 130
    stop_interrupting()
    capsys.readouterr()
    # int8's activation ranges come from each batch: another chunk size would give other bytes
    assert main(base + [str(out), "--chunk-size", "150", "--resume"]) == 2
    assert "changed: chunk_size" in capsys.readouterr().err
    assert main(base + [str(out), "--chunk-size", "100", "--resume"]) == 0
    assert main(base + [str(tmp_path / "ref.csv"), "--chunk-size", "100"]) == 0
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_rescored_rows_take_fp32_s_label_and_the_meta_says_how_many(calibrated_model, rows_csv, tmp_path,
                                                                    monkeypatch, capsys):
    base = ["--model", str(calibrated_model), "--input", str(rows_csv), "--chunk-size", "150", "--output"]
    assert main(base + [str(tmp_path / "fp32.csv"), "--fp32"]) == 0
    assert main(base + [str(tmp_path / "plain.csv"), "--int8", "--agreement", "0"]) == 0
    assert _meta(tmp_path / "plain.csv")["cascade"] is None
    plain = _read(tmp_path / "plain.csv")
    header = plain[0]
    probs = np.array([[float(r[header.index(c)]) for c in ("prob_neg", "prob_pos")] for r in plain[1:]])
    margin = float(np.median(cascade.margins(probs, False)))
    unsure = cascade.margins(probs, False) < margin
    # A wide threshold (the median int8 margin), as a calibration with many disagreements would give.
    real = cascade.threshold_for
    monkeypatch.setattr(cascade, "threshold_for",
                        lambda calibration, target: cascade.Threshold(**{**real(calibration, target).__dict__,
                                                                         "threshold": margin}))
    capsys.readouterr()
    assert main(base + [str(tmp_path / "cascade.csv"), "--int8"]) == 0
    assert "re-scored in fp32 (int8 unsure)" in capsys.readouterr().out
    fp32, mixed = _read(tmp_path / "fp32.csv"), _read(tmp_path / "cascade.csv")
    assert 0 < unsure.sum() < len(unsure)
    scores = [i for i, c in enumerate(header) if c.startswith("prob_") or c == plan.PREDICTED_PROB]
    for row, is_unsure, f_row, p_row in zip(mixed[1:], unsure, fp32[1:], plain[1:], strict=True):
        if not is_unsure:
            assert row == p_row  # int8's exact line where it is sure
            continue
        # Re-scored by the fp32 ONNX graph: PyTorch's label and text, its probabilities to 1e-5.
        assert [c for i, c in enumerate(row) if i not in scores] == [c for i, c in enumerate(f_row) if i not in scores]
        assert all(abs(float(row[i]) - float(f_row[i])) <= 1e-5 for i in scores)
    meta = _meta(tmp_path / "cascade.csv")["cascade"]
    assert meta["rows_rescored"] == int(unsure.sum()) and meta["threshold"] == margin
    assert meta["agreement_target"] == 0.995 and 0 < meta["expected_agreement"] <= 1
    assert meta["calibration_rows"] == 300


def test_threshold_is_the_smallest_with_a_conformal_bound_within_the_target():
    # 999 calibration rows; int8 disagrees with fp32 on four of them, at margins 0.01, 0.02, 0.05 and 0.2
    margins = np.arange(999) / 1000
    agree = np.ones(999, dtype=bool)
    for m in (0.01, 0.02, 0.05, 0.2):
        i = int(np.argmin(np.abs(margins - m)))
        agree[i] = False
    calibration = cascade.record(margins, agree, "test")
    wrong = np.sort(margins[~agree])  # 0.01, 0.02, 0.05, 0.2
    # (k + 1) / 1000 <= (1 - 0.99) / SHIFT = 0.005 allows k = 4 rows above the threshold: none re-scored
    assert cascade.SHIFT == 2 and cascade.threshold_for(calibration, 0.99).threshold == 0.0
    # <= 0.0025: k = 1 may stay above: the threshold clears every disagreement but the largest
    t = cascade.threshold_for(calibration, 0.995)
    assert wrong[2] < t.threshold <= wrong[3]
    assert t.expected_agreement == pytest.approx(1 - 2 / 1000)
    assert t.calibration_rescored == pytest.approx((margins < t.threshold).mean())
    # a target the rows cannot vouch for: every disagreement is re-scored, and the bound says less
    t = cascade.threshold_for(calibration, 0.9999)
    assert t.threshold > wrong.max() and t.expected_agreement == pytest.approx(0.999)
    # no disagreement at all: nothing to re-score, whatever the target
    t = cascade.threshold_for(cascade.record(margins, np.ones(999, dtype=bool), "test"), 0.9999)
    assert t.threshold == 0.0 and t.expected_agreement == pytest.approx(0.999)


def test_agreement_must_be_a_share(calibrated_model, rows_csv, tmp_path, capsys):
    code = main(["--model", str(calibrated_model), "--input", str(rows_csv), "--output", str(tmp_path / "o.csv"),
                 "--int8", "--agreement", "99.5"])
    assert code == 2 and "expected a share between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_a_model_without_validation_texts_runs_int8_alone_or_calibrates_on_a_given_file(carded_model, rows_csv,
                                                                                       tmp_path, caplog):
    base = ["--model", str(carded_model), "--input", str(rows_csv), "--int8", "--output"]
    with caplog.at_level(logging.WARNING):
        assert main(base + [str(tmp_path / "alone.csv")]) == 0
    assert "has no validation_predictions.csv" in caplog.text and _meta(tmp_path / "alone.csv")["cascade"] is None
    texts = write_csv(tmp_path / "calib.csv", [{"text": r["text"]} for r in toy_rows(250, seed=9)])
    assert main(base + [str(tmp_path / "calibrated.csv"), "--calibration", str(texts)]) == 0
    meta = _meta(tmp_path / "calibrated.csv")["cascade"]
    assert meta["calibration_rows"] == 250 and meta["calibration_source"] == str(texts)
    assert main(base + [str(tmp_path / "x.csv"), "--calibration", str(tmp_path / "none.csv")]) == 2
