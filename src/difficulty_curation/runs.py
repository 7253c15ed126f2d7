"""Deprecated home of the run-folder runner; use `difficulty_curation.runners` (kept importable)."""

from difficulty_curation.runners.run_folder import (  # noqa: F401
    STATE_DIR,
    RunFolder,
    RunSpec,
    RunStateError,
    rescore_dir,
    score_to_dir,
)
