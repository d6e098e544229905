"""Publish a finished output directory to the Hugging Face Hub (the only module that talks to it).

A push uploads the model (safetensors weights, config.json with the label names, the tokenizer),
the resolved task card, metrics.json, the learning curve and a generated README.md model card,
in one commit. The output directory is only ever read: a push, failed or not, never changes it.
The token comes from huggingface_hub's own lookup (HF_TOKEN, then `hf auth login`'s token file),
never from an argument, and never appears in a message.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pipelines
from pipelines.errors import HubError
from pipelines.reporting import modelcard, run_lock

log = logging.getLogger(__name__)

README = "README.md"
# Pushed when present: every tokenizer file transformers may save, whatever the tokenizer type.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "chat_template.jinja",
)
REPORT_FILES = ("task_card.yaml", "metrics.json", "learning_curve.png")
TOKEN_PREFIXES = ("hf_", "api_org_")
REPO_ID_FORMAT = "expected USER/NAME (letters, digits, '-', '_' and '.'; no '--' or '..')"


@dataclass(frozen=True)
class Upload:
    """What one push sends: files read from the output directory, plus the generated README.md."""

    repo_id: str
    files: dict[str, Path]  # path in the repository -> file in the output directory
    readme: str
    message: str

    @property
    def names(self) -> list[str]:
        return [README, *self.files]


def refuse_token(repo_id: str | None) -> None:
    """A value of --hub-model-id that starts like a token (`hf_...`, of any length) is one: never echo it."""
    namespace = (repo_id or "").strip().split("/", 1)[0]
    if namespace.startswith(TOKEN_PREFIXES):
        raise HubError(f"--hub-model-id {namespace.split('_', 1)[0]}_***: that is a Hugging Face token, not a "
                       "repository id (USER/NAME); tokens never go on the command line: run `hf auth login` or set "
                       "HF_TOKEN, and revoke this one if it was shared")


def check_repo_id(repo_id: str | None) -> str:
    """`--hub-model-id` must be given and look like USER/NAME; checked before any training."""
    refuse_token(repo_id)
    if not repo_id:
        raise HubError("--hub-model-id is required to publish: the Hub repository as USER/NAME, e.g. alice/cola-minilm")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    namespace, _, name = repo_id.partition("/")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        namespace = ""
    if not namespace or not name:
        raise HubError(f"--hub-model-id '{repo_id}' is not a Hub repository id: {REPO_ID_FORMAT}")
    return repo_id


def check_can_push() -> None:
    """Fail before any work when an upload cannot start: offline switch on, or no token. No network."""
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise HubError("HF_HUB_OFFLINE is set, which blocks uploads: unset it to push "
                       "(or inspect the upload with --hub-dry-run DIR)")
    try:
        token = get_token()
    except Exception as err:  # noqa: BLE001 - e.g. a failing OIDC exchange; its message may be long
        raise HubError(f"cannot read the Hugging Face token ({type(err).__name__}): "
                       "run `hf auth login` or set HF_TOKEN") from None
    if not token:
        raise HubError("no Hugging Face token found: run `hf auth login` or set HF_TOKEN "
                       "(tokens are never taken as arguments)")


def check_dry_run_dir(dest: str | Path, out_dir: str | Path) -> Path:
    """The dry-run folder must not be (inside) the output directory: a push never writes there."""
    dest_path, out = Path(dest).resolve(), Path(out_dir).resolve()
    if dest_path == out or out in dest_path.parents:
        raise HubError(f"--hub-dry-run {dest} is inside the output directory {out_dir}; pick a folder outside it")
    _check_dry_run_contents(Path(dest))
    return Path(dest)


def _check_dry_run_contents(folder: Path) -> None:
    """Before any work: the folder may only hold an earlier dry run (any file a push can send)."""
    if folder.exists() and not folder.is_dir():
        raise HubError(f"--hub-dry-run {folder} exists and is not a folder; pass a new or empty folder")
    if not folder.is_dir():
        return
    sendable = {README, "config.json", "model.safetensors.index.json", *TOKENIZER_FILES, *REPORT_FILES}
    stray = sorted(p.name for p in folder.iterdir() if not p.is_file() or not (
        p.name in sendable or (p.name.startswith("model") and p.name.endswith(".safetensors"))))
    if stray:
        raise HubError(f"--hub-dry-run folder {folder} holds files that are not part of this upload "
                       f"({', '.join(stray[:5])}); pass a new or empty folder")


def prepare(out_dir: str | Path, repo_id: str) -> Upload:
    """Check that `out_dir` is a finished run and build what a push of it to `repo_id` sends."""
    out = Path(out_dir)
    if not out.is_dir():
        raise HubError(f"{out} is not a directory: pass the --output-dir of a finished cardtune run")
    run_lock.refuse_if_busy(out, "publishing it")
    files = upload_files(out)
    run = modelcard.read_run(out)  # refuses a folder mixing two runs (a publish cut short)
    try:
        readme = modelcard.render(run, repo_id)
    except (KeyError, TypeError) as err:  # a hand-edited or foreign metrics.json / task_card.yaml
        raise HubError(f"{out}: metrics.json or task_card.yaml lacks {err}; was it written by cardtune?") from None
    from huggingface_hub import ModelCard

    ModelCard(readme)  # the Hub parses the front matter the same way; a failure here is a bug of ours
    select_by = run.metrics["select_by"]
    score = (run.metrics.get("validation") or {}).get(select_by)
    shown = f", validation {select_by} {score:.4f}" if isinstance(score, float) else ""
    message = f"cardtune: {run.metrics['task']} from {run.metrics.get('base_model') or 'a local model'}{shown}"
    return Upload(repo_id, files, readme, message)


def upload_files(out: Path) -> dict[str, Path]:
    """Path in the repository -> file in `out`, for everything pushed besides README.md."""
    if not (out / "metrics.json").is_file():
        raise HubError(f"{out} has no metrics.json: the run did not finish (cardtune writes it last); "
                       "pass the --output-dir of a finished run")
    from pipelines.modeling import model_folder

    model_folder.check(out, "output directory")  # the tokenizer files above all: without them the model is useless
    weights = sorted(p.name for p in out.glob("model*.safetensors")) + (
        ["model.safetensors.index.json"] if (out / "model.safetensors.index.json").is_file() else []
    )
    tokenizer = [name for name in TOKENIZER_FILES if (out / name).is_file()]
    names = ["config.json", *weights, *tokenizer, *REPORT_FILES]
    missing = [name for name in names if not (out / name).is_file()]
    missing += ["model.safetensors"] * (not weights) + ["tokenizer.json or tokenizer_config.json"] * (not tokenizer)
    if missing:
        raise HubError(f"{out} is incomplete: missing {', '.join(missing)}; "
                       "pass the --output-dir of a finished cardtune run")
    return {name: out / name for name in names}


def write_folder(upload: Upload, dest: str | Path) -> list[Path]:
    """--hub-dry-run: write exactly the files a push would send into `dest`; returns their paths."""
    folder = Path(dest)
    if folder.exists() and not folder.is_dir():
        raise HubError(f"--hub-dry-run {folder} exists and is not a folder")
    # Only an earlier dry run of the same upload may be overwritten: never delete or mix in other files.
    present = list(folder.iterdir()) if folder.exists() else []
    stray = sorted(p.name for p in present if p.name not in upload.names or not p.is_file())
    if stray:
        raise HubError(f"--hub-dry-run folder {folder} holds files that are not part of this upload "
                       f"({', '.join(stray[:5])}); pass a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / README).write_text(upload.readme, encoding="utf-8")
    for name, source in upload.files.items():
        shutil.copyfile(source, folder / name)  # copies: editing the dry run must not change the run's files
    return [folder / name for name in upload.names]


def push(upload: Upload, private: bool = False) -> str:
    """Create the repository if missing and upload everything in one commit; returns the commit URL."""
    check_can_push()
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(library_name="cardtune", library_version=pipelines.__version__)
    operations = [CommitOperationAdd(path_in_repo=README, path_or_fileobj=upload.readme.encode("utf-8"))]
    # Read straight from the output directory (read-only): no second copy of large weights is staged.
    operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                   for name, path in upload.files.items()]
    log.info("pushing %d files to %s at %s", len(operations), upload.repo_id, api.endpoint)
    step = "create the repository"
    try:
        # `private` only applies to a new repository; None keeps the account's default.
        api.create_repo(upload.repo_id, private=private or None, exist_ok=True)
        step = "upload to"
        info = api.create_commit(upload.repo_id, operations, commit_message=upload.message)
    except Exception as err:  # every failure becomes one line (re-raised below), never a traceback
        log.debug("push failed", exc_info=True)
        raise _explain(err, upload.repo_id, api.endpoint, step) from None
    log.info("pushed %s", info.commit_url)
    return info.commit_url


def publish(out_dir: str | Path, repo_id: str | None, private: bool = False,
            dry_run: str | Path | None = None) -> list[str]:
    """Push `out_dir` to `repo_id`, or with `dry_run` write the folder that would be uploaded there.

    What both entry points publish with; returns what they print: the commit URL, or the dry run's files."""
    repo_id = check_repo_id(repo_id)
    if dry_run:
        check_dry_run_dir(dry_run, out_dir)
    upload = prepare(out_dir, repo_id)
    if not dry_run:
        return [push(upload, private)]
    files = write_folder(upload, dry_run)
    log.info("dry run: %d files for %s written to %s; nothing was uploaded", len(files), repo_id, dry_run)
    return [str(path) for path in files]


def _explain(err: Exception, repo_id: str, endpoint: str, step: str) -> HubError:
    """One line saying what went wrong and what to do."""
    import httpx2  # huggingface_hub's HTTP client (a declared dependency of it)
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            return HubError(f"the Hub at {endpoint} rejected the token (401) for {repo_id}: "
                            "run `hf auth login` again or set a valid HF_TOKEN")
        if status in (403, 404):
            return HubError(f"no permission to write to {repo_id} ({status}): the namespace must be your user or an "
                            "organization you can write to, and the token needs write access")
        details = _short(err.server_message or str(err))
        return HubError(f"could not {step} {repo_id}: the Hub answered {status} ({details})")
    if isinstance(err, OfflineModeIsEnabled):
        return HubError("HF_HUB_OFFLINE is set, which blocks uploads: unset it to push")
    if isinstance(err, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return HubError(f"cannot reach the Hub at {endpoint} ({type(err).__name__}): check the network connection "
                        "(and HF_ENDPOINT if set), then retry")
    return HubError(f"could not {step} {repo_id}: {type(err).__name__}: {_short(str(err))}")


def _short(text: str) -> str:
    """The first line of a library message, cut short, with the token masked should it ever appear."""
    from huggingface_hub import get_token

    line = next((s.strip() for s in text.splitlines() if s.strip()), "no details")[:200]
    try:
        token = get_token()
    except Exception:  # noqa: BLE001 - masking must never be the thing that fails
        token = None
    return line.replace(token, "***") if token else line
