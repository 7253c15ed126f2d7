"""Every command over a catalogue of bad inputs: one `Error:` line saying what to do, exit 2, never a traceback."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import DatasetDict, load_from_disk
from export_fixtures import scored_digits
from typer.testing import CliRunner

import difficulty_curation
from difficulty_curation import score_difficulty
from difficulty_curation.cli import app
from difficulty_curation.demo import digits_dataset
from difficulty_curation.errors import ConfigError, RowFailedError
from difficulty_curation.outputs import RUN_STATE_DIR as STATE_DIR
from difficulty_curation.runners.run_folder import score_to_dir

runner = CliRunner()
SCORE = ["--model", "MODEL", "-k", "2", "--max-new-tokens", "2", "--quiet"]


@pytest.fixture(scope="module")
def places(tiny_vlm, digits, tmp_path_factory) -> dict[str, str]:
    """The bad (and good) inputs the catalogue points at, built once."""
    root = tmp_path_factory.mktemp("catalogue")
    eight = digits.select(range(8))
    eight.to_parquet(str(root / "digits.parquet"))
    eight.select([]).to_parquet(str(root / "empty.parquet"))
    (root / "splits").mkdir()  # a test split with a header and no rows
    (root / "splits" / "train.csv").write_text("problem,solution\n1+1?,2\n")
    (root / "splits" / "test.csv").write_text("problem,solution\n")
    eight.save_to_disk(str(root / "single"))
    shutil.copytree(root / "single", root / "damaged")
    arrow = next((root / "damaged").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:200])
    shutil.copytree(tiny_vlm, root / "corrupt-model")
    (root / "corrupt-model" / "model.safetensors").write_bytes(b"\x00" * 64 + b"not safetensors")
    finished = runner.invoke(
        app,
        ["score", str(root / "digits.parquet"), *_args(SCORE, {"MODEL": str(tiny_vlm)}), "--out", str(root / "run")],
    )
    assert finished.exit_code == 0, finished.output
    unfinished = digits.select(range(4)).map(
        lambda row, index: {"problem": "" if index == 1 else row["problem"]}, with_indices=True
    )
    with pytest.raises(RowFailedError):  # a run that stopped at its first batch
        score_to_dir(
            unfinished,
            score_difficulty(str(tiny_vlm), num_rollouts=2, max_new_tokens=2),
            root / "unfinished",
            batch_size=2,
            progress=False,
            fail_fast=True,
        )
    (root / "full").mkdir()
    (root / "full" / "notes.txt").write_text("mine")
    eight.remove_columns("image").to_parquet(str(root / "text.parquet"))
    easy = scored_digits(digits).select(range(4))  # rows 0-3 are easy
    easy.save_to_disk(str(root / "easy-only"))
    for name, value in (("nan", float("nan")), ("above-one", 1.7)):
        bad = [value if index == 2 else 0.0 for index in range(4)]
        easy.remove_columns("difficulty").add_column("difficulty", bad).save_to_disk(str(root / name))
    (root / "partial-model").mkdir()
    shutil.copy(tiny_vlm / "config.json", root / "partial-model" / "config.json")
    (root / "broken.md.j2").write_text("---\n---\n{{ repo_id | nosuchfilter }}\n")
    # runs to compare with RUN: with another k, of other rows, of another split
    other_runs = {
        "run-k4": (eight, 4),
        "other-rows": (digits_dataset(split="train", num_rows=32).select(range(24, 32)), 2),
        "test-run": (DatasetDict({"test": digits_dataset(split="test", num_rows=8)}), 2),
    }
    for name, (rows, k) in other_runs.items():
        score_to_dir(
            rows, score_difficulty(str(tiny_vlm), num_rollouts=k, max_new_tokens=2), root / name, progress=False
        )
    names = [
        "digits.parquet",
        "empty.parquet",
        "splits",
        "single",
        "damaged",
        "corrupt-model",
        "run",
        "unfinished",
        "full",
        "text.parquet",
        "easy-only",
        "nan",
        "above-one",
        "partial-model",
        "broken.md.j2",
        "run-k4",
        "other-rows",
        "test-run",
    ]
    return {
        "MODEL": str(tiny_vlm),
        "NEW": str(root / "new"),
        **{
            name.upper().replace(".PARQUET", "").replace(".MD.J2", "").replace("-", "_"): str(root / name)
            for name in names
        },
    }


def _args(args: list[str], places: dict[str, str]) -> list[str]:
    """Put the places into `args`, also after `NAME=` (eval's --dataset id=PLACE)."""
    named = [arg.partition("=") if "=" in arg else ("", "", arg) for arg in args]
    return [f"{name}{equals}{places.get(value, value)}" for name, equals, value in named]


CATALOGUE = {
    "empty dataset": (["score", "EMPTY", *SCORE, "--out", "NEW"], "has no rows in split 'train'"),
    "empty split": (
        ["score", "SPLITS", "--split", "test", *SCORE, "--image-column", "none", "--out", "NEW"],
        "has no rows in split 'test'",
    ),
    "corrupt safetensors": (["score", "DIGITS", *SCORE, "--model", "CORRUPT_MODEL", "--out", "NEW"], "could not load"),
    "unknown split of a single-split source": (
        ["score", "SINGLE", "--split", "nosuch", *SCORE, "--out", "NEW"],
        "split 'nosuch' is not in",
    ),
    "max-new-tokens beyond the context": (
        ["score", "DIGITS", *SCORE, "--max-new-tokens", "100000", "--out", "NEW"],
        "does not fit the context",
    ),
    "bins that are not numbers": (["stratify", "RUN", "--bins", "0,abc,1", "--out", "NEW"], "'abc' is not a number"),
    "bins out of order": (["stratify", "RUN", "--bins", "0.5,0.1", "--out", "NEW"], "strictly increasing"),
    "filter thresholds out of order": (
        ["filter", "RUN", "--min", "0.9", "--max", "0.1", "--out", "NEW"],
        "min=0.9 is greater than max=0.1",
    ),
    "score of a missing file": (["score", "./no/such/file.parquet", "--model", "m", "--out", "NEW"], "does not exist"),
    "zero rollouts": (
        ["score", "DIGITS", "--model", "m", "--num-rollouts", "0", "--out", "NEW"],
        "num_rollouts must be an integer >= 1, got 0",
    ),
    "an unknown verifier": (
        ["score", "DIGITS", "--model", "m", "--verifier", "fuzzy", "--out", "NEW"],
        "verifier='fuzzy' is not known",
    ),
    "an unknown backend": (
        ["score", "DIGITS", "--model", "m", "--backend", "onnx", "--out", "NEW"],
        "backend='onnx' is not known",
    ),
    "a negative temperature": (
        ["score", "DIGITS", "--model", "m", "--temperature", "-1", "--out", "NEW"],
        "temperature must be a number >= 0.0",
    ),
    "missing card template": (
        ["card", "RUN", "--template", "/missing/card.md.j2", "--out", "NEW/README.md"],
        "'/missing/card.md.j2' does not exist",
    ),
    "stats on a damaged arrow file": (["stats", "DAMAGED"], "could not read the dataset"),
    "rescore into itself": (["rescore", "RUN", "--out", "RUN"], "is the run being rescored"),
    "rescore into another run": (["rescore", "RUN", "--out", "UNFINISHED"], "holds a scoring run"),
    "rescore of an unfinished run": (["rescore", "UNFINISHED", "--verifier", "math"], "run `curate score` again"),
    "filter on an unfinished run": (
        ["filter", "UNFINISHED", "--bucket", "easy", "--out", "NEW"],
        "run `curate score` again to finish it",
    ),
    "stats on an unfinished run": (["stats", "UNFINISHED"], "run `curate score` again to finish it"),
    "stratify on an unfinished run": (["stratify", "UNFINISHED", "--out", "NEW"], "run `curate score` again"),
    "card on an unfinished run": (["card", "UNFINISHED", "--out", "NEW/README.md"], "run `curate score` again"),
    "audit on an unfinished run": (["audit", "UNFINISHED"], "run `curate score` again to finish it"),
    "sft on an unfinished run": (["sft", "UNFINISHED", "--model", "MODEL", "--out", "NEW"], "run `curate score` again"),
    "eval on an unfinished run": (["eval", "MODEL", "--dataset", "id=UNFINISHED"], "run `curate score` again"),
    "filter into a non-empty folder": (["filter", "RUN", "--bucket", "hard", "--out", "FULL"], "is not empty"),
    "demo into a non-empty folder": (["demo", "--rows", "2", "--out", "FULL"], "is not empty"),
    # -- training, eval, export and push (issue 23) --
    "sft into a non-empty folder": (["sft", "DIGITS", "--model", "MODEL", "--out", "FULL"], "is not empty"),
    "sft over a folder it did not write": (
        ["sft", "DIGITS", "--model", "MODEL", "--out", "FULL", "--overwrite"],
        "did not write (no .curate-output.json)",
    ),
    "sft into a run folder": (["sft", "DIGITS", "--model", "MODEL", "--out", "RUN", "--overwrite"], "scoring run"),
    "sft onto the model it trains": (
        ["sft", "DIGITS", "--model", "MODEL", "--out", "MODEL", "--full", "--overwrite"],
        "the model this command reads",
    ),
    "sft with LoRA rank 0": (
        ["sft", "DIGITS", "--model", "MODEL", "--out", "NEW", "--lora-rank", "0"],
        "lora_rank (--lora-rank) must be an integer >= 1, got 0.",
    ),
    "sft with batch size 0": (
        ["sft", "DIGITS", "--model", "MODEL", "--out", "NEW", "--batch-size", "0"],
        "batch_size (--batch-size) must be an integer >= 1, got 0.",
    ),
    "sft with a negative learning rate": (
        ["sft", "DIGITS", "--model", "MODEL", "--out", "NEW", "--learning-rate=-0.1"],
        "learning_rate (--learning-rate) must be a number > 0, got -0.1.",
    ),
    "sft with max-steps -5 and no epochs": (
        ["sft", "DIGITS", "--model", "MODEL", "--out", "NEW", "--max-steps=-5", "--epochs", "0"],
        "num_train_epochs (--epochs) must be a number > 0",
    ),
    "sft with max-steps -5": (
        ["sft", "DIGITS", "--model", "MODEL", "--out", "NEW", "--max-steps=-5"],
        "max_steps (--max-steps) must be an integer >= 1, or -1",
    ),
    "sft with a missing local model": (
        ["sft", "DIGITS", "--model", "./no-such-model", "--out", "NEW"],
        "--model './no-such-model' does not exist",
    ),
    "grpo into a non-empty folder": (["grpo", "DIGITS", "--model", "MODEL", "--out", "FULL"], "is not empty"),
    "grpo with one generation": (
        ["grpo", "DIGITS", "--model", "MODEL", "--out", "NEW", "--num-generations", "1"],
        "num_generations (--num-generations) must be an integer >= 2",
    ),
    "grpo with temperature 0": (
        ["grpo", "DIGITS", "--model", "MODEL", "--out", "NEW", "--temperature", "0"],
        "temperature (--temperature) must be a number > 0",
    ),
    "grpo with a missing local model": (
        ["grpo", "DIGITS", "--model", "/no/such/model", "--out", "NEW"],
        "does not exist",
    ),
    "eval with a repeated dataset name": (
        ["eval", "MODEL", "--dataset", "id=DIGITS", "--dataset", "id=SINGLE"],
        "--dataset id= is given twice",
    ),
    "eval compare with a missing model": (
        ["eval", "MODEL", "--dataset", "id=DIGITS", "--compare", "./no-such-model"],
        "model './no-such-model' does not exist",
    ),
    "eval into a non-empty folder": (["eval", "MODEL", "--dataset", "id=DIGITS", "--out", "FULL"], "is not empty"),
    "eval into a run folder": (["eval", "MODEL", "--dataset", "id=DIGITS", "--out", "RUN"], "scoring run"),
    "eval of a model saved in part": (
        ["eval", "PARTIAL_MODEL", "--dataset", "id=DIGITS"],
        "is incomplete (config.json without weights)",
    ),
    "eval on text-only rows": (
        ["eval", "MODEL", "--dataset", "id=TEXT", "--max-new-tokens", "2"],
        "or None ('none') for text-only rows",
    ),
    "export of zero rows": (
        ["export", "EASY_ONLY", "--format", "trl", "--bucket", "hard", "--out", "NEW"],
        "no rows to export",
    ),
    "export over a folder it did not write": (
        ["export", "EASY_ONLY", "--format", "trl", "--out", "FULL", "--overwrite"],
        "did not write",
    ),
    "export into a run folder": (["export", "EASY_ONLY", "--format", "trl", "--out", "RUN"], "scoring run"),
    "export of a difficulty above 1": (
        ["export", "ABOVE_ONE", "--format", "trl", "--out", "NEW"],
        "row 2 has difficulty 1.7: difficulty must be a number in [0, 1]",
    ),
    "stats of a NaN difficulty": (["stats", "NAN", "--json"], "row 2 has difficulty nan"),
    "card of a NaN difficulty": (["card", "NAN", "--out", "NEW/README.md"], "row 2 has difficulty nan"),
    "push of a NaN difficulty": (["push", "NAN", "me/x"], "row 2 has difficulty nan"),
    "push with a zero timeout": (["push", "RUN", "me/x", "--timeout", "0"], "timeout must be a number of seconds"),
    "stats of an unscored dataset": (["stats", "DIGITS"], "not scored: score it first with `curate score`"),
    "stats of a mistyped folder": (["stats", "scroed/"], "source 'scroed/' does not exist"),
    "card with a Jinja error": (
        ["card", "RUN", "--template", "BROKEN", "--out", "NEW/README.md"],
        "has a Jinja error",
    ),
    "api-base that is not a URL": (
        ["score", "DIGITS", *SCORE, "--backend", "openai", "--api-base", "localhost:8000", "--out", "NEW"],
        "api_base 'localhost:8000' is not an http(s) URL",
    ),
    "an unknown attention implementation": (
        ["score", "DIGITS", *SCORE, "--engine-option", "attn_implementation=bogus", "--out", "NEW"],
        "attn_implementation='bogus' is not known",
    ),
    "a device map naming a missing GPU": (
        ["score", "DIGITS", *SCORE, "--engine-option", "device_map=cuda:7", "--out", "NEW"],
        "device_map='cuda:7' names a GPU this machine does not have",
    ),
    "pass-rate-interval 1": (
        ["score", "DIGITS", *SCORE, "--pass-rate-interval", "1", "--out", "NEW"],
        "pass_rate_interval must be a number > 0 and < 1 (e.g. 0.95), got 1.0.",
    ),
    "pass-rate-interval 1.5": (
        ["score", "DIGITS", *SCORE, "--pass-rate-interval", "1.5", "--out", "NEW"],
        "pass_rate_interval must be a number > 0 and < 1 (e.g. 0.95), got 1.5.",
    ),
    "compare runs of different rows": (["compare", "RUN", "OTHER_ROWS"], "the runs share no rows"),
    "compare runs of different splits": (["compare", "RUN", "TEST_RUN"], "are of different splits (test, train)"),
    "compare a run without provenance": (["compare", "DIGITS", "RUN"], "has no scoring provenance"),
    "merge runs with mixed k": (["merge-scores", "RUN", "RUN_K4", "--out", "NEW"], "the runs have mixed k"),
    "mix with a ratio over 1": (
        ["mix", "RUN", "--ratio", "medium=0.8,easy=0.4", "--rows", "2", "--out", "NEW"],
        "add up to 1.2, over 1",
    ),
    "mix with a ratio naming no bucket": (
        ["mix", "RUN", "--ratio", ",", "--rows", "2", "--out", "NEW"],
        "names no bucket",
    ),
    "mix of zero rows": (
        ["mix", "RUN", "--ratio", "hard=1", "--rows", "0", "--out", "NEW"],
        "rows must be an integer >= 1",
    ),
    "mix of more rows than exist": (
        ["mix", "RUN", "--ratio", "hard=1", "--rows", "9", "--out", "NEW"],
        "rows=9 is more than the 8 scored rows",
    ),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_a_bad_input_is_one_error_line_and_exit_code_2(case, places, tmp_path):
    args, message = CATALOGUE[case]
    places = {**places, "NEW": str(tmp_path / "new")}
    finished = _snapshot(Path(places["RUN"]))
    result = runner.invoke(app, _args(args, places), catch_exceptions=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert _snapshot(Path(places["RUN"])) == finished  # nothing finished lost
    assert (Path(places["FULL"]) / "notes.txt").read_text() == "mine"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@pytest.mark.parametrize(
    "damage",
    [
        ("manifest.json", '{"shards": [1, 2, 3]}'),
        ("manifest.json", '{"shards": {"train-00000000.parquet": 7}}'),
        ("shards/notes-final.parquet", "a stray file"),
        ("shards/train-abc.parquet", "a stray file"),
    ],
    ids=["manifest a list", "manifest entry a number", "stray parquet", "stray shard-like name"],
)
def test_a_damaged_manifest_or_a_stray_shard_file_is_recovered_from_with_a_warning(damage, places, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(places["RUN"], run)
    name, text = damage
    (run / STATE_DIR / name).write_text(text)
    if name.startswith("shards/"):
        (run / STATE_DIR / "manifest.json").write_text("{")  # so the shards are looked at one by one
    result = runner.invoke(
        app, ["score", places["DIGITS"], *_args(SCORE, places), "--out", str(run), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_rows"] == 8
    assert load_from_disk(str(run))["train"]["difficulty"] == load_from_disk(places["RUN"])["train"]["difficulty"]


# -- errors from the machine: a full disk and a read-only folder, on real file systems ------------------


def _in_mount_namespace(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) as root of a new user + mount namespace, where it may mount a small tmpfs."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux `unshare` to mount a small file system without privileges")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here: {probe.stderr.decode().strip()}")
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", *args], capture_output=True, text=True, timeout=600
    )


CURATE = f"{sys.executable} -m difficulty_curation.cli"


def test_a_full_disk_is_one_error_line_and_the_run_resumes_once_there_is_space(tiny_vlm, digits, tmp_path):
    data, disk = tmp_path / "data", tmp_path / "disk"
    digits_dataset(split="train", num_rows=40).save_to_disk(str(data))
    disk.mkdir()
    script = f"""
        mount -t tmpfs -o size=$3 tmpfs "$2" || exit 99
        {CURATE} score "$1" --model "$4" --out "$2/run" -k 2 --max-new-tokens 2 --batch-size 2 --quiet
        echo "first exit $?"
        echo "finished shards $(ls "$2/run/.curate/shards" | grep -c parquet)"
        mount -o remount,size=64m tmpfs "$2"
        {CURATE} score "$1" --model "$4" --out "$2/run" -k 2 --max-new-tokens 2 --batch-size 2 --quiet --json
        echo "second exit $?"
    """
    result = _in_mount_namespace(script, str(data), str(disk), "160k", str(tiny_vlm))
    assert "first exit 2" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "the disk is full" in errors[0] and "run the same command again" in errors[0]
    assert int(result.stdout.split("finished shards ")[1].split()[0]) > 0  # finished batches were kept
    assert "second exit 0" in result.stdout, result.stdout + result.stderr
    assert '"num_rows": 40' in result.stdout


def test_a_read_only_output_folder_is_one_error_line(tiny_vlm, digits, tmp_path):
    data, disk = tmp_path / "data.parquet", tmp_path / "disk"
    digits.select(range(4)).to_parquet(str(data))
    disk.mkdir()
    script = f"""
        mount -t tmpfs -o ro tmpfs "$2" || exit 99
        {CURATE} score "$1" --model "$3" --out "$2/run" -k 2 --max-new-tokens 2 --quiet
        echo "exit $?"
    """
    result = _in_mount_namespace(script, str(data), str(disk), str(tiny_vlm))
    assert "exit 2" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "read-only" in errors[0] and str(disk / "run") in errors[0], result.stderr


# -- one policy: every module logs through the redacting logger, every error we raise is a CurationError ----------


def test_every_module_logs_through_the_redacting_logger():
    package = Path(difficulty_curation.__file__).parent
    plain = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "redact.py" and "logging.getLogger(" in path.read_text()
    ]
    assert plain == []


def test_the_demo_and_the_vllm_adapter_raise_curation_errors():
    with pytest.raises(ConfigError, match="split='validation'; choose 'train' or 'test'"):
        digits_dataset(split="validation")
    # Every exception the vLLM adapter and the demo raise themselves is one of ours (read from the code:
    # the vLLM engine is not installed in this tier).
    import ast

    import difficulty_curation.errors as errors

    package = Path(difficulty_curation.__file__).parent
    ours = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}
    for module in ("engines/vllm.py", "demo.py"):
        raised = {
            node.exc.func.id if isinstance(node.exc, ast.Call) else node.exc.id
            for node in ast.walk(ast.parse((package / module).read_text()))
            if isinstance(node, ast.Raise)
            and node.exc is not None
            and isinstance(getattr(node.exc, "func", node.exc), ast.Name)
        }
        raised.discard("error")  # re-raising what was caught
        if "missing_dependency" in raised:  # a helper that builds our MissingDependencyError
            raised.discard("missing_dependency")
            assert isinstance(errors.missing_dependency("vLLM", "vllm", "backend='vllm'"), errors.CurationError)
        assert raised and raised <= ours, (module, raised - ours)
        assert all(issubclass(getattr(errors, name), errors.CurationError) for name in raised), (module, raised)
