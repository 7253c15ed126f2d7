import inspect
import json

import pytest

from difficulty_curation import ConfigError, score_difficulty
from difficulty_curation.config import (
    RESERVED_CHAT_TEMPLATE_KWARGS,
    RolloutConfig,
    ScoringConfig,
    option_help,
    parse_chat_template_kwargs,
    spoken_list,
)
from difficulty_curation.errors import ColumnNotFoundError, cli_flag


def test_defaults_follow_the_paper():
    rollout = RolloutConfig()
    assert (rollout.num_rollouts, rollout.temperature, rollout.top_p, rollout.max_new_tokens) == (8, 0.9, 1.0, 128)
    assert (rollout.top_k, rollout.seed) == (50, 0)
    scoring = ScoringConfig(model="m")
    assert (scoring.verifier, scoring.prompt_column, scoring.answer_column, scoring.image_column) == (
        "exact",
        "problem",
        "solution",
        "image",
    )
    assert scoring.backend == "auto" and scoring.keep_rollouts is False and scoring.correct_threshold == 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_rollouts": 0}, "num_rollouts must be an integer >= 1, got 0"),
        ({"num_rollouts": -3}, "num_rollouts must be an integer >= 1, got -3"),
        ({"num_rollouts": 2.5}, "num_rollouts must be an integer"),
        ({"temperature": -0.1}, "temperature must be a number >= 0.0, got -0.1"),
        ({"top_p": 0.0}, "top_p must be a number > 0.0"),
        ({"top_p": 1.5}, "top_p must be a number > 0.0 and <= 1.0, got 1.5"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"backend": "tensorrt"}, "backend='tensorrt' is not known; choose one of: auto, transformers, vllm, openai"),
        ({"verifier": "fuzzy"}, "verifier='fuzzy' is not known; choose one of: choice, exact, iou, math"),
        ({"correct_threshold": 2}, "correct_threshold must be a number >= 0.0 and <= 1.0, got 2"),
        ({"prompt_column": ""}, "prompt_column must be a column name"),
        ({"max_pixels": 0}, "max_pixels must be an integer >= 1, got 0"),
    ],
)
def test_bad_options_fail_at_construction_before_any_model_loads_naming_the_value(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        score_difficulty("some/model", **options)


def test_to_dict_is_flat_and_complete():
    record = ScoringConfig(model="m", rollout=RolloutConfig(num_rollouts=4)).to_dict()
    assert record["num_rollouts"] == 4 and record["model"] == "m" and "rollout" not in record
    assert {"temperature", "top_p", "top_k", "max_new_tokens", "seed", "verifier", "backend"} <= set(record)


def test_image_column_none_in_any_case_means_text_only():
    assert ScoringConfig(model="m", image_column="None").image_column is None
    assert ScoringConfig(model="m", image_column="pixels").image_column == "pixels"


def test_errors_name_an_argument_with_its_one_cli_flag():
    assert cli_flag("answer_column") == "--answer-column" and cli_flag("num_train_epochs") == "--epochs"
    assert "(--answer-column)" in str(ColumnNotFoundError("answer_column", "label", ["solution"]))


def test_help_texts_list_names_as_a_sentence_does():
    assert option_help("backend") == "auto, transformers, vllm or openai."
    assert spoken_list(["a"]) == "a" and spoken_list(["a", "b", "c"]) == "a, b or c"


# -- chat template variables: JSON values, never the template's own arguments ----------------------


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("enable_thinking=False", False),
        ("enable_thinking=false", False),
        ("enable_thinking=True", True),
        ("budget=2", 2),
        ("temperature_hint=0.5", 0.5),
        ("style=None", None),
        ("style=null", None),
        ('reasoning_effort="high"', "high"),
        ('tags=["a", 1]', ["a", 1]),
        ('options={"x": true}', {"x": True}),
    ],
)
def test_chat_template_kwargs_values_are_json_and_python_booleans_are_booleans(item, value):
    assert parse_chat_template_kwargs([item]) == {item.partition("=")[0]: value}


@pytest.mark.parametrize("item", ["reasoning_effort=high", "enable_thinking=no", "x=NaN", "x=Infinity", "x={a: 1}"])
def test_a_chat_template_value_that_is_not_json_is_refused_saying_how_to_quote_a_string(item):
    key, _, text = item.partition("=")
    with pytest.raises(ConfigError, match="is not a JSON value") as error:
        parse_chat_template_kwargs([item])
    assert f"--chat-template-kwargs '{key}={json.dumps(text)}'" in str(error.value)


@pytest.mark.parametrize("key", ["add_generation_prompt", "messages", "tokenize", "chat_template", "return_dict"])
def test_apply_chat_template_arguments_are_refused_as_chat_template_kwargs_before_any_model_loads(key):
    with pytest.raises(
        ConfigError, match=rf"chat_template_kwargs\['{key}'\] \(--chat-template-kwargs\) is an argument"
    ):
        score_difficulty("no/such-model", chat_template_kwargs={key: True})


def test_the_cli_refuses_a_reserved_chat_template_key_in_one_line_before_loading(tmp_path):
    from typer.testing import CliRunner

    from difficulty_curation.cli import app

    result = CliRunner().invoke(
        app,
        [
            "score",
            str(tmp_path / "none.parquet"),
            "--model",
            "no/such-model",
            "--chat-template-kwargs",
            "tokenize=true",
        ],
    )
    assert result.exit_code == 2 and "chat_template_kwargs['tokenize']" in result.output
    assert "Traceback" not in result.output


def test_the_reserved_chat_template_keys_cover_every_argument_transformers_apply_chat_template_takes():
    from transformers import PreTrainedTokenizerBase, ProcessorMixin
    from transformers.utils.chat_template_utils import render_jinja_template

    arguments = set()
    for function in (
        PreTrainedTokenizerBase.apply_chat_template,
        ProcessorMixin.apply_chat_template,
        render_jinja_template,
    ):
        for name, parameter in inspect.signature(function).parameters.items():
            if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD:
                arguments.add(name)
    assert arguments | {"messages"} <= RESERVED_CHAT_TEMPLATE_KWARGS


def test_a_non_finite_chat_template_value_is_refused_by_the_library():
    with pytest.raises(ConfigError, match="chat_template_kwargs must hold JSON values"):
        ScoringConfig(model="m", chat_template_kwargs={"x": float("nan")})
