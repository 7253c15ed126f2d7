"""difficulty-curation: curate post-training data by difficulty (DC-SFT, Lu et al. 2026)."""

from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.errors import (
    ColumnNotFoundError,
    ConfigError,
    CurationError,
    ModelLoadError,
    RowError,
)
from difficulty_curation.scoring import DifficultyScorer, score_difficulty
from difficulty_curation.verifiers import get_verifier, register_verifier

__version__ = "0.1.0"

__all__ = [
    "ColumnNotFoundError",
    "ConfigError",
    "CurationError",
    "DifficultyScorer",
    "ModelLoadError",
    "RolloutConfig",
    "RowError",
    "ScoringConfig",
    "__version__",
    "get_verifier",
    "register_verifier",
    "score_difficulty",
]
