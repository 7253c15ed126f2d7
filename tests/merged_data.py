"""Scored runs written by hand (no model) for the merged-scores, mix and compare tests."""

from __future__ import annotations

from datasets import Dataset, Features, Value

from difficulty_curation.provenance import attach_provenance

FEATURES = Features(
    {
        "problem": Value("string"),
        "solution": Value("string"),
        "difficulty": Value("float32"),
        "num_correct": Value("int32"),
        "num_rollouts": Value("int32"),
        "num_truncated": Value("int32"),
        "difficulty_error": Value("string"),
        "pass_rate_low": Value("float32"),
        "pass_rate_high": Value("float32"),
    }
)


def scored_run(
    difficulties: list[float | None],
    *,
    model: str = "m",
    seed: int = 0,
    truncated: list[int] | None = None,
    problems: list[str] | None = None,
    prompt_column: str = "problem",
    answer_column: str = "solution",
    **provenance: object,
) -> Dataset:
    """A run of k=4 rollouts per row, row i asking `q{i}` (or `problems[i]`) with answer `a{i}`;
    a None difficulty is a row that failed ("engine: boom"). Its provenance names the model and seed."""
    rows = []
    for index, difficulty in enumerate(difficulties):
        failed = difficulty is None
        correct = None if failed else round(4 * (1 - difficulty))
        rows.append(
            {
                "problem": problems[index] if problems else f"q{index}",
                "solution": f"a{index}",
                "difficulty": difficulty,
                "num_correct": correct,
                "num_rollouts": None if failed else 4,
                "num_truncated": None if failed else (truncated[index] if truncated else 0),
                "difficulty_error": "engine: boom" if failed else "",
                "pass_rate_low": None if failed else max(0.0, (correct or 0) / 4 - 0.25),
                "pass_rate_high": None if failed else min(1.0, (correct or 0) / 4 + 0.25),
            }
        )
    dataset = Dataset.from_dict({name: [row[name] for row in rows] for name in FEATURES}, features=FEATURES)
    renames = {"problem": prompt_column, "solution": answer_column}
    dataset = dataset.rename_columns({k: v for k, v in renames.items() if k != v})
    record = {
        "model": model,
        "seed": seed,
        "num_rollouts": 4,
        "prompt_column": prompt_column,
        "answer_column": answer_column,
        "image_column": None,
        "answer_extractor": "auto",
        "max_new_tokens": 16,
        "truncated": "wrong",
        **provenance,
    }
    truncated_total = sum(truncated or [])
    known = 4 * sum(d is not None for d in difficulties)
    record |= {
        "truncated_rollouts": truncated_total,
        "truncated_share": round(truncated_total / known, 4) if known else None,
        "rollouts_finish_unknown": 0,
    }
    return attach_provenance(dataset, record)
