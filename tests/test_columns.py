"""The column spec: defaults, names, the one column check and the provenance read-back."""

import pytest

from difficulty_curation.columns import Columns
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ColumnNotFoundError, ConfigError
from difficulty_curation.provenance import provenance_record


def test_the_defaults_are_the_scoring_configs_and_a_config_gives_its_spec():
    assert ScoringConfig(model="m").columns == Columns() == Columns("problem", "solution", "image", None)
    config = ScoringConfig(
        model="m", prompt_column="q", answer_column="a", image_column="none", system_prompt="Be brief."
    )
    assert config.columns == Columns(prompt_column="q", answer_column="a", image_column=None, system_prompt="Be brief.")


def test_image_column_none_in_any_case_means_text_only():
    assert Columns(image_column="None").image_column is None
    assert Columns(image_column="NONE").required == {"prompt_column": "problem", "answer_column": "solution"}
    assert Columns(image_column="pixels").image_column == "pixels"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt_column": ""}, "prompt_column must be a column name, got ''"),
        ({"answer_column": None}, "answer_column must be a column name, got None"),
        ({"image_column": ""}, "image_column must be a column name or None, got ''"),
        ({"image_column": 3}, "image_column must be a column name or None, got 3"),
        ({"system_prompt": ["Be brief."]}, r"system_prompt must be a string or None, got \['Be brief.'\]"),
    ],
)
def test_a_bad_name_is_refused_naming_the_argument(options, message):
    with pytest.raises(ConfigError, match=message):
        Columns(**options)
    with pytest.raises(ConfigError, match=message):
        ScoringConfig(model="m", **options)


def test_check_names_the_first_missing_column_by_its_argument_and_flag():
    with pytest.raises(ColumnNotFoundError) as error:
        Columns(answer_column="label").check(["image", "problem", "solution"])
    assert error.value.option == "answer_column" and error.value.column == "label"
    assert str(error.value) == (
        "answer_column='label' is not a column of the dataset; available columns: image, problem, solution. "
        "Pass answer_column=<one of these> (--answer-column)."
    )
    with pytest.raises(ColumnNotFoundError, match=r"image_column='image'.*or None \('none'\) for text-only rows"):
        Columns().check(["problem", "solution"])


def test_check_passes_text_only_rows_when_there_is_no_image_column():
    Columns(image_column=None).check(["problem", "solution"])
    assert Columns(prompt_column="text", answer_column="text", image_column=None).names == ["text"]


def test_from_provenance_reads_the_columns_and_system_prompt_a_run_scored_with():
    config = ScoringConfig(model="m", prompt_column="q", answer_column="a", image_column=None, system_prompt="Hi.")
    assert Columns.from_provenance(provenance_record(config)) == config.columns


def test_from_provenance_of_an_older_record_without_the_keys_takes_the_defaults():
    assert Columns.from_provenance({"model": "m", "num_rollouts": 8}) == Columns()
    assert Columns.from_provenance({"answer_column": "label"}) == Columns(answer_column="label")
    assert Columns.from_provenance({"image_column": None}).image_column is None
    assert Columns.from_provenance({"image_column": "none"}).image_column is None
