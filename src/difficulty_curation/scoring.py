"""The `Dataset.map` callable: rows -> prompts -> engine -> verifiers -> difficulty columns."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from difficulty_curation.answers import extractor_for, is_truncated
from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.base import AdaptiveEngine, RolloutEngine, generate_isolating_rows, open_session
from difficulty_curation.engines.loader import load_engine
from difficulty_curation.errors import (
    ConfigError,
    CurationError,
    ModelLoadError,
    RowError,
    RowFailedError,
)
from difficulty_curation.progress import BatchReport
from difficulty_curation.prompts import PromptRequest, build_request, row_reference
from difficulty_curation.redact import get_logger, redact
from difficulty_curation.rollout_cache import RolloutCache, rollout_key
from difficulty_curation.schema import score_columns, score_features
from difficulty_curation.verifiers import Verifier, get_verifier, verifier_name

if TYPE_CHECKING:
    from datasets import Features

logger = get_logger(__name__)

#: Rollouts per round with `adaptive=True` (the last round takes whatever is left of k).
ADAPTIVE_ROUND = 4


@dataclass
class PreparedBatch:
    """A batch after `DifficultyScorer.prepare`: requests for good rows, reasons for bad ones."""

    errors: list[str | None]
    references: list[Any]
    requests: dict[int, PromptRequest] = field(default_factory=dict)
    seconds: float = 0.0


class _EngineSlot:
    """Where a scorer keeps its engine; copies made by `for_run` share it."""

    engine: RolloutEngine | None = None


class DifficultyScorer:
    """Callable for `Dataset.map(scorer, batched=True)` that adds the difficulty columns.

    The model is loaded on the first batch and kept for the scorer's lifetime. Pickling keeps only
    the configuration (and a custom verifier), so the datasets fingerprint is the same in every
    process for the same model and options, and the model itself is never pickled.
    """

    def __init__(self, config: ScoringConfig, verifier: Verifier | None = None) -> None:
        self.config = config
        self.custom_verifier = verifier
        self.verify: Verifier = get_verifier(verifier if verifier is not None else config.verifier)
        #: completion -> the answer the verifier judges (None: no answer), as `config.answer_extractor` says.
        self.extract = extractor_for(config.answer_extractor, config.answer_pattern)
        self._slot = _EngineSlot()
        # Runtime-only settings of one run, set by `for_run` on a copy (never pickled, never a score's cause).
        self.on_batch: Callable[[BatchReport], None] | None = None
        self.rollout_cache: RolloutCache | None = None
        self.fail_fast = False

    def for_run(
        self,
        *,
        on_batch: Callable[[BatchReport], None] | None = None,
        rollout_cache: RolloutCache | None = None,
        fail_fast: bool = False,
    ) -> DifficultyScorer:
        """A copy of this scorer for one run, sharing its engine (loaded once for both); this one is unchanged.

        - `on_batch` is called with a `BatchReport` after every batch, for progress displays;
        - `rollout_cache`: rollouts are looked up there before generating and stored right after;
        - `fail_fast`: raise `RowFailedError` on the first row that cannot be scored instead of recording it.
        """
        run = object.__new__(type(self))  # not copy.copy: __getstate__ keeps only the config, not the engine
        run.__dict__.update(self.__dict__)
        run.on_batch, run.rollout_cache, run.fail_fast = on_batch, rollout_cache, fail_fast
        return run

    def judging(self, **options: Any) -> DifficultyScorer:
        """A scorer that judges with other answer options (`verifier`, `answer_extractor`, `answer_pattern`,
        `truncated`, `correct_threshold`) and shares this one's engine: the same rollouts, judged otherwise.

        Raises:
            ConfigError: a bad value, or an option that would change the rollouts.
        """
        allowed = {"verifier", "answer_extractor", "answer_pattern", "truncated", "correct_threshold"}
        if set(options) - allowed:
            raise ConfigError(
                f"judging() takes only {', '.join(sorted(allowed))}, got {sorted(set(options) - allowed)}."
            )
        verifier = options.get("verifier", self.custom_verifier or self.config.verifier)
        custom = verifier if callable(verifier) else None
        if custom is None:
            get_verifier(verifier)  # fail now on an unknown name
        options["verifier"] = verifier_name(verifier)
        if "answer_extractor" in options and "answer_pattern" not in options:
            options["answer_pattern"] = None  # another extractor drops the pattern of regex
        judged = DifficultyScorer(self.config.replace(**options), verifier=custom)
        judged._slot = self._slot
        return judged

    # -- engine ---------------------------------------------------------------------------------
    @property
    def engine(self) -> RolloutEngine:
        """The generation engine, loaded on first use."""
        if self._slot.engine is None:
            try:
                self._slot.engine = load_engine(self.config)
            except CurationError:
                raise
            except Exception as error:  # an environment problem, never a row's: stop the run here
                message = redact(f"{type(error).__name__}: {error}".strip().splitlines()[0])
                raise ModelLoadError(f"could not load model {self.config.model!r}: {message}") from error
        return self._slot.engine

    @engine.setter
    def engine(self, engine: RolloutEngine) -> None:
        self._slot.engine = engine

    @property
    def engine_loaded(self) -> bool:
        """Whether a model has been loaded (False after a datasets cache hit)."""
        return self._slot.engine is not None

    # -- pickling / fingerprinting ----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "custom_verifier": self.custom_verifier}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["custom_verifier"])  # type: ignore[misc]

    def __repr__(self) -> str:
        rollout = self.config.rollout
        return (
            f"DifficultyScorer(model={self.config.model!r}, backend={self.config.backend!r}, "
            f"num_rollouts={rollout.num_rollouts}, temperature={rollout.temperature}, "
            f"verifier={verifier_name(self.custom_verifier or self.config.verifier)!r})"
        )

    def output_features(self, features: Features) -> Features:
        """The input features plus the typed difficulty columns (pass as `Dataset.map(features=...)`)."""
        return score_features(self.config, features)

    # -- the map() callable -----------------------------------------------------------------------
    def check_columns(self, columns: Iterable[str]) -> None:
        """Raise `ColumnNotFoundError` if a column the scorer reads is missing."""
        self.config.columns.check(columns)

    def __call__(
        self, batch: Mapping[str, Any], indices: Sequence[int] | int | None = None
    ) -> dict[str, list[Any]] | dict[str, Any]:
        """Score one batch of rows (a dict of columns, as `Dataset.map(batched=True)` passes it).

        One row (a dict of values, as `Dataset.map` without `batched=True` passes it) is scored as a
        batch of one and gets its columns back as values: the same scores as in any batch.
        `indices` (from `map(..., with_indices=True)`) only serve to name rows in `fail_fast` errors.
        """
        self.check_columns(batch.keys())
        if not is_single_row(batch, self.config.prompt_column):
            return self.finish(self.prepare(batch), indices)  # type: ignore[arg-type]
        one = None if indices is None else [indices] if isinstance(indices, int) else indices
        columns = self.finish(self.prepare({name: [value] for name, value in batch.items()}), one)
        return {name: values[0] for name, values in columns.items()}

    def prepare(self, batch: Mapping[str, list[Any]]) -> PreparedBatch:
        """Decode, convert and hash a batch's rows: the CPU work, done apart from generation.

        `score_to_dir` runs this for the next batch in a background thread while the engine works.
        """
        started = time.perf_counter()
        self.check_columns(batch.keys())
        num_rows = len(next(iter(batch.values()))) if batch else 0
        prepared = PreparedBatch(errors=[None] * num_rows, references=[None] * num_rows)
        for index in range(num_rows):
            row = {name: values[index] for name, values in batch.items()}
            try:
                prepared.references[index] = row_reference(row, self.config.columns)
                prepared.requests[index] = build_request(row, self.config.columns, max_pixels=self.config.max_pixels)
            except RowError as error:
                prepared.errors[index] = str(error)
            except Exception as error:  # anything else one row's content can cause stays that row's failure
                prepared.requests.pop(index, None)
                prepared.errors[index] = (
                    f"{self.config.prompt_column}: cannot build the prompt ({type(error).__name__}: {error})"
                )
        prepared.seconds = time.perf_counter() - started
        return prepared

    def finish(self, prepared: PreparedBatch, indices: Sequence[int] | None = None) -> dict[str, list[Any]]:
        """Generate (or fetch cached) rollouts for a prepared batch, verify them, build the columns."""
        started = time.perf_counter() - prepared.seconds
        errors, references, requests = list(prepared.errors), prepared.references, prepared.requests
        num_rows = len(errors)
        rollouts: list[list[str] | None] = [None] * num_rows
        scores: list[list[float | None] | None] = [None] * num_rows
        generated_rollouts = 0
        if requests:
            outcomes, generated_rollouts = self._sample(requests, references)
            for index, outcome in outcomes.items():
                if isinstance(outcome, RowError):
                    errors[index] = str(outcome)
                    continue
                try:
                    scores[index] = self.judge(outcome, references[index])
                    rollouts[index] = outcome
                except RowError as error:
                    errors[index] = str(error)
                    continue
                if all(score is None for score in scores[index]):  # truncated="exclude" left nothing to judge
                    errors[index] = (
                        f"max_new_tokens: all {len(outcome)} rollouts hit max_new_tokens="
                        f"{self.config.rollout.max_new_tokens} and truncated='exclude' judges none of them; "
                        "raise --max-new-tokens"
                    )

        if self.fail_fast:
            stop_at_first_failure(errors, indices)
        columns = score_columns(self.config, rollouts, scores, errors)
        if self.on_batch is not None:
            failed = sum(error is not None for error in errors)
            self.on_batch(BatchReport(num_rows, failed, generated_rollouts, time.perf_counter() - started))
        return columns

    def _sample(
        self, requests: dict[int, PromptRequest], references: list[Any]
    ) -> tuple[dict[int, list[str] | RowError], int]:
        """Rollouts per row: from the rollout cache where present, else from the engine.

        Identical rows in a batch are generated once and share their rollouts. With `adaptive`,
        rollouts come in the rounds of `adaptive_rounds` and a row stops once it has a right and a
        wrong answer (its paper bucket, medium, can no longer change); every prompt is prefilled
        once and the still-open rows of the whole batch are decoded together each round. An engine
        with `generate_adaptive` (vLLM) judges each rollout as it finishes instead, without rounds. New rollouts are written
        to the cache before anything else happens, so a crash never loses them.
        Returns the outcome per row and how many rollouts were generated.
        """
        keys = {index: rollout_key(self.config, request.content_hash) for index, request in requests.items()}
        cached = self._cached(keys, requests, references)
        pending: dict[str, int] = {}
        for index, key in keys.items():
            if key not in cached and key not in pending:
                pending[key] = index
        order = list(pending)
        prompts = [requests[pending[key]] for key in order]
        drawn: dict[str, list[str]] = {key: [] for key in order}
        failed: dict[str, RowError] = {}
        k = self.config.rollout.num_rollouts
        streams = bool(self.config.adaptive and order) and self._streams
        if self.config.adaptive and order and not streams:
            sample = self._round_sampler(prompts)  # each prompt is prefilled once, for all rounds
            active, first = list(range(len(order))), 0
            for count in adaptive_rounds(k):
                outcomes = sample(active, count, first)
                still_open = []
                for position, outcome in zip(active, outcomes):
                    key = order[position]
                    if isinstance(outcome, RowError):
                        failed[key] = outcome
                        continue
                    drawn[key].extend(outcome)
                    if not self._bucket_is_certain(drawn[key], references[pending[key]]):
                        still_open.append(position)
                active, first = still_open, first + count
                if not active:
                    break
        elif order:
            try:
                if streams:  # the engine judges each rollout as it finishes: no rounds
                    decider = self._decider([references[pending[key]] for key in order])
                    outcomes = self.engine.generate_adaptive(prompts, k, decider)  # type: ignore[attr-defined]
                else:
                    outcomes = self._generate(prompts, k, 0)
            except BaseException as error:  # a stopped run keeps the rows its engine finished
                finished = getattr(error, "completed_requests", None) or {}
                if self.rollout_cache is not None and finished:
                    self.rollout_cache.put_many({order[position]: done for position, done in finished.items()})
                raise
            for key, outcome in zip(order, outcomes):
                if isinstance(outcome, RowError):
                    failed[key] = outcome
                else:
                    drawn[key] = outcome
        generated = {key: rollouts for key, rollouts in drawn.items() if key not in failed}
        if self.rollout_cache is not None:
            self.rollout_cache.put_many(generated)
        outcomes_by_row: dict[int, list[str] | RowError] = {}
        for index, key in keys.items():
            outcomes_by_row[index] = cached.get(key) or failed.get(key) or generated[key]
        return outcomes_by_row, sum(len(rollouts) for rollouts in drawn.values())

    def _cached(
        self, keys: dict[int, str], requests: dict[int, PromptRequest], references: list[Any]
    ) -> dict[str, list[str]]:
        """The rows' rollouts the cache can serve, by key: the first k of a longer draw (rollout j is the same
        draw whatever k), and for an adaptive run, also the prefix of a plain draw where it stops the row."""
        if self.rollout_cache is None:
            return {}
        k = self.config.rollout.num_rollouts
        found = self.rollout_cache.get_many(keys.values())
        if not self.config.adaptive:
            return {key: rollouts[:k] for key, rollouts in found.items() if len(rollouts) >= k}
        plain = self.config.replace(adaptive=False)
        draws = {
            keys[index]: (rollout_key(plain, request.content_hash), index)
            for index, request in requests.items()
            if keys[index] not in found
        }
        drawn = self.rollout_cache.get_many(key for key, _ in draws.values()) if draws else {}
        for key, (draw_key, index) in draws.items():
            if draw_key in drawn:
                stop = self.adaptive_stop(drawn[draw_key], references[index])
                if stop is not None:
                    found[key] = drawn[draw_key][:stop]
        return found

    @property
    def _streams(self) -> bool:
        """Whether the engine draws adaptively itself, judging each rollout as it finishes (vLLM), not in rounds."""
        return isinstance(self.engine, AdaptiveEngine)

    def adaptive_stop(self, completions: Sequence[str], reference: Any, num_rollouts: int | None = None) -> int | None:
        """How many rollouts an adaptive run at `num_rollouts` (default: this scorer's k) keeps of a row whose
        draw, in index order, begins with `completions`; None when they are too few to say.

        The decision adaptive scoring makes: `_bucket_is_certain` after each round of `adaptive_rounds`, or
        after every rollout on an engine that streams. `curate plan` simulates adaptive runs with it.
        """
        k = num_rollouts or self.config.rollout.num_rollouts
        checkpoints = range(1, k + 1) if self._streams else itertools.accumulate(adaptive_rounds(k))
        for stop in checkpoints:
            if stop > len(completions):
                return None
            if self._bucket_is_certain(list(completions[:stop]), reference):
                return stop
        return k

    def adaptive_drawn(self, stop: int, num_rollouts: int | None = None) -> int:
        """How many rollouts an adaptive run draws for a row it keeps `stop` of: as many on an engine that
        draws in rounds; on one that draws in windows (vLLM's `adaptive_windows`), the whole window in which
        the row was decided. `curate plan` prices adaptive runs with it."""
        k = num_rollouts or self.config.rollout.num_rollouts
        windows = getattr(self.engine, "adaptive_windows", None) if self._streams else None
        if not windows:
            return stop
        first, later = windows
        drawn = first
        while drawn < stop:
            drawn += later
        return min(drawn, k)

    def _round_sampler(self, prompts: list[PromptRequest]) -> Callable[[list[int], int, int], list[Any]]:
        """Adaptive rounds from one prefill of `prompts`; if the batch cannot be prefilled as a whole
        (one bad row can fail it), each round is generated with `_generate`, which isolates that row."""
        engine = self.engine  # loading is not the batch's fault: a load error stops the run
        try:
            session = open_session(engine, prompts)
        except CurationError:
            raise
        except Exception as error:
            logger.warning(
                "could not prefill the batch as a whole (%s); sampling it round by round", redact(str(error))
            )
            return lambda active, count, first: self._generate([prompts[i] for i in active], count, first)
        return lambda active, count, first: session.sample(active, count, first_rollout=first)

    def _generate(self, requests: list[PromptRequest], count: int, first: int) -> list[list[str] | RowError]:
        """`engine.generate`, a batch that fails as a whole halved until its failing rows are found."""
        engine = self.engine  # loading is not the batch's fault: a load error stops the run
        return generate_isolating_rows(engine, requests, count, first, column=self.config.prompt_column)

    def _bucket_is_certain(self, completions: list[str], reference: Any) -> bool:
        """Whether more rollouts can no longer change the paper bucket: some right and some wrong."""
        try:
            scores = [score for score in self.judge(completions, reference) if score is not None]
        except RowError:
            return True  # the row will fail verification anyway: stop sampling it
        threshold = self.config.correct_threshold
        return any(s >= threshold for s in scores) and any(s < threshold for s in scores)

    def _decider(self, references: list[Any]) -> Callable[[int, Sequence[str]], bool]:
        """`is_decided` for an engine that draws adaptively itself: `_bucket_is_certain` on the rollouts
        0..j-1 of the row at a position, each rollout verified once as the prefix grows."""
        scores: dict[int, list[float | None]] = {}
        threshold = self.config.correct_threshold

        def is_decided(position: int, completions: Sequence[str]) -> bool:
            known = scores.setdefault(position, [])
            try:
                known += self.judge(list(completions[len(known) :]), references[position])
            except RowError:
                return True  # the row will fail verification anyway: stop sampling it
            judged = [score for score in known if score is not None]
            return any(s >= threshold for s in judged) and any(s < threshold for s in judged)

        return is_decided

    def judge(self, completions: list[str], reference: Any) -> list[float | None]:
        """The score each rollout counts with: the verifier's score of its extracted answer (0.0 when there
        is none). A truncated rollout is judged as written with `truncated="wrong"`, as the paper did (a
        cut-off answer nearly always fails), and not judged at all, None, with `"exclude"`.

        The one definition of "correct": scoring, `curate eval` and the GRPO reward all judge with it.
        A completion's finish reason (a `Completion`) says whether it was truncated.

        Raises:
            RowError: the verifier failed on this row.
        """
        scores: list[float | None] = []
        for completion in completions:
            if self.config.truncated == "exclude" and is_truncated(completion):
                scores.append(None)
                continue
            answer = self.extract(completion)
            if answer is None:  # an unclosed <think>, no box, no match: no answer is a wrong answer
                scores.append(0.0)
                continue
            try:
                score = float(self.verify(answer, reference))
            except Exception as error:  # a verifier is user code: one row's failure must not end the run
                name = verifier_name(self.custom_verifier or self.config.verifier)
                raise RowError(
                    self.config.answer_column,
                    f"verifier {name!r} failed on this row ({type(error).__name__}: {error})",
                ) from None
            scores.append(min(1.0, max(0.0, score)))
        return scores

    _verify_all = judge  # the name tests and earlier code use


def is_single_row(batch: Mapping[str, Any], prompt_column: str) -> bool:
    """Whether `Dataset.map` passed one row (`batched=False`) rather than a batch of columns.

    `datasets` says so by the mapping's type (`LazyRow` / `LazyBatch`); a plain dict is read by its
    prompt: a batch holds a list of prompts (texts or message lists), a row one text or one message list.
    """
    from datasets.formatting.formatting import LazyBatch, LazyRow

    if isinstance(batch, (LazyRow, LazyBatch)):
        return isinstance(batch, LazyRow)
    prompt = batch[prompt_column]
    return not isinstance(prompt, list) or (bool(prompt) and isinstance(prompt[0], dict))


def stop_at_first_failure(errors: Sequence[str | None], indices: Sequence[int] | None = None) -> None:
    """With `fail_fast`: raise `RowFailedError` naming the first row of a batch that has an error.

    `indices` are the rows' numbers in the dataset (their position in the batch without them).
    """
    for position, error in enumerate(errors):
        if error:
            row = indices[position] if indices is not None else position
            raise RowFailedError(f"row {row}: {error} (fail_fast is on; turn it off to record and go on)")


def adaptive_rounds(num_rollouts: int, round_size: int = ADAPTIVE_ROUND) -> list[int]:
    """How many rollouts each adaptive round draws: `round_size` each, summing to `num_rollouts`."""
    sizes = [round_size] * (num_rollouts // round_size)
    return [*sizes, num_rollouts % round_size] if num_rollouts % round_size else sizes


def score_difficulty(
    model: str,
    *,
    num_rollouts: int = RolloutConfig.num_rollouts,
    temperature: float = RolloutConfig.temperature,
    top_p: float = RolloutConfig.top_p,
    top_k: int = RolloutConfig.top_k,
    max_new_tokens: int = RolloutConfig.max_new_tokens,
    seed: int = RolloutConfig.seed,
    verifier: str | Verifier = ScoringConfig.verifier,
    answer_extractor: str = ScoringConfig.answer_extractor,
    answer_pattern: str | None = ScoringConfig.answer_pattern,
    truncated: str = ScoringConfig.truncated,
    correct_threshold: float = ScoringConfig.correct_threshold,
    prompt_column: str = ScoringConfig.prompt_column,
    answer_column: str = ScoringConfig.answer_column,
    image_column: str | None = ScoringConfig.image_column,
    system_prompt: str | None = ScoringConfig.system_prompt,
    keep_rollouts: bool = ScoringConfig.keep_rollouts,
    backend: str = ScoringConfig.backend,
    revision: str | None = ScoringConfig.revision,
    max_pixels: int | None = ScoringConfig.max_pixels,
    adaptive: bool = ScoringConfig.adaptive,
    pass_rate_interval: float | None = ScoringConfig.pass_rate_interval,
    api_base: str | None = ScoringConfig.api_base,
    engine_options: dict[str, Any] | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> DifficultyScorer:
    """Build a scorer for `Dataset.map(scorer, batched=True)` that adds a `difficulty` column.

    `difficulty` is the fraction of `num_rollouts` sampled answers judged wrong by `verifier`
    (0.0 = easy, 1.0 = hard, in between = medium), with `num_correct` and `num_rollouts` beside it.
    Rows that cannot be scored get `difficulty=None` and a reason in `difficulty_error`.

    Example:
        >>> scorer = score_difficulty("my-org/my-vlm", num_rollouts=8, verifier="exact")
        >>> scored = ds.map(scorer, batched=True, batch_size=64)  # doctest: +SKIP

    With `adaptive=True`, rollouts are drawn in rounds and a row stops as soon as it has both a
    right and a wrong answer (medium for certain); `num_rollouts` then records how many were drawn.
    With `pass_rate_interval=0.95`, `pass_rate_low` / `pass_rate_high` give a Jeffreys interval.
    `engine_options` go to the engine: `vllm.LLM(...)` keywords such as `tensor_parallel_size`,
    `max_model_len`, `gpu_memory_utilization`, `dtype` or `model_impl`; the transformers backend
    takes `dtype`, `attn_implementation` and `device_map`. `chat_template_kwargs` are variables for the
    chat template on every backend (`{"enable_thinking": False}` for Qwen3-style thinking models).

    Each completion's answer is taken by `answer_extractor` (`"auto"`: after `</think>`, inside
    `<answer>` tags if any; `"boxed"`, `"last-line"`, `"answer-is"`, or `answer_pattern`, a regular
    expression with one group) before the verifier judges it. A rollout that hit `max_new_tokens`
    is judged as written, as in the paper, so it nearly always counts as wrong (`truncated="wrong"`),
    or is left out of `difficulty` (`"exclude"`); `num_truncated` counts them. See docs/answers.md.

    Every option is a field of `ScoringConfig` / `RolloutConfig` (their help texts say what each
    does); a test keeps this signature in step with them. Options are validated here, before any
    model is loaded; the model loads on the first batch.

    Raises:
        ConfigError: a bad option value or an unknown verifier.
    """
    options = dict(locals())
    custom_verifier = verifier if callable(verifier) else None
    if custom_verifier is None:
        get_verifier(verifier)  # fail now on an unknown name
    options["verifier"] = verifier_name(verifier)
    options["engine_options"] = dict(engine_options) if engine_options is not None else {}
    options["chat_template_kwargs"] = dict(chat_template_kwargs) if chat_template_kwargs is not None else {}
    return DifficultyScorer(ScoringConfig.from_options(**options), verifier=custom_verifier)
