"""One dataset repo on the Hub, as a push sees it: its state, its card, and commits that are safe to repeat.

Every step goes through `HubRepo.retrying` (`retry.call_with_retries`), so a network error or a
passing HTTP answer is tried again; a step that still fails ends in `HubUnavailableError`. A push
marks the card with its id and state (`marker`), which is how a re-run finds its own unfinished push.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from difficulty_curation.errors import HubUnavailableError
from difficulty_curation.hub.http import short_reason
from difficulty_curation.redact import redact
from difficulty_curation.retry import call_with_retries

MARKER = re.compile(r"<!-- difficulty-curation push (?P<push_id>[0-9a-f]{16}): (?P<state>in progress|complete) -->")
_T = TypeVar("_T")


def marker(push_id: str, state: str) -> str:
    """The line a push leaves at the end of the card: its id and `in progress` or `complete`."""
    return f"\n<!-- difficulty-curation push {push_id}: {state} -->\n"


def without_configs(card_text: str) -> str:
    """The card without `configs:`: each `push_to_hub` adds its own entry once its data is there."""
    from huggingface_hub import DatasetCard

    card = DatasetCard(card_text)
    card.data.configs = None
    return str(card)


def recorded_rows(card_text: str | None) -> dict[str, dict[str, int]]:
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


class HubRepo:
    """A dataset repo, the token and the retry policy shared by every step of one push."""

    def __init__(self, repo_id: str, token: str, max_retries: int) -> None:
        from huggingface_hub import HfApi

        self.repo_id = repo_id
        self.token = token
        self.max_retries = max_retries
        self.api = HfApi(token=token, library_name="difficulty-curation")
        self.url = f"{self.api.endpoint}/datasets/{repo_id}"

    def retrying(self, what: str, step: Callable[[], _T]) -> _T:
        """Run `step`, trying again after network errors and passing HTTP answers, with exponential backoff."""
        return call_with_retries(
            step,
            max_retries=self.max_retries,
            describe=lambda error: f"could not {what} ({short_reason(error)})",
            give_up=lambda error, tries: HubUnavailableError(
                f"could not {what} for {self.repo_id} at {self.api.endpoint} after {tries} tries "
                f"({redact(short_reason(error))}); the local data is unchanged: run the same command again to resume."
            ),
        )

    def state(self) -> tuple[bool, list[str], str | None] | None:
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
            found = MARKER.search(card)
            if found is not None and found["push_id"] == push_id:
                return (ref.ref, card) if found["state"] == "in progress" else None
        return None

    def pr_url(self, revision: str | None) -> str | None:
        """The web address of the pull request `refs/pr/N`."""
        return None if revision is None else f"{self.url}/discussions/{revision.rsplit('/', 1)[-1]}"

    def read_card(self, revision: str | None) -> str:
        """The README.md at `revision`."""
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
        """Create the repo; one an earlier try created (its answer lost) counts as created."""
        from huggingface_hub.errors import HfHubHTTPError

        try:
            self.api.create_repo(self.repo_id, repo_type="dataset", private=private)
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code == 409:
                # created by an earlier try whose answer was lost; anything else that exists was seen before
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


__all__ = ["MARKER", "HubRepo", "marker", "recorded_rows", "without_configs"]
