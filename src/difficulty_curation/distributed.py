"""Deprecated home of the Ray runner; use `difficulty_curation.runners` (kept importable)."""

from difficulty_curation.runners.distributed import score_difficulty_distributed, score_distributed  # noqa: F401
