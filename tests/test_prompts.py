import io

import pytest
from PIL import Image

from difficulty_curation.columns import Columns
from difficulty_curation.errors import RowError
from difficulty_curation.prompts import build_request, load_image, row_reference

COLUMNS = Columns()


def _request(row, columns=COLUMNS, max_pixels=None):
    return build_request(row, columns, max_pixels=max_pixels)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_string_prompt_becomes_a_user_turn_with_image_placeholders_first():
    row = {"image": Image.new("RGB", (4, 4)), "problem": "What is it?", "solution": "cat"}
    request = _request(row)
    assert request.messages == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}
    ]
    assert len(request.images) == 1 and request.images[0].mode == "RGB"


def test_a_list_of_images_gives_one_placeholder_each():
    images = [Image.new("RGB", (4, 4), color) for color in ("red", "blue")]
    request = _request({"image": images, "problem": "Compare.", "solution": "x"})
    assert [part["type"] for part in request.messages[0]["content"]] == ["image", "image", "text"]
    assert len(request.images) == 2


def test_system_prompt_is_prepended():
    columns = Columns(system_prompt="Answer briefly.", image_column=None)
    request = _request({"problem": "2+2?", "solution": "4"}, columns)
    assert request.messages[0] == {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]}


def test_conversational_prompts_are_used_as_they_are():
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which digit?"}]}]
    request = _request({"image": Image.new("L", (8, 8)), "problem": conversation, "solution": "3"})
    assert request.messages == conversation


def test_the_content_hash_depends_on_the_pixels():
    first = _request({"image": Image.new("RGB", (4, 4), "red"), "problem": "q", "solution": "a"})
    same = _request({"image": Image.new("RGB", (4, 4), "red"), "problem": "q", "solution": "a"})
    other = _request({"image": Image.new("RGB", (4, 4), "blue"), "problem": "q", "solution": "a"})
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
        _request(row)
    assert error.value.column == column and reason in error.value.reason


@pytest.mark.parametrize(
    ("answer", "reason"), [(None, "answer is missing"), ("  ", "empty string"), ([], "empty list")]
)
def test_missing_answers_are_row_errors(answer, reason):
    with pytest.raises(RowError, match=reason):
        row_reference({"solution": answer}, COLUMNS)


def test_an_empty_image_list_is_a_text_only_row_beside_image_rows():
    request = _request({"image": [], "problem": "What is 2+2?", "solution": "4"})
    assert request.images == []
    assert request.messages == [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}]


def test_cmyk_and_grayscale_images_are_converted_to_rgb():
    assert load_image(Image.new("CMYK", (3, 3)), column="image").mode == "RGB"
    assert load_image({"bytes": _png(Image.new("L", (3, 3))), "path": None}, column="image").mode == "RGB"


def test_a_request_downscales_its_images_to_max_pixels_and_none_keeps_them_whole():
    row = {"image": Image.new("RGB", (400, 200)), "problem": "q", "solution": "a"}
    assert _request(row, max_pixels=20_000).images[0].size == (200, 100)
    assert _request(row, max_pixels=None).images[0].size == (400, 200)


def test_the_columns_say_where_the_prompt_answer_and_image_are():
    columns = Columns(prompt_column="question", answer_column="label", image_column="picture")
    row = {"picture": Image.new("RGB", (4, 4)), "question": "Which?", "label": "7", "problem": "not this"}
    assert _request(row, columns).messages[0]["content"][1]["text"] == "Which?"
    assert row_reference(row, columns) == "7"
    with pytest.raises(RowError) as error:
        row_reference({"solution": "x"}, columns)
    assert error.value.column == "label"


def test_large_images_are_downscaled_to_max_pixels_keeping_aspect():
    image = load_image(Image.new("RGB", (400, 200)), column="image", max_pixels=20_000)
    assert image.width * image.height <= 20_000
    assert image.width == pytest.approx(2 * image.height, abs=1)


def test_zero_size_images_are_row_errors():
    with pytest.raises(RowError, match="zero size"):
        load_image(Image.new("RGB", (0, 5)), column="image")
