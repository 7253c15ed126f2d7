"""Try a network step again after a passing failure: one status list, one backoff, one log line.

The Hub push (`hub`) and the openai backend (`engines.openai`) both retry through `call_with_retries`.
A failure is passing when it is a network error (refused, reset, timed out) or an HTTP answer in
`TRANSIENT_STATUS`; anything else is raised at once. Waits grow exponentially (`base_delay` x 2^n,
plus up to 50% random jitter, at most `MAX_DELAY`) so that parallel clients do not retry in step.
`huggingface_hub.utils.http_backoff` is not used: it retries one HTTP request, and our steps are
whole operations (`push_to_hub`, a commit, a request that must stop when the run is interrupted).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from difficulty_curation.redact import get_logger, redact

logger = get_logger(__name__)

#: HTTP answers worth another try: timeout, conflict with a concurrent write, rate limit, server errors
#: (the list OpenAI's own client retries).
TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
#: The longest wait between two tries, in seconds.
MAX_DELAY = 30.0
_T = TypeVar("_T")


def call_with_retries(
    step: Callable[[], _T],
    *,
    max_retries: int,
    describe: Callable[[BaseException], str],
    give_up: Callable[[BaseException, int], BaseException],
    base_delay: float = 1.0,
    wait: Callable[[float], object] = time.sleep,
) -> _T:
    """Run `step`; after a passing failure (`is_transient`) wait and run it again, at most `max_retries` times.

    Args:
        step: the operation; safe to repeat.
        max_retries: tries after the first one.
        describe: a short reason for a failure, shown in the warning before each new try (redacted).
        give_up: the error to raise, from the last failure and the number of tries, once no try is left.
        base_delay: the first wait in seconds; each later one doubles, plus jitter (at most `MAX_DELAY`).
        wait: how to wait (e.g. `threading.Event.wait`, which ends early when the event is set).

    Raises:
        What `step` raises when it is not passing, or `give_up(...)` after the last try.
    """
    for attempt in range(max_retries + 1):
        try:
            return step()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == max_retries:
                raise give_up(error, attempt + 1) from None
            delay = min(base_delay * 2**attempt * (1 + random.random() / 2), MAX_DELAY)
            logger.warning(
                "%s; trying again in %.1f s (%d/%d)", redact(describe(error)), delay, attempt + 1, max_retries
            )
            wait(delay)
    raise AssertionError("unreachable")


def is_transient(error: BaseException) -> bool:
    """Whether `error` (or an error behind it) is a network failure or an HTTP answer in `TRANSIENT_STATUS`."""
    status = http_status(error)
    if status is not None:
        return status in TRANSIENT_STATUS
    transport = _transport_errors()
    return any(isinstance(cause, transport) for cause in error_chain(error))


def http_status(error: BaseException) -> int | None:
    """The status code of the first HTTP answer behind `error` (`httpx`, `requests`, `huggingface_hub` errors)."""
    for cause in error_chain(error):
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions behind it (`__cause__`, else `__context__`), each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever HTTP client is installed, plus the built-in ones."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(__import__(module), name))
    return tuple(found)


__all__ = ["MAX_DELAY", "TRANSIENT_STATUS", "call_with_retries", "error_chain", "http_status", "is_transient"]
