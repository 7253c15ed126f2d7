"""Scored digits written by hand (no model) for the report tests: every bucket, a failed row, an audit cluster."""

from __future__ import annotations

import io

from datasets import Dataset, Features, Image, List, Value

from difficulty_curation.config import ScoringConfig
from difficulty_curation.provenance import attach_provenance, provenance_record

#: Row 0's prompt: shown as text on the page, never run.
INJECTED_PROMPT = '<script>window.injected = 1</script><img src=x onerror="window.injected = 2"> What digit?'
#: What `scored_digits` rows are, by `index % len(KINDS)`.
KINDS = ("easy", "medium", "hard-cluster", "hard", "failed", "truncated")
FEATURES = Features(
    {
        "image": Image(),
        "problem": Value("string"),
        "solution": Value("string"),
        "difficulty": Value("float32"),
        "num_correct": Value("int32"),
        "num_rollouts": Value("int32"),
        "difficulty_error": Value("string"),
        "rollouts": List(Value("string")),
        "rollout_scores": List(Value("float32")),
        "rollout_finish_reasons": List(Value("string")),
        "num_truncated": Value("int32"),
        "pass_rate_low": Value("float32"),
        "pass_rate_high": Value("float32"),
    }
)


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scored_digits(digits: Dataset, num_rows: int, *, image_column: str | None = "image") -> Dataset:
    """`num_rows` digits (cycling `digits`) as if scored with 4 kept rollouts, the exact verifier and a 95% interval.

    Kinds cycle through `KINDS`: all right; half right; all "3" (or "4" where 3 is right: the audit's
    cluster); all wrong with different answers; an undecodable image that failed; half right with a
    truncated rollout. Row 0's prompt is `INJECTED_PROMPT`.
    """
    images = [png(row["image"]) for row in digits]
    solutions = digits["solution"]
    rows = []
    for index in range(num_rows):
        solution = solutions[index % len(solutions)]
        wrong = "4" if solution == "3" else "3"
        kind = KINDS[index % len(KINDS)]
        answers = {
            "easy": [solution] * 4,
            "medium": [solution, f"<answer>{solution}</answer>", wrong, "no idea"],
            "hard-cluster": [wrong] * 4,
            "hard": [wrong, "x", "y", "z"],
            "failed": [],
            "truncated": [solution, solution, wrong, "The digit is probably"],
        }[kind]
        scores = [1.0 if answer in (solution, f"<answer>{solution}</answer>") else 0.0 for answer in answers]
        right = int(sum(scores))
        rows.append(
            {
                "image": {"bytes": b"not an image" if kind == "failed" else images[index % len(images)], "path": None},
                "problem": INJECTED_PROMPT if index == 0 else "What digit is shown in the image? Answer with a digit.",
                "solution": solution,
                "difficulty": None if kind == "failed" else 1 - right / 4,
                "num_correct": None if kind == "failed" else right,
                "num_rollouts": None if kind == "failed" else 4,
                "difficulty_error": "image: image cannot be decoded (not a recognised image format)"
                if kind == "failed"
                else "",
                "rollouts": answers,
                "rollout_scores": scores,
                "rollout_finish_reasons": ["stop"] * 3 + ["length"] if kind == "truncated" else ["stop"] * len(answers),
                "num_truncated": None if kind == "failed" else int(kind == "truncated"),
                "pass_rate_low": None if kind == "failed" else max(0.0, right / 4 - 0.3),
                "pass_rate_high": None if kind == "failed" else min(1.0, right / 4 + 0.3),
            }
        )
    dataset = Dataset.from_list(rows, features=FEATURES)
    if image_column is None:
        dataset = dataset.remove_columns("image")
    config = ScoringConfig.from_options(
        "tiny-vlm", keep_rollouts=True, pass_rate_interval=0.95, num_rollouts=4, image_column=image_column
    )
    return attach_provenance(dataset, provenance_record(config, source="digits"))
