"""Answers as models write them: extractors, finish reasons, the truncation policy (no model needed here)."""

from __future__ import annotations

import json
import pickle
import sqlite3
import time

import pytest
from datasets import Dataset

from difficulty_curation import ConfigError, score_difficulty
from difficulty_curation.answers import (
    EXTRACTORS,
    Completion,
    count_truncated,
    extract_answer,
    finish_reason,
    server_finish_reason,
)
from difficulty_curation.audit import audit_hard_rows
from difficulty_curation.cards import render_card
from difficulty_curation.config import ANSWER_EXTRACTORS, ScoringConfig, parse_chat_template_kwargs
from difficulty_curation.engines.openai import chat_request_body, parse_chat_response
from difficulty_curation.errors import RowError
from difficulty_curation.prompts import PromptRequest
from difficulty_curation.provenance import attach_provenance, provenance_record, with_finish_counts
from difficulty_curation.rollout_cache import RolloutCache, rollout_key
from difficulty_curation.stats import scoring_warnings, summarize
from difficulty_curation.verifiers import get_verifier

# (extractor, completion, the answer it takes): real-looking completions, decoys inside think blocks.
EXTRACTIONS = [
    ("auto", "7", "7"),
    ("auto", "<think>maybe 3... no, 7</think>7", "7"),
    ("auto", "<think>The answer is 3.</think>\n<answer> 7 </answer>", "7"),
    ("auto", "<think>3? 5? still counting", None),  # never closed: no answer
    ("auto", "<THINK>upper case</THINK>7", "7"),
    ("auto", "<answer>7</answer> and later <answer>3</answer>", "7"),  # the first tags, as before extractors
    ("boxed", "First \\boxed{3}, then correcting: \\boxed{7}", "7"),
    ("boxed", "$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
    ("boxed", "<think>surely \\boxed{3}</think>So the digit is \\boxed{7}.", "7"),
    ("boxed", "<think>\\boxed{7} but I am not done", None),
    ("boxed", "The digit is 7.", None),
    ("last-line", "Let me look.\nThe strokes curve.\n**7**\n\n", "7"),
    ("last-line", "<think>3\n5</think>\nIt is\n`7`", "7"),
    ("last-line", "   \n  ", None),
    ("answer-is", "Answer: **7**", "7"),
    ("answer-is", "I first thought the answer is 3. Final answer: $7$", "7"),
    ("answer-is", "<think>the answer is 3</think>The answer is \\boxed{7}.", "7"),
    ("answer-is", "So the answer is 7.\nThat was easy.", "7"),
    ("answer-is", "It looks like a seven to me.", None),
]


@pytest.mark.parametrize(("name", "completion", "expected"), EXTRACTIONS)
def test_each_extractor_takes_the_final_answer_and_ignores_the_reasoning(name, completion, expected):
    assert extract_answer(completion, name) == expected


@pytest.mark.parametrize(("name", "completion", "expected"), [e for e in EXTRACTIONS if e[2] is not None])
def test_every_extracted_answer_of_a_seven_is_judged_right_by_exact(name, completion, expected):
    if "\\frac" in completion:
        return
    assert get_verifier("exact")(extract_answer(completion, name), "7") == 1.0


# (extractor, completion, the answer as written): what surrounds an answer in prose goes, nothing inside it.
AS_WRITTEN = [
    ("answer-is", "The answer is: **7**.", "7"),
    ("last-line", "The answer is: **7**.", "The answer is: **7**"),
    ("answer-is", "Final Answer: 7!", "7"),
    ("last-line", "Counting the strokes...\n**7**.", "7"),
    ("last-line", "Counting the strokes...\n7!", "7"),
    ("answer-is", "The answer is A.", "A"),
    ("answer-is", "The answer is 7.", "7"),
    ("answer-is", "The answer is 3.14.", "3.14"),
    ("answer-is", "The answer is -2", "-2"),
    ("answer-is", "The answer is x^2.", "x^2"),
    ("answer-is", "The answer is $7$.", "7"),
    ("answer-is", "The answer is `7`;", "7"),
    ("answer-is", "The answer is $5!$.", "5!"),  # inside math, ! is a factorial
    ("boxed", "So \\boxed{5!}.", "5!"),
    ("boxed", "So \\boxed{z^*}", "z^*"),
    ("boxed", "So \\boxed{ 7. }", "7"),
    ("answer-is", "The answer is \\boxed{5!}!", "5!"),
    ("last-line", "**$\\boxed{7}$**.", "7"),
    ("last-line", "$a$ and $b$", "$a$ and $b$"),  # not one wrapper around the whole answer
    ("regex", "Digit: **7**.", "7"),
    ("auto", "<answer>**7**.</answer>", "7"),
    ("auto", "\x00 7 \x1b\u200b", "7"),
    ("last-line", "7\n**\n...\n", "7"),  # a line of only emphasis or punctuation holds no answer
    ("answer-is", "The answer is ...", None),
    ("boxed", "\\boxed{}", None),
    ("auto", "", None),
    ("auto", "!?.", None),
]


@pytest.mark.parametrize(("name", "completion", "expected"), AS_WRITTEN)
def test_every_extractor_drops_emphasis_and_sentence_punctuation_but_nothing_inside_the_answer(
    name, completion, expected
):
    assert extract_answer(completion, name, r"Digit: (.*)" if name == "regex" else None) == expected


@pytest.mark.parametrize("name", ["boxed", "answer-is"])
def test_a_last_box_that_is_never_closed_is_no_answer_even_after_a_closed_one(name):
    cut_off = "First \\boxed{7}. Hmm, the answer is \\boxed{\\frac{14}{2"
    assert extract_answer(cut_off, name) is None
    assert extract_answer("\\boxed{\\{1, 2\\}} is the set", "boxed") == "\\{1, 2\\}"  # escaped braces are text


def seconds_to_extract(text, name):
    """The fastest of three extractions of `text` (the others carry the noise of a shared machine)."""
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        extract_answer(text, name, r"(\d)" if name == "regex" else None)
        timings.append(time.perf_counter() - start)
    return min(timings)


def assert_linear(name, unit, repeats):
    """Ten times the input takes well under 100 times as long (quadratic), with slack for tiny timings."""
    small = seconds_to_extract(unit * repeats, name)
    large = seconds_to_extract(unit * (10 * repeats), name)
    assert large < 25 * small + 0.05, f"{name} on {unit!r}: {small:.4f}s, 10x the input {large:.4f}s"


def test_the_boxed_extractor_is_linear_on_repeated_unclosed_boxes():
    assert_linear("boxed", "\\boxed{", 300)


#: Hostile completions, each repeated: unclosed boxes and tags, nested braces, markers, only markup.
HOSTILE = [
    "\\boxed{",
    "\\boxed{{",
    "\\boxed{7}}{",
    "\\boxed ",
    "<answer>",
    "<think>",
    "</think ",
    "the answer is ",
    "answer" + " " * 50,
    "*\n",
    ".!?*_`$",
    "\\(",
    "\\",
    "\x00\x1b\u200b\u0130",
    "$",
]


@pytest.mark.parametrize("unit", HOSTILE)
@pytest.mark.parametrize("name", [*EXTRACTORS, "regex"])
def test_every_extractor_is_linear_on_hostile_completions(name, unit):
    assert_linear(name, unit, 300)


def test_a_300k_character_completion_of_nested_boxes_is_extracted_at_once():
    nested = "\\boxed{" * 40_000 + "7" + "}" * 40_000
    start = time.perf_counter()
    assert extract_answer(nested, "boxed") == "7"  # the last box opened: the innermost
    for name in EXTRACTORS:
        extract_answer(nested, name)
    assert time.perf_counter() - start < 10


def test_a_regex_extractor_takes_the_last_match_of_its_one_group_after_the_reasoning():
    pattern = r"Digit:\s*(\d)"
    assert extract_answer("<think>Digit: 1</think>Digit: 3, sorry, Digit: 7", "regex", pattern) == "7"
    assert extract_answer("no digit named", "regex", pattern) is None
    assert extract_answer("<think>Digit: 1", "regex", pattern) is None


def test_the_config_knows_exactly_the_extractors_answers_implements():
    assert set(ANSWER_EXTRACTORS) == {*EXTRACTORS, "regex"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"answer_extractor": "first-line"}, "answer_extractor='first-line' is not known; choose one of: auto"),
        ({"truncated": "drop"}, "truncated='drop' is not known; choose one of: wrong, exclude"),
        ({"answer_extractor": "regex"}, "needs answer_pattern"),
        ({"answer_pattern": r"(\d)(\d)"}, "has 2 groups; it needs exactly one"),
        ({"answer_pattern": r"\d"}, "has 0 groups"),
        ({"answer_pattern": "(unclosed"}, "is not a regular expression"),
        ({"answer_pattern": r"(\d)", "answer_extractor": "boxed"}, "is for answer_extractor='regex', not 'boxed'"),
        ({"chat_template_kwargs": {"not a name": 1}}, "chat_template_kwargs must be a dict of variable name"),
    ],
)
def test_bad_answer_options_fail_at_construction_naming_the_value(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        score_difficulty("some/model", **options)


def test_a_pattern_alone_chooses_the_regex_extractor_and_survives_the_record():
    config = score_difficulty("m", answer_pattern=r"Final: (\d+)").config
    assert config.answer_extractor == "regex"
    assert ScoringConfig.from_dict(config.to_dict()) == config
    assert config.replace(answer_extractor="boxed", answer_pattern=None).answer_extractor == "boxed"


def test_chat_template_kwargs_are_read_as_json_and_named_in_errors():
    assert parse_chat_template_kwargs(["enable_thinking=false"]) == {"enable_thinking": False}
    with pytest.raises(ConfigError, match=r"--chat-template-kwargs 'thinking' is not KEY=VALUE; write e.g. "):
        parse_chat_template_kwargs(["thinking"])


def test_chat_template_kwargs_are_in_the_rollout_key_and_keys_without_them_are_unchanged():
    plain = ScoringConfig(model="m")
    thinking_off = ScoringConfig(model="m", chat_template_kwargs={"enable_thinking": False})
    assert "chat_template_kwargs" not in plain.rollout_identity()  # caches written before the option still hit
    assert rollout_key(plain, "row") != rollout_key(thinking_off, "row")
    assert thinking_off.to_dict()["chat_template_kwargs"] == {"enable_thinking": False}


def test_verification_options_are_not_in_the_rollout_key():
    plain = ScoringConfig(model="m")
    judged_otherwise = ScoringConfig(model="m", truncated="exclude", answer_extractor="boxed")
    assert rollout_key(plain, "row") == rollout_key(judged_otherwise, "row")


def test_a_completion_is_a_str_that_keeps_its_finish_reason_through_pickle():
    completion = Completion("7", "length")
    assert completion == "7" and isinstance(completion, str)
    again = pickle.loads(pickle.dumps(completion))
    assert again == "7" and finish_reason(again) == "length"
    assert finish_reason("7") is None  # a plain str: not known, never guessed
    assert count_truncated([Completion("a", "stop"), Completion("b", "length")]) == 1
    assert count_truncated([Completion("a", "stop"), "b"]) is None


def test_server_finish_reasons_map_to_ours_and_others_stay_unknown():
    assert [server_finish_reason(r) for r in ("stop", "eos_token", "length", "content_filter", None)] == [
        "stop",
        "stop",
        "length",
        None,
        None,
    ]


def test_the_openai_body_carries_chat_template_kwargs_and_responses_their_finish_reasons():
    request = PromptRequest(messages=[{"role": "user", "content": "Which digit?"}], images=[])
    rollout = ScoringConfig(model="m").rollout
    body = chat_request_body(
        request, model="m", rollout=rollout, num_rollouts=2, seed=1, chat_template_kwargs={"enable_thinking": False}
    )
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in chat_request_body(request, model="m", rollout=rollout, num_rollouts=2, seed=1)
    payload = {
        "choices": [
            {"index": 1, "message": {"content": "7 7 7"}, "finish_reason": "length"},
            {"index": 0, "message": {"content": "7"}, "finish_reason": "stop"},
        ]
    }
    assert [finish_reason(c) for c in parse_chat_response(payload, 2)] == ["stop", "length"]


def test_the_rollout_cache_stores_finish_reasons_and_reads_old_entries_as_unknown(tmp_path):
    cache = RolloutCache(tmp_path / "rollouts.sqlite")
    cache.put_many({"new": [Completion("7", "stop"), Completion("7 7", "length")]})
    cache.close()
    with sqlite3.connect(tmp_path / "rollouts.sqlite") as connection:  # an entry as caches before this change held it
        connection.execute("INSERT INTO rollouts VALUES (?, ?)", ("old", json.dumps(["7", "3"])))
    found = RolloutCache(tmp_path / "rollouts.sqlite").get_many(["new", "old"])
    assert found["new"] == ["7", "7 7"] and [finish_reason(c) for c in found["new"]] == ["stop", "length"]
    assert found["old"] == ["7", "3"] and [finish_reason(c) for c in found["old"]] == [None, None]


def scored_rows(num_truncated, *, max_new_tokens=128, truncated="wrong"):
    """A scored dataset of rows with 8 rollouts each and these `num_truncated`, with its provenance."""
    rows = Dataset.from_dict(
        {
            "difficulty": [0.5] * len(num_truncated),
            "num_correct": [4] * len(num_truncated),
            "num_rollouts": [8] * len(num_truncated),
            "num_truncated": num_truncated,
            "difficulty_error": [""] * len(num_truncated),
        }
    )
    config = ScoringConfig(model="m", truncated=truncated).replace(max_new_tokens=max_new_tokens)
    return attach_provenance(rows, with_finish_counts(provenance_record(config), rows))


def test_more_than_a_tenth_truncated_warns_naming_max_new_tokens():
    summary = summarize(scored_rows([2, 0, 0, 0], max_new_tokens=64))  # 2 of 32: 6.25%
    assert summary.truncated_rollouts == 2 and summary.rollouts_finish_known == 32
    assert not any("max_new_tokens" in warning for warning in scoring_warnings(summary))
    summary = summarize(scored_rows([4, 0, 0, 0], max_new_tokens=64))  # 4 of 32: 12.5%
    (warning,) = [w for w in scoring_warnings(summary) if "max_new_tokens" in w]
    assert "4 of 32 rollouts (12.5%) hit max_new_tokens=64" in warning and "--max-new-tokens" in warning


def test_rows_scored_before_finish_reasons_are_counted_as_unknown_never_guessed():
    summary = summarize(scored_rows([None, None, 3]))
    assert (summary.truncated_rollouts, summary.rollouts_finish_known, summary.rollouts_finish_unknown) == (3, 8, 16)
    assert summary.to_dict()["truncated_share"] == 3 / 8


def test_the_provenance_and_the_card_record_the_policy_and_the_truncated_share():
    rows = scored_rows([2, 0, 0, 0], truncated="exclude")
    card = str(render_card(rows, "me/digits"))
    assert "6.2% of the rollouts (2) hit the\n`max_new_tokens=128` limit" in card
    assert "left out of `difficulty`" in card and "`truncated=exclude`" in card
    assert "| truncated_share | `0.0625` |" in card


def test_the_audit_groups_hard_rows_by_the_extracted_answer():
    rows = Dataset.from_dict(
        {
            "difficulty": [1.0, 1.0],
            "solution": ["7", "7"],
            "rollouts": [
                ["<think>is it 7?</think>1", "<think>7 or 1</think>1", "1"],
                ["<think>a 7</think>so \\boxed{1}", "<think>7</think>so \\boxed{1}", "\\boxed{2}"],
            ],
        }
    )
    groups = audit_hard_rows(rows)  # auto: the text after </think>, boxes and all
    assert [(g.majority_answer, g.rows) for g in groups] == [("1", [0]), ("so \\boxed{1}", [1])]
    attach_provenance(rows, provenance_record(ScoringConfig(model="m", answer_extractor="boxed")))
    groups = audit_hard_rows(rows)  # the run's own extractor, from its provenance
    assert [(g.majority_answer, g.rows) for g in groups] == [("1", [1])]


def test_every_verifier_judges_the_answer_after_the_reasoning_and_the_policy_decides_cut_off_rollouts():
    math = score_difficulty("m", verifier="math")
    decoy = "<think>surely \\boxed{1/2}</think>so \\boxed{1/3}"
    late = "<think>1/3? no</think>The answer is \\boxed{\\frac{1}{2}}"
    assert math._verify_all([decoy, late, "<think>\\boxed{1/2} and still"], "1/2") == [0.0, 1.0, 0.0]
    cut = Completion("<think>\\boxed{1/2}", "length")
    assert math._verify_all([cut, Completion(late, "stop")], "1/2") == [0.0, 1.0]  # wrong: judged as written
    excluding = score_difficulty("m", verifier="math", truncated="exclude")
    assert excluding._verify_all([cut, Completion(late, "stop"), late], "1/2") == [None, 1.0, 1.0]  # unknown: judged


def test_content_sent_as_a_list_of_text_parts_is_joined_and_other_parts_fail_the_row():
    payload = {
        "choices": [
            {"index": 0, "message": {"content": [{"type": "text", "text": "so "}, {"type": "text", "text": "7"}]}}
        ]
    }
    assert parse_chat_response(payload, 1) == ["so 7"]
    image = {"choices": [{"index": 0, "message": {"content": [{"type": "image_url", "image_url": {"url": "x"}}]}}]}
    with pytest.raises(RowError, match=r"content that is not text \(image_url\)"):
        parse_chat_response(image, 1)
