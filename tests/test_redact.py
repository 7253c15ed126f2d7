"""Secrets never leave the process: one redaction helper for what we print, log and store."""

import logging
import time

import pytest

from difficulty_curation import ScoringConfig
from difficulty_curation.provenance import provenance_record
from difficulty_curation.redact import get_logger, redact, register_secret, strip_url_credentials


def test_the_api_key_and_hub_token_from_the_environment_are_masked(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-1234")
    monkeypatch.setenv("HF_TOKEN", "hf_envtoken5678")
    assert redact("key sk-env-key-1234, token hf_envtoken5678.") == "key ***, token ***."


def test_credentials_in_urls_and_authorization_values_are_masked():
    text = "POST http://me:sk-pass@host:8000/v1 failed; header was 'Bearer abc.def' or Basic bWU6cGFzcw=="
    assert redact(text) == "POST http://***@host:8000/v1 failed; header was 'Bearer ***' or Basic ***"


def test_a_registered_secret_is_masked_wherever_it_appears():
    register_secret("sk-registered-99")
    assert redact({"error": "bad key sk-registered-99"}) == "{'error': 'bad key ***'}"


def test_an_api_base_is_stored_without_its_credentials():
    config = ScoringConfig(model="m", backend="openai", api_base="https://user:sk-in-url-77@api.example.com/v1")
    assert strip_url_credentials(config.api_base) == "https://api.example.com/v1"
    assert config.to_dict()["api_base"] == "https://api.example.com/v1"
    assert provenance_record(config)["api_base"] == "https://api.example.com/v1"
    assert redact("the key was sk-in-url-77") == "the key was ***"  # known from the moment the config exists


def test_log_records_of_our_loggers_are_redacted(caplog):
    register_secret("sk-logged-key-31")
    with caplog.at_level(logging.INFO):
        get_logger("difficulty_curation.tests").warning("calling %s with %s", "http://u:p4ss@h/v1", "sk-logged-key-31")
    assert caplog.records[-1].getMessage() == "calling http://***@h/v1 with ***"


def _seconds(text: str) -> float:
    """The fastest of five `redact(text)` timings."""
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        redact(text)
        timings.append(time.perf_counter() - started)
    return min(timings)


@pytest.mark.parametrize("make", [lambda n: "a" * n, lambda n: "http://" + "a1." * (n // 3)], ids=["word", "url"])
def test_redaction_time_grows_linearly_with_unbroken_text(make):
    short, long = _seconds(make(20_000)), _seconds(make(200_000))
    assert long < 20 * short + 0.01, (short, long)  # 10x the text: about 10x the time, not 100x


def test_secrets_inside_a_megabyte_of_unbroken_text_are_still_masked():
    register_secret("sk-buried-key-42")
    filler = "a" * 500_000
    text = f"{filler}sk-buried-key-42{filler} https://me:p4ss@{filler}.example.com Bearer {filler}"
    assert redact(text) == f"{filler}***{filler} https://***@{filler}.example.com Bearer ***"
