"""The openai backend: any OpenAI-compatible chat endpoint (`vllm serve`, SGLang, TGI, hosted APIs).

One `/chat/completions` request per row with `n=k`, at most `max_concurrency` in flight, retried
with exponential backoff on connection errors, 429 and 5xx. Images travel as PNG data URLs. The
API key comes from `$OPENAI_API_KEY` (or the `api_key` argument) and is only ever put in the
`Authorization` header: it is never logged, stored in the configuration, or shown in an error.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.base import derive_seed
from difficulty_curation.errors import ConfigError, CurationError, RowError
from difficulty_curation.prompts import PromptRequest

logger = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(CurationError):
    """The endpoint kept failing after every retry."""


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
    request: PromptRequest, *, model: str, rollout: RolloutConfig, num_rollouts: int, seed: int
) -> dict[str, Any]:
    """The JSON body of one `/chat/completions` call sampling `num_rollouts` answers."""
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
    return body


def parse_chat_response(payload: dict[str, Any], num_rollouts: int) -> list[str]:
    """The completion texts of a `/chat/completions` response, in `choices[].index` order."""
    choices = sorted(payload.get("choices") or [], key=lambda choice: choice.get("index", 0))
    if len(choices) != num_rollouts:
        raise EndpointError(f"the endpoint returned {len(choices)} choices, expected n={num_rollouts}")
    return [(choice.get("message") or {}).get("content") or "" for choice in choices]


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

        self.config = config
        self.base_url = (config.api_base or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise ConfigError(
                "backend='openai' needs the endpoint: pass api_base='http://host:port/v1' (--api-base) "
                "or set OPENAI_BASE_URL."
            )
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.model_revision: str | None = config.revision

    def generate(
        self, requests: Sequence[PromptRequest], num_rollouts: int, *, first_rollout: int = 0
    ) -> list[list[str] | RowError]:
        """One request per row, `max_concurrency` at a time; each row seeded from its content."""

        def one(request: PromptRequest) -> list[str] | RowError:
            seed = derive_seed(self.config.rollout.seed, request.content_hash, str(first_rollout)) % 2**31
            body = chat_request_body(
                request, model=self.config.model, rollout=self.config.rollout, num_rollouts=num_rollouts, seed=seed
            )
            return self._post(body, num_rollouts)

        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="openai") as pool:
            return list(pool.map(one, requests))

    def _post(self, body: dict[str, Any], num_rollouts: int) -> list[str] | RowError:
        import httpx

        url = f"{self.base_url}/chat/completions"
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1) * (1 + random.random() / 2)
                logger.warning("%s; retrying in %.1f s (%d/%d)", problem, delay, attempt, self.max_retries)
                time.sleep(delay)
            try:
                response = self._client.post(url, json=body)
            except httpx.TransportError as error:
                problem = f"{url} unreachable ({type(error).__name__})"
                continue
            if response.status_code in RETRY_STATUSES:
                problem = f"{url} answered {response.status_code}"
                continue
            if 400 <= response.status_code < 500:
                detail = response.text[:300]
                return RowError(
                    self.config.prompt_column, f"the endpoint rejected the request ({response.status_code}: {detail})"
                )
            response.raise_for_status()
            return parse_chat_response(response.json(), num_rollouts)
        raise EndpointError(f"{problem} after {self.max_retries + 1} tries; is the server up and the model served?")
