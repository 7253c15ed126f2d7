"""Scored runs side by side: the same rows scored by several models, checkpoints, seeds or k.

Rows are matched by a fingerprint of their content (prompt, images, reference answer), never by
position; rows present in only some runs are counted, not dropped. `compare_runs` reports how rows
move between buckets, and `merge_scores` keeps every run's difficulty in one dataset.

Modules: `runs` (load runs, fingerprint rows), `comparison` (`compare_runs`, the noise floor),
`merge` (`merge_scores`) and `plot` (`plot_comparison`).
"""

from difficulty_curation.compare.comparison import (
    FAILED,
    NOISE_QUANTILE,
    STATES,
    NoiseFloor,
    RunComparison,
    compare_runs,
    spearman,
)
from difficulty_curation.compare.merge import MAJORITY_COLUMN, merge_scores
from difficulty_curation.compare.plot import plot_comparison
from difficulty_curation.compare.runs import ScoredRun, load_runs, majority_answers, row_keys, run_names

__all__ = [
    "FAILED",
    "MAJORITY_COLUMN",
    "NOISE_QUANTILE",
    "STATES",
    "NoiseFloor",
    "RunComparison",
    "ScoredRun",
    "compare_runs",
    "load_runs",
    "majority_answers",
    "merge_scores",
    "plot_comparison",
    "row_keys",
    "run_names",
    "spearman",
]
