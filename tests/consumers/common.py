"""Shared by the checkers: what a consumer loaded, as one JSON line the test compares with the source."""

from __future__ import annotations

import hashlib
import json
import sys


def pixels_digest(image) -> str:
    """A hash of an image's RGB pixels (the same as the test's `pixels_digest`)."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


def report(**loaded) -> None:
    """Print what the consumer loaded; the test reads the last line of stdout."""
    sys.stdout.write("\n" + json.dumps(loaded) + "\n")
