"""Batch prediction: equal to transformers' pipeline, cells and order kept, bad inputs, resume."""

import csv
import json

import pytest
from conftest import SHARED_DATA, build_tiny_model, interrupt_second_chunk, sharpen, toy_rows, write_csv

from pipelines.cli.predict import main
from pipelines.evaluation import metrics
from pipelines.prediction.partial import PartialOutput
from pipelines.prediction.stream import Classifier, PredictOptions, predict_file

ADDED_2 = ["predicted", "predicted_prob", "prob_neg", "prob_pos", "error"]






@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    """A tiny 3-label pair model without a card (as if fine-tuned elsewhere)."""
    folder = build_tiny_model(tmp_path_factory.mktemp("pair"), labels=["entailment", "neutral", "contradiction"])
    return sharpen(folder, seed=1)


def _rows(n):
    """Toy rows with extra columns, some long enough to be truncated at 16 tokens."""
    rows = []
    for i, row in enumerate(toy_rows(n)):
        text = row["text"] + (" and the dog sat on the mat under the tree" * (i % 3)) if i % 4 == 1 else row["text"]
        rows.append({"id": f"{i:03d}", "text": text, "note": ["NA", "", "a, \"quoted\" note", "ünïcode"][i % 4],
                     "label": row["label"]})
    return rows


def _read(path, delimiter=","):
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter=delimiter, quoting=quoting))


def _pipeline(model_dir, inputs, max_length):
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(model_dir), top_k=None, device="cpu")
    return [{d["label"]: d["score"] for d in out} for out in clf(inputs, truncation=True, max_length=max_length)]


def _assert_same_as_pipeline(out_rows, header, expected):
    labels = list(expected[0])
    for row, exp in zip(out_rows, expected, strict=True):
        got = dict(zip(header, row))
        assert got["predicted"] == max(exp, key=exp.get)
        assert float(got["predicted_prob"]) == pytest.approx(max(exp.values()), abs=1e-5)
        for label in labels:
            assert float(got[f"prob_{label}"]) == pytest.approx(exp[label], abs=1e-5)


def test_matches_the_pipeline_keeps_cells_order_and_reports(carded_model, tmp_path, capsys):
    rows = _rows(40)
    source = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    # small chunks and batches: several chunks, each sorted by length and written back in order
    assert main(["--model", str(carded_model), "--input", str(source), "--output", str(out),
                 "--label-column", "label", "--chunk-size", "16", "--batch-size", "5", "--fp32"]) == 0
    header, *body = _read(out)
    assert header == ["id", "text", "note", "label"] + ADDED_2
    assert [r[:4] for r in body] == [list(r.values()) for r in rows]  # every cell as written, same order
    _assert_same_as_pipeline(body, header, _pipeline(carded_model, [r["text"] for r in rows], 16))
    assert all(r[-1] == "" for r in body)

    tokenizer = Classifier(carded_model).tokenizer
    long = sum(len(tokenizer(r["text"])["input_ids"]) > 16 for r in rows)
    assert long > 0
    printed = capsys.readouterr().out
    assert f"truncated at 16 tokens: {long} rows" in printed and "40 rows, 40 predicted" in printed
    gold = [["neg", "pos"].index(r[3]) for r in body]
    pred = [["neg", "pos"].index(r[4]) for r in body]
    expected = metrics.compute(gold, pred, 2)
    assert "  ".join(f"{k} {v:.4f}" for k, v in expected.items()) in printed


def test_pairs_without_card_tsv_match_the_pipeline(pair_model, tmp_path, capsys):
    pairs = [("the man sat", 'he said "hi" to the dog'), ("a cat ran", "the cat was very fast and happy"),
             ("it is good", "it is good"), ('"quoted" start', "red jacket")] * 3
    source = tmp_path / "pairs.tsv"
    source.write_text("premise\thypothesis\tn\n" + "".join(f"{a}\t{b}\t{i}\n" for i, (a, b) in enumerate(pairs)),
                      encoding="utf-8")
    out = tmp_path / "pred.tsv"
    base = ["--model", str(pair_model), "--input", str(source), "--output", str(out)]
    assert main(base) == 2
    assert "has no task_card.yaml" in capsys.readouterr().err
    assert main(base + ["--text-column", "premise", "--text-pair-column", "hypothesis", "--batch-size", "4",
                        "--fp32"]) == 0
    header, *body = _read(out, "\t")
    assert header[:3] == ["premise", "hypothesis", "n"] and [tuple(r[:2]) for r in body] == pairs
    inputs = [{"text": a, "text_pair": b} for a, b in pairs]
    _assert_same_as_pipeline(body, header, _pipeline(pair_model, inputs, 128))


@pytest.mark.slow
def test_real_offline_model_matches_the_pipeline_on_sst2(tmp_path):
    sst2 = SHARED_DATA / "sst2" / "train.tsv"
    if not sst2.is_file():
        pytest.skip("../shared/data/sst2 not present")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.modeling.loading import resolve

    folder = tmp_path / "minilm"
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve(None), num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve(None)).save_pretrained(folder)
    sharpen(folder)
    lines = sst2.read_text(encoding="utf-8").splitlines()
    source = tmp_path / "sst2.tsv"
    source.write_text("\n".join(lines[:1] + lines[1:3001:100]) + "\n", encoding="utf-8")  # 30 spread-out rows
    summary = predict_file(folder, source, tmp_path / "out.csv",
                           PredictOptions(text_column="sentence", label_column="label", batch_size=8))
    header, *body = _read(tmp_path / "out.csv")
    sentences = [line.split("\t")[0] for line in lines[1:3001:100]]
    assert [r[0] for r in body] == sentences
    _assert_same_as_pipeline(body, header, _pipeline(folder, sentences, 512))
    gold = [int(r[1]) for r in body]
    pred = [["negative", "positive"].index(r[2]) for r in body]
    assert summary.metrics == metrics.compute(gold, pred, 2)


def test_bad_text_rows_are_kept_with_an_error(carded_model, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text("\ufefflabel,text\npos,good movie\nneg,\npos,   \nneg\n\nneg,NA\nhuh,fine\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["--model", str(carded_model), "--input", str(source), "--output", str(out),
                 "--label-column", "label"]) == 0
    header, *body = _read(out)
    assert header[:2] == ["label", "text"]  # the BOM is not part of the first column's name
    # a short row and a blank line are rows too: every input line has its output row
    assert [r[:2] for r in body] == [["pos", "good movie"], ["neg", ""], ["pos", "   "], ["neg", ""], ["", ""],
                                     ["neg", "NA"], ["huh", "fine"]]
    empty = "empty text in column `text`"
    assert [r[-1] for r in body] == ["", empty, empty, empty, empty, "", ""]
    assert [bool(r[2]) for r in body] == [True, False, False, False, False, True, True]  # none for the bad texts
    printed = capsys.readouterr().out
    assert f"errors: 4 rows (4 {empty})" in printed
    assert "(2 rows with a gold label; 1 with an empty or unknown one left out)" in printed


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    return errors[0]


def test_bad_inputs_are_one_line_errors_and_write_nothing(carded_model, tmp_path, capsys):
    source = write_csv(tmp_path / "in.csv", toy_rows(4))
    out = tmp_path / "out" / "pred.csv"

    def run(*extra, model=carded_model, src=source):
        return main(["--model", str(model), "--input", str(src), "--output", str(out), *extra])

    assert run("--text-column", "sentence") == 2
    assert "no column 'sentence'; the file has columns ['text', 'label']" in _error_line(capsys)
    assert run("--label-column", "gold") == 2
    assert "no column 'gold'; the file has columns ['text', 'label']; check --label-column" in _error_line(capsys)
    assert run(model=tmp_path / "nowhere") == 2
    assert "is not a saved model directory (no config.json)" in _error_line(capsys)
    assert main(["--model", str(carded_model), "--input", str(source), "--output", str(source)]) == 2
    assert "is the input file" in _error_line(capsys)
    clash = write_csv(tmp_path / "clash.csv", [{"text": "good", "predicted": "pos"}])
    assert run(src=clash) == 2
    assert "already has column(s) ['predicted']" in _error_line(capsys)
    assert run("--max-length", "1000") == 2
    assert "--max-length 1000 is more than the model in" in _error_line(capsys)
    assert run("--device", "warp9") == 2
    assert "cannot run the model on device 'warp9'" in _error_line(capsys)
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    assert run(src=tmp_path / "empty.csv") == 2
    assert "is empty; expected a header row" in _error_line(capsys)
    assert not out.parent.exists()


def test_undecodable_bytes_name_the_encoding(carded_model, tmp_path, capsys):
    source = tmp_path / "latin1.csv"
    filler = "x" * 200  # a bad byte past pandas' first 256 KiB read: it surfaces mid-run, after chunk 2
    source.write_bytes(b"text,filler\n" + "".join(f"good movie {i},{filler}\n" for i in range(2000)).encode()
                       + "un café,z\n".encode("latin-1"))
    out = tmp_path / "out.csv"
    base = ["--model", str(carded_model), "--input", str(source), "--output", str(out), "--chunk-size", "512"]
    assert main(base) == 2
    line = _error_line(capsys)
    assert "cannot decode byte 0xe9 in data row 2001 (line 2002) as UTF-8 (with or without BOM)" in line
    assert "--encoding" in line and not out.exists()  # the rows done stay in out.csv.partial only
    assert main(base + ["--encoding", "latin-1", "--no-probs"]) == 0
    header, *body = _read(out)
    assert header == ["text", "filler", "predicted", "predicted_prob", "error"]
    assert len(body) == 2001 and body[-1][:2] == ["un café", "z"]  # written back as UTF-8


class Interrupt(Exception):
    """Stands in for Ctrl-C or a killed process in the middle of a run."""


@pytest.mark.parametrize("where", ["before_commit", "mid_chunk"])
def test_interrupted_run_resumes_to_the_same_bytes(carded_model, tmp_path, monkeypatch, capsys, where):
    rows = _rows(50)
    rows[3]["text"] = ""  # counted in chunk 1, before the interruption: must survive the resume
    source = write_csv(tmp_path / "in.csv", rows)
    opts = dict(label_column="label", chunk_size=12, batch_size=5)
    reference = predict_file(carded_model, source, tmp_path / "ref.csv", PredictOptions(**opts))
    out = tmp_path / "out.csv"

    calls = {"n": 0}
    if where == "before_commit":  # chunk 2 is written but not recorded: resume must drop it
        real = PartialOutput.commit

        def hook(self, *args):
            calls["n"] += 1
            if calls["n"] == 3:  # header, chunk 1, then chunk 2
                raise Interrupt
            return real(self, *args)

        monkeypatch.setattr(PartialOutput, "commit", hook)
    else:  # scoring chunk 3 fails: nothing of it is written
        real = Classifier.score

        def hook(self, *args):
            calls["n"] += 1
            if calls["n"] == 3:
                raise Interrupt
            return real(self, *args)

        monkeypatch.setattr(Classifier, "score", hook)
    with pytest.raises(Interrupt):
        predict_file(carded_model, source, out, PredictOptions(**opts))
    monkeypatch.undo()
    partial = tmp_path / "out.csv.partial"
    assert not out.exists() and partial.is_file()
    recorded = json.loads((tmp_path / "out.csv.partial.json").read_text())["bytes"]
    # before_commit: chunk 2 is on disk but not recorded, so --resume must cut it off
    assert (partial.stat().st_size > recorded) == (where == "before_commit")
    with open(partial, "ab") as fh:  # and a torn write after it (zero-filled blocks after a crash)
        fh.write(b"\0" * 50_000)
    resumed = predict_file(carded_model, source, out, PredictOptions(resume=True, **opts))
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert not partial.exists() and not (tmp_path / "out.csv.partial.json").exists()
    assert resumed.resumed_from == (12 if where == "before_commit" else 24)
    assert resumed.tally == reference.tally and resumed.metrics == reference.metrics


def test_resume_refuses_changed_settings_and_a_fresh_run_replaces_the_partial(carded_model, tmp_path, monkeypatch,
                                                                                 capsys):
    source = write_csv(tmp_path / "in.csv", _rows(30))
    out = tmp_path / "out.csv"
    stop_interrupting = interrupt_second_chunk(monkeypatch)
    base = ["--model", str(carded_model), "--input", str(source), "--chunk-size", "10", "--output"]
    assert main(base + [str(out)]) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err and not out.exists()
    stop_interrupting()
    assert main(base + [str(out), "--resume", "--max-length", "20"]) == 2
    assert "changed: max_length" in _error_line(capsys)
    assert main(base + [str(out)]) == 0  # without --resume: starts over
    assert main(base + [str(tmp_path / "ref.csv")]) == 0
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert main(base + [str(out), "--resume"]) == 0  # nothing to resume: a fresh, complete run
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()


def test_progress_is_a_log_line_per_chunk_off_a_terminal(carded_model, tmp_path, caplog):
    source = write_csv(tmp_path / "in.csv", toy_rows(25))
    with caplog.at_level("INFO", logger="pipelines.prediction.stream"):
        predict_file(carded_model, source, tmp_path / "o.csv", PredictOptions(chunk_size=10))
    lines = [r.getMessage() for r in caplog.records if "rows done" in r.getMessage()]
    assert [line.split(" rows done")[0] for line in lines] == ["10", "20", "25"]
    assert all("rows/s" in line for line in lines)


def test_progress_bar_on_request(carded_model, tmp_path, capsys):
    source = write_csv(tmp_path / "in.csv", toy_rows(25))
    predict_file(carded_model, source, tmp_path / "o.csv", PredictOptions(chunk_size=10, progress=True))
    bar = capsys.readouterr().err
    assert "25/25" in bar and "rows/s" in bar


def test_sep_option_and_no_probs(carded_model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("text\tscore\ngood movie\t1\nbad plot\t0\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["--model", str(carded_model), "--input", str(source), "--output", str(out),
                 "--sep", "\\t", "--no-probs"]) == 0
    header, *body = _read(out)
    assert header == ["text", "score", "predicted", "predicted_prob", "error"]
    assert [r[:2] for r in body] == [["good movie", "1"], ["bad plot", "0"]]
    assert all(r[2] in ("neg", "pos") and 0.5 <= float(r[3]) <= 1 for r in body)
    (tmp_path / "header_only.csv").write_text("text,score\n", encoding="utf-8")
    assert main(["--model", str(carded_model), "--input", str(tmp_path / "header_only.csv"), "--output", str(out)]) == 0
    assert _read(out) == [["text", "score", "predicted", "predicted_prob", "prob_neg", "prob_pos", "error"]]


def test_the_command_line_is_generated_from_the_options_with_the_same_defaults(capsys):
    # PredictOptions is the one declaration: every field a user can set is a flag in both spellings, and the
    # command line's defaults are the library's (precision: auto for both).
    import dataclasses

    from pipelines.cli.predict import build_parser, parse
    from pipelines.option_fields import facts_of

    flags = build_parser()._option_string_actions
    for f in dataclasses.fields(PredictOptions):
        spelled = {f"--{f.name}", f"--{f.name.replace('_', '-')}"}
        assert spelled <= set(flags) if facts_of(f).cli else not spelled & set(flags), f.name
    base = ["--model", "m", "--input", "i.csv", "--output", "o.csv"]
    files, options = parse(base)
    assert (files.model, files.input, files.output) == ("m", "i.csv", "o.csv")
    assert dataclasses.replace(options, adapt_threads=False) == PredictOptions() and options.precision == "auto"
    assert options.adapt_threads and not parse(base + ["--threads", "2"])[1].adapt_threads
    for extra, precision in ((["--int8"], "int8"), (["--fp32"], "fp32"), (["--precision", "bf16"], "bf16")):
        assert parse(base + extra)[1].precision == precision
    _, options = parse(base + ["--no-probs", "--max_length", "20", "--chunk-size=10", "--resume"])
    assert (options.probs, options.max_length, options.chunk_size, options.resume) == (False, 20, 10, True)
    assert main(base + ["--fp32", "--int8"]) == 2
    assert "not allowed with argument" in _error_line(capsys)
    assert main(base + ["--threads", "0"]) == 2  # the range declared on the field, refused while parsing
    assert "--threads: expected a whole number of at least 1, got 0" in _error_line(capsys)
