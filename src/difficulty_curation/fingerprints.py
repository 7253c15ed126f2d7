"""Row fingerprints: a hash of each row's content, the same in any order and any process.

`compare` matches rows of several runs by them (`compare.runs.row_keys`), and `mix` draws each bucket's
rows in their order (`content_keys`), so a draw depends on the rows' content, never on their order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from datasets import Dataset


def content_keys(dataset: Dataset) -> list[str]:
    """A fingerprint of each row's whole content (every column, images as their bytes), `#2`, `#3`...
    after repeats: the same rows give the same keys in any order (what `mix` draws in)."""
    return row_fingerprints(dataset, {name: name for name in dataset.column_names})


def row_fingerprints(dataset: Dataset, roles: dict[str, str]) -> list[str]:
    """sha256 of each row's values of `roles` (label -> column), hashed under their labels; images undecoded.
    A row that occurs several times gets `#2`, `#3`... after its fingerprint, so duplicates stay apart."""
    from datasets import Image

    from difficulty_curation.schema import replace_image_features

    view = dataset.select_columns(list(dict.fromkeys(roles.values())))
    images = set()
    for name, feature in view.features.items():
        if replace_image_features(feature, None) != feature:  # holds images: hash their bytes, never decode them
            images.add(name)
            view = view.cast_column(name, replace_image_features(feature, Image(decode=False)))
    seen: Counter[str] = Counter()
    keys = []
    rows = (dict(zip(batch, values)) for batch in view.iter(batch_size=1000) for values in zip(*batch.values()))
    for row in rows:
        digest = hashlib.sha256()
        for label, name in roles.items():
            digest.update(label.encode() + b"\0")
            value = row[name]
            if name in images:
                for cell in value if isinstance(value, list) else [value]:
                    if isinstance(cell, dict):
                        digest.update(cell.get("bytes") or str(cell.get("path")).encode())
                    else:
                        digest.update(str(cell).encode())
            else:
                digest.update(json.dumps(value, sort_keys=True, default=_bytes_text).encode())
            digest.update(b"\1")
        key = digest.hexdigest()[:16]
        seen[key] += 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


def _bytes_text(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)
