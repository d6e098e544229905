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

from pipelines.cli import export as export_script
from pipelines.cli import predict as predict_script
from pipelines.cli import push as push_script
from pipelines.cli.run import main as run_main
from pipelines.reporting import run_id

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def task(tmp_path_factory, tiny_model):
    """(card, data dir, tiny model, None, a sample file, base folder): nothing trained."""
    base = tmp_path_factory.mktemp("features")
    card, data = make_toy_task(base)
    sample = write_csv(base / "sample.csv", toy_rows(40, seed=3))
    return card, data, tiny_model, None, sample, base


@pytest.fixture(scope="module")
def toy(task):
    """`task` with a finished run.py folder in place of None."""
    card, data, model, _, sample, base = task
    out = base / "run"
    assert run_main(run_argv(card, data, model, out, "--num_train_epochs", "1", *LEARNS)) == 0
    return card, data, model, out, sample, base


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_export_options_are_checked_before_any_work(task, tmp_path, capsys):
    out, sample = task[2], task[4]
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


@pytest.mark.slow
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
                  "from pipelines.cli.export import main\n"
                  "sys.exit(main(sys.argv[1:]))")


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- search -------------------------------------------------------------------------------------

SPACE = {"learning_rate": {"low": 1.0e-3, "high": 3.0e-2, "log": True}}


@pytest.fixture
def search_card(task, tmp_path):
    from conftest import write_card

    return write_card(tmp_path, name="toysearch", search=SPACE)


def _damage_db(db, how):
    if how == "cut":
        os.truncate(db, db.stat().st_size // 2)
    else:
        db.write_bytes(b"this is not a database, someone saved a report over it\n" * 50)


@pytest.mark.parametrize("how", ["cut", "overwritten"])
def test_a_damaged_search_study_is_one_line(task, search_card, tmp_path, capsys, how):
    from pipelines.card.cards import load_card
    from pipelines.card.keys import setting_types
    from pipelines.card.search_space import resolve
    from pipelines.training import search

    out = tmp_path / "out"
    card = load_card(search_card)
    study = search.open_study(out, card, resolve(card.search, None, setting_types()), 42)
    for _ in range(3):
        study.tell(study.ask(), 0.5)
    _damage_db(out / "search.db", how)
    assert run_main(run_argv(search_card, task[1], task[2], out, "--search", "2", *LEARNS)) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{out / 'search.db'} cannot be read as a search study (" in line
    assert "move it aside or delete it to start the search over" in line
    assert not (out / "trials.csv").exists()


@pytest.mark.slow
def test_ctrl_c_in_a_search_says_the_trials_are_kept_and_the_same_command_continues(toy, search_card, tmp_path,
                                                                                       monkeypatch, capsys):
    from pipelines.training import search

    out, calls, real = tmp_path / "out", [], search.run_trial

    def interrupt_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    argv = run_argv(search_card, toy[1], toy[2], out, "--search", "3", "--num_train_epochs", "1", *LEARNS)
    monkeypatch.setattr(search, "run_trial", interrupt_second_trial)
    assert run_main(argv) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: 1 of 3 trials are finished and kept in {out / 'search.db'}")
    assert "continue the search with the same command: `python scripts/run.py --task " in last
    monkeypatch.undo()
    assert run_main(argv) == 0
    assert read_json(out / "search.json")["trials"]["finished"] == 3


# --- option values --------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (["--report_to", "tensorbord"], "--report_to 'tensorbord' is not a tracking backend: did you mean tensorboard?"),
    (["--report_to", "tensorboard,wandbb"], "--report_to 'wandbb' is not a tracking backend: did you mean wandb?"),
    (["--report_to", "tensorboard", "nope"], "--report_to 'nope' is not a tracking backend"),
    (["--seeds", "-1"], "--seeds '-1': expected distinct whole numbers from 0 to 4294967295"),
    (["--seeds", "-1,2"], "--seeds '-1,2': expected distinct whole numbers from 0 to 4294967295"),
    (["--seeds", "1,1"], "--seeds '1,1': expected distinct whole numbers"),
    (["--seeds", "1,x"], "--seeds '1,x': expected distinct whole numbers"),
    (["--hub-model-id", "hf_abc"], "--hub-model-id hf_***: that is a Hugging Face token, not a repository id"),
])
def test_run_options_are_checked_before_the_data_is_read(task, tmp_path, capsys, extra, message):
    card, _, model = task[:3]
    out = tmp_path / "out"
    assert run_main(run_argv(card, tmp_path / "no-data-here", model, out, *extra)) == 2
    line = one_error(capsys.readouterr().err)
    assert message in line and "hf_abc" not in line and not out.exists()


def test_report_to_takes_a_comma_list_or_several_values(task, tmp_path, capsys):
    from pipelines.training.option_checks import check_report_to

    assert check_report_to("tensorboard, trackio") == check_report_to(["tensorboard trackio"]) == \
        ["tensorboard", "trackio"]
    assert check_report_to("none") == [] and check_report_to(None) == []
    card, _, model = task[:3]
    for values in (["tensorboard", "trackio"], ["tensorboard,trackio"]):
        assert run_main(run_argv(card, tmp_path, model, tmp_path / "out", "--report_to", *values,
                                 "--max_steps", "0")) == 2
        assert "--max_steps 0: expected a whole number of steps" in one_error(capsys.readouterr().err)


def test_token_shaped_hub_model_id_of_any_length_is_masked(carded_model, tmp_path, capsys):
    for token in ("hf_x", "hf_abc123", "api_org_q/name"):
        assert push_script.main([str(carded_model), "--hub-model-id", token, "--hub-dry-run", str(tmp_path / "d")]) == 2
        line = one_error(capsys.readouterr().err)
        assert "that is a Hugging Face token" in line and token.split("/")[0] not in line
    assert not (tmp_path / "d").exists()


# --- messages -----------------------------------------------------------------------------------------


def test_a_tab_separated_txt_file_is_read_as_tsv_or_named_with_the_sep_to_pass(carded_model, tmp_path, capsys):
    source = tmp_path / "ratings_test.txt"  # NSMC's layout
    rows = [f"{9000 + i}\t{r['text']}\t{int(r['label'] == 'pos')}" for i, r in enumerate(toy_rows(12))]
    source.write_text("id\tdocument\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "pred.tsv"
    assert _predict(carded_model, source, out, "--text-column", "document") == 0
    header, first = out.read_text(encoding="utf-8").splitlines()[:2]
    assert header.split("\t")[:3] == ["id", "document", "label"] and first.startswith("9000\t")
    assert _predict(carded_model, source, tmp_path / "p.csv", "--text-column", "document", "--sep", ",") == 2
    line = one_error(capsys.readouterr().err)
    assert f"{source}: no column 'document'" in line and "pass --sep '\\t'" in line


def test_a_cell_tsv_cannot_hold_names_the_file_and_leaves_no_partial(carded_model, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,good movie\n2,"two\nlines"\n', encoding="utf-8")
    assert _predict(carded_model, source, tmp_path / "o.tsv") == 2
    line = one_error(capsys.readouterr().err)
    assert f"{source}: data row 2: column `text` holds a tab or a line break" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_full_disk_before_the_first_checkpoint_reads_clearly(task, tmp_path, monkeypatch, capsys):
    import torch

    def short_write(*args, **kwargs):  # how torch reports a disk that took fewer bytes than it wrote
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1216 vs 1152")

    monkeypatch.setattr(torch, "save", short_write)
    card, data, model = task[:3]
    out = tmp_path / "out"
    assert run_main(run_argv(card, data, model, out, "--num_train_epochs", "1", *LEARNS)) == 2
    line = one_error(capsys.readouterr().err)
    assert f"cannot save checkpoint-6 in {out / 'checkpoint-6'}: no space left on the disk (" in line
    assert line.endswith("; no checkpoint is complete yet: once there is room, rerun the same command")
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".staging-*"))


# --- checkpoints, tracking, model cache -----------------------------------------------------------------

KILL_AT_SEAL = ("import os, signal, sys\n"
                "from pipelines.training import checkpoints\n"
                "real = checkpoints.seal\n"
                "def seal(folder, *a, **k):\n"
                "    if folder.name == 'checkpoint-12':  # its files are all written; the record is next\n"
                "        os.kill(os.getpid(), signal.SIGKILL)\n"
                "    return real(folder, *a, **k)\n"
                "checkpoints.seal = seal\n"
                "from pipelines.cli.run import main\n"
                "sys.exit(main(sys.argv[1:]))")


@pytest.mark.slow
def test_sigkill_between_the_trainers_save_and_the_record_loses_no_complete_checkpoint(toy, tmp_path, caplog):
    card, data, model = toy[:3]
    out, straight = tmp_path / "out", tmp_path / "straight"
    args = ["--num_train_epochs", "3", "--save_total_limit", "1", *LEARNS]
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SEAL, *run_argv(card, data, model, out, *args)],
                          env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # checkpoint-6 was not rotated out for a checkpoint-12 that never became complete
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-6"]
    with caplog.at_level("WARNING"):
        assert run_main(run_argv(card, data, model, out, *args, "--resume")) == 0
    assert "damaged" not in caplog.text
    assert run_main(run_argv(card, data, model, straight, *args)) == 0
    assert read_json(out / "metrics.json")["validation"] == pytest.approx(
        read_json(straight / "metrics.json")["validation"], rel=1e-4)
    assert not list(out.glob(".staging-*")) and not list(out.glob("checkpoint-*"))


@pytest.mark.slow
def test_each_run_gets_its_tensorboard_folder_and_a_resume_logs_no_step_twice(toy, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from pipelines.training import callbacks

    card, data, model = toy[:3]
    out = tmp_path / "out"
    argv = run_argv(card, data, model, out, "--report_to", "tensorboard", "--logging_steps", "2",
                    "--logging_strategy", "steps", "--num_train_epochs", "2", *LEARNS)

    def ctrl_c_at_step_8(self, args, state, control, **kwargs):
        if state.global_step == 8:  # step 8 is logged; checkpoint-6 is the last one
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(callbacks.LogCallback, "on_step_end", ctrl_c_at_step_8, raising=False)
        assert run_main(argv) == 130
    assert run_main(argv + ["--resume"]) == 0
    (name,) = (out / "runs").iterdir()
    (session,) = name.iterdir()
    seen: dict = {}
    for path in session.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag.startswith(("train/loss", "eval/")):
                    seen[(value.tag, event.step)] = seen.get((value.tag, event.step), 0) + 1
    assert sorted(step for tag, step in seen if tag == "train/loss") == [2, 4, 6, 8, 10, 12]
    assert set(seen.values()) == {1}, {k: v for k, v in seen.items() if v > 1}
    assert run_main(run_argv(card, data, model, out, "--report_to", "tensorboard", "--max_steps", "2")) == 0
    assert len(list(name.iterdir())) == 2  # a new run of the same name: its own folder


@pytest.mark.skipif(not can_mount(), reason="cannot mount a read-only folder here (no user namespaces)")
def test_a_read_only_model_cache_with_a_complete_model_is_used(tmp_path):
    from pipelines.modeling.offline import model_cache

    root = tmp_path / "models"

    def build(folder):
        (folder / "config.json").write_text('{"model_type": "bert"}')

    target = model_cache.prepare("toy-1", "recipe 1", build, root)
    use = ("import sys; from pipelines.modeling.offline import model_cache\n"
           "def build(folder): raise SystemExit('no building in a read-only cache')\n"
           "try:\n    print(model_cache.prepare('toy-1', 'recipe 1', build, model_cache.Path(sys.argv[1])))\n"
           "except OSError as err:\n    print('error:', err.strerror)")
    cmd = [sys.executable, "-c", use, str(root)]
    host = tmp_path / "host"
    host.mkdir()
    proc = in_namespace([f"mount --bind {root} {root}", f"mount -o remount,bind,ro {root}",
                         f"{sh(cmd)} > {host}/intact", f"{sh(cmd[:2] + [use.replace('recipe 1', 'recipe 2')])} "
                         f"{root} > {host}/other"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (host / "intact").read_text().strip() == str(target)
    assert (host / "other").read_text().startswith("error: the cache is read-only and its copy of toy-1 is not "
                                                    "usable (prepared by another recipe")
