"""The Hub's HTTP side of a push: a deadline on every request, and server answers as one clear line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from difficulty_curation.retry import error_chain, http_status

#: Seconds a request may wait to connect, or between two reads or writes, before it is retried.
DEFAULT_TIMEOUT = 60.0


@contextlib.contextmanager
def request_timeout(seconds: float) -> Iterator[None]:
    """Give every request `huggingface_hub` (and `datasets` through it) makes `seconds` per connect, read or write.

    `huggingface_hub`'s client waits forever by default, and many calls pass `timeout=None`; the
    limit is therefore set on the transport, under every call, and the client factory restored after.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    previous = _http._GLOBAL_CLIENT_FACTORY

    def factory() -> Any:
        client = previous()
        inner = client._transport
        httpx = __import__(type(client).__module__.split(".")[0])

        class Deadline(httpx.BaseTransport):
            def handle_request(self, request: Any) -> Any:
                request.extensions["timeout"] = httpx.Timeout(seconds).as_dict()
                return inner.handle_request(request)

            def close(self) -> None:
                inner.close()

        client._transport = Deadline()
        return client

    set_client_factory(factory)
    try:
        yield
    finally:
        set_client_factory(previous)


def hub_http_error(error: BaseException) -> Any:
    """The `HfHubHTTPError` behind `error` (it may be wrapped, e.g. by an LFS upload), or None."""
    from huggingface_hub.errors import HfHubHTTPError

    return next((cause for cause in error_chain(error) if isinstance(cause, HfHubHTTPError)), None)


def short_reason(error: BaseException) -> str:
    """`HTTP 503`, or the error's type and first line (`ConnectTimeout: ...`)."""
    status = http_status(error)
    if status is not None:
        return f"HTTP {status}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def describe_refusal(error: Any, repo_id: str) -> str:
    """The Hub's refusal (`HfHubHTTPError`) of a push to `repo_id`, with what to do about it."""
    status = error.response.status_code if error.response is not None else None
    detail = (getattr(error, "server_message", None) or str(error)).strip().splitlines()
    detail_text = detail[0] if detail else ""
    if status == 401:
        return (
            f"the Hub refused the token for {repo_id} (HTTP 401: {detail_text}); set HF_TOKEN to a valid write "
            "token or run `hf auth login`."
        )
    if status == 403:
        return f"no write access to {repo_id} (HTTP 403: {detail_text}); use a namespace your token can write to."
    if status == 404:
        return f"{repo_id} was not found or is not visible to this token (HTTP 404: {detail_text})."
    return f"the Hub refused the push to {repo_id} (HTTP {status}: {detail_text})."


__all__ = ["DEFAULT_TIMEOUT", "describe_refusal", "hub_http_error", "request_timeout", "short_reason"]
