"""Completion -> the answer a verifier judges (think blocks, tags, boxed, regex), and how each rollout ended.

Engines return each completion as a `Completion`: a `str` that also carries its `finish_reason`,
`"stop"` (the model ended its answer), `"length"` (it hit `max_new_tokens`: truncated) or `None`
(not known: rollouts cached before finish reasons were recorded, or an engine that does not say).
A plain `str` is a completion whose finish reason is not known; it is never guessed.

Every verifier judges the *answer* an extractor takes from the completion, chosen by name
(`ScoringConfig.answer_extractor`). Each extractor first drops the reasoning: only the text after
the last `</think>` counts, and a `<think>` that is never closed leaves no answer at all.

    >>> extract_answer("<think>maybe 3... no, 7</think>7")
    '7'
    >>> extract_answer("so the area is \\\\boxed{12} and \\\\boxed{14}", "boxed")
    '14'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

#: The model ended its answer itself (an end-of-sequence or stop token).
FINISH_STOP = "stop"
#: The answer hit `max_new_tokens` and was cut off.
FINISH_LENGTH = "length"
#: How a finish reason that is not known is shown in the `rollout_finish_reasons` column.
FINISH_UNKNOWN = "unknown"

#: What servers call the two endings (OpenAI, vLLM, TGI, SGLang); anything else is not known.
_SERVER_FINISH = {
    "stop": FINISH_STOP,
    "eos": FINISH_STOP,
    "eos_token": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "length": FINISH_LENGTH,
    "max_tokens": FINISH_LENGTH,
}


class Completion(str):
    """A completion's text (it *is* a `str`) with `finish_reason`: "stop", "length" or None (not known)."""

    finish_reason: str | None

    def __new__(cls, text: str, finish_reason: str | None = None) -> Completion:
        completion = super().__new__(cls, text)
        completion.finish_reason = finish_reason
        return completion

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (Ray, datasets fingerprints) keep the finish reason
        return (Completion, (str(self), self.finish_reason))


def finish_reason(completion: str) -> str | None:
    """How `completion` ended: "stop", "length", or None when that is not known (a plain `str`)."""
    return getattr(completion, "finish_reason", None)


def server_finish_reason(reason: Any) -> str | None:
    """A server's `finish_reason` ("stop", "length", "eos_token", ...) as ours; None for anything else."""
    return _SERVER_FINISH.get(reason) if isinstance(reason, str) else None


def is_truncated(completion: str) -> bool:
    """Whether `completion` is known to have hit `max_new_tokens`."""
    return finish_reason(completion) == FINISH_LENGTH


def count_truncated(completions: Sequence[str]) -> int | None:
    """How many of `completions` hit `max_new_tokens`; None if the finish reason of any is not known."""
    reasons = [finish_reason(completion) for completion in completions]
    if any(reason is None for reason in reasons):
        return None
    return sum(reason == FINISH_LENGTH for reason in reasons)


# -- extraction -------------------------------------------------------------------------------------

_THINK_CLOSE = re.compile(r"</think\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think\s*>", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_IS = re.compile(r"\banswer\b\s*(?:\bis\b\s*:?|:)", re.IGNORECASE)
_MARKUP = "*_`$ \t\r\n"


def after_reasoning(completion: str) -> str | None:
    """The text after the last `</think>`; the whole text without think tags; None for an unclosed `<think>`."""
    closes = list(_THINK_CLOSE.finditer(completion))
    if closes:
        return completion[closes[-1].end() :]
    if _THINK_OPEN.search(completion):
        return None  # still thinking when it stopped: no answer
    return completion


def _auto(text: str) -> str | None:
    """The text inside the first `<answer>...</answer>` tags, else the whole text (the behaviour before extractors)."""
    match = _ANSWER_TAG.search(text)
    return match.group(1) if match else text


def _boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` (nested braces kept), or None."""
    found = None
    for match in re.finditer(r"\\boxed\s*\{", text):
        depth, start = 1, match.end()
        for position in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                found = text[start:position]
                break
    return None if found is None else found.strip()


def _last_line(text: str) -> str | None:
    """The last line with text on it, markdown emphasis stripped, or None."""
    lines = [_unmark(line) for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else None


def _answer_is(text: str) -> str | None:
    """What follows the last "the answer is" / "Answer:" / "Final answer:", to the end of its line, or None."""
    markers = list(_ANSWER_IS.finditer(text))
    if not markers:
        return None
    answer = text[markers[-1].end() :].split("\n", 1)[0]
    boxed = _boxed(answer)
    answer = _unmark(boxed if boxed is not None else answer)
    return answer or None


def _unmark(text: str) -> str:
    """`text` without surrounding whitespace and markdown/LaTeX emphasis (`**7**`, `` `7` ``, `$7$`)."""
    return text.strip(_MARKUP)


#: Extractor name -> function of the text after the reasoning; each returns None for "no answer".
#: "regex" is built from the pattern (`extractor_for`).
EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "auto": _auto,
    "boxed": _boxed,
    "last-line": _last_line,
    "answer-is": _answer_is,
}


def extractor_for(name: str = "auto", pattern: str | None = None) -> Callable[[str], str | None]:
    """The function `completion -> answer or None` for an extractor name (`"regex"` uses `pattern`'s one group).

    Names and patterns are checked by `ScoringConfig`; here an unknown name is a `KeyError`.
    """
    if name == "regex":
        if pattern is None:
            raise ValueError("the regex extractor needs a pattern with one group")
        compiled = re.compile(pattern)

        def extract(text: str) -> str | None:
            matches = list(compiled.finditer(text))
            return matches[-1].group(1) if matches and matches[-1].group(1) is not None else None

    else:
        extract = EXTRACTORS[name]

    def from_completion(completion: str) -> str | None:
        text = after_reasoning(completion)
        return None if text is None else extract(text)

    return from_completion


def extract_answer(completion: str, name: str = "auto", pattern: str | None = None) -> str | None:
    """The answer `name` takes from `completion`, or None when it finds none (an unclosed `<think>`, no box, ...)."""
    return extractor_for(name, pattern)(completion)
