"""`push_curated`: check the dataset and the arguments, plan against the repo, then commit in order.

See the `hub` package docstring for the order of commits that makes a push resumable.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from difficulty_curation.buckets import PAPER_BUCKETS, paper_buckets
from difficulty_curation.errors import ConfigError, CurationError, PushError, require
from difficulty_curation.hub.configs import ALL_CONFIG, bucket_configs, num_shards, push_identity
from difficulty_curation.hub.http import DEFAULT_TIMEOUT, describe_refusal, hub_http_error, request_timeout
from difficulty_curation.hub.repo import MARKER, HubRepo, marker, recorded_rows, without_configs
from difficulty_curation.redact import redact, register_secret
from difficulty_curation.splits import datasets_switched_off

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from difficulty_curation.stats import DifficultySummary

#: The report `push_curated(report=True)` uploads beside the card.
REPORT_FILE = "report.html"
DEFAULT_MAX_RETRIES = 5


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
    from difficulty_curation.stats import summarize

    summary = summarize(splits)  # NaN, infinite or out-of-range difficulties: refused before any request
    token = token or _stored_token()
    register_secret(token)  # masked in every message and log line from here on
    push = _Push(HubRepo(repo_id, token, max_retries))
    try:
        with request_timeout(timeout):
            return push.run(
                splits,
                provenance,
                summary,
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
        refusal = hub_http_error(error)
        if refusal is None:
            raise
        raise PushError(redact(describe_refusal(refusal, repo_id))) from None


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
    """One push: plans against the repo, then commits the card, the configs and the final card."""

    def __init__(self, repo: HubRepo) -> None:
        self.repo = repo

    def run(
        self,
        splits: DatasetDict,
        provenance: dict[str, Any],
        summary: DifficultySummary,
        *,
        buckets: list[str],
        private: bool,
        overwrite: bool,
        create_pr: bool,
        card_options: dict[str, Any],
        max_shard_size: int | str,
        progress: bool,
    ) -> PushInfo:
        repo = self.repo
        configs = bucket_configs(splits, buckets)
        rows = {name: {split: len(part) for split, part in parts.items()} for name, parts in configs.items()}
        push_id = push_identity(
            provenance, splits, [*buckets, ALL_CONFIG], card_options.get("license"), card_options.get("report")
        )
        with tempfile.TemporaryDirectory(prefix="curate-push-") as folder, datasets_switched_off("caching"):
            from difficulty_curation.cards import write_card

            readme, histogram = write_card(
                splits,
                Path(folder) / "README.md",
                repo.repo_id,
                buckets=buckets,
                configs={name: list(parts) for name, parts in configs.items()},
                provenance=provenance,
                summary=summary,
                **card_options,
            )
            card_text = readme.read_text(encoding="utf-8")
            extra_files = [histogram]
            if card_options.get("report"):
                from difficulty_curation.report import write_report

                extra_files.append(write_report(splits, Path(folder) / card_options["report"], title=repo.repo_id).path)
            plan = self.plan(push_id, private=private, overwrite=overwrite, create_pr=create_pr)
            start = None
            if not plan.resumed:
                start = repo.retrying(
                    "upload the card",
                    lambda: repo.commit_card(
                        without_configs(card_text) + marker(push_id, "in progress"),
                        extra_files,
                        plan.folders_to_replace,
                        create_pr,
                    ),
                )
            revision = start.pr_revision if start is not None and create_pr else plan.pr_revision
            skipped = [name for name in configs if plan.recorded.get(name) == rows[name]]
            self.push_configs(configs, skipped, revision, max_shard_size, progress)
            final = repo.retrying(
                "finish the card", lambda: repo.commit_final_card(card_text + marker(push_id, "complete"), revision)
            )
        return PushInfo(
            repo_id=repo.repo_id,
            repo_url=repo.url,
            commit=final,
            configs=rows,
            failed_rows=summary.num_failed,
            private=plan.private,
            pr_url=start.pr_url if start is not None and create_pr else repo.pr_url(plan.pr_revision),
            pr_revision=revision,
            empty_buckets=[name for name in buckets if name not in configs],
            resumed=plan.resumed,
            skipped_configs=skipped,
        )

    def plan(self, push_id: str, *, private: bool, overwrite: bool, create_pr: bool) -> _Plan:
        """Create the repo, or check that pushing to the existing one is safe and what to resume."""
        repo = self.repo
        state = repo.retrying("read the repo", repo.state)
        if state is None:
            repo.retrying("create the repo", lambda: repo.create(private))
            return _Plan(private=private)
        is_private, files, card = state
        if private and not is_private:
            raise PushError(
                f"{repo.repo_id} exists and is public; --private (private=True) only applies when a repo is "
                "created. Make the repo private in its settings first, or push without --private."
            )
        if create_pr:
            pull = repo.retrying("read the pull requests", lambda: repo.unfinished_pull_request(push_id))
            if pull is not None:
                revision, pr_card = pull
                return _Plan(private=is_private, resumed=True, recorded=recorded_rows(pr_card), pr_revision=revision)
        found = MARKER.search(card or "")
        ours = found is not None and found["push_id"] == push_id
        resumed = ours and found["state"] == "in progress" and not create_pr
        content = sorted(path for path in files if path != ".gitattributes")
        if content and not (resumed or overwrite or create_pr):
            listed = ", ".join(content[:3]) + (", ..." if len(content) > 3 else "")
            raise PushError(
                f"{repo.repo_id} already holds {'this exact push' if ours else f'{len(content)} file(s)'} ({listed}); "
                "pass --overwrite (overwrite=True) to replace its curated configs, or --create-pr (create_pr=True) "
                "to open a pull request and leave main untouched."
            )
        folders = {path.split("/")[0] for path in files if "/" in path} & {*PAPER_BUCKETS, ALL_CONFIG}
        return _Plan(
            private=is_private,
            resumed=resumed,
            recorded=recorded_rows(card) if resumed else {},
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
        shards = {name: num_shards(parts, max_shard_size) for name, parts in configs.items()}
        repo = self.repo
        bar = _progress_bar(sum(sum(counts.values()) for counts in shards.values()), repo.repo_id, progress)
        try:
            for name, parts in configs.items():
                if name not in skipped:
                    bar.set_postfix_str(name)
                    repo.retrying(
                        f"push the {name} config",
                        lambda name=name, parts=parts: parts.push_to_hub(
                            repo.repo_id,
                            config_name=name,
                            data_dir=name,
                            token=repo.token,
                            revision=revision,
                            num_shards=shards[name],
                            commit_message=f"Upload the {name} config (difficulty-curation)",
                        ),
                    )
                bar.update(sum(shards[name].values()))
        finally:
            bar.close()


def _progress_bar(total: int, repo_id: str, enabled: bool) -> Any:
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"Pushing to {repo_id}", unit="shard", disable=not enabled, file=sys.stderr)


__all__ = ["ALL_CONFIG", "DEFAULT_MAX_RETRIES", "REPORT_FILE", "PushInfo", "push_curated"]
