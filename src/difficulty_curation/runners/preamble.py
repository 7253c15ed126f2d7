"""What every runner does alike: check a dataset against a scorer, read its rows as the scorer does,
cut them into batches, and, once the run is done, say what looks wrong with its result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datasets import Dataset, DatasetDict

from difficulty_curation.errors import ConfigError
from difficulty_curation.provenance import attach_provenance, scoring_provenance, with_finish_counts
from difficulty_curation.redact import get_logger
from difficulty_curation.schema import undecoded_images
from difficulty_curation.splits import DEFAULT_SPLIT, as_splits
from difficulty_curation.stats import scoring_warnings, summarize

if TYPE_CHECKING:
    import pyarrow as pa

    from difficulty_curation.scoring import DifficultyScorer

logger = get_logger(__name__)


class RunInputs:
    """A dataset checked for a scorer, each split's rows read as the scorer reads them, cut into batches.

    Images are read undecoded, so a corrupt image fails its row rather than the run. Batches are
    fixed by `batch_size` and the row order alone, never by where or how they are scored.

    Raises:
        ConfigError: `batch_size` is not an integer >= 1.
        ColumnNotFoundError: a split lacks a column the scorer reads (checked before any model loads).
    """

    def __init__(self, dataset: Dataset | DatasetDict, scorer: DifficultyScorer, batch_size: int) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        self.is_dict = isinstance(dataset, DatasetDict)
        self.splits = as_splits(dataset)
        for part in self.splits.values():
            scorer.check_columns(part.column_names)
        self.batch_size = batch_size
        #: The columns the scorer reads, each once.
        self.columns = scorer.config.columns.names
        #: Each split with its images undecoded (every column, in the dataset's order).
        self.readable = {name: undecoded_images(part, scorer.config.image_column) for name, part in self.splits.items()}
        self._tables = {
            name: part.select_columns(self.columns).with_format("arrow") for name, part in self.readable.items()
        }

    @property
    def num_rows(self) -> int:
        """Rows in all splits together."""
        return sum(len(part) for part in self.splits.values())

    def batches(self, split: str) -> list[tuple[int, int]]:
        """The (first row, end row) of each batch of `split`, in order."""
        rows = len(self.splits[split])
        return [(start, min(start + self.batch_size, rows)) for start in range(0, rows, self.batch_size)]

    def rows(self, split: str, start: int, stop: int) -> pa.Table:
        """The columns the scorer reads of rows `start:stop` of `split`, images undecoded, as an Arrow table."""
        return self._tables[split][start:stop]

    def fingerprint(self, split: str, start: int, stop: int) -> str:
        """A hash of every value the scorer reads from rows `start:stop` of `split` (images as raw bytes or path).

        A run folder trusts a finished batch on resume only if its rows still have this fingerprint:
        fixed labels, edited prompts or reshuffled rows are noticed, whatever the source is called.
        """
        from datasets.fingerprint import Hasher

        return Hasher.hash(self.rows(split, start, stop).to_pydict())

    def shaped(self, parts: dict[str, Dataset]) -> Dataset | DatasetDict:
        """Scored `parts` (split name -> `Dataset`) in the shape of the dataset given: one split or a `DatasetDict`."""
        return DatasetDict(parts) if self.is_dict else parts[DEFAULT_SPLIT]


def with_provenance(scored: Any, scorer: DifficultyScorer, *, source: str | None = None) -> Any:
    """`scored` with the run's provenance (config, model revision, how its rollouts ended) written in."""
    return attach_provenance(scored, with_finish_counts(scoring_provenance(scorer, source=source), scored))


def warn_about(scored: Dataset | DatasetDict, where: object = None) -> None:
    """Log what looks wrong with a finished run (most rows failed, one bucket only, many truncated rollouts)."""
    for warning in scoring_warnings(summarize(scored)):
        if where is None:
            logger.warning(warning)
        else:
            logger.warning("%s: %s", where, warning)
