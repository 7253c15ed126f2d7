"""Frozen configuration objects: the one source of defaults for the whole pipeline.

`ScoringConfig` travels from `score_difficulty` through the engines to the dataset's
provenance record and the dataset card, so a scored dataset always says how it was scored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from difficulty_curation.errors import ConfigError
from difficulty_curation.redact import register_secret, strip_url_credentials, url_secrets

BACKENDS = ("auto", "transformers", "vllm", "openai")

#: The paper's buckets, as inclusive ranges of `difficulty` (the fraction of wrong rollouts).
PAPER_BUCKETS = ("easy", "medium", "hard")

#: Engine options that can change the sampled tokens: they are part of the provenance, the run
#: folder's settings and the rollout-cache key. Every other engine option (memory, parallelism,
#: context length, eager mode, ...) only changes how fast rollouts come, never which.
TOKEN_ENGINE_OPTIONS = frozenset(
    {
        "dtype",
        "quantization",
        "model_impl",
        "kv_cache_dtype",
        "hf_overrides",
        "tokenizer",
        "tokenizer_mode",
        "tokenizer_revision",
        "load_format",
        "attn_implementation",
    }
)
#: Set by the toolkit itself from the config; never through engine options.
RESERVED_ENGINE_OPTIONS = {"model": "model", "revision": "revision", "seed": "seed"}


@dataclass(frozen=True)
class RolloutConfig:
    """How rollouts are sampled. Defaults follow DC-SFT (Lu et al., 2026): k=8, T=0.9, top_p=1.0."""

    num_rollouts: int = 8
    temperature: float = 0.9
    top_p: float = 1.0
    top_k: int = 50
    max_new_tokens: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("num_rollouts", self.num_rollouts, minimum=1)
        _check_number("temperature", self.temperature, minimum=0.0)
        _check_number("top_p", self.top_p, minimum=0.0, maximum=1.0, exclusive_minimum=True)
        _check_int("top_k", self.top_k, minimum=0)
        _check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        _check_int("seed", self.seed, minimum=0)


@dataclass(frozen=True)
class ScoringConfig:
    """Everything that determines a row's difficulty: model, sampling, verifier and columns."""

    model: str
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    revision: str | None = None
    backend: str = "auto"
    verifier: str = "exact"
    correct_threshold: float = 0.5
    prompt_column: str = "problem"
    answer_column: str = "solution"
    image_column: str | None = "image"
    system_prompt: str | None = None
    keep_rollouts: bool = False
    #: The OpenAI-compatible endpoint for backend="openai" (else $OPENAI_BASE_URL). Keys never go here.
    api_base: str | None = None
    #: Draw rollouts in rounds and stop a row once its paper bucket is certain (medium).
    adaptive: bool = False
    #: Add `pass_rate_low` / `pass_rate_high`: this central credible interval of a Jeffreys Beta posterior.
    pass_rate_interval: float | None = None
    #: Larger images are downscaled to this many pixels before the engine sees them (the paper: 802,816).
    max_pixels: int | None = 802_816
    #: Extra options for the engine: `vllm.LLM(...)` keywords (tensor_parallel_size, max_model_len,
    #: gpu_memory_utilization, dtype, quantization, model_impl, ...); the transformers backend takes
    #: dtype, attn_implementation and device_map. Those that can change tokens are in TOKEN_ENGINE_OPTIONS.
    engine_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a local path or a Hub id, got {self.model!r}.")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r} is not known; choose one of: {', '.join(BACKENDS)}.")
        _check_number("correct_threshold", self.correct_threshold, minimum=0.0, maximum=1.0)
        for option in ("prompt_column", "answer_column"):
            value = getattr(self, option)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{option} must be a column name, got {value!r}.")
        if self.image_column is not None and (not isinstance(self.image_column, str) or not self.image_column):
            raise ConfigError(f"image_column must be a column name or None, got {self.image_column!r}.")
        for secret in url_secrets(self.api_base):
            register_secret(secret)
        if self.max_pixels is not None:
            _check_int("max_pixels", self.max_pixels, minimum=1)
        if self.pass_rate_interval is not None:
            _check_number(
                "pass_rate_interval", self.pass_rate_interval, minimum=0.0, maximum=1.0, exclusive_minimum=True
            )
            if self.pass_rate_interval >= 1.0:
                raise ConfigError(f"pass_rate_interval must be below 1, got {self.pass_rate_interval!r}.")
        _check_engine_options(self.engine_options)

    @property
    def token_engine_options(self) -> dict[str, Any]:
        """The engine options that can change the sampled tokens (see `TOKEN_ENGINE_OPTIONS`)."""
        return {key: value for key, value in sorted(self.engine_options.items()) if key in TOKEN_ENGINE_OPTIONS}

    @property
    def required_columns(self) -> dict[str, str]:
        """Option name -> column name, for every column the scorer reads."""
        columns = {"prompt_column": self.prompt_column, "answer_column": self.answer_column}
        if self.image_column is not None:
            columns["image_column"] = self.image_column
        return columns

    def to_dict(self) -> dict[str, Any]:
        """A flat, JSON-ready record of what decides the scores (used for provenance, run folders and cards).

        Of `engine_options`, only those that can change tokens are kept; speed and memory settings
        (`gpu_memory_utilization`, `tensor_parallel_size`, ...) may differ between runs of one dataset.
        Credentials in `api_base` are left out: the record is stored and shown.
        """
        record = dataclasses.asdict(self)
        record.update(record.pop("rollout"))
        record["api_base"] = strip_url_credentials(self.api_base)
        record["engine_options"] = self.token_engine_options
        return record


def parse_engine_options(items: list[str] | None) -> dict[str, Any]:
    """`["KEY=VALUE", ...]` (the CLI's `--engine-option`) as a dict; each VALUE is read as JSON when it parses.

    `max_model_len=2048` gives an int, `enforce_eager=true` a bool, `limit_mm_per_prompt={"image":2}`
    a dict, and `dtype=bfloat16` (not JSON) stays a string.
    """
    options: dict[str, Any] = {}
    for item in items or []:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ConfigError(
                f"--engine-option {item!r} is not KEY=VALUE; write e.g. --engine-option max_model_len=4096."
            )
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def _check_engine_options(options: Any) -> None:
    if not isinstance(options, dict):
        raise ConfigError(f"engine_options must be a dict of option name -> value, got {options!r}.")
    for key, value in options.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"engine_options keys must be option names, got {key!r}.")
        if key in RESERVED_ENGINE_OPTIONS:
            raise ConfigError(
                f"engine_options[{key!r}] is set from the scoring options; pass {RESERVED_ENGINE_OPTIONS[key]}= "
                "(--" + RESERVED_ENGINE_OPTIONS[key] + ") instead."
            )
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"engine_options[{key!r}] must be a JSON value (number, string, bool, list, dict), got {value!r}."
            ) from None


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _check_number(
    name: str,
    value: Any,
    *,
    minimum: float,
    maximum: float = math.inf,
    exclusive_minimum: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > minimum if exclusive_minimum else value >= minimum) and value <= maximum
    if not ok:
        low = f"> {minimum}" if exclusive_minimum else f">= {minimum}"
        high = "" if maximum == math.inf else f" and <= {maximum}"
        raise ConfigError(f"{name} must be a number {low}{high}, got {value!r}.")


#: How a provenance record is marked inside `DatasetInfo.description`.
PROVENANCE_PREFIX = "difficulty-curation provenance: "


def provenance_record(
    config: ScoringConfig,
    *,
    model_revision: str | None = None,
    source: str | None = None,
    source_revision: str | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce a dataset's scores: config, model revision, source, version, date."""
    import datetime
    import importlib.metadata

    try:
        version = importlib.metadata.version("difficulty-curation")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        version = "unknown"
    return {
        **config.to_dict(),
        "model_revision": model_revision or config.revision,
        "source": source,
        "source_revision": source_revision,
        "toolkit_version": version,
        "scored_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
