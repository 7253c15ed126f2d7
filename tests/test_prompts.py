import io

import pytest
from PIL import Image

from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import RowError
from difficulty_curation.prompts import build_request, load_image, row_reference

CONFIG = ScoringConfig(model="m")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_string_prompt_becomes_a_user_turn_with_image_placeholders_first():
    row = {"image": Image.new("RGB", (4, 4)), "problem": "What is it?", "solution": "cat"}
    request = build_request(row, CONFIG)
    assert request.messages == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}
    ]
    assert len(request.images) == 1 and request.images[0].mode == "RGB"


def test_a_list_of_images_gives_one_placeholder_each():
    images = [Image.new("RGB", (4, 4), color) for color in ("red", "blue")]
    request = build_request({"image": images, "problem": "Compare.", "solution": "x"}, CONFIG)
    assert [part["type"] for part in request.messages[0]["content"]] == ["image", "image", "text"]
    assert len(request.images) == 2


def test_system_prompt_is_prepended():
    config = ScoringConfig(model="m", system_prompt="Answer briefly.", image_column=None)
    request = build_request({"problem": "2+2?", "solution": "4"}, config)
    assert request.messages[0] == {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]}


def test_conversational_prompts_are_used_as_they_are():
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which digit?"}]}]
    request = build_request({"image": Image.new("L", (8, 8)), "problem": conversation, "solution": "3"}, CONFIG)
    assert request.messages == conversation


def test_the_content_hash_depends_on_the_pixels():
    first = build_request({"image": Image.new("RGB", (4, 4), "red"), "problem": "q", "solution": "a"}, CONFIG)
    same = build_request({"image": Image.new("RGB", (4, 4), "red"), "problem": "q", "solution": "a"}, CONFIG)
    other = build_request({"image": Image.new("RGB", (4, 4), "blue"), "problem": "q", "solution": "a"}, CONFIG)
    assert first.content_hash == same.content_hash != other.content_hash


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ({"image": None, "problem": "q", "solution": "a"}, "image", "image is missing"),
        ({"image": {"bytes": b"garbage", "path": None}, "problem": "q", "solution": "a"}, "image", "cannot be decoded"),
        (
            {"image": {"bytes": None, "path": "/no/such.png"}, "problem": "q", "solution": "a"},
            "image",
            "image file not found (/no/such.png)",
        ),
        ({"image": Image.new("RGB", (2, 2)), "problem": "", "solution": "a"}, "problem", "prompt is empty"),
        ({"image": Image.new("RGB", (2, 2)), "problem": None, "solution": "a"}, "problem", "prompt is missing"),
        ({"image": Image.new("RGB", (2, 2)), "problem": 42, "solution": "a"}, "problem", "must be a string"),
    ],
)
def test_bad_rows_raise_row_error_naming_the_column(row, column, reason):
    with pytest.raises(RowError) as error:
        build_request(row, CONFIG)
    assert error.value.column == column and reason in error.value.reason


@pytest.mark.parametrize(
    ("answer", "reason"), [(None, "answer is missing"), ("  ", "empty string"), ([], "empty list")]
)
def test_missing_answers_are_row_errors(answer, reason):
    with pytest.raises(RowError, match=reason):
        row_reference({"solution": answer}, CONFIG)


def test_an_empty_image_list_is_a_text_only_row_beside_image_rows():
    request = build_request({"image": [], "problem": "What is 2+2?", "solution": "4"}, CONFIG)
    assert request.images == []
    assert request.messages == [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}]


def test_cmyk_and_grayscale_images_are_converted_to_rgb():
    assert load_image(Image.new("CMYK", (3, 3)), column="image").mode == "RGB"
    assert load_image({"bytes": _png(Image.new("L", (3, 3))), "path": None}, column="image").mode == "RGB"


def test_large_images_are_downscaled_to_max_pixels_keeping_aspect():
    image = load_image(Image.new("RGB", (400, 200)), column="image", max_pixels=20_000)
    assert image.width * image.height <= 20_000
    assert image.width == pytest.approx(2 * image.height, abs=1)


def test_zero_size_images_are_row_errors():
    with pytest.raises(RowError, match="zero size"):
        load_image(Image.new("RGB", (0, 5)), column="image")
