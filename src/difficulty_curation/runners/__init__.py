"""The ways to run a scorer over a dataset, side by side; each takes `(dataset, scorer, *, batch_size, progress, ...)`.

- `score_dataset`: in memory, through `Dataset.map` (the datasets cache applies);
- `score_to_dir`: into a durable run folder that resumes after a crash (`rescore_dir` re-verifies one);
- `score_distributed`: on a Ray cluster, one engine per worker.

Each gives the same columns and provenance; none changes the scorer it is given. All three start
alike (`preamble.RunInputs`: checks, rows read as the scorer reads them, batches) and end alike
(`preamble.warn_about`); a run folder's state on disk is `run_state.RunFolder`'s.
"""

from __future__ import annotations

from difficulty_curation.runners.distributed import score_distributed
from difficulty_curation.runners.in_memory import score_dataset
from difficulty_curation.runners.rescore import rescore_dir
from difficulty_curation.runners.run_folder import score_to_dir

__all__ = ["rescore_dir", "score_dataset", "score_distributed", "score_to_dir"]
