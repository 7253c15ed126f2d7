"""difficulty-curation: curate post-training data by difficulty (DC-SFT, Lu et al. 2026).

The public API. Names load lazily so `import difficulty_curation` stays fast and heavy
dependencies (torch, datasets, vLLM) are imported only by the step that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "score_difficulty": "difficulty_curation.scoring",
    "score_dataset": "difficulty_curation.scoring",
    "DifficultyScorer": "difficulty_curation.scoring",
    "filter_difficulty": "difficulty_curation.transforms",
    "stratify": "difficulty_curation.transforms",
    "summarize": "difficulty_curation.stats",
    "audit_hard_rows": "difficulty_curation.audit",
    "score_to_dir": "difficulty_curation.runs",
    "rescore_dir": "difficulty_curation.runs",
    "load_source": "difficulty_curation.sources",
    "export_dataset": "difficulty_curation.exports",
    "export_trl": "difficulty_curation.exports",
    "export_swift": "difficulty_curation.exports",
    "export_llamafactory": "difficulty_curation.exports",
    "export_verl": "difficulty_curation.exports",
    "push_curated": "difficulty_curation.hub",
    "PushInfo": "difficulty_curation.hub",
    "RolloutConfig": "difficulty_curation.config",
    "ScoringConfig": "difficulty_curation.config",
    "get_verifier": "difficulty_curation.verifiers",
    "register_verifier": "difficulty_curation.verifiers",
    "CurationError": "difficulty_curation.errors",
    "ConfigError": "difficulty_curation.errors",
    "ColumnNotFoundError": "difficulty_curation.errors",
    "ModelLoadError": "difficulty_curation.errors",
    "EngineError": "difficulty_curation.errors",
    "RowError": "difficulty_curation.errors",
    "PushError": "difficulty_curation.errors",
    "grpo": "difficulty_curation.recipes.grpo",
    "GRPOOptions": "difficulty_curation.recipes.grpo",
}

__all__ = [
    "ColumnNotFoundError",
    "ConfigError",
    "CurationError",
    "DifficultyScorer",
    "EngineError",
    "GRPOOptions",
    "ModelLoadError",
    "PushError",
    "PushInfo",
    "RolloutConfig",
    "RowError",
    "ScoringConfig",
    "__version__",
    "audit_hard_rows",
    "export_dataset",
    "export_llamafactory",
    "export_swift",
    "export_trl",
    "export_verl",
    "filter_difficulty",
    "get_verifier",
    "grpo",
    "load_source",
    "push_curated",
    "register_verifier",
    "rescore_dir",
    "score_dataset",
    "score_difficulty",
    "score_to_dir",
    "stratify",
    "summarize",
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
    from difficulty_curation.config import RolloutConfig, ScoringConfig
    from difficulty_curation.errors import (
        ColumnNotFoundError,
        ConfigError,
        CurationError,
        EngineError,
        ModelLoadError,
        PushError,
        RowError,
    )
    from difficulty_curation.exports import (
        export_dataset,
        export_llamafactory,
        export_swift,
        export_trl,
        export_verl,
    )
    from difficulty_curation.hub import PushInfo, push_curated
    from difficulty_curation.recipes.grpo import GRPOOptions, grpo
    from difficulty_curation.runs import rescore_dir, score_to_dir
    from difficulty_curation.scoring import DifficultyScorer, score_dataset, score_difficulty
    from difficulty_curation.sources import load_source
    from difficulty_curation.stats import summarize
    from difficulty_curation.transforms import filter_difficulty, stratify
    from difficulty_curation.verifiers import get_verifier, register_verifier
