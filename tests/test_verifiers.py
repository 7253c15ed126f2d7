import math

import pytest

from difficulty_curation.errors import ConfigError
from difficulty_curation.verifiers import (
    box_iou,
    choice_match,
    exact_match,
    extract_choice,
    get_verifier,
    iou_score,
    math_equivalence,
    normalize_label,
    parse_box,
    register_verifier,
    verifier_name,
)


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("cat", "cat", 1.0),
        ("  Cat.  ", "cat", 1.0),
        ("Golden Retriever.", "golden retriever", 1.0),
        ("...dog...", "Dog", 1.0),
        ("cat", "dog", 0.0),
        ("a cat", "cat", 0.0),
        ("<answer> Tabby </answer>", "tabby", 1.0),
        ("7", 7, 1.0),
        ("kitty", ["cat", "kitty"], 1.0),
    ],
)
def test_exact_match_uses_the_papers_normalisation(completion, reference, expected):
    assert exact_match(completion, reference) == expected


def test_normalize_label_strips_whitespace_and_dots_then_lowercases():
    assert normalize_label("  .Tench.  ") == "tench"


def test_box_iou_follows_the_papers_formula():
    # Inclusive-pixel intersection: x in [5, 9] and y in [5, 9] -> 5 * 5 = 25 pixels.
    # Raw w*h areas: 10 * 10 = 100 each; union = 100 + 100 - 25 = 175.
    assert box_iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    # Identical boxes: intersection (10 - 1 - 0 + 1)^2 = 100, union 100 + 100 - 100 -> IoU 1.
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    # Touching edges share no pixel under this formula.
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
    # Inclusive intersection can exceed the raw-area formula's: [0,0,4,4] in [0,0,8,8] -> 16 / 64.
    assert box_iou([0, 0, 4, 4], [0, 0, 8, 8]) == pytest.approx(16 / 64)


def test_iou_score_takes_the_first_box_in_the_completion():
    completion = "The object is at [10, 10, 50, 50], not at [0, 0, 5, 5]."
    assert iou_score(completion, [10, 10, 50, 50]) == pytest.approx(1.0)
    assert iou_score("no box here", [10, 10, 50, 50]) == 0.0


def test_iou_score_accepts_a_string_reference_and_a_list_of_boxes():
    assert iou_score("[0, 0, 10, 10]", "[0, 0, 10, 10]") == pytest.approx(1.0)
    assert iou_score("[0, 0, 10, 10]", [[50, 50, 60, 60], [0, 0, 10, 10]]) == pytest.approx(1.0)


def test_iou_score_rejects_a_reference_that_is_not_a_box():
    with pytest.raises(ValueError, match="not a box"):
        iou_score("[0, 0, 10, 10]", "a cat")


def test_iou_half_overlap_is_correct_at_the_default_threshold():
    # [0,0,10,10] vs [0,0,10,20]: inter 10*10=100, union 100+200-100=200 -> 0.5
    assert iou_score("[0, 0, 10, 10]", [0, 0, 10, 20]) == pytest.approx(0.5)


def test_parse_box_reads_decimals_and_negative_numbers():
    assert parse_box("box: [-1.5, 2, 3.25, 4]") == (-1.5, 2.0, 3.25, 4.0)
    assert parse_box("[1, 2, 3]") is None


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("The answer is \\boxed{\\frac{1}{2}}", "0.5", 1.0),
        ("so x = 4", "4", 1.0),
        ("\\boxed{3}", "4", 0.0),
        ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", 1.0),
    ],
)
def test_math_equivalence_uses_math_verify(completion, reference, expected):
    assert math_equivalence(completion, reference) == expected


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("(C)", "C"),
        ("D. a dog", "D"),
        ("The answer is (B).", "B"),
        ("Answer: C", "C"),
        ("I pick option G", "G"),
        ("so it must be (E)", "E"),
        ("<answer>A</answer>", "A"),
        ("I think A is right", None),
        ("the answer is a cat", None),
    ],
)
def test_extract_choice_reads_typical_phrasings(text, letter):
    assert extract_choice(text) == letter


def test_choice_match_compares_letters():
    assert choice_match("The answer is (B).", "B") == 1.0
    assert choice_match("C. a dog", "(B) a cat") == 0.0


def test_get_verifier_accepts_callables_and_rejects_unknown_names():
    def contains(completion: str, reference: str) -> float:
        return float(reference in completion)

    assert get_verifier(contains) is contains
    with pytest.raises(ConfigError, match="exact, iou, math"):
        get_verifier("fuzzy")


def test_register_verifier_makes_a_name_available(monkeypatch):
    import difficulty_curation.verifiers as module

    monkeypatch.setattr(module, "VERIFIERS", dict(module.VERIFIERS))  # keep the registry clean for others
    register_verifier("always_right", lambda completion, reference: 1.0)
    assert get_verifier("always_right")("x", "y") == 1.0
    assert verifier_name("always_right") == "always_right"


def test_every_builtin_returns_a_score_in_the_unit_interval():
    for name, completion, reference in [
        ("exact", "x", "y"),
        ("iou", "[0, 0, 3, 3]", [1, 1, 9, 9]),
        ("math", "\\boxed{2}", "2"),
        ("choice", "A", "B"),
    ]:
        score = get_verifier(name)(completion, reference)
        assert 0.0 <= score <= 1.0 and not math.isnan(score)


@pytest.mark.parametrize(
    ("completion", "reference"),
    [("1", 1), ("1", 1.0), ("1.0", "1"), ("<answer>3</answer>", 3.0), ("-2.50", "-2.5"), ("1e3", 1000)],
)
def test_exact_match_compares_numbers_by_value(completion, reference):
    assert exact_match(completion, reference) == 1.0


def test_exact_match_still_tells_different_numbers_apart():
    assert exact_match("1", 1.5) == 0.0 and exact_match("12", 1) == 0.0


@pytest.mark.parametrize("reference", [{"digit": 1}, True, False, [{"digit": 1}]])
def test_exact_match_refuses_a_reference_it_cannot_judge(reference):
    with pytest.raises(TypeError, match="cannot judge a reference of type"):
        exact_match("1", reference)


def test_choice_and_math_refuse_a_reference_they_cannot_judge():
    with pytest.raises(TypeError, match="'choice' verifier cannot judge a reference of type dict"):
        choice_match("B", {"answer": "B"})
    with pytest.raises(TypeError, match="'math' verifier cannot judge a reference of type bool"):
        math_equivalence("1", True)
