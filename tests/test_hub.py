"""`curate push` / `push_curated` against tests/hub_test_server.py, a stand-in for huggingface.co on 127.0.0.1.

Everything that talks to the server runs in a subprocess (`huggingface_hub` and `datasets` read
HF_ENDPOINT and HF_TOKEN when imported): our CLI, `push_curated`, and the real clients
(`HfApi`, `hf_hub_download`, `load_dataset`) used to look at the result. Nothing is mocked. The
server offers no Xet storage, so these processes run with HF_HUB_DISABLE_XET=1.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import pytest
import typer
import yaml
from datasets import Dataset, DatasetDict, Image, concatenate_datasets, load_from_disk
from typer.testing import CliRunner

from difficulty_curation import push_curated
from difficulty_curation.cli import app
from difficulty_curation.demo import digits_dataset
from difficulty_curation.runners.run_folder import score_to_dir
from difficulty_curation.scoring import score_difficulty
from difficulty_curation.transforms import stratify

SERVER = Path(__file__).with_name("hub_test_server.py")
ALICE = "hf_alice_TESTtoken_do_not_print_4f9c2e"
BOB = "hf_bob_TESTtoken_do_not_print_81d07a"
TIMEOUT = 300  # push_to_hub retries 409/412 without end: every push runs under a timeout
OUTPUTS: list[str] = []  # everything our processes printed, checked for the token at the end


# -- fixtures -------------------------------------------------------------------------------------
def hashed_coin(completion: str, reference: str) -> float:
    """A verifier that judges by a hash of the answer: with the untrained tiny model, buckets come out mixed."""
    return float(hashlib.sha256(completion.encode()).digest()[0] % 2)


@pytest.fixture(scope="module")
def scored_dir(tiny_vlm, digits, tmp_path_factory) -> Path:
    """A scored run folder with train (23 digits + 1 corrupt image) and test (6 digits) splits."""
    train = digits.select(range(23))
    corrupt = Dataset.from_list(
        [{"image": {"bytes": b"not an image", "path": None}, "problem": train[0]["problem"], "solution": "7"}],
        features=train.features.copy(),
    )
    data = DatasetDict(train=concatenate_datasets([train, corrupt]), test=digits_dataset(split="test", num_rows=6))
    out = tmp_path_factory.mktemp("push") / "scored"
    scorer = score_difficulty(str(tiny_vlm), num_rollouts=2, max_new_tokens=3, temperature=1.0, verifier=hashed_coin)
    score_to_dir(data, scorer, out, batch_size=8, progress=False, source="digits")
    return out


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The test server as a subprocess; yields its URL."""
    root = tmp_path_factory.mktemp("hub-root")
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--root", str(root), "--user", f"alice:{ALICE}", "--user", f"bob:{BOB}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("listening on "), line
    yield line.split()[-1]
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf-home")


def environment(url: str, hf_home: Path, token: str | None = ALICE) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=url,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def curate(url: str, hf_home: Path, *args: str, token: str | None = ALICE) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "difficulty_curation.cli", *args],
        env=environment(url, hf_home, token),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    OUTPUTS.extend([result.stdout, result.stderr])
    return result


def client(url: str, hf_home: Path, code: str, token: str | None = ALICE) -> object:
    """Run `code` with the real clients pointed at the server; it sets `result`, which comes back as JSON."""
    prelude = "import json\nfrom huggingface_hub import HfApi, hf_hub_download\nfrom datasets import load_dataset\n"
    program = prelude + textwrap.dedent(code) + "\nprint(json.dumps(result))\n"
    completed = subprocess.run(
        [sys.executable, "-c", program],
        env=environment(url, hf_home, token),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    OUTPUTS.extend([completed.stdout, completed.stderr])
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main_sha(url: str, hf_home: Path, repo: str) -> str:
    return client(url, hf_home, f"result = HfApi().repo_info({repo!r}, repo_type='dataset').sha")


def repo_files(url: str, hf_home: Path, repo: str, revision: str = "main") -> list[str]:
    code = f"result = sorted(HfApi().list_repo_files({repo!r}, repo_type='dataset', revision={revision!r}))"
    return client(url, hf_home, code)


def push_json(url: str, hf_home: Path, *args: str) -> dict:
    result = curate(url, hf_home, "push", *args, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def pushed(hub, hf_home, scored_dir) -> dict:
    """The first push: a new private repo with every bucket config plus `all`."""
    return push_json(hub, hf_home, str(scored_dir), "alice/digits", "--private", "--license", "cc-by-4.0")


def local_configs(scored_dir: Path) -> dict[str, DatasetDict]:
    scored = load_from_disk(str(scored_dir))
    parts = {split: stratify(part) for split, part in scored.items()}
    configs = {
        name: DatasetDict({split: parts[split][name] for split in scored}) for name in ("easy", "medium", "hard")
    }
    return {**configs, "all": scored}


def rows_with_image_bytes(dataset: Dataset) -> list[dict]:
    rows = dataset.cast_column("image", Image(decode=False)).to_list()
    return [{**row, "image": row["image"]["bytes"]} for row in rows]


# -- pushing ----------------------------------------------------------------------------------------
def test_a_first_push_creates_a_private_repo_with_a_config_per_bucket_and_all(hub, hf_home, pushed, scored_dir):
    local = local_configs(scored_dir)
    expected = {name: {split: len(part) for split, part in parts.items() if len(part)} for name, parts in local.items()}
    assert pushed["configs"] == {name: rows for name, rows in expected.items() if rows}
    assert set(pushed["configs"]) == {"easy", "medium", "hard", "all"}, "the fixture should fill every bucket"
    assert pushed["private"] is True and pushed["failed_rows"] == 1
    assert pushed["repo_url"] == f"{hub}/datasets/alice/digits"
    assert client(hub, hf_home, "result = HfApi().repo_info('alice/digits', repo_type='dataset').private") is True


def test_each_config_loads_back_row_for_row_with_its_image_bytes(hub, hf_home, pushed, scored_dir, tmp_path):
    code = f"""
    for name in {list(pushed["configs"])!r}:
        load_dataset("alice/digits", name).save_to_disk({str(tmp_path)!r} + "/" + name)
    result = True
    """
    client(hub, hf_home, code)
    for name, parts in local_configs(scored_dir).items():
        loaded = load_from_disk(str(tmp_path / name))
        assert list(loaded) == list(pushed["configs"][name]), name  # splits preserved, empty ones left out
        for split in loaded:
            assert isinstance(loaded[split].features["image"], Image), (name, split)
            assert rows_with_image_bytes(loaded[split]) == rows_with_image_bytes(parts[split]), (name, split)


def test_the_card_yaml_holds_every_config_and_the_body_the_provenance(hub, hf_home, pushed, tiny_vlm):
    text = client(
        hub, hf_home, "result = open(hf_hub_download('alice/digits', 'README.md', repo_type='dataset')).read()"
    )
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert [c["config_name"] for c in meta["configs"]] == list(pushed["configs"])
    assert meta["configs"][-1]["data_files"] == [
        {"split": "train", "path": "all/train-*"},
        {"split": "test", "path": "all/test-*"},
    ]
    assert {info["config_name"] for info in meta["dataset_info"]} == set(pushed["configs"])
    assert meta["license"] == "cc-by-4.0" and "difficulty-curation" in meta["tags"]
    for row in (
        f"| model | `{tiny_vlm}` |",
        "| num_rollouts | `2` |",
        "| verifier | `test_hub.hashed_coin` |",
        "| source | `digits` |",
    ):
        assert row in body, row
    assert "| not scored (failed) | 1 |" in body
    assert "<!-- difficulty-curation push " in body and ": complete -->" in body


def test_the_histogram_png_is_in_the_repo_beside_the_card(hub, hf_home, pushed):
    code = "result = open(hf_hub_download('alice/digits', 'difficulty_histogram.png', repo_type='dataset'), 'rb').read(8).hex()"
    assert bytes.fromhex(client(hub, hf_home, code)) == b"\x89PNG\r\n\x1a\n"


def test_push_report_uploads_the_report_beside_the_card_which_links_to_it(hub, hf_home, pushed, scored_dir):
    push_json(hub, hf_home, str(scored_dir), "alice/digits-report", "--report")
    assert {"README.md", "difficulty_histogram.png", "report.html"} <= set(
        repo_files(hub, hf_home, "alice/digits-report")
    )
    download = "result = open(hf_hub_download('alice/digits-report', {!r}, repo_type='dataset')).read()"
    page = client(hub, hf_home, download.format("report.html"))
    assert '<td class="n" data-bucket="total">30</td>' in page and "alice/digits-report" in page
    assert "[report.html](report.html)" in client(hub, hf_home, download.format("README.md"))
    assert "report.html" not in repo_files(hub, hf_home, "alice/digits")  # only when asked for
    plain_card = client(
        hub, hf_home, "result = open(hf_hub_download('alice/digits', 'README.md', repo_type='dataset')).read()"
    )
    assert "report.html" not in plain_card


def test_a_second_push_without_flags_is_refused_and_changes_nothing(hub, hf_home, pushed, scored_dir):
    before = main_sha(hub, hf_home, "alice/digits")
    result = curate(hub, hf_home, "push", str(scored_dir), "alice/digits", "--license", "cc-by-4.0")
    assert result.returncode == 2
    assert "already holds this exact push" in result.stderr
    assert "--overwrite" in result.stderr and "--create-pr" in result.stderr
    assert "Traceback" not in result.stderr
    assert main_sha(hub, hf_home, "alice/digits") == before


def test_create_pr_opens_a_pull_request_and_leaves_main_unchanged(hub, hf_home, pushed, scored_dir):
    before = main_sha(hub, hf_home, "alice/digits")
    info = push_json(hub, hf_home, str(scored_dir), "alice/digits", "--create-pr", "--buckets", "medium")
    assert info["pr_revision"].startswith("refs/pr/") and info["pr_url"].endswith(info["pr_revision"].split("/")[-1])
    code = f"""
    api = HfApi()
    refs = api.list_repo_refs("alice/digits", repo_type="dataset", include_pull_requests=True)
    medium = load_dataset("alice/digits", "medium", revision={info["pr_revision"]!r})
    result = {{
        "main": api.repo_info("alice/digits", repo_type="dataset").sha,
        "pulls": [ref.ref for ref in refs.pull_requests],
        "medium": {{split: len(part) for split, part in medium.items()}},
        "files": api.list_repo_files("alice/digits", repo_type="dataset", revision={info["pr_revision"]!r}),
    }}
    """
    after = client(hub, hf_home, code)
    assert after["main"] == before
    assert info["pr_revision"] in after["pulls"]
    assert after["medium"] == info["configs"]["medium"]
    assert not any(path.startswith(("easy/", "hard/")) for path in after["files"]), "the PR replaces the configs"


def test_an_anonymous_client_and_another_user_cannot_see_the_private_repo(hub, hf_home, pushed):
    code = """
    from huggingface_hub.errors import RepositoryNotFoundError
    try:
        HfApi().repo_info("alice/digits", repo_type="dataset")
        result = "visible"
    except RepositoryNotFoundError as error:
        result = error.response.status_code
    """
    assert client(hub, hf_home, code, token=None) == 401
    assert client(hub, hf_home, code, token=BOB) == 404


def test_the_library_pushes_a_dataset_object_to_a_public_repo(hub, hf_home, scored_dir):
    code = f"""
    from datasets import load_from_disk
    from difficulty_curation import push_curated
    info = push_curated(load_from_disk({str(scored_dir)!r}), "alice/public", buckets=["medium", "hard"], progress=False)
    result = info.to_dict()
    """
    info = client(hub, hf_home, code)
    assert set(info["configs"]) == {"medium", "hard", "all"}
    assert info["private"] is False and info["repo_url"].endswith("/datasets/alice/public")
    assert client(hub, hf_home, "result = HfApi().repo_info('alice/public', repo_type='dataset').private") is False


def test_private_on_an_existing_public_repo_is_an_error(hub, hf_home, scored_dir):
    push_json(hub, hf_home, str(scored_dir), "alice/public-too", "--buckets", "hard")
    before = main_sha(hub, hf_home, "alice/public-too")
    result = curate(hub, hf_home, "push", str(scored_dir), "alice/public-too", "--private", "--overwrite")
    assert result.returncode == 2 and "is public" in result.stderr and "--private" in result.stderr
    assert main_sha(hub, hf_home, "alice/public-too") == before


def test_overwrite_replaces_the_curated_configs(hub, hf_home, scored_dir):
    first = push_json(hub, hf_home, str(scored_dir), "alice/replace-me")
    assert {"easy", "medium"} <= set(first["configs"])
    info = push_json(hub, hf_home, str(scored_dir), "alice/replace-me", "--overwrite", "--buckets", "hard")
    code = """
    result = {
        "files": HfApi().list_repo_files("alice/replace-me", repo_type="dataset"),
        "card": open(hf_hub_download("alice/replace-me", "README.md", repo_type="dataset")).read(),
    }
    """
    after = client(hub, hf_home, code)
    assert sorted({path.split("/")[0] for path in after["files"] if "/" in path}) == ["all", "hard"]
    meta = yaml.safe_load(after["card"].split("---\n", 2)[1])
    assert [c["config_name"] for c in meta["configs"]] == ["hard", "all"] == list(info["configs"])


def test_a_rerun_completes_an_interrupted_push_without_duplicate_shards(hub, hf_home, scored_dir):
    # the card and the first config land, then every commit fails: the push stops half-way
    httpx.post(f"{hub}/_test/faults", json={"count": 1000, "statuses": [503], "match": "/commit/", "skip": 2})
    try:
        broken = curate(hub, hf_home, "push", str(scored_dir), "alice/resume", "--max-retries", "0", "--quiet")
    finally:
        httpx.post(f"{hub}/_test/faults", json={"count": 0})
    assert broken.returncode == 2 and "run the same command again to resume" in broken.stderr
    half = repo_files(hub, hf_home, "alice/resume")
    assert any(path.endswith(".parquet") for path in half) and not any(path.startswith("all/") for path in half)

    info = push_json(hub, hf_home, str(scored_dir), "alice/resume")
    assert info["resumed"] is True and info["skipped_configs"] == [next(iter(info["configs"]))]
    shards = sorted(path for path in repo_files(hub, hf_home, "alice/resume") if path.endswith(".parquet"))
    expected = sorted(
        f"{name}/{split}-00000-of-00001.parquet" for name, splits in info["configs"].items() for split in splits
    )
    assert shards == expected


def test_a_server_that_fails_some_requests_is_retried_to_success(hub, hf_home, scored_dir):
    faults = {"count": 4, "statuses": [500, 429], "match": "/commit/|/preupload/|/api/datasets/alice/flaky$"}
    httpx.post(f"{hub}/_test/faults", json=faults)
    try:
        result = curate(hub, hf_home, "push", str(scored_dir), "alice/flaky", "--buckets", "medium", "--json", "-q")
    finally:
        httpx.post(f"{hub}/_test/faults", json={"count": 0})
    assert result.returncode == 0, result.stderr
    assert "trying again" in result.stderr  # our own backoff, not only the client's
    served = [entry["status"] for entry in httpx.get(f"{hub}/_test/requests").json() if "alice/flaky" in entry["path"]]
    assert served.count(500) == 2 and served.count(429) == 2
    assert set(json.loads(result.stdout)["configs"]) == {"medium", "all"}


def test_a_stopped_server_gives_one_clear_line_and_exit_code_2(hf_home, scored_dir):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in scored_dir.rglob("*") if path.is_file()}
    result = curate(url, hf_home, "push", str(scored_dir), "alice/nowhere", "--max-retries", "1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    assert "could not read the repo for alice/nowhere" in errors[0] and "after 2 tries" in errors[0]
    after = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in scored_dir.rglob("*") if path.is_file()}
    assert after == before


def test_a_hub_dataset_with_configs_is_read_as_id_colon_config(hub, hf_home, pushed):
    whole = curate(hub, hf_home, "stats", "alice/digits")
    errors = [line for line in whole.stderr.splitlines() if line.startswith("Error:")]
    assert whole.returncode == 2 and len(errors) == 1, whole.stderr
    assert "has several configs (" in errors[0] and "pick one as alice/digits:CONFIG" in errors[0]
    medium = curate(hub, hf_home, "stats", "alice/digits:medium", "--json")
    assert medium.returncode == 0, medium.stderr
    assert json.loads(medium.stdout)["num_rows"] == sum(pushed["configs"]["medium"].values())


def test_a_stalled_server_times_out_is_retried_and_ends_in_one_error_line(hf_home, scored_dir):
    held: list[socket.socket] = []
    with socket.socket() as server:  # accepts every connection, reads the request, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        stop = threading.Event()

        def hold() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    held.append(server.accept()[0])

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        try:
            result = curate(
                url, hf_home, "push", str(scored_dir), "alice/stalled", "--timeout", "1", "--max-retries", "1"
            )
        finally:
            stop.set()
            thread.join()
            for connection in held:
                connection.close()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert (
        len(errors) == 1 and "could not read the repo for alice/stalled" in errors[0] and "after 2 tries" in errors[0]
    )
    assert "Timeout" in errors[0] and len(held) >= 2  # it really waited on the server, twice


def test_create_pr_after_an_interrupted_create_pr_finishes_the_same_pull_request(hub, hf_home, scored_dir):
    push_json(hub, hf_home, str(scored_dir), "alice/pr-resume", "--buckets", "hard")
    before = main_sha(hub, hf_home, "alice/pr-resume")
    # the pull request opens with the card, its first config lands, then every commit fails
    httpx.post(f"{hub}/_test/faults", json={"count": 1000, "statuses": [503], "match": "/commit/", "skip": 2})
    try:
        broken = curate(hub, hf_home, "push", str(scored_dir), "alice/pr-resume", "--create-pr", "--max-retries", "0")
    finally:
        httpx.post(f"{hub}/_test/faults", json={"count": 0})
    assert broken.returncode == 2 and "run the same command again to resume" in broken.stderr
    info = push_json(hub, hf_home, str(scored_dir), "alice/pr-resume", "--create-pr")
    assert info["resumed"] is True and info["pr_revision"] == "refs/pr/1"
    assert info["pr_url"].endswith("/datasets/alice/pr-resume/discussions/1")
    code = """
    refs = HfApi().list_repo_refs("alice/pr-resume", repo_type="dataset", include_pull_requests=True)
    result = [ref.ref for ref in refs.pull_requests]
    """
    assert client(hub, hf_home, code) == ["refs/pr/1"]  # no second pull request
    card = client(
        hub,
        hf_home,
        "result = open(hf_hub_download('alice/pr-resume', 'README.md', repo_type='dataset', revision='refs/pr/1')).read()",
    )
    assert ": complete -->" in card
    assert main_sha(hub, hf_home, "alice/pr-resume") == before


def test_no_token_is_a_clear_error_naming_both_ways_to_give_one(hub, tmp_path, scored_dir):
    result = curate(hub, tmp_path / "empty-home", "push", str(scored_dir), "alice/no-token", token=None)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no Hugging Face token" in result.stderr and "HF_TOKEN" in result.stderr and "hf auth login" in result.stderr


def test_a_token_saved_by_hf_auth_login_is_used(hub, tmp_path, scored_dir):
    home = tmp_path / "logged-in"
    login = subprocess.run(
        [str(Path(sys.executable).with_name("hf")), "auth", "login", "--token", ALICE],
        env=environment(hub, home, token=None),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert login.returncode == 0, login.stderr
    info = push_json(hub, home, str(scored_dir), "alice/from-login", "--buckets", "hard")
    assert info["repo_url"].endswith("/datasets/alice/from-login")


def test_the_token_appears_in_no_output_file_or_card(hub, hf_home, scored_dir, tmp_path):
    verbose = curate(hub, hf_home, "--verbose", "push", str(scored_dir), "alice/secret-check", "--buckets", "hard")
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO" in verbose.stderr  # the libraries' own logging is on, and still holds no token
    assert "Pushing to alice/secret-check" in verbose.stderr and "shard" in verbose.stderr  # the progress line
    snapshot = tmp_path / "snapshot"
    code = f"""
    from huggingface_hub import snapshot_download
    result = snapshot_download("alice/secret-check", repo_type="dataset", local_dir={str(snapshot)!r})
    """
    client(hub, hf_home, code)
    assert len(OUTPUTS) >= 4 and not any(ALICE in text for text in OUTPUTS)  # every process of this module
    written = [*snapshot.rglob("*"), *scored_dir.rglob("*"), *(hf_home / "hub").rglob("*")]
    files = [path for path in written if path.is_file()]
    assert any(path.name == "README.md" for path in files) and any(path.suffix == ".parquet" for path in files)
    assert not [path for path in files if ALICE.encode() in path.read_bytes()]


# -- arguments, no server needed ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--buckets", "easy,medum"], "unknown bucket(s) ['medum']"),
        (["--overwrite", "--create-pr"], "not both"),
        (["--max-retries", "-1"], "max_retries must be an integer >= 0"),
    ],
)
def test_bad_push_options_are_one_line_errors(scored_dir, args, message):
    result = CliRunner().invoke(app, ["push", str(scored_dir), "me/x", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_repo_id_without_a_namespace_is_refused(scored_dir):
    result = CliRunner().invoke(app, ["push", str(scored_dir), "just-a-name"])
    assert result.exit_code == 2 and "namespace/name" in result.output


def test_a_dataset_without_provenance_is_refused_before_any_request(tmp_path):
    Dataset.from_dict({"difficulty": [0.5]}).save_to_disk(str(tmp_path / "plain"))
    result = CliRunner().invoke(app, ["push", str(tmp_path / "plain"), "me/x"])
    assert result.exit_code == 2 and "no scoring provenance" in result.output


def test_the_cli_defaults_are_the_library_defaults():
    library = inspect.signature(push_curated).parameters
    command = next(c for c in typer.main.get_command(app).commands.values() if c.name == "push")
    cli = {param.name: param.default for param in command.params}
    assert cli["buckets"] == ",".join(library["buckets"].default)
    for name in ("private", "overwrite", "create_pr", "license", "template", "max_retries", "timeout", "report"):
        assert cli[name] == library[name].default, name


# -- a training mix ---------------------------------------------------------------------------------
def test_a_pushed_training_mix_carries_its_recipe_in_the_card(hub, hf_home, scored_dir, tmp_path):
    mixed = tmp_path / "mix"
    args = ["mix", str(scored_dir), "--split", "train", "--ratio", "easy=0.5,hard=0.5", "--rows", "2"]
    assert CliRunner().invoke(app, [*args, "--seed", "4", "--out", str(mixed)]).exit_code == 0
    push_json(hub, hf_home, str(mixed), "alice/digits-mix")
    text = client(
        hub, hf_home, "result = open(hf_hub_download('alice/digits-mix', 'README.md', repo_type='dataset')).read()"
    )
    assert "## Training mix" in text and "easy=0.5, hard=0.5 of 2 rows (drawn: easy 1, hard 1), seed 4" in text
