"""Verifiers: `(completion, reference) -> score in [0, 1]`.

A rollout counts as correct when its score is at least the scorer's `correct_threshold`
(0.5 by default). Built-in verifiers are looked up by name; any callable with the same
signature works too::

    >>> from difficulty_curation.verifiers import get_verifier
    >>> get_verifier("exact")(" Cat. ", "cat")
    1.0
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

from difficulty_curation.answers import answer_tag_content
from difficulty_curation.errors import ConfigError

Verifier = Callable[[str, Any], float]

_NUMBER = r"-?\d+(?:\.\d+)?"
_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?")
_BOX = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")


def extract_answer(completion: str) -> str:
    """The text inside the first `<answer>...</answer>` tags, or the whole completion (linear time)."""
    tagged = answer_tag_content(completion)
    return completion if tagged is None else tagged


def normalize_label(text: Any) -> str:
    """The paper's label normalisation: strip whitespace, strip surrounding '.', lowercase."""
    return str(text).strip().strip(".").strip().lower()


def as_number(value: Any) -> float | None:
    """`value` as a float when it is a number or a label that spells one ('1', ' 1.0. ', '-2e3'), else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = normalize_label(value)
        if _NUMERIC.fullmatch(text):
            return float(text)
    return None


def exact_match(completion: str, reference: Any) -> float:
    """1.0 when the normalised answer equals the normalised reference (or any of a list of them).

    Numbers compare by value, so `1`, `1.0` and `"1"` are one answer (a CSV integer column with a
    blank cell arrives as floats). A reference that is not text or a number (a dict, a bool) raises
    `TypeError`, which fails that row rather than scoring it wrong.
    """
    answer = extract_answer(completion)
    references = reference if isinstance(reference, (list, tuple)) else [reference]
    return float(any(_same_label(answer, ref) for ref in references if ref is not None))


def _same_label(answer: str, reference: Any) -> bool:
    _check_reference("exact", reference, (str, numbers.Real))
    if normalize_label(answer) == normalize_label(reference):
        return True
    answer_number, reference_number = as_number(answer), as_number(reference)
    if answer_number is None or reference_number is None:
        return False
    return math.isclose(answer_number, reference_number, rel_tol=1e-9, abs_tol=1e-12)


def _check_reference(verifier: str, reference: Any, allowed: tuple[type, ...]) -> None:
    if isinstance(reference, bool) or not isinstance(reference, allowed):
        raise TypeError(
            f"the {verifier!r} verifier cannot judge a reference of type {type(reference).__name__} "
            f"({reference!r}); give text or a number, or pass a verifier of your own"
        )


def parse_box(text: Any) -> tuple[float, float, float, float] | None:
    """The first `[x1, y1, x2, y2]` box in a string, or a 4-number sequence as a box."""
    if isinstance(text, str):
        match = _BOX.search(text)
        return tuple(float(v) for v in match.groups()) if match else None  # type: ignore[return-value]
    if isinstance(text, Sequence) and len(text) == 4 and all(_is_number(v) for v in text):
        return tuple(float(v) for v in text)  # type: ignore[return-value]
    return None


def box_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU with the paper's formula: inclusive-pixel intersection, raw `w * h` areas in the union."""
    inter_x1, inter_y1 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    inter_x2, inter_y2 = min(box_a[2] - 1, box_b[2] - 1), min(box_a[3] - 1, box_b[3] - 1)
    if inter_x1 < inter_x2 and inter_y1 < inter_y2:
        intersection = (inter_x2 - inter_x1 + 1) * (inter_y2 - inter_y1 + 1)
    else:
        intersection = 0.0
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    union = area_a + area_b - intersection
    return float(intersection / union) if union > 0 else 0.0


def iou_score(completion: str, reference: Any) -> float:
    """IoU of the completion's first box with the reference box (best over a list of boxes), in [0, 1]."""
    single = parse_box(reference)
    references = [single] if single is not None else [parse_box(ref) for ref in _as_list(reference)]
    references = [ref for ref in references if ref is not None]
    if not references:
        raise ValueError(f"reference {reference!r} is not a box [x1, y1, x2, y2] or a list of boxes")
    predicted = parse_box(extract_answer(completion))
    if predicted is None:
        return 0.0
    return min(1.0, max(0.0, max(box_iou(predicted, ref) for ref in references)))


def math_equivalence(completion: str, reference: Any) -> float:
    """1.0 when `math-verify` finds the completion's final answer equivalent to the reference."""
    from math_verify import parse, verify

    _check_reference("math", reference, (str, numbers.Real))
    gold = parse(_as_latex(reference))
    if not gold:
        raise ValueError(f"reference {reference!r} has no parseable math answer")
    return float(verify(gold, parse(completion)))


_CHOICE_PATTERNS = [
    # "The answer is (B)", "Answer: B", "answer is option C"
    re.compile(r"(?i:answer)\s*(?:(?i:is)|:)?\s*(?:(?i:option)\s*)?[\(\[]?([A-J])\b[\)\]]?"),
    # a leading letter: "B", "(B)", "B. a cat", "C: dog"
    re.compile(r"^\s*[\(\[]?([A-J])(?:[\)\]\.:]|\s*$)"),
    # a bracketed letter anywhere: "... so (C)"
    re.compile(r"[\(\[]([A-J])[\)\]]"),
    # a lone capital letter not used as a word ("A is right" and "I think" are not choices)
    re.compile(r"\b([B-H]|J)\b"),
]


def extract_choice(text: Any) -> str | None:
    """The multiple-choice letter in typical phrasings: 'B', '(B)', 'B. cat', 'The answer is B'."""
    text = extract_answer(str(text)).strip()
    for pattern in _CHOICE_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    return None


def choice_match(completion: str, reference: Any) -> float:
    """1.0 when the completion picks the reference's letter."""
    _check_reference("choice", reference, (str,))
    expected = extract_choice(reference)
    if expected is None:
        raise ValueError(f"reference {reference!r} names no choice letter")
    return float(extract_choice(completion) == expected)


VERIFIERS: dict[str, Verifier] = {
    "exact": exact_match,
    "iou": iou_score,
    "math": math_equivalence,
    "choice": choice_match,
}


def register_verifier(name: str, verifier: Verifier) -> None:
    """Make `verifier` available by `name` to `score_difficulty(..., verifier=name)` and the CLI."""
    if not callable(verifier):
        raise ConfigError(f"verifier {name!r} must be callable, got {type(verifier).__name__}.")
    VERIFIERS[name] = verifier


def get_verifier(verifier: str | Verifier) -> Verifier:
    """The verifier function for a registered name, or the callable itself."""
    if callable(verifier):
        return verifier
    try:
        return VERIFIERS[verifier]
    except (KeyError, TypeError):
        raise ConfigError(
            f"verifier={verifier!r} is not known; choose one of: {', '.join(sorted(VERIFIERS))}, "
            "or pass a callable (completion, reference) -> float."
        ) from None


def verifier_name(verifier: str | Verifier) -> str:
    """A stable, human-readable name for a verifier (recorded in provenance)."""
    if isinstance(verifier, str):
        return verifier
    module = getattr(verifier, "__module__", None) or "?"
    return f"{module}.{getattr(verifier, '__qualname__', type(verifier).__name__)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, Sequence) else [value]


def _as_latex(reference: Any) -> str:
    text = str(reference).strip()
    return text if "$" in text or "\\boxed" in text else f"${text}$"
