"""One guard for every output, files and folders alike: never an input, never inside a run, --overwrite to replace."""

import errno
import os
import stat

import pytest
from datasets import DatasetDict, load_from_disk
from helpers import curate, refused
from report_data import KINDS, scored_digits

from difficulty_curation.compare import merge_scores
from difficulty_curation.errors import ConfigError
from difficulty_curation.outputs import RUN_STATE_DIR, atomic_file, check_output, write_aside
from difficulty_curation.sources import load_source, save_dataset


@pytest.fixture(scope="module")
def scored(digits):
    """12 hand-scored digits: easy, medium, hard and failed rows (no model)."""
    return scored_digits(digits, 12)


@pytest.fixture
def scored_dir(scored, tmp_path):
    folder = tmp_path / "scored"
    save_dataset(scored, folder)
    return folder


@pytest.fixture
def run_dir(scored, tmp_path):
    """A finished scoring run as it lies on disk: the dataset beside its `.curate` state folder."""
    folder = tmp_path / "run"
    DatasetDict(train=scored).save_to_disk(str(folder))
    (folder / RUN_STATE_DIR).mkdir()
    (folder / RUN_STATE_DIR / "run.json").write_text('{"finished": true}')
    return folder


@pytest.fixture(scope="module")
def merged(scored, tmp_path_factory):
    """`scored` merged with itself under the models a and b, on disk."""
    root = tmp_path_factory.mktemp("merged")
    for name in ("a", "b"):
        scored.save_to_disk(str(root / name))
    folder = root / "merged"
    save_dataset(merge_scores([root / "a", root / "b"], names=["a", "b"]), folder)
    return folder


# -- files: report --out, --plot --------------------------------------------------------------------


def test_report_refuses_to_replace_the_scored_parquet_it_reads(scored, tmp_path):
    source = tmp_path / "scored.parquet"
    scored.to_parquet(str(source))
    before = source.read_bytes()
    result = curate("report", source, "--out", source)
    assert refused(result, "which this command reads"), result.output
    assert source.read_bytes() == before


def test_report_replaces_an_existing_file_only_with_overwrite(scored_dir, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("my notes")
    assert refused(curate("report", scored_dir, "--out", page), "pass --overwrite")
    assert page.read_text() == "my notes"
    assert curate("report", scored_dir, "--out", page, "--overwrite").exit_code == 0
    assert page.read_text().startswith("<!")


def test_report_never_writes_a_runs_state_file(run_dir, scored_dir):
    state = run_dir / RUN_STATE_DIR / "run.json"
    result = curate("report", scored_dir, "--out", state)
    assert refused(result, "scoring run"), result.output
    assert state.read_text() == '{"finished": true}'


def test_report_never_writes_into_a_run_folder(run_dir, scored_dir):
    result = curate("report", scored_dir, "--out", run_dir / "report.html")
    assert refused(result, f"is inside the scoring run {str(run_dir)!r}"), result.output
    assert not (run_dir / "report.html").exists()


def test_the_report_file_honours_the_umask(scored_dir, tmp_path):
    previous = os.umask(0o022)
    try:
        assert curate("report", scored_dir, "--out", tmp_path / "r.html").exit_code == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "r.html").stat().st_mode) == 0o644


def test_every_atomic_file_honours_the_umask(tmp_path):
    previous = os.umask(0o002)
    try:
        with atomic_file(tmp_path / "a.json") as temporary:
            temporary.write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o664


def test_a_plot_into_an_existing_folder_is_one_line_and_writes_nothing_beside_it(scored_dir, tmp_path):
    (tmp_path / "plots").mkdir()
    result = curate("stats", scored_dir, "--plot", f"{tmp_path / 'plots'}/")
    assert refused(result, "is a folder; pass a file path"), result.output
    assert not (tmp_path / "plots.png").exists() and not any((tmp_path / "plots").iterdir())


def test_a_plot_of_an_unsupported_type_names_the_types_that_work(scored_dir, tmp_path):
    for name in ("plot.parquet", "plot"):
        result = curate("stats", scored_dir, "--plot", tmp_path / name)
        assert refused(result, "end it with one of .png, .svg, .pdf"), result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scored"]


def test_the_plot_path_printed_is_the_file_written(scored_dir, tmp_path):
    result = curate("stats", scored_dir, "--plot", tmp_path / "hist.svg")
    assert result.exit_code == 0, result.output
    assert f"plot: {tmp_path / 'hist.svg'}" in result.output
    assert (tmp_path / "hist.svg").read_text().lstrip().startswith("<?xml")


def test_compare_plot_refuses_a_folder_a_bad_type_and_an_existing_file(scored_dir, tmp_path):
    runs = [scored_dir, scored_dir, "--name", "before", "--name", "after"]
    (tmp_path / "out").mkdir()
    assert refused(curate("compare", *runs, "--plot", f"{tmp_path / 'out'}/"), "is a folder")
    assert refused(curate("compare", *runs, "--plot", tmp_path / "x.parquet"), "end it with one of .png")
    result = curate("compare", *runs, "--plot", tmp_path / "c.png")
    assert result.exit_code == 0 and f"plot: {tmp_path / 'c.png'}" in result.output, result.output
    assert refused(curate("compare", *runs, "--plot", tmp_path / "c.png"), "pass --overwrite")
    assert curate("compare", *runs, "--plot", tmp_path / "c.png", "--overwrite").exit_code == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.png", "out", "scored"]


def test_card_never_writes_into_its_input_or_a_run_and_replaces_only_with_overwrite(scored_dir, run_dir, tmp_path):
    assert refused(curate("card", scored_dir, "--out", scored_dir / "README.md"), "which this command reads")
    assert refused(curate("card", scored_dir, "--out", run_dir / "README.md"), "scoring run")
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "README.md").write_text("my card")
    assert refused(curate("card", scored_dir, "--out", tmp_path / "card" / "README.md"), "pass --overwrite")
    assert (tmp_path / "card" / "README.md").read_text() == "my card"
    assert not (scored_dir / "README.md").exists() and not (run_dir / "README.md").exists()


# -- folders: inside a run, the command's own input ----------------------------------------------


def test_filter_never_replaces_a_split_of_a_scoring_run(run_dir, scored_dir):
    before = load_from_disk(str(run_dir / "train"))["difficulty"]
    for out in (run_dir / "train", f"{run_dir}/{RUN_STATE_DIR}/../train"):
        result = curate("filter", scored_dir, "--bucket", "easy", "--out", out, "--overwrite")
        assert refused(result, "scoring run"), result.output
    assert load_from_disk(str(run_dir / "train"))["difficulty"] == before and len(before) == 12


@pytest.mark.parametrize(
    "command",
    [
        ["filter", "{input}", "--bucket", "easy"],
        ["stratify", "{input}"],
        ["mix", "{input}", "--ratio", "easy=1", "--rows", "1"],
        ["export", "{input}", "--format", "trl"],
        ["merge-scores", "{input}", "{input}", "--name", "a", "--name", "b"],
    ],
    ids=lambda command: command[0],
)
def test_out_aimed_at_the_commands_own_input_is_one_line(scored_dir, command):
    before = sorted(path.name for path in scored_dir.iterdir())
    args = [str(scored_dir) if arg == "{input}" else arg for arg in command]
    result = curate(*args, "--out", scored_dir, "--overwrite")
    assert refused(result, "which this command reads"), result.output
    assert sorted(path.name for path in scored_dir.iterdir()) == before
    assert len(load_source(scored_dir)) == 12


def test_the_input_is_recognised_however_it_is_spelled(scored_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(scored_dir)
    (tmp_path / "link").symlink_to(scored_dir)
    spellings = [".", "../scored", f"{scored_dir}/", tmp_path / "link", f"{tmp_path}/link/../scored"]
    for out in spellings:
        result = curate("filter", ".", "--bucket", "easy", "--out", out, "--overwrite")
        assert refused(result, "which this command reads"), (out, result.output)
    for out in ("..", tmp_path):  # the folder holding the input
        result = curate("filter", scored_dir, "--bucket", "easy", "--out", out, "--overwrite")
        assert result.exit_code == 2 and "which this command reads" in result.output, (out, result.output)
    assert len(load_source(scored_dir)) == 12


def test_a_report_through_a_symlink_or_hard_link_to_its_input_is_refused(scored, tmp_path):
    source = tmp_path / "scored.parquet"
    scored.to_parquet(str(source))
    (tmp_path / "link.html").symlink_to(source)
    os.link(source, tmp_path / "hard.html")
    for out in ("link.html", "hard.html"):
        result = curate("report", source, "--out", tmp_path / out)
        assert refused(result, "which this command reads"), result.output
    assert len(load_source(source)["train"]) == 12


def test_the_guard_refuses_files_and_folders_inside_a_run_whatever_the_spelling(run_dir):
    from difficulty_curation.outputs import check_output_file

    for out in (run_dir / "x", run_dir / RUN_STATE_DIR / ".." / "x", run_dir / RUN_STATE_DIR / "x" / ".."):
        with pytest.raises(ConfigError, match="scoring run"):
            check_output(out)
        with pytest.raises(ConfigError, match="scoring run"):
            check_output_file(out / "f.html")


# -- empty splits ------------------------------------------------------------------------------------


def test_a_filter_that_keeps_no_rows_writes_a_split_that_loads(merged, tmp_path):
    result = curate("filter", merged, "--where", "all easy", "--bucket", "hard", "--out", tmp_path / "none")
    assert result.exit_code == 0, result.output
    empty = load_source(tmp_path / "none")
    assert len(empty) == 0 and empty.features == load_source(merged).features


def test_one_empty_stratify_bucket_leaves_the_dataset_dict_readable(scored, tmp_path):
    no_hard = scored.select([i for i in range(len(scored)) if KINDS[i % len(KINDS)] in ("easy", "medium")])
    for name in ("a", "b"):
        save_dataset(no_hard, tmp_path / name)
    save_dataset(merge_scores([tmp_path / "a", tmp_path / "b"], names=["a", "b"]), tmp_path / "merged")
    result = curate("stratify", tmp_path / "merged", "--model", "a", "--out", tmp_path / "buckets")
    assert result.exit_code == 0, result.output
    buckets = load_from_disk(str(tmp_path / "buckets"))
    assert {name: len(part) for name, part in buckets.items()} == {"easy": 2, "medium": 2, "hard": 0}
    assert buckets["hard"].features == buckets["easy"].features


def test_a_dataset_dict_with_an_empty_split_saves_and_loads(scored, tmp_path):
    save_dataset(DatasetDict(train=scored.select([]), test=scored), tmp_path / "out")
    loaded = load_source(tmp_path / "out")
    assert len(loaded["train"]) == 0 and loaded["train"].features == scored.features


# -- errors name --out, never the staging folder ------------------------------------------------------


def test_an_error_while_writing_aside_names_out_not_the_staging_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OSError) as raised, write_aside(out) as staging:
        raise OSError(errno.ENOSPC, "No space left on device", str(staging / "train" / "data.arrow"))
    assert raised.value.filename == str(out / "train" / "data.arrow")
    with pytest.raises(ConfigError) as refused_write, write_aside(out) as staging:
        raise ConfigError(f"cannot write {staging}/x")
    assert str(refused_write.value) == f"cannot write {out}/x"
    with pytest.raises(OSError) as raised, write_aside(out) as staging:  # pyarrow names no file
        raise OSError("[errno 28] No space left on device")
    assert raised.value.filename == str(out)
    assert sorted(path.name for path in tmp_path.iterdir()) == []
