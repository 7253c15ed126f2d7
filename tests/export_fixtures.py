"""A small scored dataset for the export tests: real digits, set difficulties, a provenance record."""

from __future__ import annotations

import hashlib

from datasets import Dataset
from PIL import Image

from difficulty_curation.config import ScoringConfig
from difficulty_curation.provenance import attach_provenance, provenance_record

SYSTEM_PROMPT = "Answer with one digit."
#: Rows 0-3 easy, 4-7 medium, 8-11 hard; row 12 failed to score (difficulty None).
DIFFICULTIES = [0.0] * 4 + [0.25, 0.5, 0.5, 0.75] + [1.0] * 4 + [None]


def scored_digits(digits: Dataset) -> Dataset:
    """13 digits with difficulty columns and the provenance `curate score` would have written."""
    rows = digits.select(range(len(DIFFICULTIES)))
    rows = rows.add_column("difficulty", DIFFICULTIES)
    rows = rows.add_column("num_correct", [None if d is None else round(4 * (1 - d)) for d in DIFFICULTIES])
    rows = rows.add_column("num_rollouts", [None if d is None else 4 for d in DIFFICULTIES])
    config = ScoringConfig(model="tiny-vlm", system_prompt=SYSTEM_PROMPT, verifier="exact")
    return attach_provenance(rows, provenance_record(config, source="digits/train"))


def pixels_digest(image: Image.Image) -> str:
    """A hash of an image's RGB pixels, to check a consumer decoded exactly the exported image."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
