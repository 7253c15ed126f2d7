"""The in-memory runner: `Dataset.map(scorer)` with checks, typed columns, a progress line and provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from difficulty_curation.config import DEFAULT_BATCH_SIZE
from difficulty_curation.progress import RolloutProgress
from difficulty_curation.runners.preamble import RunInputs, warn_about, with_provenance
from difficulty_curation.scoring import DifficultyScorer
from difficulty_curation.splits import datasets_switched_off

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict


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
    inputs = RunInputs(dataset, scorer, batch_size)
    image_column = scorer.config.image_column
    bar = RolloutProgress(inputs.num_rows, enabled=progress)
    run = scorer.for_run(on_batch=bar.update)
    scored = {}
    try:
        with datasets_switched_off("progress_bars"):
            for name, readable in inputs.readable.items():
                scored[name] = readable.map(
                    run,
                    batched=True,
                    batch_size=batch_size,
                    features=scorer.output_features(readable.features),
                    desc="Scoring difficulty",
                )
                if image_column:
                    scored[name] = scored[name].cast_column(image_column, inputs.splits[name].features[image_column])
    finally:
        bar.close()
    result = with_provenance(inputs.shaped(scored), scorer)
    warn_about(result)
    return result
