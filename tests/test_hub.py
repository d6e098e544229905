"""Publishing to the Hub: the real huggingface_hub client against a fake Hub on 127.0.0.1.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import, and conftest imported it
offline; in-process tests therefore set `huggingface_hub.constants` (what those variables set),
and `test_push_script_in_a_fresh_process` runs push.py as users do, with the variables in its env.
"""

import contextlib
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, read_json, toy_rows, write_card, write_csv
from fake_hub import FakeHub, model_index_metrics, snapshot, split_card

from pipelines.cli import push as push_script
from pipelines.cli import run as run_script
from pipelines.cli._common import set_offline

TOKEN = "hf_cardtuneFakeToken0123456789abcdefXYZ"
REPO = "alice/toy-classifier"
PUSHED = {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
          "task_card.yaml", "metrics.json", "learning_curve.png"}
PUSH_CALLS = ["/api/repos/create", "/api/validate-yaml", f"/api/models/{REPO}/preupload/main",
              f"/api/models/{REPO}/commit/main"]
HUB_TYPES = {"accuracy": "accuracy", "f1": "f1", "mcc": "matthews_correlation", "loss": "loss"}


def as_hub_user(mp, endpoint, tmp):
    """This process as a user with HF_TOKEN set and HF_ENDPOINT pointing at `endpoint`."""
    from huggingface_hub import constants

    mp.setattr(constants, "ENDPOINT", endpoint)
    mp.setattr(constants, "HF_HUB_OFFLINE", False)
    mp.setattr(constants, "HF_TOKEN_PATH", str(tmp / "no_token_file"))  # a developer's own login never leaks in
    for name in ("HF_HUB_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        mp.delenv(name, raising=False)
    mp.setenv("HF_TOKEN", TOKEN)


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory, tiny_model):
    """A toy run with a test split, trained and pushed by run.py --push-to-hub --hub-private:
    (output dir, the fake Hub it pushed to, everything it printed and logged)."""
    base = tmp_path_factory.mktemp("hub_run")
    for name, rows in (("train", toy_rows(48)), ("dev", toy_rows(16, seed=1)), ("test", toy_rows(16, seed=2))):
        write_csv(base / f"{name}.csv", rows)
    card = write_card(base, dataset={"local": {"format": "csv", "files": {
        "train": "train.csv", "validation": "dev.csv", "test": "test.csv"}}})
    out, hub, text = base / "out", FakeHub().start(), io.StringIO()
    handler = logging.StreamHandler(text)
    logging.getLogger().addHandler(handler)
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            as_hub_user(mp, hub.url, base)
            code = run_script.main(["--task", str(card), "--model", str(tiny_model), "--data-dir", str(base),
                                    "--output-dir", str(out), "--num_train_epochs", "1",
                                    "--push-to-hub", "--hub-model-id", REPO, "--hub-private"])
    finally:
        logging.getLogger().removeHandler(handler)
        hub.stop()
    assert code == 0, text.getvalue()
    return out, hub, text.getvalue()


@pytest.fixture(scope="module")
def dry_run(pushed_run, tmp_path_factory):
    """The --hub-dry-run folder of the same output directory, by run.py's end-of-run path."""
    dry = tmp_path_factory.mktemp("dry") / "preview"
    run_script.publish_outputs(str(pushed_run[0]), REPO, False, str(dry))
    return dry


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    hub = FakeHub().start()
    as_hub_user(monkeypatch, hub.url, tmp_path)
    yield hub
    hub.stop()


def expected_metrics(out):
    summary = read_json(out / "metrics.json")
    return {split: {HUB_TYPES[k]: v for k, v in summary[split].items()} for split in ("validation", "test")}


def error_line(captured):
    errors = [line for line in captured.err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    return errors[0]


def assert_no_token(*texts):
    assert all(TOKEN not in text for text in texts)


@pytest.mark.slow
def test_run_push_to_hub_uploads_the_best_model_once(pushed_run):
    out, hub, printed = pushed_run
    repo = hub.repos[REPO]
    assert len(repo.commits) == 1 and repo.private  # the Trainer pushed no checkpoint of its own
    # and training asked the Hub for nothing: the only calls are the final push's
    assert [r.path for r in hub.requests if "agent-harnesses" not in r.path] == PUSH_CALLS
    assert set(repo.files) == PUSHED and not (out / "README.md").exists()
    assert all(repo.files[name] == (out / name).read_bytes() for name in PUSHED - {"README.md"})
    meta, body = split_card(repo.files["README.md"].decode("utf-8"))
    assert model_index_metrics(meta) == expected_metrics(out)  # exact values of the best checkpoint
    assert f"checkpoint of epoch {read_json(out / 'metrics.json')['best_epoch']}" in body
    assert f"{hub.url}/{REPO}/commit/" in printed
    assert_no_token(printed, (out / "run_config.json").read_text(encoding="utf-8"))
    assert_no_token(*(r.body.decode("utf-8", "replace") for r in hub.requests))


@pytest.mark.slow
def test_dry_run_is_the_upload_with_a_parseable_card(pushed_run, dry_run):
    from huggingface_hub import ModelCard

    out, hub, _ = pushed_run
    assert {p.name: p.read_bytes() for p in dry_run.iterdir()} == hub.repos[REPO].files  # byte for byte
    card = ModelCard.load(dry_run / "README.md")
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results} == {
        (split, kind): value for split, values in expected_metrics(out).items() for kind, value in values.items()}
    meta, body = split_card((dry_run / "README.md").read_text(encoding="utf-8"))
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["language"] == ["en"] and not {"base_model", "license", "datasets"} & set(meta)  # all unknown here
    summary = read_json(out / "metrics.json")
    assert "| 0 | neg |" in body and "| 1 | pos |" in body and "| train | 48 |" in body
    assert (out / "epochs.md").read_text(encoding="utf-8").strip() in body
    assert f"| test | this model | {summary['test']['loss']:.4f} |" in body
    assert "| learning rate | 0.001 |" in body and "| seed | 42 |" in body and "| max_length (tokens) | 32 |" in body


@pytest.mark.slow
def test_usage_snippet_runs_on_the_uploaded_files(dry_run):
    code = re.search(r"```python\n(.*?)```", (dry_run / "README.md").read_text(encoding="utf-8"), re.S).group(1)
    assert f'pipeline("text-classification", model="{REPO}")' in code
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code.replace(REPO, str(dry_run)), {})  # the repository id swapped for the local copy of the upload
    assert eval(printed.getvalue())[0]["label"] in ("neg", "pos")


@pytest.mark.slow
def test_push_script_dry_run_needs_no_token_and_lists_its_files(pushed_run, dry_run, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token_file"))
    out, before, dry = pushed_run[0], snapshot(pushed_run[0]), tmp_path / "preview"
    for _ in range(2):  # a second dry run into the same folder replaces the first
        assert push_script.main([str(out), "--hub-model-id", REPO, "--hub-dry-run", str(dry)]) == 0
        assert sorted(capsys.readouterr().out.split()) == sorted(str(dry / name) for name in PUSHED)
    assert (dry / "README.md").read_bytes() == (dry_run / "README.md").read_bytes()  # same card as run.py's
    (dry / "notes.txt").write_text("mine", encoding="utf-8")
    assert push_script.main([str(out), "--hub-model-id", REPO, "--hub-dry-run", str(dry)]) == 2
    assert "holds files that are not part of this upload (notes.txt)" in error_line(capsys.readouterr())
    assert push_script.main([str(out), "--hub-model-id", REPO, "--hub-dry-run", str(out / "hub")]) == 2
    assert "is inside the output directory" in error_line(capsys.readouterr())
    assert snapshot(out) == before


@pytest.mark.slow
def test_push_script_in_a_fresh_process(pushed_run, tmp_path):
    out, first_hub, _ = pushed_run
    before, hub = snapshot(out), FakeHub().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf_home"))
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "push.py"), str(out), "--hub-model-id", REPO],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        hub.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(f"{hub.url}/{REPO}/commit/")
    assert_no_token(proc.stdout, proc.stderr, *(r.body.decode("utf-8", "replace") for r in hub.requests))
    api = [r for r in hub.requests if "agent-harnesses" not in r.path]  # best-effort telemetry aside
    assert [r.path for r in api] == PUSH_CALLS and {r.method for r in api} == {"POST"}
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api)  # huggingface_hub's own lookup
    repo = hub.repos[REPO]
    assert repo.files == first_hub.repos[REPO].files and len(repo.commits) == 1 and not repo.private
    assert model_index_metrics(split_card(repo.files["README.md"].decode("utf-8"))[0]) == expected_metrics(out)
    assert snapshot(out) == before


@pytest.mark.slow
def test_failed_push_at_the_end_keeps_outputs_and_push_script_retries(hub_env, toy_task, tiny_model, tmp_path, capsys):
    card, data = toy_task
    out = tmp_path / "out"
    hub_env.fail_with = 403
    code = run_script.main(["--task", str(card), "--model", str(tiny_model), "--data-dir", str(data),
                            "--output-dir", str(out), "--num_train_epochs", "1",
                            "--push-to-hub", "--hub-model-id", REPO])
    line = error_line(capsys.readouterr())
    assert code == 2 and f"no permission to write to {REPO} (403)" in line
    assert f"retry with `python scripts/push.py {out} --hub-model-id {REPO}`" in line
    before = snapshot(out)
    assert {"metrics.json", "model.safetensors", "summary.md"} <= set(before)  # the run itself is complete
    hub_env.fail_with = None
    for _ in range(2):  # the retry creates the repository, the second push updates it
        assert push_script.main([str(out), "--hub-model-id", REPO]) == 0
    assert hub_env.paths().count("POST /api/repos/create") == 3 and len(hub_env.repos[REPO].commits) == 2
    assert set(hub_env.repos[REPO].files) == PUSHED and snapshot(out) == before


def _dead_endpoint():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.slow
@pytest.mark.parametrize("failure, message", [
    ("no token", "no Hugging Face token found: run `hf auth login` or set HF_TOKEN"),
    (401, f"rejected the token (401) for {REPO}: run `hf auth login` again or set a valid HF_TOKEN"),
    (403, f"no permission to write to {REPO} (403)"),
    ("server down", "cannot reach the Hub at http://127.0.0.1:"),
])
def test_push_failures_are_one_line(failure, message, pushed_run, hub_env, monkeypatch, capsys):
    from huggingface_hub import constants

    out, before = pushed_run[0], snapshot(pushed_run[0])
    if failure == "no token":
        monkeypatch.delenv("HF_TOKEN")
    elif failure == "server down":
        monkeypatch.setattr(constants, "ENDPOINT", _dead_endpoint())
    else:
        hub_env.fail_with = failure
    assert push_script.main([str(out), "--hub-model-id", REPO]) == 2
    captured = capsys.readouterr()
    assert message in error_line(captured)
    assert_no_token(captured.out, captured.err)
    assert not hub_env.repos and snapshot(out) == before
    if failure == "no token":
        assert hub_env.requests == []  # checked before any network use


@pytest.mark.slow
def test_bad_output_dirs_and_repo_ids_are_one_line(pushed_run, tmp_path, capsys):
    out = pushed_run[0]
    unfinished, partial = tmp_path / "unfinished", tmp_path / "partial"
    shutil.copytree(out, unfinished)
    (unfinished / "metrics.json").unlink()
    shutil.copytree(out, partial)
    (partial / "model.safetensors").unlink()
    cases = [
        ([str(unfinished), "--hub-model-id", REPO], "has no metrics.json: the run did not finish"),
        ([str(partial), "--hub-model-id", REPO], "has no weights file (model.safetensors"),
        ([str(tmp_path / "nope"), "--hub-model-id", REPO], "is not a directory"),
        ([str(out)], "--hub-model-id is required"),
        ([str(out), "--hub-model-id", "alice"], "'alice' is not a Hub repository id: expected USER/NAME"),
        ([str(out), "--hub-model-id", "alice/bad--name"], "is not a Hub repository id"),
    ]
    for argv, message in cases:
        assert push_script.main(argv) == 2, argv
        assert message in error_line(capsys.readouterr()), argv


@pytest.mark.slow
def test_tokens_on_the_command_line_are_refused(pushed_run, capsys):
    for main, argv in ((push_script.main, [str(pushed_run[0]), "--hub-model-id", REPO, "--hub-token", TOKEN]),
                       (run_script.main, ["--task", "cola", "--push-to-hub", f"--hub_token={TOKEN}"]),
                       (run_script.main, ["--task", "cola", "--hub-tok", TOKEN])):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "is not accepted" in error_line(captured) and "hf auth login" in captured.err
        assert_no_token(captured.out, captured.err)


def test_run_checks_hub_options_before_training(toy_task, tiny_model, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    card, data = toy_task
    out = tmp_path / "out"
    base = ["--task", str(card), "--model", str(tiny_model), "--data-dir", str(data), "--output-dir", str(out)]
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token_file"))
    cases = [
        (["--push-to-hub"], "--hub-model-id is required"),
        (["--push-to-hub", "--hub-model-id", "no-namespace"], "is not a Hub repository id"),
        (["--push-to-hub", "--hub-model-id", REPO], "HF_HUB_OFFLINE is set"),  # conftest's offline switch
        (["--hub-model-id", REPO, "--hub-dry-run", str(out / "card")], "is inside the output directory"),
    ]
    for extra, message in cases:
        assert run_script.main(base + extra) == 2
        assert message in error_line(capsys.readouterr()), extra
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert run_script.main(base + ["--push-to-hub", "--hub-model-id", REPO]) == 2
    assert "no Hugging Face token found" in error_line(capsys.readouterr())
    assert not out.exists()  # every check came before training


def test_offline_switch_spares_the_hub_client_of_a_pushing_run(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    set_offline(True, upload=True)
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "1"
    set_offline(True)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
