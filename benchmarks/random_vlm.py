"""A Qwen2.5-VL model folder without weights, for speed measurements: vLLM fills it with random weights.

    python benchmarks/random_vlm.py --size 7b --out /tmp/qwen2_5_vl_7b     # Qwen2.5-VL-7B-Instruct's shapes
    python benchmarks/random_vlm.py --size tiny --out /tmp/qwen2_5_vl_tiny # the same family, tiny (CPU check)

then `--engine-option load_format=dummy` (vLLM's random weights). Speed does not depend on weight values.
Written offline, from the published config's numbers: the config, Qwen2.5-VL's image processor and chat
template, and a word-level tokenizer covering the whole 152,064-token vocabulary with Qwen's special
tokens at their ids (random weights sample any id, and each must decode). Prompts tokenize to about
as many tokens as Qwen's own tokenizer gives (one per word); image tokens are exactly Qwen's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VOCAB_SIZE = 152064
#: Qwen2.5's special tokens and their ids.
SPECIALS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: Qwen2.5-VL-7B-Instruct's config.json (text and vision), and a tiny model of the same family.
SIZES = {
    "7b": {
        "text": {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 128000,
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
        "vision": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 3584,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "window_size": 112,
        },
    },
    "tiny": {
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_theta": 1000000.0,
            "mrope_section": [4, 6, 6],
        },
        "vision": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 112,
        },
    },
}


def build_tokenizer():
    """A word-level tokenizer over all of Qwen2.5's ids: words "w<id>", Qwen's specials at their ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    by_id = {token_id: token for token, token_id in SPECIALS.items()}
    vocab = {by_id.get(i, f"w{i}" if i < 151643 else f"<|extra_{i}|>"): i for i in range(VOCAB_SIZE)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="w0",
        chat_template=TEMPLATE,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def write_model(out: Path, size: str) -> None:
    """The folder: config.json, generation_config.json, tokenizer and image processor (no weights)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from difficulty_curation.models import image_only_processor

    shapes = SIZES[size]
    text = dict(shapes["text"])
    rope = {"rope_type": "default", "rope_theta": text.pop("rope_theta"), "mrope_section": text.pop("mrope_section")}
    text |= {"vocab_size": VOCAB_SIZE, "rope_parameters": rope, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}
    text |= {"bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={**shapes["vision"], "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=SPECIALS["<|image_pad|>"],
        video_token_id=SPECIALS["<|video_pad|>"],
        vision_start_token_id=SPECIALS["<|vision_start|>"],
        vision_end_token_id=SPECIALS["<|vision_end|>"],
        torch_dtype="bfloat16",
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]  # what vLLM picks its model class by
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643})
    )
    tokenizer = build_tokenizer()
    processor = image_only_processor(Qwen2_5_VLProcessor)(
        image_processor=Qwen2VLImageProcessorPil(), tokenizer=tokenizer, chat_template=TEMPLATE
    )
    processor.save_pretrained(out)
    video = {"video_processor_type": "Qwen2VLVideoProcessor", "processor_class": "Qwen2_5_VLProcessor"}
    (out / "video_preprocessor_config.json").write_text(json.dumps({**video, "patch_size": 14}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="7b")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    write_model(args.out, args.size)
    print(f"wrote {args.size} Qwen2.5-VL (no weights) to {args.out}")


if __name__ == "__main__":
    main()
