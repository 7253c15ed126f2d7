"""Load a `curate export --format swift` folder with ms-swift's own dataset loader.

Usage: python check_swift.py EXPORT_DIR   (run in an environment with ms-swift installed)
"""

import os
import sys

from common import pixels_digest, report

export_dir = os.path.abspath(sys.argv[1])
# ms-swift resolves relative image paths against ROOT_IMAGE_DIR (swift/template/vision_utils.py).
os.environ["ROOT_IMAGE_DIR"] = export_dir

from swift.dataset import load_dataset  # noqa: E402
from swift.template.vision_utils import load_image  # noqa: E402

train, validation = load_dataset([os.path.join(export_dir, "train.jsonl")], num_proc=1, strict=True)
row = train[0]
messages = row["messages"]
image = load_image(row["images"][0]["path"])
report(
    rows=len(train),
    system=next(m["content"] for m in messages if m["role"] == "system"),
    prompt=next(m["content"] for m in messages if m["role"] == "user"),
    answer=messages[-1]["content"],
    image=pixels_digest(image),
)
