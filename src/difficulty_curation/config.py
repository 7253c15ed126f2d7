"""Frozen configuration objects: the one source of defaults for the whole pipeline.

`ScoringConfig` travels from `score_difficulty` through the engines to the dataset's
provenance record and the dataset card, so a scored dataset always says how it was scored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from difficulty_curation.columns import Columns
from difficulty_curation.errors import ConfigError
from difficulty_curation.redact import register_secret, strip_url_credentials, url_secrets

#: Rows per engine call in every runner (part of a run folder's settings: keep it to resume).
DEFAULT_BATCH_SIZE = 64
#: `curate plan`: rows in the pilot, and the largest k it compares (the rollouts it draws per pilot row).
DEFAULT_PILOT = 256
DEFAULT_MAX_K = 32

BACKENDS = ("auto", "transformers", "vllm", "openai")
#: What a rollout that hit max_new_tokens counts as (see docs/answers.md).
TRUNCATED_POLICIES = ("wrong", "exclude")
#: How the answer a verifier judges is taken from a completion (`answers.EXTRACTORS`, plus "regex").
ANSWER_EXTRACTORS = ("auto", "boxed", "last-line", "answer-is", "regex")


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
        "deterministic",  # vLLM: VLLM_BATCH_INVARIANT=1 (engines.vllm.batch_invariance)
    }
)
#: Set by the toolkit itself from the config; never through engine options.
RESERVED_ENGINE_OPTIONS = {"model": "model", "revision": "revision", "seed": "seed"}
#: Never chat template variables: the arguments of transformers' `apply_chat_template` (tokenizer's and
#: processor's) and `render_jinja_template`, which the toolkit sets itself or does not pass, and `messages`.
RESERVED_CHAT_TEMPLATE_KWARGS = frozenset(
    {
        "messages",
        "conversation",
        "conversations",
        "add_generation_prompt",
        "continue_final_message",
        "tokenize",
        "chat_template",
        "tools",
        "documents",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
        "processor_kwargs",
        "load_audio_from_video",
        "sanitize_control_tokens",
    }
)


def option(default: Any = dataclasses.MISSING, *, help: str, rollouts: bool = False, flag: bool = True) -> Any:
    """A config field with its help text (the one description the library, the CLI and the docs show).

    `rollouts=True` marks an option that changes which rollouts are generated: it is part of the
    rollout-cache key (`ScoringConfig.rollout_identity`). `flag=False` marks an option of the library
    only, which `curate` offers no flag for (the training options' LoRA alpha, say).
    """
    return field(default=default, metadata={"help": help, "rollouts": rollouts, "flag": flag})


def spoken_list(names: Iterable[str]) -> str:
    """Names as help texts list them: `("a", "b", "c")` -> `"a, b or c"`."""
    names = list(names)
    return " or ".join(filter(None, [", ".join(names[:-1]), *names[-1:]]))


def option_help(name: str, *configs: type) -> str:
    """The help text of an option: a field of `configs` (default: `ScoringConfig` and `RolloutConfig`)."""
    for cls in configs or (ScoringConfig, RolloutConfig):
        for item in dataclasses.fields(cls):
            if item.name == name:
                return item.metadata["help"]
    raise KeyError(name)


@dataclass(frozen=True)
class RolloutConfig:
    """How rollouts are sampled. Defaults follow DC-SFT (Lu et al., 2026): k=8, T=0.9, top_p=1.0."""

    num_rollouts: int = option(8, help="Answers sampled per row.", rollouts=True)
    temperature: float = option(0.9, help="Sampling temperature.", rollouts=True)
    top_p: float = option(1.0, help="Nucleus sampling mass.", rollouts=True)
    top_k: int = option(50, help="Top-k sampling (0 = off).", rollouts=True)
    max_new_tokens: int = option(128, help="Longest answer, in tokens.", rollouts=True)
    seed: int = option(0, help="Sampling seed; same seed, model and data give the same scores.", rollouts=True)

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

    model: str = option(help="Local model folder or Hub id of the scoring model.", rollouts=True)
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "How rollouts are sampled."})
    revision: str | None = option(None, help="Model revision (branch, tag or commit).", rollouts=True)
    backend: str = option("auto", help=f"{spoken_list(BACKENDS)}.", rollouts=True)
    verifier: str = option(
        "exact", help="How a rollout is judged: the name of a built-in verifier or of one added with register_verifier."
    )
    answer_extractor: str = option(
        "auto",
        help="What the verifier judges: auto (text after </think>, then <answer> tags, else all), boxed (last "
        "\\boxed{}), last-line, answer-is ('the answer is X', 'Answer: X') or regex (--answer-pattern).",
    )
    answer_pattern: str | None = option(
        None, help="A regular expression with one group: its last match is the answer (sets answer_extractor=regex)."
    )
    truncated: str = option(
        "wrong",
        help="wrong: a rollout that hit max_new_tokens is judged as written, as in the paper (a cut-off answer "
        "nearly always fails); exclude: it counts neither right nor wrong, difficulty is over finished rollouts.",
    )
    correct_threshold: float = option(0.5, help="A rollout is correct when its score is at least this.")
    prompt_column: str = option(Columns.prompt_column, help="Column with the question text (or chat messages).")
    answer_column: str = option(Columns.answer_column, help="Column with the ground-truth answer.")
    image_column: str | None = option(
        Columns.image_column, help="Column with the image(s); None ('none') for text-only data."
    )
    system_prompt: str | None = option(Columns.system_prompt, help="System message put before every prompt.")
    keep_rollouts: bool = option(False, help="Also store the sampled answers and their scores.")
    api_base: str | None = option(
        None,
        help="OpenAI-compatible endpoint for backend openai (else $OPENAI_BASE_URL), e.g. "
        "http://localhost:8000/v1. Keys never go here.",
    )
    adaptive: bool = option(
        False,
        rollouts=True,
        help="Stop a row once its first rollouts hold a right and a wrong answer (medium for certain); "
        "easy/medium/hard buckets stay exactly those of full k, num_rollouts records how many were used.",
    )
    pass_rate_interval: float | None = option(
        None,
        help="Add pass_rate_low / pass_rate_high: this central credible interval (e.g. 0.95) of the pass rate "
        "(Jeffreys prior).",
    )
    max_pixels: int | None = option(
        802_816, help="Downscale larger images to this many pixels before the engine sees them (the paper's value)."
    )
    engine_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Options for the engine: vllm.LLM keywords (tensor_parallel_size, max_model_len, gpu_memory_utilization, "
            "dtype, quantization, model_impl, ...), or dtype/attn_implementation/device_map for transformers. Those that "
            "can change tokens (TOKEN_ENGINE_OPTIONS) are recorded with the scores."
        },
    )
    chat_template_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Variables for the model's chat template, e.g. enable_thinking=false; on every backend, "
            'recorded with the scores and in the rollout-cache key. Values are JSON (true, 2, "text", [..], {..}); '
            "apply_chat_template's own arguments (messages, add_generation_prompt, tokenize, ...) are refused."
        },
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a local path or a Hub id, got {self.model!r}.")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r} is not known; choose one of: {', '.join(BACKENDS)}.")
        _check_number("correct_threshold", self.correct_threshold, minimum=0.0, maximum=1.0)
        object.__setattr__(self, "image_column", self.columns.image_column)  # checks the names, reads "none"
        for secret in url_secrets(self.api_base):
            register_secret(secret)
        if self.max_pixels is not None:
            _check_int("max_pixels", self.max_pixels, minimum=1)
        interval = self.pass_rate_interval
        if interval is not None and not (
            isinstance(interval, (int, float)) and not isinstance(interval, bool) and 0 < interval < 1
        ):  # one wording for 0, 1, 1.5 and NaN alike
            raise ConfigError(f"pass_rate_interval must be a number > 0 and < 1 (e.g. 0.95), got {interval!r}.")
        _check_engine_options(self.engine_options)
        _check_answer_options(self)

    @property
    def token_engine_options(self) -> dict[str, Any]:
        """The engine options that can change the sampled tokens (see `TOKEN_ENGINE_OPTIONS`)."""
        return {key: value for key, value in sorted(self.engine_options.items()) if key in TOKEN_ENGINE_OPTIONS}

    @property
    def columns(self) -> Columns:
        """The columns rows are read from and the system prompt, as one spec (`Columns`)."""
        return Columns(self.prompt_column, self.answer_column, self.image_column, self.system_prompt)

    @classmethod
    def option_names(cls) -> list[str]:
        """The flat option names, as `score_difficulty` and `curate score` take them (rollout fields inlined)."""
        names = [item.name for item in dataclasses.fields(cls) if item.name != "rollout"]
        return [*names, *(item.name for item in dataclasses.fields(RolloutConfig))]

    @classmethod
    def from_options(cls, model: str, **options: Any) -> ScoringConfig:
        """A config from flat options (`num_rollouts=8, verifier="exact", ...`), checked by name and value.

        Raises:
            ConfigError: an option that does not exist, or a bad value.
        """
        rollout_names = {item.name for item in dataclasses.fields(RolloutConfig)}
        known = set(cls.option_names())
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown scoring option(s) {unknown}; the options are: {', '.join(sorted(known))}.")
        rollout = RolloutConfig(**{key: value for key, value in options.items() if key in rollout_names})
        rest = {key: value for key, value in options.items() if key not in rollout_names}
        for name in ("engine_options", "chat_template_kwargs"):
            if rest.get(name) is None:
                rest[name] = {}
        return cls(model=str(model), rollout=rollout, **rest)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ScoringConfig:
        """The inverse of `to_dict` (a run's settings, a provenance record); keys that are not options are ignored."""
        known = set(cls.option_names())
        options = {key: value for key, value in record.items() if key in known}
        return cls.from_options(options.pop("model"), **options)

    def replace(self, **options: Any) -> ScoringConfig:
        """A copy with some flat options changed (`config.replace(verifier="math", num_rollouts=16)`)."""
        current = self.to_dict()
        current.update(api_base=self.api_base, engine_options=self.engine_options)  # all of them, as set
        return type(self).from_options(**{**current, **options})

    def rollout_identity(self) -> dict[str, Any]:
        """The options that decide which rollouts are generated for a prompt (the rollout-cache key).

        Never the verifier or threshold (a rescore reuses the rollouts), and of the engine options
        only those that can change tokens, left out when there are none.
        """
        identity = {
            item.name: getattr(source, item.name)
            for source in (self, self.rollout)
            for item in dataclasses.fields(source)
            if item.metadata.get("rollouts")
        }
        if self.token_engine_options:  # keys made before engine options existed stay valid
            identity["engine_options"] = self.token_engine_options
        if self.chat_template_kwargs:  # likewise for chat template variables
            identity["chat_template_kwargs"] = self.chat_template_kwargs
        return identity

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


def parse_engine_options(items: list[str] | None, *, flag: str = "--engine-option") -> dict[str, Any]:
    """`["KEY=VALUE", ...]` (the CLI's `--engine-option`) as a dict; each VALUE is read as JSON when it parses.

    `max_model_len=2048` gives an int, `enforce_eager=true` a bool, `limit_mm_per_prompt={"image":2}`
    a dict, and `dtype=bfloat16` (not JSON) stays a string. `flag` names the option in errors
    (`--chat-template-kwargs` is read the same way).
    """
    example = "enable_thinking=false" if flag == "--chat-template-kwargs" else "max_model_len=4096"
    options: dict[str, Any] = {}
    for item in items or []:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE; write e.g. {flag} {example}.")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


#: Python's spellings of JSON's constants, as `--chat-template-kwargs enable_thinking=False` writes them.
_PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}


def parse_chat_template_kwargs(items: list[str] | None) -> dict[str, Any]:
    """`["KEY=VALUE", ...]` (the CLI's `--chat-template-kwargs`) as a dict; each VALUE must be JSON.

    `enable_thinking=false` and `enable_thinking=False` give the bool (Python's `True`, `False` and
    `None` are read as JSON's), `n=2` an int, `tags=["a"]` a list. A VALUE that is not JSON is refused
    rather than sent as a string, which a template would read as true (`"False"` is a non-empty
    string): a string is written in JSON quotes, `'reasoning_effort="high"'`.

    Raises:
        ConfigError: an item that is not KEY=VALUE, or a VALUE that is not JSON.
    """
    flag = "--chat-template-kwargs"
    options: dict[str, Any] = {}
    for item in items or []:
        key, equals, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not equals or not key.isidentifier():
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE; write e.g. {flag} enable_thinking=false.")
        if text in _PYTHON_CONSTANTS:
            options[key] = _PYTHON_CONSTANTS[text]
            continue
        try:
            options[key] = json.loads(text, parse_constant=_refuse_constant)
        except ValueError:
            quoted = json.dumps(text)
            raise ConfigError(
                f"{flag} {key}={text} is not a JSON value (true, false, a number, null, [...], {{...}} or a "
                f"\"string\"); write a string in JSON quotes, e.g. {flag} '{key}={quoted}'."
            ) from None
    return options


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


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


def _check_answer_options(config: ScoringConfig) -> None:
    """Check the truncation policy, the extractor and its pattern; a pattern alone means the regex extractor."""
    if config.truncated not in TRUNCATED_POLICIES:
        raise ConfigError(
            f"truncated={config.truncated!r} is not known; choose one of: {', '.join(TRUNCATED_POLICIES)}."
        )
    if config.answer_extractor not in ANSWER_EXTRACTORS:
        raise ConfigError(
            f"answer_extractor={config.answer_extractor!r} is not known; choose one of: {', '.join(ANSWER_EXTRACTORS)}."
        )
    if not isinstance(config.chat_template_kwargs, dict) or not all(
        isinstance(key, str) and key.isidentifier() for key in config.chat_template_kwargs
    ):
        raise ConfigError(
            f"chat_template_kwargs must be a dict of variable name -> value, got {config.chat_template_kwargs!r}."
        )
    reserved = sorted(RESERVED_CHAT_TEMPLATE_KWARGS.intersection(config.chat_template_kwargs))
    if reserved:
        raise ConfigError(
            f"chat_template_kwargs[{reserved[0]!r}] (--chat-template-kwargs) is an argument of apply_chat_template, "
            "which the toolkit sets itself (messages, add_generation_prompt=True, tokenize=False) or does not "
            "pass, not a variable of the template; drop it."
        )
    try:
        json.dumps(config.chat_template_kwargs, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(
            f"chat_template_kwargs must hold JSON values (finite numbers, strings, bools, None, lists, dicts), "
            f"got {config.chat_template_kwargs!r}."
        ) from None
    pattern = config.answer_pattern
    if pattern is None:
        if config.answer_extractor == "regex":
            raise ConfigError("answer_extractor='regex' needs answer_pattern (--answer-pattern) with one group.")
        return
    if config.answer_extractor == "auto":
        object.__setattr__(config, "answer_extractor", "regex")  # a pattern alone says which extractor
    elif config.answer_extractor != "regex":
        raise ConfigError(
            f"answer_pattern is for answer_extractor='regex', not {config.answer_extractor!r}; drop one of them."
        )
    try:
        groups = re.compile(pattern).groups
    except (re.error, TypeError) as error:
        raise ConfigError(f"answer_pattern {pattern!r} is not a regular expression ({error}).") from None
    if groups != 1:
        raise ConfigError(
            f"answer_pattern {pattern!r} has {groups} groups; it needs exactly one, around the answer, "
            "e.g. 'Final: (\\d+)' (write (?:...) for the others)."
        )


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
