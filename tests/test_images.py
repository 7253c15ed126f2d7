"""`images.load_image`: any image cell -> the 8-bit RGB pixels a model is scored on, trained on and shown.

The report's thumbnails are checked in test_report.py.
"""

import io

import numpy as np
import pytest
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from difficulty_curation.columns import Columns
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import RowError
from difficulty_curation.exports import export_swift
from difficulty_curation.images import load_image
from difficulty_curation.prompts import build_request
from difficulty_curation.provenance import attach_provenance, provenance_record
from difficulty_curation.recipes.formats import to_trl_format

#: 16-bit values and the 8-bit values they mean (value / 257, rounded): mid-gray is 128, not white.
SIXTEEN_BIT = [0, 257 * 100, 32768, 65535]
EIGHT_BIT = [0, 100, 128, 255]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def sixteen_bit(byte_order: str = "<") -> Image.Image:
    """A 1x4 16-bit grayscale image holding `SIXTEEN_BIT`."""
    return Image.fromarray(np.array([SIXTEEN_BIT], dtype=f"{byte_order}u2"))


def gray_row(image: Image.Image) -> list[int]:
    """The first row's pixels of an RGB image, each checked to be gray."""
    pixels = [image.getpixel((x, 0)) for x in range(image.width)]
    assert all(r == g == b for r, g, b in pixels), pixels
    return [r for r, _, _ in pixels]


@pytest.mark.parametrize("byte_order", ["<", ">"], ids=["I;16", "I;16B"])
def test_a_16_bit_image_is_rescaled_to_8_bit_not_clipped_to_white(byte_order):
    image = sixteen_bit(byte_order)
    assert image.mode == ("I;16" if byte_order == "<" else "I;16B")
    assert gray_row(load_image(image, column="image")) == EIGHT_BIT


def test_a_16_bit_png_file_is_rescaled_to_8_bit():
    data = png(sixteen_bit())
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert gray_row(load_image({"bytes": data, "path": None}, column="image")) == EIGHT_BIT
    assert gray_row(load_image(data, column="image")) == EIGHT_BIT


def test_a_32_bit_integer_image_is_scaled_by_the_first_usual_range_that_holds_it():
    def shown(values: list[int]) -> list[int]:
        return gray_row(load_image(Image.fromarray(np.array([values], dtype=np.int32)), column="image"))

    assert shown([0, 100, 255]) == [0, 100, 255]  # 8-bit values
    assert shown([0, 32768, 65535]) == [0, 128, 255]  # 16-bit values (how older Pillow opened 16-bit PNGs)
    assert shown([-1000, 0, 1000]) == [0, 128, 255]  # no usual range: its own minimum to maximum


def test_a_float_image_in_0_1_is_scaled_to_0_255():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32))
    assert image.mode == "F"
    assert gray_row(load_image(image, column="image")) == [0, 128, 255, 0]


def test_transparent_pixels_are_shown_on_white_and_opaque_ones_keep_their_colour():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(0, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 128)])
    loaded = load_image({"bytes": png(rgba), "path": None}, column="image")
    assert [loaded.getpixel((x, 0)) for x in range(3)] == [(255, 255, 255), (255, 0, 0), (127, 127, 127)]
    gray_alpha = Image.merge("LA", [Image.new("L", (1, 1), 0), Image.new("L", (1, 1), 0)])
    assert load_image(png(gray_alpha), column="image").getpixel((0, 0)) == (255, 255, 255)


def test_a_palette_image_with_a_transparent_entry_shows_it_on_white():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 0, 0, 255])  # entry 0 black (transparent), entry 1 blue
    palette.putdata([0, 1])
    palette.info["transparency"] = 0
    loaded = load_image(png(palette), column="image")
    assert [loaded.getpixel((x, 0)) for x in range(2)] == [(255, 255, 255), (0, 0, 255)]


def test_cmyk_bilevel_and_opaque_palette_images_become_their_rgb_colours():
    cyan = Image.new("CMYK", (1, 1), (255, 0, 0, 0))
    assert load_image(cyan, column="image").getpixel((0, 0)) == (0, 255, 255)
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert gray_row(load_image(png(bilevel), column="image")) == [0, 255]
    palette = Image.new("P", (1, 1))
    palette.putpalette([10, 200, 30])
    assert load_image(png(palette), column="image").getpixel((0, 0)) == (10, 200, 30)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (png(Image.new("RGB", (64, 64), "red"))[:-40], "image cannot be decoded"),  # a truncated PNG
        (png(Image.new("RGB", (64, 64), "red"))[:30], "image cannot be decoded"),  # cut inside the header
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image cannot be decoded"),
    ],
    ids=["truncated-data", "truncated-header", "png-signature-only"],
)
def test_a_broken_image_is_a_row_error_naming_the_column(data, reason):
    with pytest.raises(RowError) as error:
        load_image(data, column="picture")
    assert error.value.column == "picture" and reason in error.value.reason


def test_extreme_shapes_load_whole_and_downscale_to_max_pixels():
    assert load_image(png(Image.new("L", (1, 1), 7)), column="image").getpixel((0, 0)) == (7, 7, 7)
    wide = load_image(png(Image.new("RGB", (5000, 20))), column="image")
    assert wide.size == (5000, 20)
    assert load_image(png(Image.new("RGB", (5000, 20))), column="image", max_pixels=1000).size == (500, 2)


# -- one loader everywhere: what is scored is what is trained on and exported --------------------------------
@pytest.fixture(scope="module")
def sixteen_bit_rows() -> Dataset:
    """Two scored rows whose image is a 16-bit PNG."""
    features = Features({"image": ImageFeature(), "problem": Value("string"), "solution": Value("string")})
    rows = [{"image": {"bytes": png(sixteen_bit()), "path": None}, "problem": "Which?", "solution": "1"}] * 2
    dataset = Dataset.from_list(rows, features=features)
    dataset = dataset.add_column("difficulty", [0.5, 0.5]).add_column("num_rollouts", [4, 4])
    return attach_provenance(dataset, provenance_record(ScoringConfig(model="tiny-vlm"), source="sixteen-bit"))


def test_a_16_bit_image_is_scored_trained_on_and_exported_as_the_same_8_bit_pixels(sixteen_bit_rows, tmp_path):
    row = sixteen_bit_rows.cast_column("image", ImageFeature(decode=False))[0]
    scored = build_request(row, Columns(), max_pixels=None).images[0]
    trained = to_trl_format(sixteen_bit_rows)[0]["images"][0]
    export_swift(sixteen_bit_rows, tmp_path / "swift")
    exported = Image.open(next((tmp_path / "swift" / "images").iterdir()))
    assert exported.mode == "RGB"
    assert gray_row(scored) == gray_row(trained.convert("RGB")) == gray_row(exported) == EIGHT_BIT
