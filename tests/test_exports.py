"""`curate export`: each format's layout, relative image paths, the README, and bad input.

That each trainer's own loader reads these folders is tested in `test_exports_consumers.py`
(marked `exports`, run by `make test-exports`).
"""

import json
import shutil

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from export_fixtures import SYSTEM_PROMPT, pixels_digest, scored_digits
from PIL import Image
from typer.testing import CliRunner

from difficulty_curation import Columns, ConfigError, CurationError, export_dataset
from difficulty_curation.cli import app
from difficulty_curation.config import ScoringConfig
from difficulty_curation.exports import export_llamafactory, export_swift, export_trl, export_verl
from difficulty_curation.provenance import attach_provenance, provenance_record
from difficulty_curation.recipes.formats import to_trl_format
from difficulty_curation.transforms import filter_difficulty

MEDIUM_ROWS = [4, 5, 6, 7]


@pytest.fixture(scope="module")
def scored(digits):
    return scored_digits(digits)


@pytest.fixture(scope="module")
def scored_dir(scored, tmp_path_factory):
    path = tmp_path_factory.mktemp("scored") / "scored"
    scored.save_to_disk(str(path))
    return path


def _user_text(scored, row):
    return "<image>" + scored[row]["problem"]


def test_swift_writes_jsonl_messages_with_image_placeholders_and_relative_paths(scored, tmp_path):
    result = export_swift(scored, tmp_path / "swift", buckets="medium")
    lines = [json.loads(line) for line in (tmp_path / "swift" / "train.jsonl").read_text().splitlines()]
    assert result.files == ["train.jsonl"] and result.num_rows == len(lines) == 4
    first = lines[0]
    assert first["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": _user_text(scored, 4)},
        {"role": "assistant", "content": scored[4]["solution"]},
    ]
    assert first["images"] == ["images/train-000004-0.png"]
    with Image.open(tmp_path / "swift" / first["images"][0]) as image:
        assert pixels_digest(image) == pixels_digest(scored[4]["image"])


def test_llamafactory_writes_sharegpt_json_and_registers_it_in_dataset_info(scored, tmp_path):
    export_llamafactory(scored, tmp_path / "lf", buckets="medium", name="digits_m")
    records = json.loads((tmp_path / "lf" / "train.json").read_text())
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert len(records) == 4
    assert records[0]["messages"][1] == {"role": "user", "content": _user_text(scored, 4)}
    assert records[0]["images"] == ["images/train-000004-0.png"]
    assert info["digits_m"]["file_name"] == "train.json"
    assert info["digits_m"]["formatting"] == "sharegpt"
    assert info["digits_m"]["columns"] == {"messages": "messages", "images": "images"}
    assert info["digits_m"]["tags"]["user_tag"] == "user" and info["digits_m"]["tags"]["system_tag"] == "system"


def test_verl_writes_the_rl_columns_with_embedded_images_and_difficulty_in_extra_info(scored, tmp_path):
    export_verl(scored, tmp_path / "verl", buckets="medium")
    rows = pq.read_table(tmp_path / "verl" / "train.parquet").to_pylist()
    assert len(rows) == 4
    first = rows[0]
    assert first["data_source"] == "digits/train"
    assert first["ability"] == "exact"
    assert first["prompt"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": _user_text(scored, 4)},
    ]
    assert first["reward_model"] == {"style": "rule", "ground_truth": scored[4]["solution"]}
    assert first["extra_info"] == {
        "index": 4,
        "split": "train",
        "difficulty": 0.25,
        "num_correct": 3,
        "num_rollouts": 4,
    }
    assert not (tmp_path / "verl" / "images").exists()
    with Image.open(__import__("io").BytesIO(first["images"][0]["bytes"])) as image:
        assert pixels_digest(image) == pixels_digest(scored[4]["image"])


def test_trl_export_loads_back_as_what_to_trl_format_gives(scored, tmp_path):
    export_trl(scored, tmp_path / "trl", buckets="medium")
    loaded = load_dataset("parquet", data_files=str(tmp_path / "trl" / "train.parquet"))["train"]
    expected = to_trl_format(filter_difficulty(scored, "medium"), columns=Columns(system_prompt=SYSTEM_PROMPT))
    assert loaded.column_names == ["prompt", "completion", "images"]
    assert loaded["prompt"] == expected["prompt"] and loaded["completion"] == expected["completion"]
    assert [pixels_digest(row[0]) for row in loaded["images"]] == [pixels_digest(row[0]) for row in expected["images"]]


def test_without_buckets_every_scored_row_is_exported_and_unscored_rows_are_not(scored, tmp_path):
    result = export_swift(scored, tmp_path / "all")
    assert result.num_rows == 12 and result.num_images == 12


def test_several_buckets_are_exported_together(scored, tmp_path):
    result = export_verl(scored, tmp_path / "em", buckets=["easy", "medium"])
    indices = [row["extra_info"]["index"] for row in pq.read_table(tmp_path / "em" / "train.parquet").to_pylist()]
    assert result.num_rows == 8 and indices == list(range(8))


def test_each_split_of_a_dataset_dict_gets_its_own_file(scored, tmp_path):
    splits = DatasetDict({"train": scored, "test": scored.select(range(8))})
    result = export_llamafactory(splits, tmp_path / "lf")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert result.files == ["train.json", "test.json"]
    assert info["curated"]["file_name"] == "train.json" and info["curated_test"]["file_name"] == "test.json"
    assert (tmp_path / "lf" / "images" / "test-000005-0.png").exists()


def test_the_export_folder_can_be_moved_because_image_paths_are_relative(scored, tmp_path):
    export_swift(scored, tmp_path / "before", buckets="hard")
    shutil.move(tmp_path / "before", tmp_path / "after")
    for line in (tmp_path / "after" / "train.jsonl").read_text().splitlines():
        for path in json.loads(line)["images"]:
            assert not path.startswith("/") and (tmp_path / "after" / path).is_file()


def test_each_image_is_written_once(scored, tmp_path):
    export_swift(scored, tmp_path / "once")
    assert len(list((tmp_path / "once" / "images").iterdir())) == 12


def test_the_export_readme_carries_the_provenance_table(scored, tmp_path):
    export_verl(scored, tmp_path / "verl", buckets="medium")
    readme = (tmp_path / "verl" / "README.md").read_text()
    assert "| model | tiny-vlm |" in readme
    assert "| verifier | exact |" in readme
    assert "| source | digits/train |" in readme
    assert "buckets: medium" in readme and "| train | `train.parquet` | 4 |" in readme


def test_an_existing_folder_is_refused_without_overwrite(scored, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not empty; pass --overwrite"):
        export_swift(scored, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_export(scored, tmp_path):
    export_swift(scored, tmp_path / "out")
    result = export_swift(scored, tmp_path / "out", buckets="medium", overwrite=True)
    assert result.num_rows == 4 and len(list((tmp_path / "out" / "images").iterdir())) == 4


def test_overwrite_never_deletes_a_folder_that_is_not_an_export(scored, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    with pytest.raises(
        ConfigError, match=r"did not write \(no .curate-output.json\); refusing to replace it even with --overwrite"
    ):
        export_swift(scored, tmp_path / "home", overwrite=True)
    assert (tmp_path / "home" / "thesis.tex").exists()


def test_a_row_that_cannot_be_exported_is_skipped_with_its_reason(scored, tmp_path):
    broken = scored.map(lambda row, i: {"solution": "" if i == 5 else row["solution"]}, with_indices=True)
    result = export_swift(broken, tmp_path / "out", buckets="medium")
    assert result.num_rows == 3
    assert result.skipped == [("train", 5, "solution: answer is an empty string")]


def test_a_dataset_without_provenance_is_refused_with_what_to_do(tmp_path):
    plain = Dataset.from_dict({"problem": ["2+2?"], "solution": ["4"], "difficulty": [0.5]})
    with pytest.raises(CurationError, match=r"no scoring provenance.*curate score"):
        export_verl(plain, tmp_path / "out")


def test_an_unknown_format_is_refused(scored, tmp_path):
    with pytest.raises(ConfigError, match=r"format='axolotl' is not known; choose one of: trl, swift"):
        export_dataset(scored, tmp_path / "out", format="axolotl")


def test_an_unknown_bucket_is_refused(scored, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown bucket\(s\) \['medum'\]"):
        export_dataset(scored, tmp_path / "out", format="swift", buckets="medum")
    assert not (tmp_path / "out").exists()


def test_curate_export_writes_the_folder_and_reports_counts(scored_dir, tmp_path):
    out = tmp_path / "verl"
    result = CliRunner().invoke(
        app, ["export", str(scored_dir), "--format", "verl", "--bucket", "medium", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["num_rows"] == 4 and report["files"] == ["train.parquet"]
    assert (out / "train.parquet").exists() and (out / "README.md").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "axolotl"], "format='axolotl' is not known; choose one of: trl, swift, llamafactory, verl."),
        (["--format", "swift", "--bucket", "medum"], "unknown bucket(s) ['medum']; choose from: easy, medium, hard."),
    ],
)
def test_curate_export_reports_bad_input_as_one_line(scored_dir, tmp_path, arguments, message):
    result = CliRunner().invoke(app, ["export", str(scored_dir), "--out", str(tmp_path / "out"), *arguments])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {message}"


def test_curate_export_refuses_an_existing_folder_in_one_line(scored_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["export", str(scored_dir), "--format", "trl", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("Error: --out") and "pass --overwrite" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_scored_folder_round_trips_through_save_to_disk_before_export(scored_dir, tmp_path):
    result = export_trl(load_from_disk(str(scored_dir)), tmp_path / "trl")
    assert result.num_rows == 12


def test_curate_export_lists_the_rows_it_could_not_export(scored, tmp_path):
    source = tmp_path / "broken"
    scored.map(lambda row, i: {"solution": "" if i == 5 else row["solution"]}, with_indices=True).save_to_disk(
        str(source)
    )
    result = CliRunner().invoke(app, ["export", str(source), "--format", "swift", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "1 rows could not be exported" in result.output
    assert "row 5 of train: solution: answer is an empty string" in result.output


def test_text_only_rows_export_without_images(tmp_path):
    rows = Dataset.from_dict(
        {"problem": ["2+2?", "3+3?"], "solution": ["4", "6"], "difficulty": [0.5, 1.0], "num_correct": [2, 0]}
    )
    config = ScoringConfig(model="tiny-lm", image_column=None, verifier="math")
    text_only = attach_provenance(rows, provenance_record(config))
    export_swift(text_only, tmp_path / "swift")
    export_verl(text_only, tmp_path / "verl", buckets="medium")
    first = json.loads((tmp_path / "swift" / "train.jsonl").read_text().splitlines()[0])
    verl = pq.read_table(tmp_path / "verl" / "train.parquet").to_pylist()
    assert first == {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    assert not (tmp_path / "swift" / "images").exists()
    assert len(verl) == 1 and "images" not in verl[0]
    assert verl[0]["data_source"] == "difficulty-curation" and verl[0]["ability"] == "math"


def test_the_output_of_curate_filter_keeps_its_provenance_and_exports(scored_dir, tmp_path):
    runner = CliRunner()
    filtered = runner.invoke(app, ["filter", str(scored_dir), "--bucket", "medium", "--out", str(tmp_path / "m")])
    assert filtered.exit_code == 0, filtered.output
    result = runner.invoke(app, ["export", str(tmp_path / "m"), "--format", "swift", "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "x" / "train.jsonl").read_text().splitlines()) == 4


def test_llamafactory_without_a_train_split_registers_the_name_its_readme_names(scored, tmp_path):
    export_llamafactory(DatasetDict({"test": scored}), tmp_path / "lf", buckets="medium")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert "dataset: curated" in (tmp_path / "lf" / "README.md").read_text()
    assert info["curated"]["file_name"] == "test.json"
