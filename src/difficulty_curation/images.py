"""One image cell -> an 8-bit RGB image: the one decoder that scoring, the training formats, exports and the report share.

`load_image` reads a PIL image, a `{"bytes", "path"}` dict (how `datasets` stores an undecoded
`Image()`), raw bytes or a path, and `to_rgb` turns any Pillow mode into what a model sees:

- `RGB` as it is; `1`, `L`, `P`, `CMYK`, `YCbCr` through Pillow's own conversion.
- Transparency (`RGBA`, `LA`, `PA`, premultiplied modes, a palette or colour with a transparent
  entry) is composited onto white, as a browser shows it, instead of keeping whatever colour
  hides under transparent pixels (often black, so a black drawing on a clear background vanished).
- 16-bit images (`I;16`, `I;16B`, `I;16L`, `I;16N`: 16-bit PNG and TIFF) are rescaled by their
  declared range, 0..65535 -> 0..255 (`value / 257`, rounded); Pillow's own conversion clips
  them, so almost every pixel became white.
- `I` (32-bit integers) and `F` (32-bit floats) declare no range: the first of [0, 1] (floats only),
  [0, 255] and [0, 65535] that holds every pixel is taken as the range; an image outside all of
  them is stretched from its own minimum to its maximum. Non-finite floats count as 0.

    >>> import numpy as np
    >>> from PIL import Image
    >>> to_rgb(Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16))).getpixel((0, 0))
    (128, 128, 128)
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

from PIL import Image, UnidentifiedImageError

from difficulty_curation.errors import RowError

#: Modes whose pixels are 16-bit unsigned integers (0..65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Modes with an alpha channel (premultiplied ones included).
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
#: Transparent pixels are shown on this colour.
BACKGROUND = (255, 255, 255)


def load_image(value: Any, *, column: str, max_pixels: int | None = None) -> Image.Image:
    """Decode one image cell (PIL image, `{"bytes", "path"}` dict, path or bytes) to an 8-bit RGB image.

    Images larger than `max_pixels` are resized, keeping their aspect ratio (None: kept whole).

    Raises:
        RowError: naming `column`, when the cell is not an image that can be decoded, is empty,
            or is too large to decode safely.
    """
    try:
        image = _open_image(value)
        image.load()
    except RowError:
        raise
    except Image.DecompressionBombError as error:
        raise RowError(column, f"image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise RowError(column, "image cannot be decoded (not a recognised image format)") from None
    except FileNotFoundError as error:
        raise RowError(column, f"image file not found ({error.filename})") from None
    except Exception as error:  # a corrupt file makes Pillow raise many types (OSError, SyntaxError, EOFError, ...)
        raise RowError(column, f"image cannot be decoded ({type(error).__name__}: {error})") from None
    if image.width == 0 or image.height == 0:
        raise RowError(column, f"image has zero size ({image.width}x{image.height})")
    try:
        image = to_rgb(image)
    except Exception as error:  # a mode Pillow cannot convert (LAB, ...)
        raise RowError(column, f"image mode {image.mode!r} cannot be converted to RGB ({error})") from None
    if max_pixels is not None and image.width * image.height > max_pixels:
        scale = math.sqrt(max_pixels / (image.width * image.height))
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB: transparency on white, 16-bit and wide ranges rescaled (see the module docstring)."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in SIXTEEN_BIT_MODES or image.mode.startswith("I") or image.mode == "F":
        return _rescaled_to_8bit(image).convert("RGB")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def is_plain_8bit(image: Image.Image) -> bool:
    """Whether every reader decodes `image` alike: 8-bit RGB or grayscale without transparency."""
    return image.mode in ("RGB", "L") and "transparency" not in image.info


def _rescaled_to_8bit(image: Image.Image) -> Image.Image:
    """A grayscale `I;16*`, `I` or `F` image as mode `L`, by its declared range or the range that holds it."""
    import numpy as np

    declared_16bit = image.mode in SIXTEEN_BIT_MODES
    values = np.asarray(image if image.mode in ("I", "F") else image.convert("I"), dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if declared_16bit:
        low, high = 0.0, 65535.0
    elif low >= 0 and high <= 1 and image.mode == "F":
        low, high = 0.0, 1.0
    elif low >= 0 and high <= 255:
        low, high = 0.0, 255.0
    elif low >= 0 and high <= 65535:
        low, high = 0.0, 65535.0
    span = high - low or 1.0
    scaled = np.rint((values - low) * (255.0 / span))
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))


def _open_image(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"]))
        if value.get("path"):
            return Image.open(value["path"])
        raise ValueError("image cell has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value))
    if isinstance(value, str):
        return Image.open(value)
    raise ValueError(f"unsupported image value of type {type(value).__name__}")


__all__ = ["is_plain_8bit", "load_image", "to_rgb"]
