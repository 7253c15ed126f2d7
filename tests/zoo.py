"""A zoo of tiny random-weight models, one per family people fine-tune, built offline from transformers' own classes.

Each builder writes a folder exactly as `save_pretrained` writes a user's model: config, weights,
tokenizer (a byte-level BPE trained on the fly, carrying the family's special tokens), processor
files and a chat template in the family's structure. Nothing comes from the Hub. Image processors
are the PIL ones and no video processor is saved, so nothing needs torchvision.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from difficulty_curation.demo import DIGIT_PROMPT
from difficulty_curation.models import image_only_processor

#: A corpus for the tokenizers: the digit prompts plus the words the invariance tests add.
_CORPUS = [DIGIT_PROMPT, "user assistant system", " ".join("0123456789"), "Be careful. Look closely please."] * 20

#: Shared text-model shape: tiny but real (two layers, 64 wide, two heads of 32).
HIDDEN, LAYERS, HEADS, HEAD_DIM = 64, 2, 2, 32


def train_tokenizer(
    specials: list[str], *, bos: str | None, eos: str, pad: str, chat_template: str, extra: dict[str, str] | None = None
) -> Any:
    """A byte-level BPE tokenizer trained on the fly with the family's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320 + len(specials), special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens=extra or {},
        chat_template=chat_template,
    )


def _template(turn_open: str, turn_close: str, image: str, assistant: str, *, bos: str = "") -> str:
    """A chat template in the common structure: one turn per message, images where the content says."""
    return (
        bos + "{% for message in messages %}" + turn_open + "{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}" + image + "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}" + turn_close + "\n{% endfor %}"
        "{% if add_generation_prompt %}" + turn_open + assistant + "\n{% endif %}"
    )


# ----------------------------------------------------------------------------------------------- Qwen
_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
_QWEN_TEMPLATE = _template("<|im_start|>", "<|im_end|>", "<|vision_start|><|image_pad|><|vision_end|>", "assistant")


def _qwen_tokenizer() -> Any:
    return train_tokenizer(
        _QWEN_SPECIALS,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        chat_template=_QWEN_TEMPLATE,
        extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def _qwen_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _text_config(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """The shared text-model shape for `tokenizer` (its vocabulary and special-token ids), plus `extra`."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "max_position_embeddings": 1024,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **extra,
    }


def _qwen_text(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """A Qwen-VL text model: M-RoPE whose sections sum to head_dim / 2 (32 / 2)."""
    mrope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]}
    return _text_config(tokenizer, **{"rope_parameters": mrope, **extra})


def _qwen_image_processor() -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # 14-pixel patches merged 2x2: a 28x28 image is 4 patches, 1 image token; larger images give more.
    return Qwen2VLImageProcessorPil(size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56})


def _qwen_vision(**extra: Any) -> dict[str, Any]:
    return {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, **extra}


def _write_video_config(path: Path, processor_type: str, processor_class: str) -> None:
    """The video processor config a real checkpoint ships (its class needs torchvision, so it is written as JSON)."""
    config = {"video_processor_type": processor_type, "processor_class": processor_class, "patch_size": 14}
    (path / "video_preprocessor_config.json").write_text(json.dumps(config, indent=2))


def _build_qwen_vl(
    path: Path,
    classes: tuple[type, type, type],
    *,
    vision: dict[str, Any],
    video_processor: str,
    text: dict[str, Any] | None = None,
    image_processor: Any = None,
) -> None:
    """A Qwen-VL-family folder: (config, model, processor) classes, the vision config and the text overrides."""
    config_class, model_class, processor_class = classes
    tokenizer = _qwen_tokenizer()
    config = config_class(
        text_config=_qwen_text(tokenizer, **(text or {})), vision_config=vision, **_qwen_ids(tokenizer)
    )
    processor = image_only_processor(processor_class)(
        image_processor=image_processor or _qwen_image_processor(), tokenizer=tokenizer, chat_template=_QWEN_TEMPLATE
    )
    _save(model_class(config), processor, tokenizer, path)
    _write_video_config(path, video_processor, processor_class.__name__)


def build_qwen2_vl(path: Path) -> None:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    _build_qwen_vl(
        path,
        (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor),
        vision={"depth": 2, "embed_dim": 32, "hidden_size": HIDDEN, "num_heads": 2, "mlp_ratio": 2},
        video_processor="Qwen2VLVideoProcessor",
    )


def build_qwen2_5_vl(path: Path) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    _build_qwen_vl(
        path,
        (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor),
        vision=_qwen_vision(out_hidden_size=HIDDEN, fullatt_block_indexes=[1], window_size=56),
        video_processor="Qwen2VLVideoProcessor",
    )


def build_qwen3_vl(path: Path) -> None:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # 16-pixel patches merged 2x2: 32x32 pixels per image token.
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16,
        size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6], "mrope_interleaved": True}
    _build_qwen_vl(
        path,
        (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor),
        vision=_qwen_vision(
            patch_size=16, out_hidden_size=HIDDEN, num_position_embeddings=16, deepstack_visual_indexes=[0]
        ),
        video_processor="Qwen3VLVideoProcessor",
        text={"head_dim": HEAD_DIM, "rope_parameters": rope},
        image_processor=image_processor,
    )


def build_qwen3(path: Path) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _qwen_tokenizer()
    text = _text_config(tokenizer, head_dim=HEAD_DIM, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = Qwen3ForCausalLM(Qwen3Config(**text))
    _save(model, tokenizer, tokenizer, path)


# ---------------------------------------------------------------------------------------------- Gemma 3
_GEMMA_TEMPLATE = _template(
    "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "model", bos="{{ bos_token }}"
).replace("{{ message['role'] }}", "{{ 'model' if message['role'] == 'assistant' else message['role'] }}")


def build_gemma3(path: Path) -> None:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tokenizer = train_tokenizer(
        [
            "<pad>",
            "<eos>",
            "<bos>",
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_of_image>",
            "<end_of_image>",
            "<image_soft_token>",
        ],
        bos="<bos>",
        eos="<end_of_turn>",
        pad="<pad>",
        chat_template=_GEMMA_TEMPLATE,
        extra={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    )
    # Gemma's own vocabulary holds runs of 1-4 newlines as tokens, and vLLM's Gemma 3 processor looks them up.
    tokenizer.add_tokens(["\n", "\n\n", "\n\n\n", "\n\n\n\n"])
    image_size, patch_size, tokens_per_image = 28, 7, 4  # 4x4 patches pooled to 2x2 image tokens
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": HIDDEN,
            "intermediate_size": 2 * HIDDEN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": HEADS,
            "head_dim": HEAD_DIM,
            "query_pre_attn_scalar": HEAD_DIM,
            "sliding_window": 16,
            "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 1024,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "vision_use_head": False,
        },
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=_GEMMA_TEMPLATE,
    )
    model = Gemma3ForConditionalGeneration(config)
    # Random init leaves the projector's matrix at zero, which no trained checkpoint has: with it, no gradient
    # would reach the vision tower.
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.02)
    _save(model, processor, tokenizer, path)
    _rename_weights(path, "vision_tower.", "vision_tower.vision_model.")


def _rename_weights(path: Path, old_prefix: str, new_prefix: str) -> None:
    """Weight names as the published checkpoints have them, e.g. Gemma 3's `vision_tower.vision_model.*`.

    transformers 5 writes `vision_tower.*` and reads both; vLLM's own implementations read only the published names.
    """
    from safetensors.torch import load_file, save_file

    file = path / "model.safetensors"
    weights = load_file(file)
    renamed = {new_prefix + k[len(old_prefix) :] if k.startswith(old_prefix) else k: v for k, v in weights.items()}
    save_file(renamed, file, metadata={"format": "pt"})


# ---------------------------------------------------------------------------------------------- Idefics3
_IDEFICS_TEMPLATE = _template("<|im_start|>", "<end_of_utterance>", "<image>", "Assistant:")


def build_idefics3(path: Path) -> None:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    grid = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer = train_tokenizer(
        [
            "<|endoftext|>",
            "<|im_start|>",
            "<end_of_utterance>",
            "<fake_token_around_image>",
            "<image>",
            "<global-img>",
            *grid,
        ],
        bos="<|im_start|>",
        eos="<end_of_utterance>",
        pad="<|endoftext|>",
        chat_template=_IDEFICS_TEMPLATE,
    )
    image_size, patch_size, scale = 28, 7, 2  # 4x4 patches, pixel-shuffled 2x: 4 image tokens per tile
    config = Idefics3Config(
        text_config=_text_config(tokenizer),
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    # Images up to 56 pixels are split into 28-pixel tiles plus a global view: larger images, more tokens.
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * image_size}, max_image_size={"longest_edge": image_size}
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=_IDEFICS_TEMPLATE
    )
    _save(Idefics3ForConditionalGeneration(config), processor, tokenizer, path)


# ---------------------------------------------------------------------------------------------- InternVL
_INTERNVL_TEMPLATE = _template("<|im_start|>", "<|im_end|>", "<IMG_CONTEXT>\n", "assistant")


def build_internvl(path: Path) -> None:
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    tokenizer = train_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"],
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        chat_template=_INTERNVL_TEMPLATE,
        extra={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    image_size, patch_size = 28, 7  # 4x4 patches, downsampled 2x: 4 tokens per tile
    text = _text_config(tokenizer)
    config = InternVLConfig(
        text_config={**text, "model_type": "qwen2"},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [image_size, image_size],
            "patch_size": [patch_size, patch_size],
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
    )
    # Tiles of 28 pixels, up to 4 per image plus a thumbnail: wider images, more tokens.
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": image_size, "width": image_size}, crop_to_patches=True, min_patches=1, max_patches=4
    )
    processor = image_only_processor(InternVLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4, chat_template=_INTERNVL_TEMPLATE
    )
    _save(InternVLForConditionalGeneration(config), processor, tokenizer, path)
    _write_video_config(path, "InternVLVideoProcessor", "InternVLProcessor")


# ------------------------------------------------------------------------------------------ LLaVA-OneVision
def build_llava_onevision(path: Path) -> None:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionProcessor,
    )
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    template = _template("<|im_start|>", "<|im_end|>", "<image>\n", "assistant")
    tokenizer = train_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        chat_template=template,
        extra={"image_token": "<image>", "video_token": "<video>"},
    )
    image_size, patch_size = 28, 7
    pinpoints = [[28, 28], [28, 56], [56, 28], [56, 56]]  # any-resolution tiles: image size sets the token count
    text = _text_config(tokenizer)
    config = LlavaOnevisionConfig(
        text_config={**text, "model_type": "qwen2"},
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "vision_use_head": False,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
    )
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_grid_pinpoints=pinpoints
    )
    processor = image_only_processor(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=template,
    )
    _save(LlavaOnevisionForConditionalGeneration(config), processor, tokenizer, path)
    _write_video_config(path, "LlavaOnevisionVideoProcessor", "LlavaOnevisionProcessor")


# ------------------------------------------------------------------------------------------ LLaVA and Llama
def build_llava(path: Path) -> None:
    from difficulty_curation.demo import build_tiny_vlm

    build_tiny_vlm(path)


def build_llama(path: Path) -> None:
    from difficulty_curation.demo import build_tiny_lm

    build_tiny_lm(path)


def _save(model: Any, processor: Any, tokenizer: Any, path: Path) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    processor.save_pretrained(path)


#: family name -> (builder writing a model folder, whether it takes images).
BUILDERS: dict[str, tuple[Callable[[Path], None], bool]] = {
    "qwen2_5_vl": (build_qwen2_5_vl, True),
    "qwen2_vl": (build_qwen2_vl, True),
    "qwen3_vl": (build_qwen3_vl, True),
    "gemma3": (build_gemma3, True),
    "idefics3": (build_idefics3, True),
    "internvl": (build_internvl, True),
    "llava_onevision": (build_llava_onevision, True),
    "llava": (build_llava, True),
    "qwen3": (build_qwen3, False),
    "llama": (build_llama, False),
}


def build_zoo(root: str | os.PathLike[str], families: list[str] | None = None, *, seed: int = 0) -> dict[str, Path]:
    """Build every family (or `families`) under `root`; returns family -> folder."""
    import torch

    folders = {}
    for name in families or list(BUILDERS):
        builder, _ = BUILDERS[name]
        torch.manual_seed(seed)
        folders[name] = Path(root) / name
        builder(folders[name])
    return folders
