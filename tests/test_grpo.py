import importlib.util
import json
import statistics

import datasets
import pytest
import torch
import typer
from transformers import AutoModelForImageTextToText
from transformers.utils import logging as transformers_logging
from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.demo import build_tiny_vlm, cold_start
from difficulty_curation.errors import BackendUnavailableError, ColumnNotFoundError, ConfigError
from difficulty_curation.recipes.grpo import GRPOOptions, grpo, verifier_reward
from difficulty_curation.scoring import score_difficulty
from difficulty_curation.verifiers import get_verifier

FEW_STEPS = GRPOOptions(
    learning_rate=5e-3, num_generations=4, batch_size=4, max_completion_length=4, max_steps=3, logging_steps=1
)


@pytest.fixture(scope="module")
def grpo_run(trained_vlm, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo")
    merged = grpo(digits.select(range(12)), str(trained_vlm), out, options=FEW_STEPS, merge=True, progress=False)
    return out, merged


@pytest.mark.matrix("GRPO", family="llava")
def test_a_few_grpo_steps_change_the_adapter(grpo_run, trained_vlm):
    out, merged = grpo_run
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (32, 64, 0.05)
    assert merged == out / "merged" and (merged / "config.json").exists()
    before = AutoModelForImageTextToText.from_pretrained(trained_vlm).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(merged).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_every_logged_reward_re_verifies_with_the_scoring_verifier(grpo_run, digits):
    out, _ = grpo_run
    rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == FEW_STEPS.max_steps * FEW_STEPS.batch_size * FEW_STEPS.num_generations
    exact = get_verifier("exact")
    assert all(r["reward"] == exact(r["completion"], r["reference"]) for r in rollouts)
    assert {r["reference"] for r in rollouts} <= set(digits.select(range(12))["solution"])
    logged = [entry for entry in json.loads((out / "log_history.json").read_text()) if "reward" in entry]
    assert [entry["step"] for entry in logged] == [1, 2, 3]
    for entry in logged:  # the trainer's mean reward at step s is the mean over the rollouts it generated for s
        step_rewards = [r["reward"] for r in rollouts if r["step"] == entry["step"] - 1]
        assert entry["reward"] == pytest.approx(statistics.mean(step_rewards), abs=1e-6)
    assert (out / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"
    options = json.loads((out / "grpo_options.json").read_text())
    assert options["verifier"] == "exact" and options["rows"] == 12


def test_grpo_defaults_are_the_papers():
    options = GRPOOptions()
    assert (options.num_generations, options.temperature, options.beta, options.learning_rate) == (8, 0.9, 0.04, 1e-5)
    assert (options.lora_rank, options.lora_alpha, options.lora_dropout) == (32, 64, 0.05)


def test_the_reward_reads_plain_and_conversational_completions():
    reward = verifier_reward("exact")
    conversational = [
        [{"role": "assistant", "content": "7"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "1"}]}],
    ]
    assert reward(prompts=["q", "q"], completions=conversational, reference=["7", "7"]) == [1.0, 0.0]
    assert reward(prompts=["q"], completions=["<answer>7.</answer>"], reference=["7"]) == [1.0]


def test_the_reward_judges_with_the_runs_answer_extractor():
    said = ["The answer is: 7", "The answer is: 1", "7"]
    assert verifier_reward("exact", answer_extractor="answer-is")(
        prompts=["q"] * 3, completions=said, reference=["7"] * 3
    ) == [1.0, 0.0, 0.0]
    assert verifier_reward("exact")(prompts=["q"], completions=said[:1], reference=["7"]) == [0.0]  # auto: all of it


def test_the_reward_treats_a_truncated_completion_by_the_runs_policy():
    # TRL passes each completion's token ids: a full length without the end-of-sequence token was cut off
    columns = {"completion_ids": [[5, 6, 7], [5, 6, 2], [5]], "reference": ["7", "7", "7"]}
    arguments = {"max_completion_length": 3, "eos_token_id": 2}
    completions = ["7", "7", "7"]
    excluding = verifier_reward("exact", truncated="exclude", **arguments)
    assert excluding(prompts=["q"] * 3, completions=completions, **columns) == [None, 1.0, 1.0]
    wrong = verifier_reward("exact", truncated="wrong", **arguments)
    assert wrong(prompts=["q"] * 3, completions=completions, **columns) == [1.0, 1.0, 1.0]  # judged as written


def test_the_reward_is_the_scorers_judgement_of_each_completion():
    from difficulty_curation.answers import Completion

    scorer = score_difficulty("unused", verifier="math", answer_extractor="boxed", truncated="exclude")
    completions = ["so \\boxed{1/2}", "\\boxed{0.5} and \\boxed{3}", "no box", "\\boxed{1/2"]
    reward = verifier_reward("math", answer_extractor="boxed", truncated="exclude")
    rewards = reward(prompts=["q"] * 4, completions=completions, reference=["1/2"] * 4)
    assert rewards == [scorer.judge([Completion(c)], "1/2")[0] for c in completions]


def test_curate_grpo_judges_as_the_rows_were_scored_unless_told_otherwise(trained_vlm, digits, tmp_path):
    from difficulty_curation.config import ScoringConfig
    from difficulty_curation.provenance import attach_provenance, provenance_record

    rows = digits.select(range(4))
    scored_as = ScoringConfig.from_options("m", answer_extractor="regex", answer_pattern=r"(\d)", truncated="exclude")
    attach_provenance(rows, provenance_record(scored_as))
    rows.save_to_disk(str(tmp_path / "medium"))
    arguments = ["grpo", str(tmp_path / "medium"), "--model", str(trained_vlm), "--out", str(tmp_path / "grpo")]
    arguments += ["--max-steps", "1", "--batch-size", "2", "--num-generations", "2", "--max-completion-length", "2"]
    result = CliRunner().invoke(app, [*arguments, "--truncated", "wrong", "--quiet"])
    assert result.exit_code == 0, result.output
    options = json.loads((tmp_path / "grpo" / "grpo_options.json").read_text())
    assert (options["answer_extractor"], options["answer_pattern"], options["truncated"]) == ("regex", r"(\d)", "wrong")
    judge = score_difficulty("unused", answer_pattern=r"(\d)", truncated="wrong")
    rollouts = [json.loads(line) for line in (tmp_path / "grpo" / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts and all(r["finish_reason"] in ("stop", "length") for r in rollouts)
    assert [r["reward"] for r in rollouts] == [judge.judge([r["completion"]], r["reference"])[0] for r in rollouts]


def test_a_missing_answer_column_fails_before_any_model_loads(digits, tmp_path):
    rows = digits.select(range(4)).remove_columns("solution")
    with pytest.raises(ColumnNotFoundError, match="answer_column='solution'"):
        grpo(rows, str(tmp_path / "no-such-model"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unknown_verifier_fails_before_any_model_loads(digits, tmp_path):
    with pytest.raises(ConfigError, match="verifier='nope' is not known"):
        grpo(digits.select(range(4)), str(tmp_path / "no-such-model"), tmp_path / "out", verifier="nope")
    assert not (tmp_path / "out").exists()


def test_one_generation_per_prompt_is_refused(digits, tmp_path):
    with pytest.raises(ConfigError, match="num_generations \\(--num-generations\\) must be an integer >= 2"):
        grpo(digits.select(range(4)), str(tmp_path / "m"), tmp_path / "out", options=GRPOOptions(num_generations=1))


def test_use_vllm_without_vllm_installed_fails_before_any_model_loads(digits, tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'difficulty-curation\[vllm\]'"):
        grpo(digits.select(range(4)), str(tmp_path / "m"), tmp_path / "out", options=GRPOOptions(use_vllm=True))


def test_curate_grpo_trains_and_saves_like_curate_sft(trained_vlm, digits, tmp_path):
    data = tmp_path / "medium"
    digits.select(range(4)).save_to_disk(str(data))
    arguments = ["grpo", str(data), "--model", str(trained_vlm), "--out", str(tmp_path / "grpo"), "--merge"]
    arguments += ["--max-steps", "1", "--batch-size", "2", "--num-generations", "2", "--max-completion-length", "4"]
    result = CliRunner().invoke(app, [*arguments, "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"saved to {tmp_path / 'grpo' / 'merged'}" in result.stdout
    assert (tmp_path / "grpo" / "adapter_config.json").exists()
    assert (tmp_path / "grpo" / "processor_config.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--answer-column", "label"], "answer_column='label' is not a column"),
        (["--verifier", "nope"], "verifier='nope' is not known"),
        (["--num-generations", "1"], "num_generations (--num-generations) must be an integer >= 2"),
        (["--answer-extractor", "nope"], "answer_extractor='nope' is not known"),
        (["--truncated", "maybe"], "truncated='maybe' is not known"),
        (["--answer-pattern", "no group"], "has 0 groups; it needs exactly one"),
        ([], "could not load a processor for model 'unused'"),
    ],
)
def test_curate_grpo_bad_input_is_one_line_and_exit_code_2(digits, tmp_path, extra, message):
    data = tmp_path / "rows"
    digits.select(range(4)).save_to_disk(str(data))
    result = CliRunner().invoke(app, ["grpo", str(data), "--model", "unused", "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_curate_grpo_defaults_are_the_library_defaults():
    command = typer.main.get_command(app).commands["grpo"]
    defaults = {param.name: param.default for param in command.params}
    options = GRPOOptions()
    for name in ("learning_rate", "num_generations", "temperature", "beta", "max_completion_length", "batch_size"):
        assert defaults[name] == getattr(options, name), name
    assert defaults["lora_rank"] == options.lora_rank and defaults["epochs"] == options.num_train_epochs
    assert "Example:" in CliRunner().invoke(app, ["grpo", "--help"]).output


def test_the_cold_start_shows_one_progress_bar_and_no_loss_dictionaries(tmp_path, capfd):
    model = build_tiny_vlm(tmp_path / "m")
    transformers_logging.disable_progress_bar()  # as the CLI does: the libraries' own bars only with --verbose
    datasets.disable_progress_bars()
    try:
        capfd.readouterr()
        cold_start(model, steps=4, num_rows=8, batch_size=4)
    finally:
        transformers_logging.enable_progress_bar()
        datasets.enable_progress_bars()
    captured = capfd.readouterr()
    assert "{'loss'" not in captured.out + captured.err and "train_runtime" not in captured.out + captured.err
    bars = [line for line in captured.err.replace("\r", "\n").splitlines() if "%|" in line]
    assert {line.split(":")[0] for line in bars} == {"Cold start"}
    assert bars[-1].startswith("Cold start: 100%") and "4/4" in bars[-1]


@pytest.mark.parametrize("command", ["grpo", "eval"])
def test_the_judging_flags_are_scorings_own_fields_defaulting_to_the_datas_provenance(command):
    from difficulty_curation.config import option_help

    params = {param.name: param for param in typer.main.get_command(app).commands[command].params}
    for name in ("verifier", "answer_extractor", "answer_pattern", "truncated"):
        assert params[name].default is None, name
        assert params[name].help.startswith(option_help(name)) and "as the data was scored" in params[name].help, name
