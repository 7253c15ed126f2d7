"""The one retry helper behind the Hub push and the openai backend."""

import httpx
import pytest

from difficulty_curation.retry import MAX_DELAY, TRANSIENT_STATUS, call_with_retries, is_transient


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://server/v1/chat/completions")
    return httpx.HTTPStatusError("failed", request=request, response=httpx.Response(status, request=request))


class _GaveUp(Exception):
    pass


def _failing(errors: list[BaseException]):
    calls = []

    def step() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return step, calls


def test_passing_failures_are_tried_again_until_the_step_succeeds():
    waits: list[float] = []
    step, calls = _failing([_status_error(503), httpx.ConnectError("refused"), _status_error(429)])
    result = call_with_retries(
        step, max_retries=3, describe=str, give_up=lambda e, n: _GaveUp(n), base_delay=0.5, wait=waits.append
    )
    assert result == "done" and len(calls) == 4
    assert [0.5 <= waits[0] <= 0.75, 1.0 <= waits[1] <= 1.5, 2.0 <= waits[2] <= 3.0] == [True] * 3


def test_the_last_passing_failure_becomes_the_give_up_error_with_the_number_of_tries():
    step, calls = _failing([_status_error(500)] * 3)
    with pytest.raises(_GaveUp) as raised:
        call_with_retries(step, max_retries=2, describe=str, give_up=lambda e, n: _GaveUp(n), wait=lambda s: None)
    assert raised.value.args == (3,) and len(calls) == 3


def test_an_error_that_is_not_passing_is_raised_at_once():
    step, calls = _failing([_status_error(401)])
    with pytest.raises(httpx.HTTPStatusError):
        call_with_retries(step, max_retries=5, describe=str, give_up=lambda e, n: _GaveUp(n), wait=lambda s: None)
    assert len(calls) == 1


def test_waits_never_exceed_the_longest_wait():
    waits: list[float] = []
    step, _ = _failing([_status_error(502)] * 8)
    call_with_retries(step, max_retries=8, describe=str, give_up=lambda e, n: _GaveUp(n), wait=waits.append)
    assert max(waits) == MAX_DELAY


def test_the_status_behind_a_wrapped_error_decides():
    try:
        try:
            raise _status_error(504)
        except httpx.HTTPStatusError as inner:
            raise RuntimeError("upload failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    assert {408, 409, 429, 503} <= TRANSIENT_STATUS and not is_transient(_status_error(404))
