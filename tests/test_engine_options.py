"""Engine options: from the library and the CLI to the engine, and into provenance and cache keys where they change tokens."""

import json
import logging

import pytest
import torch
from datasets import load_from_disk
from typer.testing import CliRunner

from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.config import parse_engine_options
from difficulty_curation.engines.transformers import TransformersEngine
from difficulty_curation.errors import ConfigError, ModelLoadError
from difficulty_curation.provenance import read_provenance
from difficulty_curation.rollout_cache import rollout_key

runner = CliRunner()


def test_engine_option_values_are_read_as_json_where_they_parse_else_as_strings():
    assert parse_engine_options(
        ["max_model_len=4096", "enforce_eager=true", 'limit_mm_per_prompt={"image": 2}', "dtype=bfloat16", "x=0.9"]
    ) == {
        "max_model_len": 4096,
        "enforce_eager": True,
        "limit_mm_per_prompt": {"image": 2},
        "dtype": "bfloat16",
        "x": 0.9,
    }


@pytest.mark.parametrize("item", ["max_model_len", "=4", "max model len=4", "4x=1"])
def test_an_engine_option_without_key_equals_value_is_a_clear_error(item):
    with pytest.raises(
        ConfigError, match=r"--engine-option .* is not KEY=VALUE; write e.g. --engine-option max_model_len=4096"
    ):
        parse_engine_options([item])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": 3}, r"engine_options\['seed'\] is set from the scoring options; pass seed= \(--seed\) instead"),
        ({"model": "other"}, r"engine_options\['model'\] is set from the scoring options"),
        ({"dtype": object()}, r"engine_options\['dtype'\] must be a JSON value"),
        ({1: 2}, "engine_options keys must be option names, got 1"),
    ],
)
def test_engine_options_the_toolkit_sets_itself_or_cannot_record_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        score_difficulty("m", engine_options=options)


def test_options_that_change_tokens_change_the_rollout_cache_key_and_the_others_do_not():
    plain = score_difficulty("m").config
    speed = score_difficulty("m", engine_options={"gpu_memory_utilization": 0.8, "tensor_parallel_size": 4}).config
    bf16 = score_difficulty("m", engine_options={"dtype": "bfloat16"}).config
    awq = score_difficulty("m", engine_options={"quantization": "awq"}).config
    impl = score_difficulty("m", engine_options={"model_impl": "transformers"}).config
    keys = [rollout_key(config, "row") for config in (plain, speed, bf16, awq, impl)]
    assert keys[0] == keys[1]
    assert len(set(keys[:1] + keys[2:])) == 4


def test_the_provenance_records_only_the_options_that_change_tokens():
    config = score_difficulty("m", engine_options={"dtype": "float32", "gpu_memory_utilization": 0.5}).config
    assert config.to_dict()["engine_options"] == {"dtype": "float32"}
    assert config.engine_options == {"dtype": "float32", "gpu_memory_utilization": 0.5}


def test_the_transformers_backend_loads_with_the_dtype_option(tiny_vlm):
    config = score_difficulty(str(tiny_vlm), backend="transformers", engine_options={"dtype": "bfloat16"}).config
    assert TransformersEngine(config, device="cpu").model.dtype == torch.bfloat16


def test_a_dtype_that_torch_does_not_know_is_a_model_load_error(tiny_vlm):
    config = score_difficulty(str(tiny_vlm), backend="transformers", engine_options={"dtype": "float7"}).config
    with pytest.raises(ModelLoadError, match="engine option dtype='float7' is not a torch dtype"):
        TransformersEngine(config, device="cpu")


def test_cli_engine_options_reach_the_engine_and_the_scored_datasets_provenance(digits, tiny_vlm, tmp_path):
    data = tmp_path / "digits.parquet"
    digits.select(range(4)).to_parquet(str(data))
    out = tmp_path / "scored"
    args = ["score", str(data), "--model", str(tiny_vlm), "--out", str(out), "-k", "2", "--max-new-tokens", "2"]
    args += ["--engine-option", "dtype=bfloat16", "--engine-option", "max_model_len=512", "--quiet", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_failed"] == 0
    assert read_provenance(load_from_disk(str(out)))["engine_options"] == {"dtype": "bfloat16"}


def test_cli_bad_engine_option_syntax_is_one_line_and_exit_code_2(digits, tmp_path):
    data = tmp_path / "digits.parquet"
    digits.select(range(2)).to_parquet(str(data))
    result = runner.invoke(app, ["score", str(data), "--model", "m", "--engine-option", "tensor_parallel_size"])
    assert result.exit_code == 2
    assert "--engine-option 'tensor_parallel_size' is not KEY=VALUE" in result.output
    assert "Traceback" not in result.output


def test_the_transformers_backend_loads_with_the_attention_implementation_option(tiny_vlm):
    config = score_difficulty(
        str(tiny_vlm), backend="transformers", engine_options={"attn_implementation": "eager"}
    ).config
    assert TransformersEngine(config, device="cpu").model.config._attn_implementation == "eager"


def test_engine_options_the_transformers_backend_does_not_use_are_listed_in_a_warning(caplog):
    from difficulty_curation.models import check_transformers_options

    with caplog.at_level(logging.WARNING):
        check_transformers_options({"dtype": "float32", "max_modle_len": 4096})
    assert "does not use engine options max_modle_len" in caplog.text
