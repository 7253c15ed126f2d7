"""A TEST server, not for production: a stand-in for huggingface.co that speaks the part of the Hub's
HTTP API that `huggingface_hub` and `datasets` use to create a dataset repo, push to it and load it back.

No installable server accepts Hub uploads, so `curate push` is tested against this process on
127.0.0.1. Repos live on disk under `--root` as commits (a JSON file per repo) plus blobs (regular
files by git blob sha1, LFS files by sha256). It implements: `whoami-v2`, repo creation (409 with
`{error, url}` when the repo exists), repo info at a revision, `validate-yaml`, `preupload` (parquet,
images and binary or large files are LFS), the LFS batch API with the basic transfer (upload with
PUT, then verify), NDJSON commits (`header`, `file`, `lfsFile`, `deletedFile`, `deletedFolder`,
`parentCommit` checked -> 412, `create_pr=1` -> `refs/pr/N`), tree listing, `paths-info`,
`resolve` (HEAD/GET with `X-Repo-Commit`, `ETag`, `X-Linked-Etag`/`X-Linked-Size`, `Range` -> 206),
refs and branch creation. Private repos answer 401 to anonymous clients and 404 to other users.
Xet storage is not offered: clients must upload with `HF_HUB_DISABLE_XET=1`.

For tests it has control endpoints (no auth, never forwarded to a real client):
`POST /_test/faults {"count": N, "statuses": [500, 429], "match": REGEX, "skip": K}` fails the next N
requests whose path matches REGEX (after letting K of them through), and
`GET /_test/requests` returns every request seen as `{method, path, status}`.

    python tests/hub_test_server.py --root DIR --user alice:TOKEN [--user bob:TOKEN2] [--port 0]
    # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import base64
import datetime
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: Paths stored with LFS, as in the Hub's default `.gitattributes`.
LFS_PATTERNS = ("*.parquet", "*.arrow", "*.png", "*.jpg", "*.jpeg", "*.bin", "*.safetensors", "*.zip", "*.gz")
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()
LFS_SIZE_LIMIT = 10 * 1024 * 1024
REPO_TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}


class HubError(Exception):
    """An error answer: status, message and the Hub's `X-Error-Code`."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Store:
    """Repos on disk. One lock serialises every change; reads take it too (repos are small)."""

    def __init__(self, root: Path, users: dict[str, str], orgs: dict[str, set[str]]) -> None:
        self.root = root
        self.users = users  # token -> user name
        self.orgs = orgs  # org -> member names
        self.lock = threading.RLock()
        self.secret = secrets.token_bytes(16)

    # -- repos --------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def load(self, repo_type: str, repo_id: str) -> dict[str, Any] | None:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, repo_type: str, repo_id: str, repo: dict[str, Any]) -> None:
        folder = self.repo_dir(repo_type, repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / "repo.json.tmp"
        temporary.write_text(json.dumps(repo))
        os.replace(temporary, folder / "repo.json")

    def can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (user == namespace or user in self.orgs.get(namespace, set()))

    def readable(self, repo_type: str, repo_id: str, user: str | None, anonymous: bool) -> dict[str, Any]:
        """The repo, or the error the Hub gives: 401 to anonymous clients, 404 to others."""
        repo = self.load(repo_type, repo_id)
        if repo is None or (repo["private"] and not self.can_write(user, repo_id.split("/")[0])):
            if anonymous:
                raise HubError(401, "Invalid username or password.", "RepoNotFound")
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def writable(self, repo_type: str, repo_id: str, user: str | None, anonymous: bool) -> dict[str, Any]:
        repo = self.readable(repo_type, repo_id, user, anonymous)
        if not self.can_write(user, repo_id.split("/")[0]):
            if anonymous:
                raise HubError(401, "You must be authenticated to write to this repository.")
            raise HubError(403, f"You don't have the rights to write to {repo_id}.")
        return repo

    def create(self, repo_type: str, repo_id: str, private: bool) -> dict[str, Any]:
        sha = self.new_commit_sha(repo_id, "initial commit", None)
        files = {".gitattributes": self.put_regular(repo_type, repo_id, GITATTRIBUTES)}
        commit = {"parent": None, "summary": "initial commit", "date": now(), "files": files}
        repo = {"private": private, "refs": {"main": sha}, "commits": {sha: commit}, "next_pr": 1}
        self.save(repo_type, repo_id, repo)
        return repo

    def new_commit_sha(self, repo_id: str, summary: str, parent: str | None) -> str:
        return hashlib.sha1(f"{repo_id}\0{summary}\0{parent}\0{secrets.token_hex(8)}".encode()).hexdigest()

    # -- revisions and files ------------------------------------------------------------------
    def resolve(self, repo: dict[str, Any], revision: str) -> str:
        if revision in repo["refs"]:
            return repo["refs"][revision]
        if f"refs/heads/{revision}" in repo["refs"]:
            return repo["refs"][f"refs/heads/{revision}"]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and revision in repo["commits"]:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def put_regular(self, repo_type: str, repo_id: str, content: bytes) -> dict[str, Any]:
        oid = git_blob_sha1(content)
        path = self.repo_dir(repo_type, repo_id) / "blobs" / oid
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return {"oid": oid, "size": len(content), "lfs": None}

    def lfs_path(self, repo_type: str, repo_id: str, sha256: str) -> Path:
        return self.repo_dir(repo_type, repo_id) / "lfs" / sha256

    def content_path(self, repo_type: str, repo_id: str, entry: dict[str, Any]) -> Path:
        if entry["lfs"]:
            return self.lfs_path(repo_type, repo_id, entry["lfs"]["oid"])
        return self.repo_dir(repo_type, repo_id) / "blobs" / entry["oid"]

    def sign(self, repo_type: str, repo_id: str, oid: str) -> str:
        return hmac.new(self.secret, f"{repo_type}/{repo_id}/{oid}".encode(), "sha256").hexdigest()


def tree_entry(path: str, entry: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
    if entry["lfs"]:
        item["lfs"] = entry["lfs"]
    return item


def directory_entry(path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}


def list_tree(files: dict[str, dict[str, Any]], base: str, recursive: bool) -> list[dict[str, Any]] | None:
    """Entries under folder `base` ('' = root); None when `base` is not a folder."""
    prefix = f"{base}/" if base else ""
    items: dict[str, dict[str, Any]] = {}
    for path, entry in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if recursive or depth == 1:
                items.setdefault(folder, directory_entry(folder))
        if recursive or len(parts) == 1:
            items[path] = tree_entry(path, entry)
    if base and not items:
        return None
    return list(items.values())


def upload_mode(path: str, size: int, sample: bytes) -> str:
    name = path.rsplit("/", 1)[-1]
    if any(fnmatch.fnmatch(name, pattern) for pattern in LFS_PATTERNS) or size > LFS_SIZE_LIMIT or b"\0" in sample:
        return "lfs"
    return "regular"


class Faults:
    """Fail the next `count` requests whose path matches `match`, after letting `skip` of them through,
    cycling through `statuses`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.set({})

    def set(self, spec: dict[str, Any]) -> None:
        with self.lock:
            self.count = int(spec.get("count", 0))
            self.statuses = [int(status) for status in spec.get("statuses") or [500]]
            self.match = re.compile(spec.get("match") or "")
            self.skip = int(spec.get("skip", 0))
            self.served = 0

    def next_status(self, path: str) -> int | None:
        with self.lock:
            if self.count <= 0 or not self.match.search(path):
                return None
            if self.skip > 0:
                self.skip -= 1
                return None
            self.count -= 1
            status = self.statuses[self.served % len(self.statuses)]
            self.served += 1
            return status


def make_handler(store: Store, faults: Faults, log: list[dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:  # quiet; see GET /_test/requests
            pass

        # -- plumbing -------------------------------------------------------------------------
        @property
        def base_url(self) -> str:
            return f"http://{self.headers.get('Host') or '127.0.0.1'}"

        def body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def user(self) -> tuple[str | None, bool]:
            """(user, anonymous); an unknown token is refused like the Hub does."""
            header = self.headers.get("Authorization") or ""
            if not header.startswith("Bearer "):
                return None, True
            user = store.users.get(header[len("Bearer ") :].strip())
            if user is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return user, False

        def send(self, status: int, payload: Any = None, *, headers: dict[str, str] | None = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            log.append({"method": self.command, "path": self.path, "status": status})

        def handle_any(self) -> None:
            body = b"" if self.command in ("GET", "HEAD") else self.body()
            path = urlsplit(self.path).path
            try:
                if path.startswith("/_test/"):
                    return self.control(path, body)
                if path == "/api/agent-harnesses":  # the client's best-effort telemetry registry: empty
                    return self.send(200, {"standardEnvVars": [], "harnesses": {}})
                status = faults.next_status(path)
                if status is not None:
                    headers = {"Retry-After": "0"} if status == 429 else {}
                    return self.send(status, {"error": f"injected fault {status}"}, headers=headers)
                self.route(path, body)
            except HubError as error:
                headers = {"X-Error-Message": error.message}
                if error.code:
                    headers["X-Error-Code"] = error.code
                self.send(error.status, {"error": error.message}, headers=headers)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any

        def control(self, path: str, body: bytes) -> None:
            if path == "/_test/faults" and self.command == "POST":
                faults.set(json.loads(body or b"{}"))
                return self.send(200, {"ok": True})
            if path == "/_test/requests":
                return self.send(200, list(log))
            raise HubError(404, "unknown control endpoint")

        # -- routes ---------------------------------------------------------------------------
        def route(self, path: str, body: bytes) -> None:
            query = parse_qs(urlsplit(self.path).query)
            method = self.command
            if path == "/api/whoami-v2" and method == "GET":
                return self.whoami()
            if path == "/api/repos/create" and method == "POST":
                return self.create_repo(json.loads(body))
            if path == "/api/validate-yaml" and method == "POST":
                return self.send(200, {"errors": [], "warnings": []})
            match = re.fullmatch(r"/api/(datasets|models|spaces)/([^/]+/[^/]+)(?:/(.*))?", path)
            if match:
                return self.api(REPO_TYPES[match[1]], match[2], match[3] or "", query, body)
            match = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
            if match and method == "POST":
                return self.lfs_batch(_repo_type(match[1]), match[2], json.loads(body))
            match = re.fullmatch(r"/_lfs/(dataset|model|space)/([^/]+/[^/]+)/([0-9a-f]{64})(/verify)?", path)
            if match:
                return self.lfs_object(match[1], match[2], match[3], bool(match[4]), query, body)
            match = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if match and method in ("GET", "HEAD"):
                return self.resolve_file(_repo_type(match[1]), match[2], unquote(match[3]), unquote(match[4]))
            raise HubError(404, f"no route for {method} {path}")

        def whoami(self) -> None:
            user, anonymous = self.user()
            if anonymous:
                raise HubError(401, "Invalid credentials in Authorization header")
            orgs = [{"name": org, "type": "org"} for org, members in store.orgs.items() if user in members]
            auth = {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}
            self.send(200, {"type": "user", "name": user, "fullname": user, "orgs": orgs, "auth": auth})

        def create_repo(self, payload: dict[str, Any]) -> None:
            user, anonymous = self.user()
            if anonymous:
                raise HubError(401, "You must be authenticated to create a repository.")
            namespace = payload.get("organization") or user
            repo_id = f"{namespace}/{payload['name']}"
            repo_type = payload.get("type") or "model"
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            url = f"{self.base_url}/{prefix}{repo_id}"
            if not store.can_write(user, namespace):
                raise HubError(
                    403, f"You don't have the rights to create a {repo_type} under the namespace {namespace!r}."
                )
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            with store.lock:
                if store.load(repo_type, repo_id) is not None:
                    return self.send(409, {"error": "You already created this repo", "url": url})
                store.create(repo_type, repo_id, private)
            self.send(200, {"url": url, "name": repo_id, "id": repo_id})

        def api(self, repo_type: str, repo_id: str, rest: str, query: dict[str, list[str]], body: bytes) -> None:
            user, anonymous = self.user()
            method = self.command
            with store.lock:
                if rest == "" or rest.startswith("revision/"):
                    repo = store.readable(repo_type, repo_id, user, anonymous)
                    revision = unquote(rest[len("revision/") :]) if rest else "main"
                    return self.repo_info(repo_type, repo_id, repo, revision)
                if rest == "refs":
                    repo = store.readable(repo_type, repo_id, user, anonymous)
                    return self.refs(repo, "include_prs" in query)
                match = re.fullmatch(r"tree/([^/]+)(?:/(.*))?", rest)
                if match and method == "GET":
                    repo = store.readable(repo_type, repo_id, user, anonymous)
                    files = repo["commits"][store.resolve(repo, unquote(match[1]))]["files"]
                    base = unquote(match[2] or "").strip("/")
                    if base in files:
                        raise HubError(404, f"{base} is a file, not a folder", "EntryNotFound")
                    listing = list_tree(files, base, query.get("recursive", ["false"])[0].lower() in ("1", "true"))
                    if listing is None:
                        raise HubError(404, f"{base} does not exist", "EntryNotFound")
                    return self.send(200, listing)
                match = re.fullmatch(r"paths-info/([^/]+)", rest)
                if match and method == "POST":
                    repo = store.readable(repo_type, repo_id, user, anonymous)
                    return self.paths_info(repo, unquote(match[1]), body)
                match = re.fullmatch(r"preupload/([^/]+)", rest)
                if match and method == "POST":
                    repo = store.writable(repo_type, repo_id, user, anonymous)
                    return self.preupload(repo, unquote(match[1]), json.loads(body))
                match = re.fullmatch(r"commit/([^/]+)", rest)
                if match and method == "POST":
                    repo = store.writable(repo_type, repo_id, user, anonymous)
                    create_pr = query.get("create_pr", ["0"])[0] in ("1", "true")
                    return self.commit(repo_type, repo_id, repo, unquote(match[1]), body, create_pr)
                match = re.fullmatch(r"branch/([^/]+)", rest)
                if match and method == "POST":
                    repo = store.writable(repo_type, repo_id, user, anonymous)
                    return self.create_branch(repo_type, repo_id, repo, unquote(match[1]), body)
            raise HubError(404, f"no route for {method} /api/{repo_type}s/{repo_id}/{rest}")

        def repo_info(self, repo_type: str, repo_id: str, repo: dict[str, Any], revision: str) -> None:
            sha = store.resolve(repo, revision)
            commit = repo["commits"][sha]
            siblings = []
            for path, entry in sorted(commit["files"].items()):
                sibling: dict[str, Any] = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
                if entry["lfs"]:
                    lfs = entry["lfs"]
                    sibling["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
                siblings.append(sibling)
            self.send(
                200,
                {
                    "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                    "id": repo_id,
                    "author": repo_id.split("/")[0],
                    "sha": sha,
                    "private": repo["private"],
                    "gated": False,
                    "disabled": False,
                    "lastModified": commit["date"],
                    "createdAt": repo["commits"][_first_commit(repo)]["date"],
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "siblings": siblings,
                },
            )

        def refs(self, repo: dict[str, Any], include_prs: bool) -> None:
            def ref(name: str, sha: str) -> dict[str, str]:
                return {
                    "name": name,
                    "ref": name if name.startswith("refs/") else f"refs/heads/{name}",
                    "targetCommit": sha,
                }

            branches = [ref(name, sha) for name, sha in repo["refs"].items() if not name.startswith("refs/pr/")]
            pulls = [ref(name, sha) for name, sha in repo["refs"].items() if name.startswith("refs/pr/")]
            payload: dict[str, Any] = {"branches": branches, "tags": [], "converts": []}
            if include_prs:
                payload["pullRequests"] = pulls
            self.send(200, payload)

        def paths_info(self, repo: dict[str, Any], revision: str, body: bytes) -> None:
            files = repo["commits"][store.resolve(repo, revision)]["files"]
            content_type = self.headers.get("Content-Type") or ""
            form = json.loads(body) if "json" in content_type else parse_qs(body.decode())
            paths = form.get("paths") or []
            result = []
            for path in [paths] if isinstance(paths, str) else paths:
                path = path.strip("/")
                if path in files:
                    result.append(tree_entry(path, files[path]))
                elif any(name.startswith(f"{path}/") for name in files):
                    result.append(directory_entry(path))
            self.send(200, result)

        def preupload(self, repo: dict[str, Any], revision: str, payload: dict[str, Any]) -> None:
            files = repo["commits"][store.resolve(repo, revision)]["files"]
            answer = []
            for item in payload.get("files", []):
                path = item["path"]
                mode = upload_mode(path, int(item["size"]), base64.b64decode(item.get("sample") or ""))
                existing = files.get(path)
                oid = None
                if existing is not None:
                    oid = existing["lfs"]["oid"] if existing["lfs"] else existing["oid"]
                answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            self.send(200, {"files": answer, "commitOid": store.resolve(repo, revision)})

        def lfs_batch(self, repo_type: str, repo_id: str, payload: dict[str, Any]) -> None:
            user, anonymous = self.user()
            with store.lock:
                store.writable(repo_type, repo_id, user, anonymous)
            if payload.get("operation") != "upload":
                raise HubError(400, "only the upload operation is supported by this test server")
            if "basic" not in payload.get("transfers", ["basic"]):
                raise HubError(400, "this test server offers only the basic LFS transfer")
            objects = []
            for item in payload.get("objects", []):
                oid, size = item["oid"], int(item["size"])
                answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                stored = store.lfs_path(repo_type, repo_id, oid)
                if not (stored.exists() and stored.stat().st_size == size):
                    signature = store.sign(repo_type, repo_id, oid)
                    href = f"{self.base_url}/_lfs/{repo_type}/{repo_id}/{oid}"
                    answer["actions"] = {
                        "upload": {"href": f"{href}?sig={signature}&size={size}", "expires_in": 3600},
                        "verify": {"href": f"{href}/verify", "expires_in": 3600},
                    }
                objects.append(answer)
            self.send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

        def lfs_object(
            self, repo_type: str, repo_id: str, oid: str, verify: bool, query: dict[str, list[str]], body: bytes
        ) -> None:
            stored = store.lfs_path(repo_type, repo_id, oid)
            if verify:  # like the Hub: the verify call carries the user's token
                user, anonymous = self.user()
                with store.lock:
                    store.writable(repo_type, repo_id, user, anonymous)
                expected = json.loads(body).get("size")
                if not stored.exists() or stored.stat().st_size != expected:
                    raise HubError(404, f"LFS object {oid} was not uploaded")
                return self.send(200, {"oid": oid, "size": expected})
            # upload: a pre-signed URL, like the Hub's storage links (no Authorization header is sent)
            if self.command != "PUT" or not hmac.compare_digest(
                query.get("sig", [""])[0], store.sign(repo_type, repo_id, oid)
            ):
                raise HubError(403, "bad or missing upload signature")
            if hashlib.sha256(body).hexdigest() != oid or len(body) != int(query.get("size", ["-1"])[0]):
                raise HubError(400, "uploaded content does not match its oid or size")
            stored.parent.mkdir(parents=True, exist_ok=True)
            temporary = stored.with_name(f"{oid}.{secrets.token_hex(4)}.tmp")
            temporary.write_bytes(body)
            os.replace(temporary, stored)
            self.send(200, None)

        def commit(
            self, repo_type: str, repo_id: str, repo: dict[str, Any], revision: str, body: bytes, create_pr: bool
        ) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "the first line of a commit must be its header")
            header = lines[0]["value"]
            head = store.resolve(repo, revision)
            if not create_pr and revision not in repo["refs"]:
                raise HubError(400, f"cannot commit to {revision}: not a branch or pull request")
            parent = header.get("parentCommit")
            if parent is not None and parent != head:
                raise HubError(
                    412, f"A commit has happened since. Please refresh and try again (parent {parent} is not {head})."
                )
            files = dict(repo["commits"][head]["files"])
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "").strip("/")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, "file content must be base64")
                    files[path] = store.put_regular(repo_type, repo_id, base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    sha256, size = value["oid"], int(value["size"])
                    stored = store.lfs_path(repo_type, repo_id, sha256)
                    if not stored.exists() or stored.stat().st_size != size:
                        raise HubError(
                            422, f"Your push was rejected: LFS object {sha256} for {path} was never uploaded"
                        )
                    pointer = lfs_pointer(sha256, size)
                    lfs = {"oid": sha256, "size": size, "pointerSize": len(pointer)}
                    files[path] = {"oid": git_blob_sha1(pointer), "size": size, "lfs": lfs}
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    doomed = [name for name in files if name.startswith(f"{path}/")]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for name in doomed:
                        del files[name]
                else:
                    raise HubError(400, f"unsupported commit operation {key!r}")
            sha = store.new_commit_sha(repo_id, header.get("summary", ""), head)
            repo["commits"][sha] = {"parent": head, "summary": header.get("summary", ""), "date": now(), "files": files}
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            pull_request_url = None
            if create_pr:
                number = repo["next_pr"]
                repo["next_pr"] += 1
                repo["refs"][f"refs/pr/{number}"] = sha
                pull_request_url = f"{self.base_url}/{prefix}{repo_id}/discussions/{number}"
            else:
                repo["refs"][revision] = sha
            store.save(repo_type, repo_id, repo)
            self.send(
                200,
                {
                    "success": True,
                    "commitOid": sha,
                    "commitUrl": f"{self.base_url}/{prefix}{repo_id}/commit/{sha}",
                    "pullRequestUrl": pull_request_url,
                },
            )

        def create_branch(self, repo_type: str, repo_id: str, repo: dict[str, Any], branch: str, body: bytes) -> None:
            if branch in repo["refs"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
            repo["refs"][branch] = store.resolve(repo, start)
            store.save(repo_type, repo_id, repo)
            self.send(200, {"success": True})

        def resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
            user, anonymous = self.user()
            with store.lock:
                repo = store.readable(repo_type, repo_id, user, anonymous)
                sha = store.resolve(repo, revision)
                entry = repo["commits"][sha]["files"].get(path)
                if entry is None:
                    raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
                content = store.content_path(repo_type, repo_id, entry).read_bytes()
            headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes"}
            if entry["lfs"]:
                headers["X-Linked-Etag"] = f'"{entry["lfs"]["oid"]}"'
                headers["X-Linked-Size"] = str(entry["size"])
            status = 200
            requested = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
            if requested and (requested[1] or requested[2]):
                if requested[1]:
                    start = int(requested[1])
                    end = min(int(requested[2]), len(content) - 1) if requested[2] else len(content) - 1
                else:  # suffix range: the last N bytes
                    start, end = max(len(content) - int(requested[2]), 0), len(content) - 1
                if start >= len(content):
                    raise HubError(416, "Requested range not satisfiable")
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                content, status = content[start : end + 1], 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(content)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)
            log.append({"method": self.command, "path": self.path, "status": status})

    return Handler


def _repo_type(prefix: str | None) -> str:
    return {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")


def _first_commit(repo: dict[str, Any]) -> str:
    return next(sha for sha, commit in repo["commits"].items() if commit["parent"] is None)


def serve(root: Path, users: dict[str, str], orgs: dict[str, set[str]], port: int = 0) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1 (not started: call `serve_forever`)."""
    handler = make_handler(Store(root, users, orgs), Faults(), [])
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="Folder that holds the repos.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", action="append", default=[], help="NAME:TOKEN; repeatable.")
    parser.add_argument("--org", action="append", default=[], help="ORG:MEMBER[,MEMBER]; repeatable.")
    args = parser.parse_args()
    users = {token: name for name, token in (item.split(":", 1) for item in args.user)}
    orgs = {org: set(members.split(",")) for org, members in (item.split(":", 1) for item in args.org)}
    server = serve(Path(args.root), users, orgs, args.port)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
