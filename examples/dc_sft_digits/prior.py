"""The prior: the study's tiny LLaVA pretrained broadly on printed shapes before it sees handwriting.

Printed digits, letters and symbols are drawn with the fonts that ship with matplotlib (DejaVu,
STIX, Computer Modern) the way scikit-learn's handwritten scans were made: a 32x32 black-and-white
bitmap, counted in 4x4 blocks into an 8x8 scan of values 0-16. Each glyph gets its own font, size,
aspect, stroke width, offset, rotation (up to 45 degrees either way), slant (shear up to 0.5) and
noise, so the prior has seen rotated and slanted shapes before it ever sees a handwritten digit.
Beside "which digit" the mixture asks which letter, which symbol, how many dots, and which of two
digits is larger. Everything is drawn from seeded generators: the same `PriorRecipe` gives the same
rows and, trained with the same seed, the same model.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from difficulty_curation.demo import DIGIT_PROMPT, build_tiny_vlm

LETTER_PROMPT = "What letter is shown in the image? Answer with a single letter."
SYMBOL_PROMPT = "What symbol is shown in the image? Answer with the symbol."
COUNT_PROMPT = "How many dots are in the image? Answer with a single digit."
LARGER_PROMPT = "Which of the two digits is larger? Answer with the larger digit."
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SYMBOLS = "+-=<>%#?"
#: the share of each task in the pretraining mixture, in draw order
TASKS = {"digit": 0.55, "letter": 0.15, "symbol": 0.1, "count": 0.1, "larger": 0.1}


@dataclass(frozen=True)
class PriorRecipe:
    """Everything that determines the prior; fixed before any study run and recorded with it."""

    rows: int = 48_000  # generated once; the steps below pass over them several times
    steps: int = 6_000  # full fine-tuning, from random weights
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.02
    seed: int = 0  # model initialisation, data generation and training order
    max_rotation: float = 45.0  # degrees, either way
    max_shear: float = 0.5  # the top moves by up to this share of the height, either way
    retention_rows: int = 360  # the held-out printed-digit test (the retention measure)


def printed_digits(recipe: PriorRecipe) -> Any:
    """The prior's own task, held out: `recipe.retention_rows` printed digits drawn as in pretraining,
    from other random streams than the pretraining rows."""
    rows = [_digit_row(random.Random(f"printed-{recipe.seed}-{i}"), recipe) for i in range(recipe.retention_rows)]
    return _dataset(rows)


def pretraining_rows(recipe: PriorRecipe) -> Any:
    """The pretraining mixture: `recipe.rows` rows of the five tasks, drawn with `recipe.seed`."""
    tasks, weights = zip(*TASKS.items())
    makers = {
        "digit": _digit_row,
        "letter": _letter_row,
        "symbol": _symbol_row,
        "count": _count_row,
        "larger": _larger_row,
    }
    rows = []
    for i in range(recipe.rows):
        rng = random.Random(f"prior-{recipe.seed}-{i}")
        task = rng.choices(tasks, weights)[0]
        rows.append(makers[task](rng, recipe))
    return _dataset(rows)


def ensure_prior(recipe: PriorRecipe, *, progress: bool = False) -> Path:
    """The prior for `recipe`, built on first use and cached beside the demo model, keyed by the recipe."""
    import hashlib
    import json

    from difficulty_curation.demo import default_cache_dir

    key = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()[:12]
    return build_prior(default_cache_dir() / f"digits-prior-{key}", recipe, progress=progress)


def build_prior(path: Path, recipe: PriorRecipe, *, progress: bool = False) -> Path:
    """Build the tiny LLaVA at `path` from random weights and pretrain it on the mixture (full SFT).

    Written aside and moved into place whole; `prior.json` (the recipe) is written last, so a
    folder without it is an interrupted build and is rebuilt.
    """
    from difficulty_curation.recipes.sft import SFTOptions, sft

    if (path / "prior.json").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build_tiny_vlm(scratch / "init", seed=recipe.seed)
        options = SFTOptions(
            full=True,
            learning_rate=recipe.learning_rate,
            warmup_ratio=recipe.warmup_ratio,
            max_steps=recipe.steps,
            batch_size=recipe.batch_size,
            seed=recipe.seed,
            logging_steps=500,
        )
        trained = sft(
            pretraining_rows(recipe),
            str(scratch / "init"),
            scratch / "trained",
            options=options,
            progress=progress,
            progress_label="Prior",
        )
        (trained / "prior.json").write_text(json.dumps(asdict(recipe), indent=1))
        try:
            trained.rename(path)
        except OSError:  # another process finished the same prior first: use that one
            if not (path / "prior.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


# --------------------------------------------------------------------------------------------- drawing


@functools.cache
def _fonts() -> tuple[Any, ...]:
    """matplotlib's bundled fonts of `FONTS`, loaded once at 64 points."""
    import matplotlib
    from PIL import ImageFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(ImageFont.truetype(str(folder / name), 64) for name in FONTS)


def _glyph_scan(text: str, rng: random.Random, recipe: PriorRecipe) -> np.ndarray:
    """`text` drawn as a 32x32 bitmap with a random font, size, stroke, offset, rotation, slant and
    noise, counted in 4x4 blocks into an 8x8 scan of 0-16 (how the handwritten scans were made)."""
    from PIL import Image, ImageDraw

    font = rng.choice(_fonts())
    big = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(big).text(
        (80, 80), text, font=font, fill=255, anchor="mm", stroke_width=rng.choice((0, 0, 1, 2, 3)), stroke_fill=255
    )
    box = big.getbbox() or (0, 0, 160, 160)
    glyph = big.crop(box)
    height = rng.uniform(18, 30)
    width = min(30.0, max(2.0, glyph.width * height / glyph.height * rng.uniform(0.75, 1.3)))
    glyph = glyph.resize((max(1, round(width)), max(1, round(height))), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (32, 32), 0)
    dx, dy = rng.randint(-2, 2), rng.randint(-2, 2)
    canvas.paste(glyph, ((32 - glyph.width) // 2 + dx, (32 - glyph.height) // 2 + dy))
    canvas = canvas.rotate(rng.uniform(-recipe.max_rotation, recipe.max_rotation), resample=Image.Resampling.BILINEAR)
    shear = rng.uniform(-recipe.max_shear, recipe.max_shear)
    canvas = canvas.transform(
        canvas.size, Image.Transform.AFFINE, (1, shear, -shear * 15.5, 0, 1, 0), resample=Image.Resampling.BILINEAR
    )
    bitmap = np.asarray(canvas) > 127
    scan = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(float)
    return _noisy(scan, rng)


def _noisy(scan: np.ndarray, rng: random.Random) -> np.ndarray:
    """Gaussian noise on a third of the scans, sd up to 3 of 16, rounded back to the scan's levels."""
    if rng.random() < 1 / 3:
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(0.5, 3.0), scan.shape)
        scan = np.clip(np.rint(scan + noise), 0, 16)
    return scan


def _image(scan: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.clip(scan * (255 / 16), 0, 255).astype(np.uint8), mode="L")


def _digit_row(rng: random.Random, recipe: PriorRecipe) -> dict[str, Any]:
    digit = rng.choice("0123456789")
    return {"image": _image(_glyph_scan(digit, rng, recipe)), "problem": DIGIT_PROMPT, "solution": digit}


def _letter_row(rng: random.Random, recipe: PriorRecipe) -> dict[str, Any]:
    letter = rng.choice(LETTERS)
    return {"image": _image(_glyph_scan(letter, rng, recipe)), "problem": LETTER_PROMPT, "solution": letter}


def _symbol_row(rng: random.Random, recipe: PriorRecipe) -> dict[str, Any]:
    symbol = rng.choice(SYMBOLS)
    return {"image": _image(_glyph_scan(symbol, rng, recipe)), "problem": SYMBOL_PROMPT, "solution": symbol}


def _count_row(rng: random.Random, recipe: PriorRecipe) -> dict[str, Any]:
    """1-9 one-pixel dots on an 8x8 scan, no two touching."""
    count = rng.randint(1, 9)
    scan = np.zeros((8, 8))
    cells = [(r, c) for r in range(0, 8, 2) for c in range(0, 8, 2)]  # 16 cells of 2x2, a gap between dots
    for r, c in rng.sample(cells, count):
        scan[r, c] = rng.randint(10, 16)
    return {"image": _image(_noisy(scan, rng)), "problem": COUNT_PROMPT, "solution": str(count)}


def _larger_row(rng: random.Random, recipe: PriorRecipe) -> dict[str, Any]:
    """Two different printed digits side by side (a 16x16 image); the answer is the larger one."""
    first, second = rng.sample("0123456789", 2)
    scan = np.zeros((16, 16))
    scan[4:12, :8] = _glyph_scan(first, rng, recipe)
    scan[4:12, 8:] = _glyph_scan(second, rng, recipe)
    return {"image": _image(scan), "problem": LARGER_PROMPT, "solution": max(first, second)}


def _dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset, Features, Image, Value

    features = Features({"image": Image(), "problem": Value("string"), "solution": Value("string")})
    return Dataset.from_dict({key: [row[key] for row in rows] for key in features}, features=features)
