import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from typer.testing import CliRunner

from difficulty_curation.cli import app
from difficulty_curation.columns import Columns
from difficulty_curation.demo import DIGIT_PROMPT, digits_dataset
from difficulty_curation.errors import ColumnNotFoundError, ConfigError, MissingDependencyError
from difficulty_curation.recipes.evaluate import evaluate, markdown_table, wilson_interval, write_report
from difficulty_curation.recipes.formats import from_trl_format, to_trl_format
from difficulty_curation.recipes.sft import SFTOptions, sft


def test_trl_format_round_trips(digits):
    rows = digits.select(range(4))
    converted = to_trl_format(rows)
    assert converted.column_names == ["prompt", "completion", "images"]
    assert (
        converted[0]["prompt"]
        == [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": DIGIT_PROMPT}]}]
        or converted[0]["prompt"][0]["content"][1]["text"] == DIGIT_PROMPT
    )
    assert converted[0]["completion"][0]["content"][0]["text"] == rows[0]["solution"]
    back = from_trl_format(converted)
    assert back["problem"] == rows["problem"] and back["solution"] == rows["solution"]
    assert [img.convert("L").tobytes() for img in back["image"]] == [img.tobytes() for img in rows["image"]]
    messages = to_trl_format(rows, style="messages", columns=Columns(system_prompt="Be brief."))
    assert [turn["role"] for turn in messages[0]["messages"]] == ["system", "user", "assistant"]
    assert from_trl_format(messages)["solution"] == rows["solution"]


def _answer_loss(model_path, rows):
    """Mean loss of the answer tokens, as the SFT recipe trains it."""
    processor = AutoProcessor.from_pretrained(model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path).eval()
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DIGIT_PROMPT}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    losses = []
    for row in rows:
        inputs = processor(
            text=[prompt + row["solution"] + "</s>"], images=[[row["image"].convert("RGB")]], return_tensors="pt"
        )
        labels = torch.full_like(inputs["input_ids"], -100)
        labels[0, -2:] = inputs["input_ids"][0, -2:]
        with torch.no_grad():
            losses.append(model(**inputs, labels=labels).loss.item())
    return sum(losses) / len(losses)


@pytest.mark.matrix("SFT", family="llava")
def test_a_few_lora_steps_change_the_weights_and_lower_the_answer_loss(tiny_vlm, digits, tmp_path):
    rows = digits.select(range(16))
    options = SFTOptions(learning_rate=5e-3, max_steps=15, batch_size=8, warmup_ratio=0.0, logging_steps=5)
    merged = sft(rows, str(tiny_vlm), tmp_path / "lora", options=options, merge=True)
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert merged == tmp_path / "lora" / "merged"
    adapter = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert adapter["r"] == 32 and adapter["lora_alpha"] == 64 and adapter["lora_dropout"] == 0.05
    before = AutoModelForImageTextToText.from_pretrained(tiny_vlm).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(merged).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert _answer_loss(merged, rows) < _answer_loss(tiny_vlm, rows)


def test_lora_defaults_are_the_papers():
    options = SFTOptions()
    assert (options.lora_rank, options.lora_alpha, options.lora_dropout) == (32, 64, 0.05)
    assert (options.learning_rate, options.warmup_ratio, options.full) == (1e-5, 0.1, False)


def test_eval_accuracy_equals_hand_checked_greedy_answers(trained_vlm, digits):
    processor = AutoProcessor.from_pretrained(trained_vlm)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(trained_vlm).eval()
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DIGIT_PROMPT}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = processor(
        text=[prompt] * len(digits),
        images=[[img.convert("RGB")] for img in digits["image"]],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=4)
    answers = processor.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    by_hand = sum(answer.strip() == solution for answer, solution in zip(answers, digits["solution"]))
    report = evaluate(str(trained_vlm), {"id": digits}, max_new_tokens=4)
    (result,) = report.results
    assert (result.correct, result.total, result.failed) == (by_hand, len(digits), 0)
    assert result.accuracy == pytest.approx(by_hand / len(digits))


def test_wilson_interval_matches_known_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_reports_mark_ood_sets_and_write_json_markdown_and_a_plot(trained_vlm, digits, tmp_path):
    sets = {"id": digits.select(range(8)), "rotated": digits_dataset(split="train", rendition="rotated", num_rows=8)}
    reports = [evaluate(str(trained_vlm), sets, ood={"rotated"}, max_new_tokens=4)] * 2
    table = markdown_table(reports, names=["a", "b"])
    assert table.splitlines()[0] == "| model | id (ID) | rotated (OOD) |"
    assert table.count("\n") == 4
    out = write_report(reports, tmp_path / "eval", names=["a", "b"])
    assert json.loads((out / "results.json").read_text())[0]["results"][1]["ood"] is True
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_curate_sft_and_eval_end_to_end(tiny_vlm, trained_vlm, digits, tmp_path):
    data, test = tmp_path / "train", tmp_path / "test"
    digits.select(range(16)).save_to_disk(str(data))
    digits.select(range(8)).save_to_disk(str(test))
    runner = CliRunner()
    trained = runner.invoke(
        app,
        [
            "sft",
            str(data),
            "--model",
            str(tiny_vlm),
            "--out",
            str(tmp_path / "lora"),
            "--merge",
            "--max-steps",
            "3",
            "--learning-rate",
            "1e-3",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert f"saved to {tmp_path / 'lora' / 'merged'}" in trained.stdout
    result = runner.invoke(
        app,
        [
            "eval",
            str(tmp_path / "lora" / "merged"),
            "--dataset",
            f"id={test}",
            "--compare",
            str(trained_vlm),
            "--max-new-tokens",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [len(r["results"]) for r in reports] == [1, 1] and reports[1]["model"] == str(trained_vlm)
    parquet = tmp_path / "test.parquet"
    digits.select(range(8)).to_parquet(str(parquet))  # one file: a single split called "train"
    single = runner.invoke(
        app, ["eval", str(trained_vlm), "--dataset", f"id={parquet}", "--max-new-tokens", "4", "--json"]
    )
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)[0]["results"][0]["total"] == 8
    bad = runner.invoke(app, ["eval", str(trained_vlm), "--dataset", "nopath"])
    assert bad.exit_code == 2 and "is not NAME=PATH" in bad.output


def test_lora_alpha_is_twice_the_rank_unless_given():
    assert SFTOptions(lora_rank=8).lora_alpha == 16
    assert SFTOptions(lora_rank=8, lora_alpha=8).lora_alpha == 8


def test_sft_without_trl_says_what_to_install_before_anything_loads(digits, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else find_spec(name, *a))
    with pytest.raises(
        MissingDependencyError, match=r"the SFT recipe needs TRL.*pip install 'difficulty-curation\[train\]'"
    ):
        sft(digits.select(range(4)), str(tmp_path / "no-such-model"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_image_column_none_means_text_only_rows(digits):
    text = digits.select(range(2)).remove_columns("image")
    assert to_trl_format(text, columns=Columns(image_column="none"))["images"] == [[], []]
    assert (
        from_trl_format(to_trl_format(text, columns=Columns(image_column=None)), columns=Columns(image_column=None))[
            "problem"
        ]
        == text["problem"]
    )


def test_the_formats_read_the_columns_the_spec_names(digits):
    rows = digits.select(range(2)).rename_columns({"problem": "question", "solution": "label", "image": "picture"})
    columns = Columns(prompt_column="question", answer_column="label", image_column="picture")
    back = from_trl_format(to_trl_format(rows, columns=columns), columns=columns)
    assert back.column_names == ["question", "label", "picture"] and back["label"] == rows["label"]
    with pytest.raises(ColumnNotFoundError, match=r"prompt_column='problem' is not a column.*label, picture, question"):
        to_trl_format(rows)


def test_an_ood_name_that_is_no_evaluation_set_fails_before_anything_is_generated(digits):
    with pytest.raises(ConfigError, match=r"ood rotated \(--ood\) names no evaluation set; known: id"):
        evaluate("my-org/never-loaded", {"id": digits}, ood={"rotated"})


def _scored_as(rows, **options):
    """`rows` with the provenance of a run scored with `options` (a copy: `select` copies the info)."""
    from difficulty_curation.config import ScoringConfig
    from difficulty_curation.provenance import attach_provenance, provenance_record

    return attach_provenance(
        rows.select(range(len(rows))), provenance_record(ScoringConfig.from_options("m", **options))
    )


def test_eval_judges_each_set_with_the_extractor_it_was_scored_with(trained_vlm, digits):
    rows = digits.select(range(8))
    sets = {"plain": rows, "answer-is": _scored_as(rows, answer_extractor="answer-is")}
    plain, marked = evaluate(str(trained_vlm), sets, max_new_tokens=4).results
    assert plain.correct > 0 and plain.judging["answer_extractor"] == "auto"
    assert marked.judging["answer_extractor"] == "answer-is" and marked.correct == 0  # "7" says no "answer is"
    (overridden,) = evaluate(
        str(trained_vlm), {"x": sets["answer-is"]}, answer_extractor="auto", max_new_tokens=4
    ).results
    assert overridden.correct == plain.correct and overridden.judging["answer_extractor"] == "auto"


def test_eval_treats_a_cut_off_answer_by_the_sets_truncation_policy(trained_vlm, digits):
    rows = _scored_as(digits.select(range(8)), truncated="exclude")
    (excluded,) = evaluate(str(trained_vlm), {"id": rows}, max_new_tokens=1).results  # every answer is cut off
    assert (excluded.excluded, excluded.total, excluded.failed, excluded.correct) == (8, 0, 0, 0)
    (judged,) = evaluate(str(trained_vlm), {"id": rows}, truncated="wrong", max_new_tokens=1).results
    assert (judged.excluded, judged.total) == (0, 8) and judged.judging["truncated"] == "wrong"


def test_the_eval_judge_counts_the_answer_is_completion_correct():
    from difficulty_curation.scoring import score_difficulty

    judge = score_difficulty("unused").judging(answer_extractor="answer-is")
    assert judge.judge(["The answer is: 7", "7"], "7") == [1.0, 0.0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--answer-extractor", "nope"], "answer_extractor='nope' is not known"),
        (["--truncated", "sometimes"], "truncated='sometimes' is not known"),
        (["--verifier", "nope"], "verifier='nope' is not known"),
    ],
)
def test_curate_eval_refuses_a_bad_judging_option_in_one_line_before_any_model_loads(
    empty_model, digits, tmp_path, extra, message
):
    digits.select(range(2)).save_to_disk(str(tmp_path / "rows"))
    result = CliRunner().invoke(app, ["eval", "my-org/never-loaded", "--dataset", f"id={tmp_path / 'rows'}", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
