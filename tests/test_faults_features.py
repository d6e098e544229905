"""Faults in the newer features: export of real run folders (fp32 and int8) and its file-system
faults, model folders missing their tokenizer or export description, a damaged search study,
option values of every script, TensorBoard folders per run, a read-only model cache, notes added
to a run folder, and the checkpoint that is published together with its record. Each case ends in
exit 0 with the right result, or exit 2 with one line and nothing half-written."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, make_toy_task, read_json, toy_rows, write_csv
from faultkit import LEARNS, can_mount, child_env, in_namespace, one_error, run_argv, sh

from pipelines.reporting import run_id
from scripts import export as export_script
from scripts import predict as predict_script
from scripts import push as push_script
from scripts.run import main as run_main

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def toy(tmp_path_factory, tiny_model):
    """(card, data dir, tiny model, a finished run.py folder, a sample file, base folder)."""
    base = tmp_path_factory.mktemp("features")
    card, data = make_toy_task(base)
    out = base / "run"
    assert run_main(run_argv(card, data, tiny_model, out, "--num_train_epochs", "1", *LEARNS)) == 0
    sample = write_csv(base / "sample.csv", toy_rows(40, seed=3))
    return card, data, tiny_model, out, sample, base


def _export(model, out, sample, *extra):
    return export_script.main([str(out), "--onnx", "--model", str(model), "--sample", str(sample), *extra])


def _predict(model, source, out, *extra):
    return predict_script.main(["--model", str(model), "--input", str(source), "--output", str(out), *extra])


def _rows(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def exports(toy):
    """fp32 and int8 exports of the run.py folder; `plain`: an int8 export of a model no run wrote."""
    out, sample, base = toy[3], toy[4], toy[5]
    folders = {"fp32": base / "export-fp32", "int8": base / "export-int8", "plain": base / "export-plain"}
    assert _export(out, folders["fp32"], sample) == 0
    assert _export(out, folders["int8"], sample, "--int8") == 0
    assert _export(toy[2], folders["plain"], sample, "--int8", "--text-column", "text") == 0
    return folders


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_export_of_a_run_folder_predicts_like_the_pytorch_model(toy, exports, tmp_path, capsys, precision):
    out, sample = toy[3], toy[4]
    folder = exports[precision]
    info = read_json(folder / "export.json")
    assert info["precision"] == precision and info["verification"]["rows"] == 40
    assert run_id.verify(folder) == run_id.verify(out)  # the export names the run it came from, and is intact
    assert folder.stat().st_mode & 0o777 == 0o777 & ~_umask()  # a normal folder, not mkdtemp's 0700
    assert not [p.name for p in folder.parent.iterdir() if ".export-" in p.name]
    capsys.readouterr()
    assert _predict(folder, sample, tmp_path / "onnx.csv") == 0
    assert _predict(out, sample, tmp_path / "torch.csv", "--fp32") == 0
    onnx, torch = _rows(tmp_path / "onnx.csv"), _rows(tmp_path / "torch.csv")
    same = sum(a["predicted"] == b["predicted"] for a, b in zip(onnx, torch))
    assert same == info["verification"]["labels_identical"]  # what export.json promised, on the same rows
    assert read_json(tmp_path / "onnx.csv.meta.json")["precision"] == precision
    if precision == "fp32":
        assert same == len(torch)
        diff = max(abs(float(a["predicted_prob"]) - float(b["predicted_prob"])) for a, b in zip(onnx, torch))
        assert diff < 1e-4


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_into_an_empty_folder_keeps_its_mode(toy, tmp_path):
    target = tmp_path / "made"
    target.mkdir(mode=0o750)
    os.chmod(target, 0o750)
    assert _export(toy[3], target, toy[4]) == 0
    assert target.stat().st_mode & 0o777 == 0o750 and (target / "model.onnx").is_file()
    assert not [p.name for p in target.iterdir() if p.name.startswith(".")]
    assert run_id.verify(target) == run_id.verify(toy[3])


def _without_tokenizer(model, dest):
    dest.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model / name, dest / name)
    return dest


def test_a_model_folder_without_its_tokenizer_is_one_line_everywhere(toy, exports, tmp_path, capsys):
    card, data, model, _, sample, _ = toy
    bare = _without_tokenizer(model, tmp_path / "bare")
    assert _predict(bare, sample, tmp_path / "p.csv", "--text-column", "text") == 2
    assert f"--model {bare} has no tokenizer files" in one_error(capsys.readouterr().err)
    assert run_main(run_argv(card, data, bare, tmp_path / "out", "--max_steps", "1")) == 2
    assert f"--model {bare} has no tokenizer files" in one_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    assert _export(bare, tmp_path / "e", sample, "--text-column", "text") == 2
    assert "has no tokenizer files" in one_error(capsys.readouterr().err)
    export = shutil.copytree(exports["plain"], tmp_path / "export")
    for name in ("tokenizer.json", "tokenizer_config.json", "run.json"):
        (export / name).unlink()
    assert _predict(export, sample, tmp_path / "q.csv", "--text-column", "text") == 2
    assert f"--model {export} has no tokenizer files" in one_error(capsys.readouterr().err)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "q.csv").exists() and not (tmp_path / "e").exists()


@pytest.mark.parametrize("damage, expected", [
    ("export.json garbage", "is a damaged export (export.json "),
    ("export.json garbage, no manifest", "export.json is damaged"),
    ("export.json precision", "names precision 'fp16'"),
    ("model.onnx cut", "is a damaged export (model.onnx has "),
    ("model.onnx cut, no manifest", "the ONNX graph is damaged or unreadable"),
])
def test_damaged_export_files_are_one_line(exports, toy, tmp_path, capsys, damage, expected):
    export = shutil.copytree(exports["plain" if "no manifest" in damage or "precision" in damage else "int8"],
                             tmp_path / "export")
    if "no manifest" in damage or "precision" in damage:
        (export / "run.json").unlink()
    if damage.startswith("export.json garbage"):
        (export / "export.json").write_text('{"precision": "int8", "opse')
    elif damage == "export.json precision":
        info = read_json(export / "export.json")
        (export / "export.json").write_text(json.dumps({**info, "precision": "fp16"}))
    else:
        onnx = export / "model.onnx"
        os.truncate(onnx, onnx.stat().st_size // 3)
    assert _predict(export, toy[4], tmp_path / "p.csv", "--text-column", "text") == 2
    assert expected in one_error(capsys.readouterr().err)
    assert not list(tmp_path.glob("p.csv*"))


def test_export_options_are_checked_before_any_work(toy, tmp_path, capsys):
    out, sample = toy[3], toy[4]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("x")
    for extra, message in ((["--sample-rows", "0"], "--sample-rows: expected a whole number of at least 1, got 0"),
                           (["--sample-rows", "-3"], "--sample-rows: expected a whole number of at least 1, got -3"),
                           (["--encoding", "utf-9"], "--encoding: unknown encoding 'utf-9'")):
        assert _export(out, tmp_path / "e", sample, *extra) == 2
        assert message in one_error(capsys.readouterr().err)
    assert _export(out, taken, sample) == 2
    assert f"{taken} exists and is not empty" in one_error(capsys.readouterr().err)
    assert not (tmp_path / "e").exists()


def test_full_disk_during_export_is_one_line_and_leaves_nothing(toy, tmp_path, monkeypatch, capsys):
    import errno

    from pipelines.prediction import export

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "write_graph", full)
    target = tmp_path / "e"
    assert _export(toy[3], target, toy[4]) == 2
    line = one_error(capsys.readouterr().err)
    assert f"cannot write the export in {target}: no space left on the disk" in line
    assert sorted(os.listdir(tmp_path)) == []


KILL_AT_VERIFY = ("import os, signal, sys\n"
                  "from pipelines.prediction import export\n"
                  "export.verify = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                  "from scripts.export import main\n"
                  "sys.exit(main(sys.argv[1:]))")


def test_a_killed_export_leaves_nothing_the_next_one_does_not_clean(toy, tmp_path):
    target = tmp_path / "e"
    argv = [str(target), "--onnx", "--model", str(toy[3]), "--sample", str(toy[4])]
    proc = subprocess.run([sys.executable, "-c", KILL_AT_VERIFY, *argv], env=child_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    left = [p.name for p in tmp_path.iterdir()]
    assert not target.exists() and len(left) == 1 and ".export-" in left[0]  # the hidden working folder
    assert export_script.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"] and run_id.verify(target) == run_id.verify(toy[3])


@pytest.mark.skipif(not can_mount(), reason="cannot mount a read-only folder here (no user namespaces)")
def test_export_onto_read_only_folders_is_one_line(toy, tmp_path):
    ro, host = tmp_path / "ro", tmp_path / "host"
    (ro / "mnt").mkdir(parents=True)
    host.mkdir()
    base = [sys.executable, "scripts/export.py"]
    tail = ["--onnx", "--model", str(toy[3]), "--sample", str(toy[4])]
    inside, mount_point = base + [str(ro / "new"), *tail], base + [str(ro / "mnt"), *tail]
    proc = in_namespace([f"mount --bind {ro} {ro}", f"mount -o remount,bind,ro {ro}", "set +e",
                         f"{sh(inside)} 2> {host}/inside; echo $? >> {host}/rc",
                         f"{sh(mount_point)} 2> {host}/mnt; echo $? >> {host}/rc"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (host / "rc").read_text().split() == ["2", "2"]
    assert f"OUT {ro / 'new'}: {ro} is on a read-only file system" in one_error((host / "inside").read_text())
    assert f"OUT {ro / 'mnt'}: {ro / 'mnt'} is on a read-only file system" in one_error((host / "mnt").read_text())
    assert sorted(os.listdir(ro)) == ["mnt"]


def test_notes_added_to_a_run_folder_are_not_a_mix_but_published_files_are(toy, tmp_path, capsys):
    out = shutil.copytree(toy[3], tmp_path / "run")
    with open(out / "summary.md", "a", encoding="utf-8") as fh:
        fh.write("\nnote: tried on the new data, looks fine\n")
    assert run_id.verify(out)
    dry = tmp_path / "dry"
    assert push_script.main([str(out), "--hub-model-id", "alice/x", "--hub-dry-run", str(dry)]) == 0
    assert _predict(out, toy[4], tmp_path / "p.csv") == 0
    capsys.readouterr()
    with open(out / "metrics.json", "a", encoding="utf-8") as fh:
        fh.write(" ")
    assert _predict(out, toy[4], tmp_path / "q.csv") == 2
    assert f"{out} mixes files of different runs (metrics.json " in one_error(capsys.readouterr().err)
