"""Keep secrets out of everything we print, log or store: one helper, used everywhere.

Known secrets are the API key and Hugging Face token from the environment, any key handed to an
engine (`register_secret`), the token huggingface_hub has stored, and passwords written into URLs
(`http://user:sk-...@host`). `redact(text)` replaces each with `***`; `strip_url_credentials(url)`
is how an endpoint URL is stored; `RedactingFilter` cleans log records of our loggers.

    >>> from difficulty_curation.redact import strip_url_credentials
    >>> strip_url_credentials("http://me:sk-123@host:8000/v1")
    'http://host:8000/v1'
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from typing import Any

#: Environment variables whose values are secrets.
SECRET_ENV_VARS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")
MASK = "***"
#: Shorter values are too likely to be ordinary words to be masked everywhere.
_MIN_SECRET_LENGTH = 4
#: `://user:password@` in a URL. It starts at the literal `://` and no character class repeats before it,
#: so a search is linear: a scheme pattern in front (`[a-z][a-z0-9+.-]*://`) was retried from every letter
#: of a long run of them, quadratic (a 1 MB reference never finished). Any scheme's credentials go.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>://)(?P<userinfo>[^/\s@'\"]+)@")
_AUTH_HEADER = re.compile(r"(?i)\b((?:bearer|basic)\s+)[^\s'\",}]+")

_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Treat `value` (an API key passed as an argument, say) as a secret from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def known_secrets() -> set[str]:
    """Every secret value we know of right now."""
    secrets = {os.environ.get(name, "") for name in SECRET_ENV_VARS}
    secrets.add(_stored_hub_token())
    with _lock:
        secrets |= _registered
    return {secret for secret in secrets if secret and len(secret) >= _MIN_SECRET_LENGTH}


def redact(text: Any) -> str:
    """`text` (made a string) with every known secret, URL password and Authorization value replaced by `***`."""
    text = str(text)
    for secret in sorted(known_secrets(), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(lambda match: f"{match['scheme']}{MASK}@", text)
    return _AUTH_HEADER.sub(lambda match: f"{match[1]}{MASK}", text)


def strip_url_credentials(url: str | None) -> str | None:
    """`url` without its `user:password@` part (how an endpoint is stored and shown)."""
    if url is None:
        return None
    return _URL_CREDENTIALS.sub(lambda match: match["scheme"], url)


def url_secrets(url: str | None) -> list[str]:
    """The passwords written into `url` (or the user part, when it stands alone: `http://sk-key@host`)."""
    if not url:
        return []
    secrets = []
    for match in _URL_CREDENTIALS.finditer(url):
        user, _, password = match["userinfo"].partition(":")
        secrets.append(password or user)
    return secrets


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (and traceback text) of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with secrets redacted from its records: how every module of ours logs."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


def configure_logging(*, verbose: bool = False) -> None:
    """Logging for a command-line run: one redacting handler on stderr, at INFO with `verbose`, else WARNING.

    Without `verbose` the libraries keep quiet too: no progress bars of their own (ours is the one
    progress line) and only their errors from datasets, Transformers and huggingface_hub. A root
    logger that already has handlers (an application's, pytest's) is left as it is.
    """
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())  # the libraries' records too (httpx logs request URLs)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        handlers=[handler],
    )
    if verbose:
        return
    import datasets
    import huggingface_hub
    from transformers.utils import logging as transformers_logging

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()


@functools.lru_cache(maxsize=1)
def _stored_hub_token() -> str:
    try:
        from huggingface_hub import get_token

        return get_token() or ""
    except Exception:  # no huggingface_hub, an unreadable token file: nothing to hide then
        return ""
