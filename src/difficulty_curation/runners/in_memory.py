"""The in-memory runner: `Dataset.map(scorer)` with checks, typed columns, a progress line and provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from difficulty_curation.config import DEFAULT_BATCH_SIZE
from difficulty_curation.errors import ConfigError
from difficulty_curation.progress import RolloutProgress
from difficulty_curation.provenance import attach_provenance, scoring_provenance, with_finish_counts
from difficulty_curation.redact import get_logger
from difficulty_curation.schema import undecoded_images
from difficulty_curation.scoring import DifficultyScorer
from difficulty_curation.splits import datasets_switched_off, map_splits
from difficulty_curation.stats import scoring_warnings, summarize

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = get_logger(__name__)


def score_dataset(
    dataset: Dataset | DatasetDict,
    scorer: DifficultyScorer,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Dataset | DatasetDict:
    """Run `scorer` over a dataset (every split of a `DatasetDict`) with a progress line.

    Compared with a bare `dataset.map(scorer, batched=True)`, this checks the columns before any
    model loads, passes typed output features, and reads images undecoded so that a corrupt image
    becomes a failed row (see `difficulty_error`) instead of an exception inside datasets.
    The datasets cache applies as usual: an identical call on a cached dataset is not re-scored.
    """
    from datasets import DatasetDict

    if isinstance(dataset, DatasetDict):
        return map_splits(lambda part: score_dataset(part, scorer, batch_size=batch_size, progress=progress), dataset)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    scorer.check_columns(dataset.column_names)
    image_column = scorer.config.image_column
    original_feature = dataset.features[image_column] if image_column else None
    dataset = undecoded_images(dataset, image_column)
    bar = RolloutProgress(len(dataset), enabled=progress)
    try:
        with datasets_switched_off("progress_bars"):
            scored = dataset.map(
                scorer.for_run(on_batch=bar.update),
                batched=True,
                batch_size=batch_size,
                features=scorer.output_features(dataset.features),
                desc="Scoring difficulty",
            )
    finally:
        bar.close()
    if image_column:
        scored = scored.cast_column(image_column, original_feature)

    attach_provenance(scored, with_finish_counts(scoring_provenance(scorer), scored))
    for warning in scoring_warnings(summarize(scored)):
        logger.warning(warning)
    return scored
