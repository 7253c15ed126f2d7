"""difficulty-curation: curate post-training data by difficulty (DC-SFT, Lu et al. 2026).

The public API. Names load lazily so `import difficulty_curation` stays fast and heavy
dependencies (torch, datasets, vLLM) are imported only by the step that needs them; the
`TYPE_CHECKING` block below names the same things for type checkers and IDEs (a test keeps the
two in step).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from difficulty_curation.version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    "score_difficulty": "difficulty_curation.scoring",
    "DifficultyScorer": "difficulty_curation.scoring",
    "ScoringConfig": "difficulty_curation.config",
    "RolloutConfig": "difficulty_curation.config",
    "Columns": "difficulty_curation.columns",
    "score_dataset": "difficulty_curation.runners",
    "score_to_dir": "difficulty_curation.runners",
    "rescore_dir": "difficulty_curation.runners",
    "score_distributed": "difficulty_curation.runners",
    "plan_run": "difficulty_curation.plan",
    "load_source": "difficulty_curation.sources",
    "get_verifier": "difficulty_curation.verifiers",
    "register_verifier": "difficulty_curation.verifiers",
    "filter_difficulty": "difficulty_curation.transforms",
    "stratify": "difficulty_curation.transforms",
    "mix": "difficulty_curation.transforms",
    "compare_runs": "difficulty_curation.compare",
    "RunComparison": "difficulty_curation.compare",
    "merge_scores": "difficulty_curation.compare",
    "bucket_of": "difficulty_curation.buckets",
    "summarize": "difficulty_curation.stats",
    "audit_hard_rows": "difficulty_curation.audit",
    "read_provenance": "difficulty_curation.provenance",
    "write_card": "difficulty_curation.cards",
    "push_curated": "difficulty_curation.hub",
    "PushInfo": "difficulty_curation.hub",
    "write_report": "difficulty_curation.report",
    "export_dataset": "difficulty_curation.exports",
    "export_trl": "difficulty_curation.exports",
    "export_swift": "difficulty_curation.exports",
    "export_llamafactory": "difficulty_curation.exports",
    "export_verl": "difficulty_curation.exports",
    "to_trl_format": "difficulty_curation.recipes.formats",
    "from_trl_format": "difficulty_curation.recipes.formats",
    "sft": "difficulty_curation.recipes.sft",
    "SFTOptions": "difficulty_curation.recipes.options",
    "grpo": "difficulty_curation.recipes.grpo",
    "GRPOOptions": "difficulty_curation.recipes.options",
    "evaluate": "difficulty_curation.recipes.evaluate",
    "CurationError": "difficulty_curation.errors",
    "ConfigError": "difficulty_curation.errors",
    "ColumnNotFoundError": "difficulty_curation.errors",
    "RowError": "difficulty_curation.errors",
    "RowFailedError": "difficulty_curation.errors",
    "EngineError": "difficulty_curation.errors",
    "ModelLoadError": "difficulty_curation.errors",
    "BackendUnavailableError": "difficulty_curation.errors",
    "MissingDependencyError": "difficulty_curation.errors",
    "RunStateError": "difficulty_curation.errors",
    "RunLockedError": "difficulty_curation.errors",
    "TrainingDivergedError": "difficulty_curation.errors",
    "RolloutCacheError": "difficulty_curation.errors",
    "EndpointError": "difficulty_curation.errors",
    "PushError": "difficulty_curation.errors",
    "HubUnavailableError": "difficulty_curation.errors",
}

__all__ = [
    "BackendUnavailableError",
    "ColumnNotFoundError",
    "Columns",
    "ConfigError",
    "CurationError",
    "DifficultyScorer",
    "EndpointError",
    "EngineError",
    "GRPOOptions",
    "HubUnavailableError",
    "MissingDependencyError",
    "ModelLoadError",
    "PushError",
    "PushInfo",
    "RolloutCacheError",
    "RolloutConfig",
    "RowError",
    "RowFailedError",
    "RunComparison",
    "RunLockedError",
    "RunStateError",
    "SFTOptions",
    "ScoringConfig",
    "TrainingDivergedError",
    "__version__",
    "audit_hard_rows",
    "bucket_of",
    "compare_runs",
    "evaluate",
    "export_dataset",
    "export_llamafactory",
    "export_swift",
    "export_trl",
    "export_verl",
    "filter_difficulty",
    "from_trl_format",
    "get_verifier",
    "grpo",
    "load_source",
    "merge_scores",
    "mix",
    "plan_run",
    "push_curated",
    "read_provenance",
    "register_verifier",
    "rescore_dir",
    "score_dataset",
    "score_difficulty",
    "score_distributed",
    "score_to_dir",
    "sft",
    "stratify",
    "summarize",
    "to_trl_format",
    "write_card",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'difficulty_curation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from difficulty_curation.audit import audit_hard_rows
    from difficulty_curation.buckets import bucket_of
    from difficulty_curation.cards import write_card
    from difficulty_curation.columns import Columns
    from difficulty_curation.compare import RunComparison, compare_runs, merge_scores
    from difficulty_curation.config import RolloutConfig, ScoringConfig
    from difficulty_curation.errors import (
        BackendUnavailableError,
        ColumnNotFoundError,
        ConfigError,
        CurationError,
        EndpointError,
        EngineError,
        HubUnavailableError,
        MissingDependencyError,
        ModelLoadError,
        PushError,
        RolloutCacheError,
        RowError,
        RowFailedError,
        RunLockedError,
        RunStateError,
        TrainingDivergedError,
    )
    from difficulty_curation.exports import export_dataset, export_llamafactory, export_swift, export_trl, export_verl
    from difficulty_curation.hub import PushInfo, push_curated
    from difficulty_curation.plan import plan_run
    from difficulty_curation.provenance import read_provenance
    from difficulty_curation.recipes.evaluate import evaluate
    from difficulty_curation.recipes.formats import from_trl_format, to_trl_format
    from difficulty_curation.recipes.grpo import grpo
    from difficulty_curation.recipes.options import GRPOOptions, SFTOptions
    from difficulty_curation.recipes.sft import sft
    from difficulty_curation.report import write_report
    from difficulty_curation.runners import rescore_dir, score_dataset, score_distributed, score_to_dir
    from difficulty_curation.scoring import DifficultyScorer, score_difficulty
    from difficulty_curation.sources import load_source
    from difficulty_curation.stats import summarize
    from difficulty_curation.transforms import filter_difficulty, mix, stratify
    from difficulty_curation.verifiers import get_verifier, register_verifier
