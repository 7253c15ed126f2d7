"""The built-in default: a tiny LLaVA-class VLM built from configs and real digit images.

Nothing here touches the Hub. The model is a real `LlavaForConditionalGeneration` (CLIP vision
tower + Llama text model) with a byte-level BPE tokenizer trained on the fly, saved with
`save_pretrained` and loaded back through `from_pretrained` like any user model. The images are
scikit-learn's bundled handwritten digits (1,797 real 8x8 scans), as an HF `Dataset` with an
`Image` feature. `cold_start` teaches the model the task briefly, so difficulty buckets mean
something (the paper's step 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from difficulty_curation.config import DEFAULT_BATCH_SIZE
from difficulty_curation.errors import ConfigError
from difficulty_curation.redact import get_logger

logger = get_logger(__name__)

DIGIT_PROMPT = "What digit is shown in the image? Answer with a single digit."
DEMO_MODEL_VERSION = "v3"
RENDITIONS = ("original", "inverted", "rotated", "slanted", "noisy", "shifted")

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
    from sklearn.datasets import load_digits

    if rendition not in RENDITIONS:
        raise ConfigError(f"rendition={rendition!r}; choose one of {', '.join(RENDITIONS)}")
    if split not in ("train", "test"):
        raise ConfigError(f"split={split!r}; choose 'train' or 'test'")
    if num_rows is not None and (isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1):
        raise ConfigError(
            f"num_rows (--rows) must be an integer >= 1, got {num_rows!r}; leave it out to use every digit of the split."
        )
    digits = load_digits()
    indices = [i for i in range(len(digits.images)) if (i % 5 == 0) == (split == "test")]
    if num_rows is not None:
        indices = indices[:num_rows]
    images = []
    for index in indices:
        images.append(_render(digits.images[index], rendition, seed=index))
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


def _render(scan: np.ndarray, rendition: str, *, seed: int) -> Any:
    """One 8x8 scan (values 0-16) as an image, drawn the way `rendition` says.

    original: as scanned; inverted: ink and paper swapped; rotated: turned 25 degrees clockwise;
    slanted: sheared like italic handwriting (top leans right by 0.4 of the height); noisy: Gaussian
    noise (sd 48 of 255), seeded per scan; shifted: moved one pixel right and down.
    """
    from PIL import Image as PILImage

    pixels = scan * (255 / 16)
    if rendition == "inverted":
        pixels = 255 - pixels
    elif rendition == "noisy":
        pixels = pixels + np.random.default_rng(seed).normal(0, 48, pixels.shape)
    elif rendition == "shifted":
        pixels = np.pad(pixels, ((1, 0), (1, 0)))[:8, :8]
    image = PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    if rendition == "rotated":
        image = image.rotate(-25, resample=PILImage.Resampling.BILINEAR)
    elif rendition == "slanted":  # output (x, y) samples input (x + 0.4 * (y - 3.5), y): the top leans right
        shear = (1, 0.4, -0.4 * 3.5, 0, 1, 0)
        image = image.transform(image.size, PILImage.Transform.AFFINE, shear, resample=PILImage.Resampling.BILINEAR)
    return image


def _tiny_llama_config(tokenizer: Any, *, max_positions: int) -> Any:
    """A two-layer, 64-wide Llama text model for `tokenizer`."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_tiny_lm(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny, randomly initialised text-only Llama causal LM + tokenizer to `path`."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = _build_tokenizer()
    config = _tiny_llama_config(tokenizer, max_positions=256)
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
        text_config=_tiny_llama_config(tokenizer, max_positions=512),
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


def cold_start(
    path: str | os.PathLike[str],
    *,
    steps: int = 400,
    num_rows: int = 400,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Briefly teach the tiny model at `path` to read digits (the paper's step 1), in place.

    Full fine-tuning with the SFT recipe (TRL) on the first `num_rows` training digits, loss on the
    answer only; about 20 s on two CPU cores. The result reads most digits but not all, so sampled
    rollouts split rows into easy, medium and hard. The learning rate (1e-3) is far above the
    paper's 1e-5: this model starts from random weights and has seconds, not hours. Shows one
    progress bar that ends as a one-line summary (steps, time, last loss); no per-step log lines.
    """
    from difficulty_curation.recipes.sft import SFTOptions, sft

    options = SFTOptions(
        full=True, learning_rate=1e-3, warmup_ratio=0.0, max_steps=steps, batch_size=batch_size, seed=seed
    )
    import shutil
    import tempfile

    from difficulty_curation.outputs import write_aside

    rows = digits_dataset(split="train", num_rows=num_rows)
    path = Path(path)
    # sft never writes over the model it reads: train beside it, then swap the trained model in whole
    trained = Path(tempfile.mkdtemp(prefix=f".{path.name}.cold-start-", dir=path.resolve().parent))
    try:
        sft(rows, str(path), trained, options=options, progress=progress, progress_label="Cold start", overwrite=True)
        with write_aside(path, overwrite=True, earlier=("config.json",)) as staging:
            for entry in trained.iterdir():
                os.replace(entry, staging / entry.name)
    finally:
        shutil.rmtree(trained, ignore_errors=True)
    return path


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
        build_tiny_vlm(staging, seed=0)
        cold_start(staging, seed=0)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic on one file system: a half-built model is never used
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_demo(
    *, num_rows: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True, seed: int = 0
) -> Any:
    """Score the bundled digits (train split) with the cold-started demo model; returns the scored `Dataset`."""
    from difficulty_curation.runners.in_memory import score_dataset
    from difficulty_curation.scoring import score_difficulty

    digits = digits_dataset(split="train", num_rows=num_rows)  # checks num_rows before the model is built
    scorer = score_difficulty(str(ensure_demo_model()), max_new_tokens=8, seed=seed)
    return score_dataset(digits, scorer, batch_size=batch_size, progress=progress)


#: Where the demo's next commands save the scored digits when the demo itself saved nothing.
DEMO_OUT = "demo-scored"


def next_commands(saved_to: str | os.PathLike[str] | None = None) -> str:
    """The commands to try after `curate demo`, on the folder it saved (`saved_to`), or on `--out demo-scored`.

    Ends the demo's output: report, filter and export the scored digits, then score your own dataset.
    """
    import shlex

    scored = shlex.quote(str(saved_to)) if saved_to is not None else DEMO_OUT
    steps = [] if saved_to is not None else [(f"curate demo --out {scored}", "save the scored digits first")]
    steps += [
        (f"curate report {scored} --out report.html", "one HTML page: what each bucket holds and why"),
        (f"curate filter {scored} --bucket medium --out medium", "the rows the model sometimes solves (SFT-M)"),
        (
            f"curate export {scored} --format trl --bucket medium --out sft-m-trl",
            "for TRL; also swift, llamafactory, verl",
        ),
        ("curate plan your.parquet --model your-org/your-vlm --out scored", "which k, how long: a pilot first"),
        ("curate score your.parquet --model your-org/your-vlm --out scored", "your own dataset, your own model"),
    ]
    width = max(len(command) for command, _ in steps)
    return "\n".join(["Next, try:", *(f"  {command:<{width}}  # {why}" for command, why in steps)])
