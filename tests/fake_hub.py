"""A stand-in for the Hugging Face Hub API on 127.0.0.1, for tests that must never reach the real Hub,
and helpers to read what it received.

It implements just what huggingface_hub's `HfApi.create_repo` and `HfApi.create_commit` call
(read in huggingface_hub 2.4: hf_api.py and _commit_api.py), and records every request:

- POST /api/repos/create                     -> 200 {"url"}, or 409 when the repository exists
- GET  /api/models/{repo}                    -> repository info (create_repo asks it after a 401/403)
- POST /api/validate-yaml                    -> checks the README front matter parses as YAML
- POST /api/models/{repo}/preupload/{rev}    -> every file "regular"
- POST /api/models/{repo}/commit/{rev}       -> stores the files of the ndjson commit
- anything else (e.g. GET /api/agent-harnesses, best-effort telemetry) -> 404

Preupload answers "regular" for every file, a mode the real client supports (the real Hub picks
it per repository from .gitattributes): the content then travels base64-encoded inside the commit.
An "lfs" answer would send the client down the hf_xet path, which needs a Xet CAS server that a
test stand-in cannot reasonably be.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = (
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("POST", re.compile(rf"^/api/models/{REPO}/preupload/[^/]+$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{REPO}/commit/[^/]+$"), "commit"),
    ("GET", re.compile(rf"^/api/models/{REPO}(/revision/.*)?$"), "repo_info"),
)
FAILURES = {401: "Invalid credentials in Authorization header",
            403: "You don't have the rights to create a model under this namespace"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)


class FakeHub:
    """Start with `start()`; `fail_with = 401 | 403` makes every API call fail that way."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.repos: dict[str, Repo] = {}
        self.fail_with: int | None = None
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hub.handle(self)

            do_POST = do_GET

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def handle(self, http: BaseHTTPRequestHandler) -> None:
        body = _read_body(http)
        path = http.path.split("?")[0]
        with self.lock:
            self.requests.append(Request(http.command, path, {k.lower(): v for k, v in http.headers.items()}, body))
            status, payload, headers = self.route(http.command, path, body, http.headers.get("authorization"))
        data = json.dumps(payload).encode()
        http.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(data)

    def route(self, method: str, path: str, body: bytes, auth: str | None) -> tuple[int, dict, dict]:
        for verb, pattern, name in ROUTES:
            match = pattern.match(path)
            if verb == method and match:
                if self.fail_with or not auth:
                    status = self.fail_with or 401
                    return status, {"error": FAILURES[status]}, {"X-Error-Message": FAILURES[status]}
                return getattr(self, name)(match.groupdict().get("repo"), body)
        return 404, {"error": "not found"}, {}

    def create_repo(self, _: None, body: bytes) -> tuple[int, dict, dict]:
        spec = json.loads(body)
        repo_id = f"{spec['organization']}/{spec['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}, {}
        self.repos[repo_id] = Repo(private=spec.get("visibility") == "private")
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}, {}

    def repo_info(self, repo_id: str, _: bytes) -> tuple[int, dict, dict]:
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        return 200, {"id": repo_id, "private": self.repos[repo_id].private, "sha": "0" * 40}, {}

    def validate_yaml(self, _: None, body: bytes) -> tuple[int, dict, dict]:
        content = json.loads(body)["content"]
        try:
            yaml.safe_load(content.split("---\n")[1])
        except (IndexError, yaml.YAMLError) as err:
            return 400, {"errors": [{"message": str(err)}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def preupload(self, repo_id: str, body: bytes) -> tuple[int, dict, dict]:
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(body)["files"]]
        return 200, {"files": files}, {}

    def commit(self, repo_id: str, body: bytes) -> tuple[int, dict, dict]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        summary = next(item["value"]["summary"] for item in lines if item["key"] == "header")
        for item in lines:
            if item["key"] == "file":
                repo.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":  # we never answered "lfs", so nothing else may come
                return 400, {"error": f"unexpected commit operation {item['key']}"}, {}
        repo.commits.append(summary)
        oid = hashlib.sha1(f"{repo_id}{len(repo.commits)}".encode()).hexdigest()
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid}, {}


def _read_body(http: BaseHTTPRequestHandler) -> bytes:
    if http.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(http.rfile.readline().split(b";")[0], 16)
            if size == 0:
                http.rfile.readline()
                return b"".join(chunks)
            chunks.append(http.rfile.read(size))
            http.rfile.readline()
    return http.rfile.read(int(http.headers.get("content-length") or 0))


def snapshot(folder):
    """Every file's bytes (and every folder) under `folder`: a push must leave it exactly as it was."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def split_card(text):
    """(front matter as data, body) of a README.md."""
    assert text.startswith("---\n")
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


def model_index_metrics(meta):
    results = meta["model-index"][0]["results"]
    return {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]} for r in results}
