"""Session fixtures: the tiny models and real digit images, built offline once per test session."""

from __future__ import annotations

import io
import os

# Tests never reach the Hub: everything they load is built here, on local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
from pathlib import Path

import pytest
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

from difficulty_curation.demo import (
    DEMO_MODEL_VERSION,
    build_tiny_lm,
    build_tiny_vlm,
    digits_dataset,
    ensure_demo_model,
)


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny LLaVA saved with save_pretrained (loaded back via from_pretrained)."""
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="session")
def trained_vlm() -> Path:
    """The tiny LLaVA after a short cold start (the demo model): right often enough that buckets are mixed.

    The cold start is the slowest fixture, so it is built once per checkout, in `.cache/` (git-ignored),
    and shared by every test tier (`make test`, `make test-vllm`, `make test-exports`) and session.
    `DEMO_MODEL_VERSION` is in its name: bump it when the cold start changes.
    """
    return ensure_demo_model(Path(__file__).resolve().parents[1] / ".cache" / f"demo-vlm-{DEMO_MODEL_VERSION}")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text-only tiny Llama causal LM."""
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


#: A Qwen3-style chat template: the assistant turn opens a `<think>` block, unless `enable_thinking=False`
#: (a chat template variable, `chat_template_kwargs`), which renders an empty, closed one.
THINKING_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}"
    "{% endif %}"
)


@pytest.fixture(scope="session")
def empty_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty model folder, for tests refused before any model loads: loading it would fail loudly.
    It builds nothing, so such a test stays a fast `unit` test."""
    return tmp_path_factory.mktemp("empty-model")


@pytest.fixture(scope="session")
def thinking_lm(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny text-only Llama with a chat template that opens a `<think>` block (see `THINKING_TEMPLATE`)."""
    import shutil

    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("thinking-lm")
    shutil.copytree(tiny_lm, path, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = THINKING_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random-weight model per family (`tests/zoo.py`): family name -> saved folder. Seconds to build."""
    from zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """24 real handwritten digits with columns image, problem, solution."""
    return digits_dataset(split="train", num_rows=24)


def png_bytes(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def twelve_digits(digits: Dataset) -> Dataset:
    return digits.select(range(12))


@pytest.fixture(scope="module")
def reference_run(tiny_vlm: Path, twelve_digits: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """`twelve_digits` scored into a run folder (batches of 4) with the helpers' OPTIONS: what reruns are compared with."""
    from helpers import counted_scorer

    from difficulty_curation.runners.run_folder import score_to_dir

    out = tmp_path_factory.mktemp("reference") / "run"
    return score_to_dir(twelve_digits, counted_scorer(tiny_vlm)[0], out, batch_size=4, progress=False)


#: How the shared demo-model runs are scored: `demo_run` and every run of `scored_checkpoints`.
DEMO_RUN_OPTIONS = {"num_rollouts": 4, "max_new_tokens": 4, "keep_rollouts": True}


@pytest.fixture(scope="session")
def demo_run(trained_vlm: Path, digits: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 24 digits scored by the demo model (k=4, rollouts kept, source `digits/train`) into a run folder,
    once per session, with real provenance. Shared, so read it only; to write into it, copy it
    first (`shutil.copytree(demo_run, tmp_path / "run")`)."""
    from difficulty_curation.runners.run_folder import score_to_dir
    from difficulty_curation.scoring import score_difficulty

    out = tmp_path_factory.mktemp("demo-run") / "run"
    scorer = score_difficulty(str(trained_vlm), **DEMO_RUN_OPTIONS)
    score_to_dir(digits, scorer, out, batch_size=24, progress=False, source="digits/train")
    return out


@pytest.fixture(scope="session")
def scored_checkpoints(
    demo_run: Path, trained_vlm: Path, digits: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The 24 digits scored like `demo_run` into run folders: `before` is `demo_run`, `after` is the demo
    model after 6 full SFT steps (lr 3e-3: rows really move between buckets), and `seed1` the demo model with
    seed 1 (with `before`, the noise floor). `after_model` is the trained checkpoint."""
    from difficulty_curation.recipes.options import SFTOptions
    from difficulty_curation.recipes.sft import sft
    from difficulty_curation.runners.run_folder import score_to_dir
    from difficulty_curation.scoring import score_difficulty

    root = tmp_path_factory.mktemp("checkpoints")
    steps = SFTOptions(full=True, learning_rate=3e-3, warmup_ratio=0.0, max_steps=6, batch_size=8)
    after_model = sft(digits, str(trained_vlm), root / "after-model", options=steps, progress=False)
    runs = {"before": demo_run}
    for name, (model, seed) in {"after": (after_model, 0), "seed1": (trained_vlm, 1)}.items():
        scorer = score_difficulty(str(model), seed=seed, **DEMO_RUN_OPTIONS)
        score_to_dir(digits, scorer, root / name, batch_size=24, progress=False, source="digits/train")
        runs[name] = root / name
    return {**runs, "after_model": after_model}


@pytest.fixture()
def digits_with_bad_rows(digits: Dataset) -> Dataset:
    """Digits with a missing image, a corrupt image, a missing answer and an empty prompt among good rows."""
    rows = [
        {
            "image": {"bytes": png_bytes(row["image"]), "path": None},
            "problem": row["problem"],
            "solution": row["solution"],
        }
        for row in digits.select(range(8))
    ]
    rows[1]["image"] = None
    rows[3]["image"] = {"bytes": b"this is not an image", "path": None}
    rows[5]["solution"] = None
    rows[6]["problem"] = "   "
    features = Features({"image": Image(), "problem": Value("string"), "solution": Value("string")})
    return Dataset.from_list(rows, features=features)


#: Fixtures that build or load a model: a test that uses none of them is a fast `unit` test.
MODEL_FIXTURES = {"tiny_vlm", "trained_vlm", "tiny_lm", "thinking_lm", "zoo"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs no model as `unit` (`pytest -m unit` runs them in seconds)."""
    for item in items:
        if not MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.unit)


# -- the model-family compatibility matrix, written from the test run (`make matrix`) ------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--matrix", default=None, help="record the family x feature results of `matrix` tests (JSON)")


_MATRIX: dict[str, dict[str, str]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """One cell per `@pytest.mark.matrix(column)` test and family: "yes", or why not (its first failure line)."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("matrix")
    family = getattr(getattr(item, "callspec", None), "params", {}).get("family")
    family = marker.kwargs.get("family", family) if marker is not None else family
    if marker is None or family is None or not (report.failed or report.skipped or report.when == "call"):
        return
    cells = _MATRIX.setdefault(family, {})
    column = marker.args[0]
    if report.passed:
        cells.setdefault(column, "yes")
    elif report.skipped:
        cells[column] = "skipped: " + str(
            report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        )
    else:
        message = getattr(call.excinfo, "value", None) if call.excinfo else None
        cells[column] = "no: " + (str(message).strip().splitlines() or ["failed"])[0][:160]


def pytest_sessionfinish(session: pytest.Session) -> None:
    import json

    path = session.config.getoption("--matrix")
    if path and _MATRIX:
        recorded = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        for family, cells in _MATRIX.items():
            recorded.setdefault(family, {}).update(cells)
        Path(path).write_text(json.dumps(recorded, indent=2, sort_keys=True))
