"""The built-in default: a tiny LLaVA-class VLM built from configs and real digit images.

Nothing here touches the Hub. The model is a real `LlavaForConditionalGeneration` (CLIP vision
tower + Llama text model) with a byte-level BPE tokenizer trained on the fly, saved with
`save_pretrained` and loaded back through `from_pretrained` like any user model. The images are
scikit-learn's bundled handwritten digits (1,797 real 8x8 scans), as an HF `Dataset` with an
`Image` feature. `cold_start` teaches the model the task briefly, so difficulty buckets mean
something (the paper's step 1).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DIGIT_PROMPT = "What digit is shown in the image? Answer with a single digit."
DEMO_MODEL_VERSION = "v1"
RENDITIONS = ("original", "inverted")

_CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def digits_dataset(*, split: str = "train", rendition: str = "original", num_rows: int | None = None) -> Any:
    """scikit-learn's handwritten digits as a `Dataset` with columns image, problem, solution.

    `split="train"` holds 4 of every 5 scans, `"test"` the rest. `rendition="inverted"` swaps ink
    and paper: the same digits drawn differently, used as the out-of-distribution set.
    """
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    if rendition not in RENDITIONS:
        raise ValueError(f"rendition={rendition!r}; choose one of {', '.join(RENDITIONS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; choose 'train' or 'test'")
    digits = load_digits()
    indices = [i for i in range(len(digits.images)) if (i % 5 == 0) == (split == "test")]
    if num_rows is not None:
        indices = indices[:num_rows]
    images = []
    for index in indices:
        pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
        if rendition == "inverted":
            pixels = 255 - pixels
        images.append(PILImage.fromarray(pixels, mode="L"))
    features = Features({"image": Image(), "problem": Value("string"), "solution": Value("string")})
    return Dataset.from_dict(
        {
            "image": images,
            "problem": [DIGIT_PROMPT] * len(indices),
            "solution": [str(int(digits.target[i])) for i in indices],
        },
        features=features,
    )


def _build_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained on the fly, with a chat template and an image token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [DIGIT_PROMPT, "user assistant system", " ".join("0123456789")] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=_CHAT_TEMPLATE,
    )


def build_tiny_lm(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny, randomly initialised text-only Llama causal LM + tokenizer to `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_vlm(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny, randomly initialised LLaVA model + processor to `path` with `save_pretrained`."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = _build_tokenizer()
    image_size, patch_size = 28, 7
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_CHAT_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
            projection_dim=64,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def cold_start(path: str | os.PathLike[str], *, steps: int = 300, batch_size: int = 32, seed: int = 0) -> Path:
    """Briefly teach the tiny model at `path` to read digits (the paper's step 1), in place.

    A plain next-token loss on the answer tokens only; about 10 s on two CPU cores. The result
    is above chance but imperfect, so sampled rollouts split rows into easy, medium and hard.
    """
    import random

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"
    rows = list(digits_dataset(split="train"))
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DIGIT_PROMPT}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        batch = rng.sample(rows, batch_size)
        answers = [row["solution"] + tokenizer.eos_token for row in batch]
        inputs = processor(
            text=[prompt + answer for answer in answers],
            images=[[row["image"].convert("RGB")] for row in batch],
            padding=True,
            return_tensors="pt",
        )
        labels = torch.full_like(inputs["input_ids"], -100)
        for i, answer in enumerate(answers):
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            end = int(inputs["attention_mask"][i].sum())
            labels[i, end - len(answer_ids) : end] = torch.tensor(answer_ids)
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == steps - 1:
            logger.info("cold start step %d/%d loss %.3f", step + 1, steps, loss.item())
    model.eval()
    model.save_pretrained(path)
    return Path(path)


def default_cache_dir() -> Path:
    """Where the demo model is cached: `$DIFFICULTY_CURATION_CACHE`, else `~/.cache/difficulty_curation`."""
    root = os.environ.get("DIFFICULTY_CURATION_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "difficulty_curation"
    )
    return Path(root)


def ensure_demo_model(path: str | os.PathLike[str] | None = None, *, rebuild: bool = False) -> Path:
    """The cold-started demo model, built on first use (about 15 s) and cached afterwards."""
    import shutil
    import tempfile

    target = Path(path) if path is not None else default_cache_dir() / f"demo-vlm-{DEMO_MODEL_VERSION}"
    if (target / "config.json").exists() and not rebuild:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("building the demo model in %s", target)
    staging = Path(tempfile.mkdtemp(prefix=".demo-vlm-", dir=target.parent))
    try:
        build_tiny_vlm(staging)
        cold_start(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic on one file system: a half-built model is never used
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_demo(*, num_rows: int | None = None, batch_size: int = 64, progress: bool = True, seed: int = 0) -> Any:
    """Score the bundled digits (train split) with the cold-started demo model; returns the scored `Dataset`."""
    from transformers.utils import logging as transformers_logging

    from difficulty_curation.scoring import score_dataset, score_difficulty

    transformers_logging.disable_progress_bar()  # per-load "Loading weights" bars would bury the table
    transformers_logging.set_verbosity_error()
    model = ensure_demo_model()
    scorer = score_difficulty(str(model), max_new_tokens=8, seed=seed)
    return score_dataset(
        digits_dataset(split="train", num_rows=num_rows), scorer, batch_size=batch_size, progress=progress
    )
