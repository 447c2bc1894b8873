"""Answer extraction and normalisation, one kind per answer type.

A task names its answer type (``number``, ``yesno`` or ``choice``) and a regex whose first group holds
the answer span ("The answer is ..."). Extraction takes the last match of that pattern and reads the
value its first sentence concludes with (for numbers, the one after its last "=" when an expression
stands before it: "The answer is 5 - 3 = 2." is 2, "The answer is 12 = 3 x 4." is 12); when the pattern does not match, or its span holds no answer of the type, it falls back to the last answer of
the type anywhere in the text. The fallback is what keeps an untrained student's accuracy honest
instead of zero by format alone; ``fallback: false`` turns it off for strict scoring.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tailkd.errors import ConfigError

# A number as written in reasoning text: optional sign, thousands separators, decimals, a simple
# fraction. The look-behinds keep "v2", "x-3" or "COVID-19" from reading as numbers: a number glued
# to a word is part of a name or an expression, not a value.
_NUMBER = re.compile(
    r"(?<![\w.])(?<![A-Za-z][-−–])([-−–]?)\$?\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?)(?![\d])"
)
_EXPRESSION = re.compile(r"[\d)]\s*[-−+*/x×·÷]\s*[$(]?\s*\d")  # an operation between numbers
_YESNO = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_YESNO_MAP = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}
# Parenthesised letters first: a bare capital "A" is more often an article than a choice.
_CHOICE_PAREN = re.compile(r"\(([A-Ea-e])\)")
_CHOICE_BARE = re.compile(r"(?<![A-Za-z'])([A-E])(?![A-Za-z'])")


def canonical_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5', '-3.0' -> '-3', '$5' -> '5', '3/4' -> '0.75'; None if no number."""
    match = _NUMBER.search(str(text))
    if not match:
        return None
    sign, digits = match.groups()
    digits = digits.replace(",", "")
    if "/" in digits:
        num, den = digits.split("/")
        if float(den) == 0:
            return None
        value = float(num) / float(den)
    else:
        value = float(digits)
    if sign:
        value = -value
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _all_numbers(text: str) -> list[str]:
    return [n for m in _NUMBER.finditer(text) if (n := canonical_number(m.group(0))) is not None]


def canonical_yesno(text: str) -> str | None:
    """The first yes/no/true/false of ``text``; "not yes" or "not true" reads as no (and "not no" as yes)."""
    if isinstance(text, bool):
        return "yes" if text else "no"
    text = str(text)
    match = _YESNO.search(text)
    if not match:
        return None
    value = _YESNO_MAP[match.group(1).lower()]
    if re.search(r"\bnot\s+$", text[: match.start()], re.IGNORECASE):
        value = "no" if value == "yes" else "yes"
    return value


def _all_yesno(text: str) -> list[str]:
    return [_YESNO_MAP[m.lower()] for m in _YESNO.findall(text)]


def canonical_choice(text: str, choices: Mapping[str, str] | None = None) -> str | None:
    """A choice letter A-E from '(b)', 'B', 'B) ...' or, given the choices, the choice's own text."""
    text = str(text).strip()
    paren = _CHOICE_PAREN.search(text)
    if paren:
        return paren.group(1).upper()
    if len(text) == 1 and text.upper() in "ABCDE":
        return text.upper()
    # the choice's own text before a bare capital: in "A cappella" or "Washington D.C." the capital
    # is part of the text, not a choice letter
    if choices:
        wanted = _choice_key(text)
        for label, choice_text in choices.items():
            if choice_text and _choice_key(choice_text) == wanted:
                return label
    bare = _CHOICE_BARE.search(text)
    if bare:
        return bare.group(1)
    return None


def _choice_key(text: str) -> str:
    """Choice text compared case-blind, without a trailing full stop (CommonsenseQA has 'car.')."""
    return str(text).strip().lower().rstrip(".").strip()


def _all_choices(text: str) -> list[str]:
    paren = [m.upper() for m in _CHOICE_PAREN.findall(text)]
    return paren or _CHOICE_BARE.findall(text)


def answer_only(text: str | None, answer_type: str, choices: Mapping[str, str] | None = None) -> bool:
    """Whether ``text`` names an answer and nothing else: "(A)", "A) air", the choice's text alone,
    "16", "Yes.". An untrained student often writes just that; it holds no reasoning step."""
    text = str(text or "").strip()
    if not text:
        return False
    if answer_type == "number":
        return _NUMBER.fullmatch(text.rstrip(".")) is not None
    if answer_type == "yesno":
        return _YESNO.fullmatch(text.rstrip(".!")) is not None
    rest = re.sub(r"\(?\b[A-Ea-e]\)|\b[A-E]\b(?=\W*$)|^[A-E]\b", " ", text)
    for choice_text in (choices or {}).values():
        if choice_text:
            rest = re.sub(r"(?<!\w)" + re.escape(choice_text.strip().rstrip(".")) + r"(?!\w)", " ", rest,
                          flags=re.IGNORECASE)
    return rest != text and not re.search(r"\w", rest)


@dataclass(frozen=True)
class AnswerType:
    name: str
    canonical: Callable[..., str | None]
    find_all: Callable[[str], list[str]]


ANSWER_TYPES: dict[str, AnswerType] = {
    "number": AnswerType("number", canonical_number, _all_numbers),
    "yesno": AnswerType("yesno", canonical_yesno, _all_yesno),
    "choice": AnswerType("choice", canonical_choice, _all_choices),
}


class AnswerExtractor:
    """Pulls the normalised final answer out of generated text."""

    def __init__(self, answer_type: str, pattern: str | None = None, fallback: bool = True):
        if answer_type not in ANSWER_TYPES:
            raise ConfigError(
                f"task.answer.type={answer_type!r} is unknown; choose one of {sorted(ANSWER_TYPES)}"
            )
        self.type = ANSWER_TYPES[answer_type]
        try:
            self.pattern = re.compile(pattern, re.IGNORECASE | re.DOTALL) if pattern else None
        except re.error as err:
            raise ConfigError(f"task.answer.pattern {pattern!r} is not a valid regex: {err}") from err
        if self.pattern is not None and self.pattern.groups < 1:
            raise ConfigError(f"task.answer.pattern {pattern!r} needs a group around the answer span")
        self.fallback = fallback

    def normalise(self, raw, choices: Mapping[str, str] | None = None) -> str | None:
        """Canonical form of a gold answer or an extracted span."""
        if self.type.name == "choice":
            return canonical_choice(raw, choices)
        return self.type.canonical(raw)

    def matches(self, text: str) -> list[re.Match]:
        """Every match of the answer pattern, overlapping ones included: a span like "(.+)" runs to the
        end of the text, so finditer would stop at the first "the answer is" and never see a later one."""
        found, pos = [], 0
        while self.pattern is not None and (match := self.pattern.search(text, pos)) is not None:
            found.append(match)
            pos = match.start() + 1
        return found

    def __call__(self, text: str, choices: Mapping[str, str] | None = None) -> str | None:
        if self.pattern is not None:
            for span in reversed([m.group(1) or "" for m in self.matches(text)]):
                # the span runs to the end of the text: only its first sentence is the answer (a full
                # stop ends a sentence when a space or the end follows: not in "2.5" or "d.c")
                head = re.split(r"\.(?=\s|$)|\n", span.strip(), maxsplit=1)[0]
                if self.type.name == "number" and "=" in head:
                    left, right = head.rsplit("=", 1)
                    # "5 - 3 = 2": an expression concludes with the value after its last "="; in
                    # "12 = 3 x 4" the answer stands before it, the rest only explains it
                    if _EXPRESSION.search(left):
                        head = right
                answer = self.normalise(head, choices)
                if answer is not None:
                    return answer
        if not self.fallback:
            return None
        found = self.type.find_all(text)
        return found[-1] if found else None
