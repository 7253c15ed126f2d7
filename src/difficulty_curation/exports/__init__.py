"""Curated rows -> the files other trainers read: TRL, ms-swift, LLaMA-Factory and verl.

Every format is built from the same row -> messages builder that scoring used
(`prompts.build_request`, with the columns and system prompt recorded in the dataset's provenance),
so every trainer sees the prompt that was scored. Each export is one folder that can be moved:
data files, images where the trainer reads image files (`images/`, paths relative to the folder),
and a README.md with the scoring provenance.

| format | data | images |
| --- | --- | --- |
| `trl` | `{split}.parquet`: `prompt`, `completion`, `images` (what `to_trl_format` gives) | embedded |
| `swift` | `{split}.jsonl`: `messages` with `<image>` placeholders, `images` paths | `images/` |
| `llamafactory` | `{split}.json` (ShareGPT style) + `dataset_info.json` | `images/` |
| `verl` | `{split}.parquet`: `data_source`, `prompt`, `images`, `ability`, `reward_model`, `extra_info` | embedded |

Modules: `rows` (the rows read once for every format), `folder` (the export folder, its README and
marker) and `writers` (one writer per format).
"""

from difficulty_curation.exports.folder import MARKER_FILE, ExportResult
from difficulty_curation.exports.writers import (
    FORMATS,
    export_dataset,
    export_llamafactory,
    export_swift,
    export_trl,
    export_verl,
)

__all__ = [
    "FORMATS",
    "MARKER_FILE",
    "ExportResult",
    "export_dataset",
    "export_llamafactory",
    "export_swift",
    "export_trl",
    "export_verl",
]
