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
from collections import deque
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
_ANSWER_IS = re.compile(r"\banswer\b\s*(?:\bis\b\s*:?|:)", re.IGNORECASE)
_BOX_OPEN = re.compile(r"\\boxed\s*\{")
#: A brace, or an escaped character that is not one (`\{`, `\}`, `\\`).
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
#: Whitespace (Unicode's, zero-width ones too) and control characters (`str.strip()` keeps NUL, ESC, ...).
_SPACE = "".join(map(chr, [*range(0x21), *range(0x7F, 0xA1), 0x1680, *range(0x2000, 0x200C), 0x2028, 0x2029]))
_SPACE += "\u202f\u205f\u2060\u3000\ufeff"
#: Markdown emphasis and code marks around an answer (`**7**`, `_7_`, `` `7` ``).
_EMPHASIS = "*_`"
#: What ends a sentence after an answer; `!` too, outside math (inside, `$5!$` is a factorial).
_SENTENCE_END = ".,;:?\u3002\uff0c\uff1b\uff1a\uff1f"
_EXCLAMATION = "!\uff01"
_MATH_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
#: At most this many passes clean one answer (`**$\boxed{7}$**.` needs four): linear time on any input.
_MAX_PASSES = 8
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The last match of `pattern` in `text`, in one pass that keeps no list of them."""
    last = deque(pattern.finditer(text), maxlen=1)
    return last[0] if last else None


def after_reasoning(completion: str) -> str | None:
    """The text after the last `</think>`; the whole text without think tags; None for an unclosed `<think>`."""
    last = _last_match(_THINK_CLOSE, completion)
    if last is not None:
        return completion[last.end() :]
    if _THINK_OPEN.search(completion):
        return None  # still thinking when it stopped: no answer
    return completion


def answer_tag_content(text: str) -> str | None:
    """The text inside the first `<answer>...</answer>` tags (any case), or None; linear in `len(text)`."""
    opening = _ANSWER_OPEN.search(text)
    closing = opening and _ANSWER_CLOSE.search(text, opening.end())
    return text[opening.end() : closing.start()] if opening and closing else None


def clean_answer(answer: str | None) -> str | None:
    """An answer as written, without what surrounds it in prose; None when nothing is left.

    Every extractor's answer goes through here. Taken off the ends: whitespace and control
    characters, markdown emphasis in pairs (`**7**`, `` `7` ``), sentence punctuation after it
    (`7.`, `A.`, `7!`, `7;`), and math wrappers around the whole answer (`$7$`, `\\(7\\)`,
    `\\boxed{7}`), inside which `!`, `*` and `_` mean something and stay (`$5!$`, `\\boxed{z^*}`).
    Nothing inside an answer changes: `3.14`, `-2`, `x^2` and `\\frac{1}{2}` stay as written.
    Linear in `len(answer)`: at most `_MAX_PASSES` passes.

        >>> clean_answer("The answer is: **7**."[15:]), clean_answer("$5!$"), clean_answer("A.")
        ('7', '5!', 'A')
    """
    if answer is None:
        return None
    text, in_math = answer, False
    for _ in range(_MAX_PASSES):
        before = text
        ends = _SENTENCE_END if in_math else _SENTENCE_END + _EXCLAMATION
        text = text.strip(_SPACE).rstrip(_SPACE + ends)
        if not in_math:
            emphasis = min(len(text) - len(text.lstrip(_EMPHASIS)), len(text) - len(text.rstrip(_EMPHASIS)))
            text = text[emphasis : len(text) - emphasis]
        inner = _unwrap_math(text)
        if inner is not None:
            text, in_math = inner, True
        elif text == before:
            break
    return text or None


def _unwrap_math(text: str) -> str | None:
    """What is inside math wrapping the whole of `text` (`$..$`, `\\(..\\)`, `\\[..\\]`, one `\\boxed{..}`), else None."""
    for opening, closing in _MATH_WRAPPERS:
        if len(text) >= len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing):
            inner = text[len(opening) : len(text) - len(closing)]
            return inner if opening not in inner and closing not in inner else None
    match = _BOX_OPEN.match(text)
    if match and _closing_brace(text, match.end()) == len(text) - 1:
        return text[match.end() : -1]
    return None


def _closing_brace(text: str, start: int) -> int | None:
    """The position of the `}` closing a `{` opened just before `start` (`\\{`, `\\}` are text), or None."""
    depth = 1
    for token in _BRACE_TOKEN.finditer(text, start):
        if token[0] == "{":
            depth += 1
        elif token[0] == "}":
            depth -= 1
            if depth == 0:
                return token.start()
    return None


def _auto(text: str) -> str | None:
    """The text inside the first `<answer>...</answer>` tags, else the whole text (the behaviour before extractors)."""
    tagged = answer_tag_content(text)
    return text if tagged is None else tagged


def _last_box(text: str) -> str | None:
    """The last `\\boxed{...}` of `text` as written (nested braces kept); None when there is none or it is never
    closed (a cut-off answer has no final answer, whatever it boxed before). One pass: linear in `len(text)`."""
    last = _last_match(_BOX_OPEN, text)
    if last is None:
        return None
    closing = _closing_brace(text, last.end())
    return None if closing is None else text[last.start() : closing + 1]


def _boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` (nested braces kept), or None (none, or the last never closed)."""
    return _last_box(text)  # `clean_answer` takes the box off


def _last_line(text: str) -> str | None:
    """The last line with an answer on it (not only emphasis or punctuation), or None."""
    for line in reversed(text.splitlines()):
        if clean_answer(line) is not None:
            return line
    return None


def _answer_is(text: str) -> str | None:
    """What follows the last "the answer is" / "Answer:" / "Final answer:", to the end of its line, or None.

    A box on that line is the answer (`The answer is \\boxed{7} since ...`), and one never closed is none.
    """
    marker = _last_match(_ANSWER_IS, text)
    if marker is None:
        return None
    answer = text[marker.end() :].split("\n", 1)[0]
    return _last_box(answer) if _BOX_OPEN.search(answer) else answer


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
            last = _last_match(compiled, text)
            return None if last is None else last.group(1)

    else:
        extract = EXTRACTORS[name]

    def from_completion(completion: str) -> str | None:
        text = after_reasoning(completion)
        return None if text is None else clean_answer(extract(text))

    return from_completion


def extract_answer(completion: str, name: str = "auto", pattern: str | None = None) -> str | None:
    """The answer `name` takes from `completion`, or None when it finds none (an unclosed `<think>`, no box, ...)."""
    return extractor_for(name, pattern)(completion)
