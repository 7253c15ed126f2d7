"""Load a `curate export --format llamafactory` folder with LLaMA-Factory's own dataset loader.

Usage: python check_llamafactory.py EXPORT_DIR DATASET_NAME
"""

import os
import sys
import tempfile

from common import pixels_digest, report

export_dir, name = os.path.abspath(sys.argv[1]), sys.argv[2]

from llamafactory.data.loader import _get_merged_dataset  # noqa: E402
from llamafactory.data.mm_plugin import BasePlugin  # noqa: E402
from llamafactory.hparams import DataArguments, ModelArguments  # noqa: E402
from transformers import Seq2SeqTrainingArguments  # noqa: E402

data_args = DataArguments(dataset=name, dataset_dir=export_dir)
model_args = ModelArguments(model_name_or_path="unused-by-the-loader")
training_args = Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp())
# The loader LLaMA-Factory's get_dataset calls before tokenising: dataset_info.json -> aligned rows.
aligned = _get_merged_dataset([name], model_args, data_args, training_args, stage="sft")
row = aligned[0]
# The image decoding LLaMA-Factory's multimodal plugins apply to `_images` (a path under media_dir).
images = BasePlugin(image_token="<image>", video_token=None, audio_token=None)._regularize_images(
    row["_images"], image_max_pixels=10**9, image_min_pixels=1
)["images"]
report(
    rows=len(aligned),
    system=row["_system"],
    prompt=row["_prompt"][0]["content"],
    answer=row["_response"][0]["content"],
    image=pixels_digest(images[0]),
)
