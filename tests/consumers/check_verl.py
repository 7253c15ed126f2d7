"""Load a `curate export --format verl` parquet with verl's own RL dataset (`RLHFDataset`).

Usage: python check_verl.py EXPORT_DIR PROCESSOR_DIR
"""

import os
import sys
import tempfile

from common import pixels_digest, report

export_dir, processor_dir = os.path.abspath(sys.argv[1]), sys.argv[2]

from omegaconf import OmegaConf  # noqa: E402
from transformers import AutoProcessor  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402

processor = AutoProcessor.from_pretrained(processor_dir)
config = OmegaConf.create({"cache_dir": tempfile.mkdtemp(), "filter_overlong_prompts": False})
dataset = RLHFDataset(
    data_files=[os.path.join(export_dir, "train.parquet")],
    tokenizer=processor.tokenizer,
    config=config,
    processor=processor,
)
item = dataset[0]
raw_prompt = item["raw_prompt"]
user = next(m for m in raw_prompt if m["role"] == "user")
image_part = next(part for part in user["content"] if part["type"] == "image")


def text(message: dict) -> str:
    """verl's structured content (text parts and image parts) as one string, `<image>` for each image."""
    return "".join("<image>" if part["type"] == "image" else part["text"] for part in message["content"])


report(
    rows=len(dataset),
    system=text(next(m for m in raw_prompt if m["role"] == "system")),
    prompt=text(user),
    answer=item["reward_model"]["ground_truth"],
    image=pixels_digest(image_part["image"]),
    extra_info={key: item["extra_info"][key] for key in ("index", "difficulty", "num_correct", "num_rollouts")},
    data_source=item["data_source"],
)
