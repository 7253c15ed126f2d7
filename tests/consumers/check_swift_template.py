"""Encode a `curate export --format swift` row with ms-swift's own Qwen2.5-VL template, as `swift sft` would.

Usage: python check_swift_template.py EXPORT_DIR QWEN2_5_VL_DIR   (run in ms-swift's environment)

The processor comes from ms-swift's `get_processor` (which attaches its model_info and model_meta;
no weights are loaded) and the template from `get_template(..., template_type="qwen2_5_vl")`, the
`--template qwen2_5_vl` a local folder needs. ms-swift's Qwen-VL templates hold the real Qwen
vocabulary's `<|image_pad|>`/`<|video_pad|>` ids as class constants (151655/151656); the test zoo's
tiny tokenizer numbers them differently, so the template is told the folder's own ids. Everything
else (chat format, image resizing by qwen_vl_utils, image-token expansion, labels) is ms-swift's.
"""

import os
import sys

from common import report

export_dir, model_dir = (os.path.abspath(argument) for argument in sys.argv[1:3])
# ms-swift resolves relative image paths against ROOT_IMAGE_DIR (swift/template/vision_utils.py).
os.environ["ROOT_IMAGE_DIR"] = export_dir

from swift.dataset import load_dataset  # noqa: E402
from swift.model import get_processor  # noqa: E402
from swift.template import get_template  # noqa: E402

train, validation = load_dataset([os.path.join(export_dir, "train.jsonl")], num_proc=1, strict=True)
processor = get_processor(model_dir)
template = get_template(processor, template_type="qwen2_5_vl")
tokenizer = processor.tokenizer
swift_image_token_id = template.image_token_id
template.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
template.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
template.set_mode("train")

encoded = template.encode(train[0])
input_ids = encoded["input_ids"]
grid = encoded["image_grid_thw"].tolist()
report(
    rows=len(train),
    model_type=processor.model_meta.model_type,
    template=type(template).__name__,
    swift_image_token_id=swift_image_token_id,
    text=tokenizer.decode(input_ids),
    labels=tokenizer.decode([token for token in encoded["labels"] if token != -100]),
    image_tokens=input_ids.count(template.image_token_id),
    image_grid_thw=grid,
    merge_size=processor.image_processor.merge_size,
    pixel_rows=encoded["pixel_values"].shape[0],
    mm_token_type_ids=int(encoded["mm_token_type_ids"].sum()) if "mm_token_type_ids" in encoded else None,
)
