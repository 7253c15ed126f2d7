"""The openai backend: any OpenAI-compatible chat endpoint (`vllm serve`, SGLang, TGI, hosted APIs).

One `/chat/completions` request per row window where the server seeds the children of an `n=m` request
`seed, seed+1, ...` as vLLM does (found by `probe_child_seeds` before the first draw), else one request
per rollout (`n=1`, each with its own `seed`); at most `max_concurrency` in flight, retried with exponential backoff on connection errors, 429 and 5xx. A refused key (401/403), an unknown
endpoint (404) or a server still failing after the retries stops the run (`EndpointError`); other
4xx answers fail only their row. Images travel as PNG data URLs. The API key comes from
`$OPENAI_API_KEY` (or the `api_key` argument) and is only ever put in the `Authorization` header:
it and any credentials in the URL are redacted from logs, errors and stored rows.

Rollout `j` of a row is the same draw whatever k, batch or adaptive round only where the server
honours `seed` (vLLM and SGLang do; many hosted APIs treat it as a hint or ignore it): there,
`adaptive=True` gives exactly the buckets of the full draw; elsewhere a rerun or an adaptive run
draws other rollouts, as unseeded sampling does.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

from difficulty_curation.answers import Completion, server_finish_reason
from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.sampling import rollout_seed
from difficulty_curation.errors import ConfigError, EndpointError, EngineError, RowError
from difficulty_curation.prompts import PromptRequest
from difficulty_curation.redact import get_logger, redact, register_secret, strip_url_credentials, url_secrets
from difficulty_curation.retry import TRANSIENT_STATUS, call_with_retries

logger = get_logger(__name__)


def image_data_url(image: Any) -> str:
    """A PIL image as a `data:image/png;base64,...` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(request: PromptRequest) -> list[dict[str, Any]]:
    """Our messages in the OpenAI format, each `{"type": "image"}` part replaced by the next image."""
    images = iter(request.images)
    messages = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(next(images))}})
            elif part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
        messages.append({"role": message["role"], "content": parts})
    return messages


def chat_request_body(
    request: PromptRequest,
    *,
    model: str,
    rollout: RolloutConfig,
    num_rollouts: int,
    seed: int,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of one `/chat/completions` call sampling `num_rollouts` answers.

    `chat_template_kwargs` travel as the extra field of that name (vLLM, SGLang), left out when empty.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": chat_messages(request),
        "n": num_rollouts,
        "temperature": rollout.temperature,
        "top_p": rollout.top_p,
        "max_tokens": rollout.max_new_tokens,
        "seed": seed,
    }
    if rollout.top_k > 0:
        body["top_k"] = rollout.top_k  # an extension of vLLM, SGLang and TGI; set top_k=0 for hosted APIs
    if chat_template_kwargs:
        body["chat_template_kwargs"] = dict(chat_template_kwargs)
    return body


def parse_chat_response(payload: dict[str, Any], num_rollouts: int) -> list[str]:
    """The completions of a `/chat/completions` response, in `choices[].index` order.

    Each is a `Completion` carrying the choice's `finish_reason` ("length": it hit `max_tokens`;
    a reason the server does not give, or one we do not know, stays unknown).
    """
    choices = sorted(payload.get("choices") or [], key=lambda choice: choice.get("index", 0))
    if len(choices) != num_rollouts:
        raise EndpointError(f"the endpoint returned {len(choices)} choices, expected n={num_rollouts}")
    return [
        Completion(message_text(choice.get("message") or {}), server_finish_reason(choice.get("finish_reason")))
        for choice in choices
    ]


#: The `user` field of the start-up probe's requests, so a server's logs (and our test server) can tell them apart.
PROBE_USER = "difficulty-curation child-seed probe"

#: The probe's prompt and sampling: a few free tokens, hot enough that two seeds give two answers.
_PROBE_MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Write one random word."}]}]
_PROBE_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 16}


def child_seeds_match(pair: Sequence[str], single: Sequence[str]) -> bool | None:
    """Whether an `n=2` answer seeded s and an `n=1` answer seeded s+1 show vLLM's child seeding.

    True when the pair's second answer is the single answer and differs from the pair's first (two
    streams, the second seeded s+1); None when the pair's answers are equal (nothing learnt); else False.
    """
    if str(pair[0]) == str(pair[1]):
        return None
    return str(pair[1]) == str(single[0])


def message_text(message: dict[str, Any]) -> str:
    """A message's `content` as text: a string, or a list of parts whose `text` parts are joined.

    Raises:
        RowError: content of another shape, or parts that are not text (an image, a refusal):
            that rollout has no answer we can judge, so its row fails naming what came back.
    """
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str) for part in content
    ):
        return "".join(part["text"] for part in content)
    kinds = (
        sorted({str(part.get("type")) if isinstance(part, dict) else type(part).__name__ for part in content})
        if isinstance(content, list)
        else [type(content).__name__]
    )
    raise RowError(
        "prompt", f"the endpoint answered content that is not text ({', '.join(kinds)}); only text parts can be judged"
    )


def check_api_base(url: str, *, key: str = "") -> None:
    """Refuse an endpoint that is not an http(s) URL, or that carries credentials beside an API key.

    Raises:
        ConfigError: naming the URL (without its credentials) and what to pass instead.
    """
    from urllib.parse import urlsplit

    shown = strip_url_credentials(url)
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"api_base {shown!r} is not an http(s) URL; pass the endpoint like --api-base http://localhost:8000/v1."
        )
    if key and (parts.username or parts.password):
        raise ConfigError(
            f"api_base {shown!r} carries user:password@ credentials and OPENAI_API_KEY is set too: they would be sent "
            "instead of the key. Drop the credentials from --api-base, or unset OPENAI_API_KEY."
        )


class OpenAIEngine:
    """Samples rollouts from an OpenAI-compatible chat endpoint."""

    def __init__(
        self,
        config: ScoringConfig,
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 300.0,
        backoff: float = 0.5,
    ) -> None:
        import httpx

        get_logger("httpx")  # httpx logs request URLs, which may carry credentials
        self.config = config
        self.base_url = (config.api_base or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise ConfigError(
                "backend='openai' needs the endpoint: pass api_base='http://host:port/v1' (--api-base) "
                "or set OPENAI_BASE_URL."
            )
        for secret in url_secrets(self.base_url):
            register_secret(secret)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        register_secret(key)
        check_api_base(self.base_url, key=key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.model_revision: str | None = config.revision
        #: Whether the server seeds `n=m` children `seed, seed+1, ...` (one request per row window);
        #: probed before the first draw of more than one rollout, None until then.
        self.child_seeds: bool | None = None
        #: Whether the server honours `seed` (two requests with one seed get one answer); probed before the
        #: first draw of an adaptive run, which is exact only where it does. None: not probed, or not known.
        self.seed_honoured: bool | None = None
        self._seed_probed = False

    @property
    def shown_url(self) -> str:
        """The endpoint as it may be shown: without credentials."""
        return strip_url_credentials(self.base_url) or ""

    @property
    def request_path(self) -> str:
        """How rollouts are requested, for logs and the provenance."""
        if self.child_seeds:
            return "one n=m request per row window (the server seeds n>1 children seed, seed+1, ...)"
        return "one n=1 request per rollout"

    def provenance_details(self) -> dict[str, Any]:
        """What this engine adds to the provenance: how it grouped its requests, and whether the server
        honoured `seed` where an adaptive run asked (None: not probed, or the probe could not tell)."""
        details: dict[str, Any] = {"openai_requests": self.request_path}
        if self.config.adaptive:
            details["openai_seed_honoured"] = self.seed_honoured
        return details

    def probe_seed_honoured(self) -> bool | None:
        """Whether the server honours `seed`: two `n=1` requests with seed s get one answer, and seed s+1 another.

        Three seeds are tried: False as soon as one seed gives two answers; True when none did and some
        s+1 answered otherwise than s; None when every seed gave one answer (nothing learnt) or a probe was refused.
        """
        request = PromptRequest(messages=_PROBE_MESSAGES, images=[], content_hash="seed-probe")
        sampling = dataclasses.replace(self.config.rollout, **_PROBE_SAMPLING)
        stop = threading.Event()
        learnt = False
        for attempt in range(3):
            seed = rollout_seed(self.config.rollout.seed, request.content_hash, 16 * attempt)
            answers = []
            for probe_seed in (seed, seed, seed + 1):
                body = chat_request_body(
                    request, model=self.config.model, rollout=sampling, num_rollouts=1, seed=probe_seed
                )
                answer = self._post({**body, "user": PROBE_USER}, 1, stop)
                if isinstance(answer, RowError):
                    return None
                answers.append(str(answer[0]))
            if answers[0] != answers[1]:
                return False  # certain: one seed, two answers
            learnt = learnt or answers[0] != answers[2]
        return True if learnt else None

    def _check_seeds_for_adaptive(self) -> None:
        """Before an adaptive run's first draw: warn, visibly, where the server ignores `seed`."""
        self.seed_honoured = self.probe_seed_honoured()
        if self.seed_honoured is False:
            logger.warning(
                "%s ignores the `seed` of a request (one seed gave two answers): --adaptive is not exact there, "
                "its buckets can differ from a full draw's and a resumed run draws other rollouts; score without "
                "--adaptive, or against a server that honours seed (vLLM, SGLang)",
                self.shown_url,
            )
        elif self.seed_honoured is None:
            logger.warning(
                "could not tell whether %s honours the `seed` of a request; --adaptive is exact only where it does",
                self.shown_url,
            )

    def probe_child_seeds(self) -> bool:
        """Whether the server seeds the children of an `n=m` request `seed, seed+1, ...` (`vllm serve` does).

        Asks for `n=2` seeded s and `n=1` seeded s+1 on one tiny prompt, with three seeds: yes only if no
        seed says no and one says yes (a model with few answers can match by chance); a refused probe (4xx) is no.
        """
        request = PromptRequest(messages=_PROBE_MESSAGES, images=[], content_hash="child-seed-probe")
        sampling = dataclasses.replace(self.config.rollout, **_PROBE_SAMPLING)
        stop = threading.Event()
        verdicts: list[bool | None] = []
        for attempt in range(3):
            seed = rollout_seed(self.config.rollout.seed, request.content_hash, 16 * attempt)
            answers = []
            for count, probe_seed in ((2, seed), (1, seed + 1)):
                body = chat_request_body(
                    request, model=self.config.model, rollout=sampling, num_rollouts=count, seed=probe_seed
                )
                answers.append(self._post({**body, "user": PROBE_USER}, count, stop))
            if any(isinstance(answer, RowError) for answer in answers):
                return False
            verdicts.append(child_seeds_match(*answers))
        return True in verdicts and False not in verdicts  # one match by chance is not enough

    def _windows(self, num_rollouts: int, first_rollout: int) -> list[tuple[int, int]]:
        """(first rollout, count) of each request a row's rollouts travel in."""
        if num_rollouts > 1 and self.child_seeds is None:
            self.child_seeds = self.probe_child_seeds()
            logger.info("%s: %s", self.shown_url, self.request_path)
        if self.config.adaptive and not self._seed_probed:
            self._seed_probed = True
            self._check_seeds_for_adaptive()
        if self.child_seeds:
            return [(first_rollout, num_rollouts)]
        return [(rollout, 1) for rollout in range(first_rollout, first_rollout + num_rollouts)]

    def generate(
        self, requests: Sequence[PromptRequest], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str] | RowError]:
        """One request per row window (`n=num_rollouts`, seeded `row_seed + first_rollout`) where the server
        seeds `n>1` children like vLLM (`probe_child_seeds`), else one per rollout (`n=1`); `max_concurrency`
        at a time.

        Rollout `j` of a row is seeded `row_seed + j`, as on the other backends, so it is the same
        draw whatever k, batch, round or request grouping where the server honours `seed`.
        The requests run in daemon threads while this thread waits in short steps, so Ctrl-C or
        SIGTERM ends the call at once even when the server never answers. A failure that is not
        the row's fault raises `EndpointError` and stops the other requests; the rows finished
        before it travel with the error (`completed_requests`), as they do with an interrupt.
        """
        results: list[list[str] | RowError | None] = [None] * len(requests)
        drawn: list[dict[int, str]] = [{} for _ in requests]
        pending: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        windows = self._windows(num_rollouts, first_rollout) if requests else []
        for index in range(len(requests)):
            for start, count in windows:
                pending.put((index, start, count))
        stop, done, lock = threading.Event(), threading.Event(), threading.Lock()
        failures: list[BaseException] = []
        remaining = [len(requests)]

        def work() -> None:
            while not stop.is_set():
                try:
                    index, start, count = pending.get_nowait()
                except queue.Empty:
                    return
                if results[index] is not None:  # another rollout of this row failed it
                    continue
                request = requests[index]
                body = chat_request_body(
                    request,
                    model=self.config.model,
                    rollout=self.config.rollout,
                    num_rollouts=count,
                    seed=rollout_seed(self.config.rollout.seed, request.content_hash, start),
                    chat_template_kwargs=self.config.chat_template_kwargs,
                )
                try:
                    outcome = self._post(body, count, stop)
                except BaseException as error:  # handed to the waiting thread, which raises it
                    with lock:
                        failures.append(error)
                    stop.set()
                    done.set()
                    return
                if outcome is None:  # stopped meanwhile
                    return
                with lock:
                    if results[index] is not None:
                        continue
                    if isinstance(outcome, RowError):
                        results[index] = outcome
                    else:
                        drawn[index].update(zip(range(start, start + count), outcome))
                        if len(drawn[index]) < num_rollouts:
                            continue
                        results[index] = [drawn[index][i] for i in sorted(drawn[index])]
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()

        if not requests:
            return []
        for number in range(min(self.max_concurrency, len(requests) * len(windows))):
            threading.Thread(target=work, name=f"openai-{number}", daemon=True).start()
        try:
            while not done.wait(0.1):
                pass
        except BaseException as interrupt:  # Ctrl-C, SIGTERM: leave the hanging requests behind
            stop.set()
            interrupt.completed_requests = _finished(results)  # type: ignore[attr-defined]
            raise
        if failures:
            error = failures[0]
            if isinstance(error, EngineError):
                error.completed_requests = _finished(results)
            raise error
        return results  # type: ignore[return-value]

    def _post(self, body: dict[str, Any], num_rollouts: int, stop: threading.Event) -> list[str] | RowError | None:
        """One row's request, tried again on network errors and `TRANSIENT_STATUS` answers; None when `stop` was set."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        shown = f"{self.shown_url}/chat/completions"
        tries = [0]

        def request() -> list[str] | RowError | None:
            if stop.is_set():
                return None
            tries[0] += 1
            response = self._client.post(url, json=body)
            if response.status_code in TRANSIENT_STATUS:
                response.raise_for_status()
            if response.status_code in (401, 403):
                raise EndpointError(
                    f"{shown} refused the API key ({response.status_code}: {redact(response.text[:200])}); "
                    "set OPENAI_API_KEY to a key this endpoint accepts and run the same command again."
                )
            if response.status_code == 404:
                raise EndpointError(
                    f"{shown} answered 404 ({redact(response.text[:200])}); check --api-base (it usually ends "
                    f"in /v1) and that the server serves model {self.config.model!r}."
                )
            if 400 <= response.status_code < 500:
                detail = redact(response.text[:300])
                return RowError(
                    self.config.prompt_column, f"the endpoint rejected the request ({response.status_code}: {detail})"
                )
            if response.status_code >= 400:
                raise EndpointError(
                    f"{shown} answered {response.status_code} after {tries[0]} tries; "
                    "is the server up and the model served?"
                )
            try:
                return parse_chat_response(response.json(), num_rollouts)
            except RowError as error:
                return RowError(self.config.prompt_column, error.reason)

        def problem(error: BaseException) -> str:
            if isinstance(error, httpx.HTTPStatusError):
                return f"{shown} answered {error.response.status_code}"
            return f"{shown} unreachable ({type(error).__name__})"

        return call_with_retries(
            request,
            max_retries=self.max_retries,
            describe=problem,
            give_up=lambda error, tries: EndpointError(
                f"{redact(problem(error))} after {tries} tries; is the server up and the model served?"
            ),
            base_delay=self.backoff,
            wait=stop.wait,
        )


def _finished(results: list[list[str] | RowError | None]) -> dict[int, list[str]]:
    return {index: outcome for index, outcome in enumerate(results) if isinstance(outcome, list)}
