"""Publish a scored dataset to the Hugging Face Hub: one config per difficulty bucket plus `all`, and its card.

The data goes up through `datasets`' own `push_to_hub` (parquet shards, images stay `Image`), one
commit per config; the card from `cards.render_card` becomes the repo's README.md with the
histogram PNG beside it. The order of commits makes an interrupted push resumable:

1. the card (without `configs:` yet) and the histogram, marked "in progress" by a push id;
2. one `push_to_hub` per config, each adding its `configs:` entry and `dataset_info` to the card;
3. the full card with every config and the marker "complete".

Running the same push again after an interruption finds its own in-progress marker, skips the
configs whose `dataset_info` already matches, and finishes; shard names are fixed by
`push_to_hub`, so nothing is duplicated. The token comes from `huggingface_hub` (`HF_TOKEN`, then
`hf auth login`) and is only ever sent in request headers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from difficulty_curation.buckets import PAPER_BUCKETS, paper_buckets
from difficulty_curation.errors import ConfigError, CurationError, HubUnavailableError, PushError, require
from difficulty_curation.redact import get_logger, redact, register_secret
from difficulty_curation.splits import datasets_switched_off

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = get_logger(__name__)

ALL_CONFIG = "all"
#: The report `push_curated(report=True)` uploads beside the card.
REPORT_FILE = "report.html"
DEFAULT_MAX_RETRIES = 5
#: Seconds a request may wait to connect, or between two reads or writes, before it is retried.
DEFAULT_TIMEOUT = 60.0
#: Status codes worth another try: timeouts, rate limits and server errors.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MARKER = re.compile(r"<!-- difficulty-curation push (?P<push_id>[0-9a-f]{16}): (?P<state>in progress|complete) -->")
_T = TypeVar("_T")


@dataclass
class PushInfo:
    """What `push_curated` published."""

    repo_id: str
    repo_url: str
    #: The last commit: on main, or on the pull request with `create_pr=True`.
    commit: str
    #: config name -> split -> rows.
    configs: dict[str, dict[str, int]]
    #: Rows without a difficulty: left out of the bucket configs, kept in `all`.
    failed_rows: int
    private: bool
    pr_url: str | None = None
    pr_revision: str | None = None
    #: Requested buckets without rows: not published as configs.
    empty_buckets: list[str] = field(default_factory=list)
    resumed: bool = False
    #: Configs an interrupted earlier run had already pushed.
    skipped_configs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def push_curated(
    dataset_or_path: Dataset | DatasetDict | str | Path,
    repo_id: str,
    *,
    buckets: Sequence[str] = PAPER_BUCKETS,
    private: bool = False,
    overwrite: bool = False,
    create_pr: bool = False,
    license: str | None = None,
    template: str | Path | None = None,
    token: str | None = None,
    max_shard_size: int | str = "500MB",
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    report: bool = False,
) -> PushInfo:
    """Push a scored dataset to the Hub as one config per bucket plus `all`, with its dataset card.

    Args:
        dataset_or_path: a scored `Dataset`/`DatasetDict`, or anything `curate card` reads (a scored run
            folder, a `save_to_disk` folder). Splits are kept as they are.
        repo_id: `namespace/name` of the dataset repo; created if missing.
        buckets: the paper's buckets to publish (`easy`, `medium`, `hard`), same definitions as `stratify`.
            Rows that failed to score are in no bucket; `all` holds every row.
        private: create the repo private. Pushing with `private=True` to an existing public repo is refused.
        overwrite: replace the configs of an existing repo that already holds files (its other files stay).
        create_pr: open a pull request with the push and leave `main` untouched. An interrupted `create_pr`
            push is resumed on its own pull request by the same call, not opened a second time.
        license: license identifier for the card metadata, e.g. `cc-by-4.0`.
        template: your own Jinja card template (see `cards.render_card`).
        token: a Hub token; by default `huggingface_hub`'s own (`HF_TOKEN`, then `hf auth login`).
        max_shard_size: largest parquet shard, as for `Dataset.push_to_hub`.
        max_retries: tries again this many times, with exponential backoff, after network errors, 429 and 5xx.
        timeout: seconds every request may wait to connect, or between two reads or writes; a request that
            stalls longer fails like a network error (and is tried again).
        progress: show one progress line counting the shards pushed.
        report: also upload `report.html` (`report.write_report`: what each bucket holds) beside the card,
            which links to it.

    Returns:
        `PushInfo` with the repo URL, the last commit, the pull request URL and the rows per config.

    Raises:
        `ConfigError`: bad arguments (unknown bucket, both `overwrite` and `create_pr`, bad repo id).
        `PushError`: no token, the repo already holds files, `private` on a public repo, access refused.
        `HubUnavailableError`: the Hub could not be reached or kept failing after `max_retries` tries.

    Example:
        >>> info = push_curated("scored/", "my-org/digits-dc-sft", private=True)  # doctest: +SKIP
        >>> info.repo_url  # doctest: +SKIP
        'https://huggingface.co/datasets/my-org/digits-dc-sft'
    """
    names = _check_arguments(repo_id, buckets, overwrite, create_pr, max_retries)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}.")
    splits = _as_splits(dataset_or_path)
    from difficulty_curation.provenance import read_provenance

    provenance = read_provenance(splits)
    if provenance is None:
        raise ConfigError(
            "the dataset has no scoring provenance (it was not scored by difficulty-curation, or it lost its "
            "info); score it with `curate score` or `score_to_dir` first."
        )
    from difficulty_curation.transforms import difficulty_array

    for part in splits.values():
        difficulty_array(part)  # NaN, infinite or out-of-range difficulties: refused before any request
    token = token or _stored_token()
    register_secret(token)  # masked in every message and log line from here on
    push = _Push(repo_id, token, max_retries)
    try:
        with _request_timeout(timeout):
            return push.run(
                splits,
                provenance,
                buckets=names,
                private=private,
                overwrite=overwrite,
                create_pr=create_pr,
                card_options={"license": license, "template": template, "report": REPORT_FILE if report else None},
                max_shard_size=max_shard_size,
                progress=progress,
            )
    except CurationError:
        raise
    except Exception as error:
        http = _http_error(error)
        if http is None:
            raise
        raise PushError(redact(_describe_http(http, repo_id))) from None


def _check_arguments(
    repo_id: str, buckets: Sequence[str], overwrite: bool, create_pr: bool, max_retries: int
) -> list[str]:
    if overwrite and create_pr:
        raise ConfigError("pass either --overwrite (overwrite=True) or --create-pr (create_pr=True), not both.")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}.")
    names = [bucket.name for bucket in paper_buckets(buckets)]
    require("matplotlib", "plot", "the card's histogram")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ConfigError(
            f"repo id {repo_id!r} is not valid; pass namespace/name, e.g. my-org/digits-dc-sft."
        ) from None
    if repo_id.count("/") != 1:
        raise ConfigError(f"repo id {repo_id!r} needs a namespace; pass namespace/name, e.g. my-org/digits-dc-sft.")
    return names


def _as_splits(dataset_or_path: Dataset | DatasetDict | str | Path) -> DatasetDict:
    from datasets import Dataset, DatasetDict

    if isinstance(dataset_or_path, (str, Path)):
        from difficulty_curation.sources import load_source

        dataset_or_path = load_source(dataset_or_path)
    if isinstance(dataset_or_path, Dataset):
        return DatasetDict({str(dataset_or_path.split or "train"): dataset_or_path})
    if isinstance(dataset_or_path, DatasetDict):
        return dataset_or_path
    raise ConfigError(f"expected a Dataset, a DatasetDict or a path, got {type(dataset_or_path).__name__}.")


def _stored_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PushError(
            "no Hugging Face token found: set the HF_TOKEN environment variable to a write token, "
            "or run `hf auth login` once."
        )
    return token


@dataclass
class _Plan:
    """What an existing repo allows: its visibility, whether we resume our own push, what to replace."""

    private: bool
    resumed: bool = False
    #: config -> split -> rows already pushed by the interrupted run being resumed.
    recorded: dict[str, dict[str, int]] = field(default_factory=dict)
    folders_to_replace: list[str] = field(default_factory=list)
    #: The pull request of an interrupted `create_pr` push being resumed (`refs/pr/N`).
    pr_revision: str | None = None


class _Push:
    """One push: the repo, the token and the retry policy shared by every step."""

    def __init__(self, repo_id: str, token: str, max_retries: int) -> None:
        from huggingface_hub import HfApi

        self.repo_id = repo_id
        self.token = token
        self.max_retries = max_retries
        self.api = HfApi(token=token, library_name="difficulty-curation")
        self.repo_url = f"{self.api.endpoint}/datasets/{repo_id}"

    def run(
        self,
        splits: DatasetDict,
        provenance: dict[str, Any],
        *,
        buckets: list[str],
        private: bool,
        overwrite: bool,
        create_pr: bool,
        card_options: dict[str, Any],
        max_shard_size: int | str,
        progress: bool,
    ) -> PushInfo:
        from difficulty_curation.transforms import unscored_count

        configs = _configs(splits, buckets)
        rows = {name: {split: len(part) for split, part in parts.items()} for name, parts in configs.items()}
        push_id = _push_id(
            provenance, splits, [*buckets, ALL_CONFIG], card_options.get("license"), card_options.get("report")
        )
        with tempfile.TemporaryDirectory(prefix="curate-push-") as folder, datasets_switched_off("caching"):
            from difficulty_curation.cards import write_card

            readme, histogram = write_card(
                splits,
                Path(folder) / "README.md",
                self.repo_id,
                buckets=buckets,
                configs={name: list(parts) for name, parts in configs.items()},
                **card_options,
            )
            card_text = readme.read_text(encoding="utf-8")
            extra_files = [histogram]
            if card_options.get("report"):
                from difficulty_curation.report import write_report

                extra_files.append(write_report(splits, Path(folder) / card_options["report"], title=self.repo_id).path)
            plan = self.plan(push_id, private=private, overwrite=overwrite, create_pr=create_pr)
            start = None
            if not plan.resumed:
                start = self.retrying(
                    "upload the card",
                    lambda: self.commit_card(
                        _without_configs(card_text) + _marker(push_id, "in progress"),
                        extra_files,
                        plan.folders_to_replace,
                        create_pr,
                    ),
                )
            revision = start.pr_revision if start is not None and create_pr else plan.pr_revision
            skipped = [name for name in configs if plan.recorded.get(name) == rows[name]]
            self.push_configs(configs, skipped, revision, max_shard_size, progress)
            final = self.retrying(
                "finish the card", lambda: self.commit_final_card(card_text + _marker(push_id, "complete"), revision)
            )
        return PushInfo(
            repo_id=self.repo_id,
            repo_url=self.repo_url,
            commit=final,
            configs=rows,
            failed_rows=sum(unscored_count(part) for part in splits.values()),
            private=plan.private,
            pr_url=start.pr_url if start is not None and create_pr else self.pr_url(plan.pr_revision),
            pr_revision=revision,
            empty_buckets=[name for name in buckets if name not in configs],
            resumed=plan.resumed,
            skipped_configs=skipped,
        )

    def plan(self, push_id: str, *, private: bool, overwrite: bool, create_pr: bool) -> _Plan:
        """Create the repo, or check that pushing to the existing one is safe and what to resume."""
        repo = self.retrying("read the repo", self.repo_state)
        if repo is None:
            self.retrying("create the repo", lambda: self.create(private))
            return _Plan(private=private)
        is_private, files, card = repo
        if private and not is_private:
            raise PushError(
                f"{self.repo_id} exists and is public; --private (private=True) only applies when a repo is "
                "created. Make the repo private in its settings first, or push without --private."
            )
        if create_pr:
            pull = self.retrying("read the pull requests", lambda: self.unfinished_pull_request(push_id))
            if pull is not None:
                revision, pr_card = pull
                return _Plan(private=is_private, resumed=True, recorded=_dataset_info(pr_card), pr_revision=revision)
        marker = _MARKER.search(card or "")
        ours = marker is not None and marker["push_id"] == push_id
        resumed = ours and marker["state"] == "in progress" and not create_pr
        content = sorted(path for path in files if path != ".gitattributes")
        if content and not (resumed or overwrite or create_pr):
            listed = ", ".join(content[:3]) + (", ..." if len(content) > 3 else "")
            raise PushError(
                f"{self.repo_id} already holds {'this exact push' if ours else f'{len(content)} file(s)'} ({listed}); "
                "pass --overwrite (overwrite=True) to replace its curated configs, or --create-pr (create_pr=True) "
                "to open a pull request and leave main untouched."
            )
        folders = {path.split("/")[0] for path in files if "/" in path} & {*PAPER_BUCKETS, ALL_CONFIG}
        return _Plan(
            private=is_private,
            resumed=resumed,
            recorded=_dataset_info(card) if resumed else {},
            folders_to_replace=sorted(folders),
        )

    def push_configs(
        self,
        configs: dict[str, DatasetDict],
        skipped: list[str],
        revision: str | None,
        max_shard_size: int | str,
        progress: bool,
    ) -> None:
        """One `push_to_hub` per config (one commit each), with one progress line counting shards."""
        shards = {name: _num_shards(parts, max_shard_size) for name, parts in configs.items()}
        bar = _progress_bar(sum(sum(counts.values()) for counts in shards.values()), self.repo_id, progress)
        try:
            for name, parts in configs.items():
                if name not in skipped:
                    bar.set_postfix_str(name)
                    self.retrying(
                        f"push the {name} config",
                        lambda name=name, parts=parts: parts.push_to_hub(
                            self.repo_id,
                            config_name=name,
                            data_dir=name,
                            token=self.token,
                            revision=revision,
                            num_shards=shards[name],
                            commit_message=f"Upload the {name} config (difficulty-curation)",
                        ),
                    )
                bar.update(sum(shards[name].values()))
        finally:
            bar.close()

    # -- steps, each safe to repeat -------------------------------------------------------------
    def repo_state(self) -> tuple[bool, list[str], str | None] | None:
        """(private, files, README text) of the repo, or None when it does not exist (or is not visible)."""
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            info = self.api.repo_info(self.repo_id, repo_type="dataset")
        except RepositoryNotFoundError:
            return None
        files = [sibling.rfilename for sibling in info.siblings or []]
        card = self.read_card(info.sha) if "README.md" in files else None
        return bool(info.private), files, card

    def unfinished_pull_request(self, push_id: str) -> tuple[str, str] | None:
        """(`refs/pr/N`, card) of the newest pull request holding this push unfinished, or None."""
        refs = self.api.list_repo_refs(self.repo_id, repo_type="dataset", include_pull_requests=True)
        pulls = sorted(refs.pull_requests or [], key=lambda ref: int(ref.ref.rsplit("/", 1)[-1]), reverse=True)
        for ref in pulls:
            files = self.api.list_repo_files(self.repo_id, repo_type="dataset", revision=ref.ref)
            card = self.read_card(ref.ref) if "README.md" in files else ""
            marker = _MARKER.search(card)
            if marker is not None and marker["push_id"] == push_id:
                return (ref.ref, card) if marker["state"] == "in progress" else None
        return None

    def pr_url(self, revision: str | None) -> str | None:
        """The web address of the pull request `refs/pr/N`."""
        return None if revision is None else f"{self.repo_url}/discussions/{revision.rsplit('/', 1)[-1]}"

    def read_card(self, revision: str | None) -> str:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(
            self.repo_id,
            "README.md",
            repo_type="dataset",
            revision=revision,
            token=self.token,
            endpoint=self.api.endpoint,
        )
        return Path(path).read_text(encoding="utf-8")

    def create(self, private: bool) -> None:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            self.api.create_repo(self.repo_id, repo_type="dataset", private=private)
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code == 409:
                # created by an earlier try whose answer was lost; anything else that exists was seen above
                return
            raise

    def commit_card(self, text: str, files: list[Path], deletions: list[str], create_pr: bool) -> Any:
        """The first commit: the card without configs, the histogram (and report), and (to replace) our old config folders."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        operations: list[Any] = [CommitOperationDelete(f"{folder}/", is_folder=True) for folder in deletions]
        operations += [
            CommitOperationAdd("README.md", text.encode("utf-8")),
            *(CommitOperationAdd(file.name, str(file)) for file in files),
        ]
        return self.api.create_commit(
            self.repo_id,
            operations,
            commit_message="Start a difficulty-curation push: the dataset card",
            repo_type="dataset",
            create_pr=create_pr,
        )

    def commit_final_card(self, text: str, revision: str | None) -> str:
        """Write the full card, keeping the `dataset_info` that `push_to_hub` recorded; returns the commit."""
        from huggingface_hub import CommitOperationAdd, DatasetCard

        parent = self.api.repo_info(self.repo_id, repo_type="dataset", revision=revision).sha
        card = DatasetCard(text)
        recorded = DatasetCard(self.read_card(parent)).data.to_dict().get("dataset_info")
        if recorded is not None:
            card.data["dataset_info"] = recorded
        info = self.api.create_commit(
            self.repo_id,
            [CommitOperationAdd("README.md", str(card).encode("utf-8"))],
            commit_message="Finish the difficulty-curation push: the dataset card with every config",
            repo_type="dataset",
            revision=revision,
            parent_commit=parent,
        )
        return info.oid

    def retrying(self, what: str, step: Callable[[], _T]) -> _T:
        """Run `step`, trying again after network errors, 429 and 5xx with exponential backoff."""
        for attempt in range(self.max_retries + 1):
            try:
                return step()
            except Exception as error:
                if not _is_transient(error):
                    raise
                reason = redact(_short_reason(error))
                if attempt == self.max_retries:
                    raise HubUnavailableError(
                        f"could not {what} for {self.repo_id} at {self.api.endpoint} after {attempt + 1} tries "
                        f"({reason}); the local data is unchanged: run the same command again to resume."
                    ) from None
                wait = min(2.0**attempt, 30.0)
                logger.warning(
                    "could not %s (%s); trying again in %.0f s (%d/%d)",
                    what,
                    reason,
                    wait,
                    attempt + 1,
                    self.max_retries,
                )
                time.sleep(wait)
        raise AssertionError("unreachable")


# -- helpers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _request_timeout(seconds: float) -> Iterator[None]:
    """Give every request `huggingface_hub` (and `datasets` through it) makes `seconds` per connect, read or write.

    `huggingface_hub`'s client waits forever by default, and many calls pass `timeout=None`; the
    limit is therefore set on the transport, under every call, and the client factory restored after.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    previous = _http._GLOBAL_CLIENT_FACTORY

    def factory() -> Any:
        client = previous()
        inner = client._transport
        httpx = __import__(type(client).__module__.split(".")[0])

        class Deadline(httpx.BaseTransport):
            def handle_request(self, request: Any) -> Any:
                request.extensions["timeout"] = httpx.Timeout(seconds).as_dict()
                return inner.handle_request(request)

            def close(self) -> None:
                inner.close()

        client._transport = Deadline()
        return client

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(previous)


def _configs(splits: DatasetDict, names: list[str]) -> dict[str, DatasetDict]:
    """One DatasetDict per bucket (scored rows only, `stratify`'s definitions) plus `all` (every row).

    Empty splits are left out (`load_dataset` cannot read a split without rows), and so is a bucket
    without rows in any split.
    """
    from datasets import DatasetDict

    from difficulty_curation.transforms import stratify

    with datasets_switched_off("caching"):
        buckets = {split: stratify(part) for split, part in splits.items()}
    candidates = {name: {split: buckets[split][name] for split in splits} for name in names}
    candidates[ALL_CONFIG] = dict(splits)
    configs = {}
    for name, parts in candidates.items():
        kept = {split: part for split, part in parts.items() if len(part)}
        if kept:
            configs[name] = DatasetDict(kept)
        else:
            logger.warning("bucket %r has no rows; it is not published as a config.", name)
    if ALL_CONFIG not in configs:
        raise ConfigError("the dataset has no rows; there is nothing to push.")
    return configs


def _num_shards(parts: DatasetDict, max_shard_size: int | str) -> dict[str, int]:
    """Shards per split, as `push_to_hub` would choose them, so the progress line knows the total."""
    from datasets.utils.py_utils import convert_file_size_to_int

    limit = convert_file_size_to_int(max_shard_size)
    return {split: max(1, int(part._estimate_nbytes() / limit) + 1) for split, part in parts.items()}


def _push_id(
    provenance: dict[str, Any], splits: DatasetDict, configs: list[str], license: str | None, report: str | None = None
) -> str:
    """Names one push of one dataset, so a re-run can tell its own unfinished push from other content."""
    record = {
        **({"report": report} if report else {}),
        "provenance": provenance,
        "splits": {name: [len(part), part._fingerprint] for name, part in splits.items()},
        "configs": configs,
        "license": license,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _marker(push_id: str, state: str) -> str:
    return f"\n<!-- difficulty-curation push {push_id}: {state} -->\n"


def _without_configs(card_text: str) -> str:
    """The card without `configs:`: each `push_to_hub` adds its own entry once its data is there."""
    from huggingface_hub import DatasetCard

    card = DatasetCard(card_text)
    card.data.configs = None
    return str(card)


def _dataset_info(card_text: str | None) -> dict[str, dict[str, int]]:
    """config -> split -> rows, as `push_to_hub` recorded them in the card's `dataset_info`."""
    from huggingface_hub import DatasetCard

    if not card_text:
        return {}
    info = DatasetCard(card_text).data.to_dict().get("dataset_info") or []
    entries = [info] if isinstance(info, dict) else info
    return {
        entry.get("config_name", "default"): {
            s["name"]: int(s.get("num_examples", -1)) for s in entry.get("splits", [])
        }
        for entry in entries
        if isinstance(entry, dict)
    }


def _progress_bar(total: int, repo_id: str, enabled: bool) -> Any:
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"Pushing to {repo_id}", unit="shard", disable=not enabled, file=sys.stderr)


def _http_error(error: BaseException) -> Any:
    """The `HfHubHTTPError` behind `error` (it may be wrapped, e.g. by an LFS upload), or None."""
    from huggingface_hub.errors import HfHubHTTPError

    return next((cause for cause in _chain(error) if isinstance(cause, HfHubHTTPError)), None)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions behind it (`__cause__`, else `__context__`), each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever HTTP client this `huggingface_hub` uses, plus the built-in ones."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(__import__(module), name))
    return tuple(found)


def _is_transient(error: BaseException) -> bool:
    http = _http_error(error)
    if http is not None:
        return http.response is not None and http.response.status_code in TRANSIENT_STATUS
    transport = _transport_errors()
    return any(isinstance(cause, transport) for cause in _chain(error))


def _short_reason(error: BaseException) -> str:
    http = _http_error(error)
    if http is not None and http.response is not None:
        return f"HTTP {http.response.status_code}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _describe_http(error: Any, repo_id: str) -> str:
    status = error.response.status_code if error.response is not None else None
    detail = (getattr(error, "server_message", None) or str(error)).strip().splitlines()
    detail_text = detail[0] if detail else ""
    if status == 401:
        return (
            f"the Hub refused the token for {repo_id} (HTTP 401: {detail_text}); set HF_TOKEN to a valid write "
            "token or run `hf auth login`."
        )
    if status == 403:
        return f"no write access to {repo_id} (HTTP 403: {detail_text}); use a namespace your token can write to."
    if status == 404:
        return f"{repo_id} was not found or is not visible to this token (HTTP 404: {detail_text})."
    return f"the Hub refused the push to {repo_id} (HTTP {status}: {detail_text})."


__all__ = ["ALL_CONFIG", "DEFAULT_TIMEOUT", "PushInfo", "push_curated"]
