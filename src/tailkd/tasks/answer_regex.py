"""lm-evaluation-harness filters that read an answer as :class:`~tailkd.tasks.answers.AnswerExtractor` does.

lm-eval's ``regex`` filter runs ``re.findall`` with one pattern, keeps the match ``group_select`` names
(-1: the last) and its first non-empty group; it has no "try this, else that" and no code. So each
answer type is one pattern whose alternatives come in tailkd's order, every one but the last reading
the whole text (``\\A(?s:.*)X(?s:.*)``: one match, so the last; ``(?s:.*)`` backtracks from the end, so
the last X in the text):

1. the last "the answer is ..." (the task's pattern) whose first sentence holds an answer of the type;
2. else (``fallback: true``) the last answer of the type anywhere: findall's scan is the one tailkd's
   fallback makes (``re.finditer``), so its last match is tailkd's.

Normalisation that lm-eval can express is done by the filters after the regex (``map``: a choice
letter upper case, yes/no/true/false as yes or no) and by ``exact_match``'s ``regexes_to_ignore`` (commas,
``$``, spaces and leading zeros of numbers). What it cannot express is listed in :data:`LIMITS`.
"""

from __future__ import annotations

import re
from typing import Any

from tailkd.errors import ConfigError
from tailkd.tasks.answers import AnswerExtractor

INVALID = "[invalid]"  # lm-eval's own default for a text its regex does not match

# Where the two readers can differ, per answer type: said by tailkd-export and the README.
LIMITS = {
    "number": ["a fraction is not evaluated (tailkd reads 3/4 as 0.75, lm-eval compares '3/4')",
               "more than six decimals are not rounded (tailkd keeps six)",
               "a minus written as a Unicode dash (−, –) stays a dash"],
    "yesno": [],  # none known
    "choice": ["an answer given as a choice's text without its letter ('the answer is bank') is read by tailkd "
               "through the question's choices; lm-eval's filter cannot see them"],
}

# -- pieces of the patterns, mirroring tailkd.tasks.answers -------------------------------------------
_WS = r"[^\S\n]"  # a space inside one sentence: tailkd cuts the answer span at its first line break
# a character of the answer span's first sentence: tailkd ends it at a full stop followed by a space or
# the end, or at a line break
_HEAD = r"(?:(?!\.(?:\s|\Z))[^\n])"
_EXPRESSION = rf"[\d)]{_WS}*[-−+*/x×·÷]{_WS}*[$(]?{_WS}*\d"  # answers._EXPRESSION, inside one sentence
_INT = r"(?:\d{1,3}(?:,\d{3})+|\d+)"
_NUMBER_START = r"(?<![\w.])(?<![A-Za-z][-−–])"  # answers._NUMBER's look-behinds: not part of a name


def _number(space: str, capture: bool, start: str = _NUMBER_START) -> str:
    """answers._NUMBER, matching the same text, with the value captured canonically where a regex can:
    a decimal without its trailing zeros, an integer without its ".0"."""
    body = rf"[-−–]?\$?{space}?{_INT}"
    group = "(" if capture else "(?:"
    return (rf"{start}(?:"
            rf"{group}{body}\.\d*[1-9])0*(?:/\d+)?(?!\d)"  # 2.50 -> 2.5
            rf"|{group}{body})\.0+(?:/\d+)?(?!\d)"  # 3.00 -> 3
            rf"|{group}{body}(?:/\d+)?)(?!\d))")  # 3, 1,234 (commas dropped by exact_match), 3/4


def _first_in_head(at_start: str, later: str) -> str:
    """The first answer in the span's first sentence. tailkd reads the span as a string of its own,
    where nothing stands before its first character: there the pattern's look-behinds (\\b, "not part
    of a word") are left out, or "the answer is7" would read differently."""
    return rf"(?:{at_start}|{_HEAD}*?{later})"


def _number_in_head() -> str:
    """The number tailkd reads in a sentence: after its last "=" when an expression stands before it
    ("5 - 3 = 2" is 2), else the first one ("12 = 3 x 4" is 12)."""
    number = _number(_WS, capture=True)
    expression_then_equals = rf"{_HEAD}*?{_EXPRESSION}{_HEAD}*?="
    after_last_equals = rf"(?={expression_then_equals}){_HEAD}*=(?!{_HEAD}*=){_HEAD}*?{number}"
    # at the sentence's second character the two-character look-behind sees one: "is--2" is -2
    at_start = _number(_WS, True, start="")
    first = rf"(?!{expression_then_equals}){_first_in_head(f'(?:{at_start}|[-−–]{at_start})', number)}"
    return f"(?:{after_last_equals}|{first})"


_YESNO_WORD = r"(?i:(yes|no|true|false))\b"
_YESNO = rf"\b{_YESNO_WORD}"
# "not yes" reads as no, "not no" as yes: the "no" captured from "not", and "not", are mapped afterwards
_NEGATED = rf"(?i:(no)t{_WS}+(?:yes|true))\b|(?i:(not){_WS}+(?:no|false))\b"
_YESNO_IN_HEAD = _first_in_head(rf"(?:{_NEGATED}|{_YESNO_WORD})", rf"\b(?:{_NEGATED}|{_YESNO_WORD})")
_YESNO_MAP = {"yes": "yes", "true": "yes", "no": "no", "false": "no", "not": "yes"}

_CHOICE_MAP = {letter: letter.upper() for letter in "ABCDEabcde"}
_PAREN = r"\(([A-Ea-e])\)"
_BARE_LETTER = r"([A-E])(?![A-Za-z'])"
_BARE = rf"(?<![A-Za-z']){_BARE_LETTER}"
# canonical_choice's order: a parenthesised letter anywhere in the sentence, the sentence being one
# letter, a bare capital
_CHOICE_IN_HEAD = (rf"(?:{_HEAD}*?{_PAREN}|{_WS}*([A-Ea-e]){_WS}*(?=\.(?:\s|\Z)|\n|\Z)"
                   rf"|(?!{_HEAD}*?\([A-Ea-e]\)){_first_in_head(_BARE_LETTER, _BARE)})")

_IN_HEAD = {"number": _number_in_head(), "yesno": _YESNO_IN_HEAD, "choice": _CHOICE_IN_HEAD}
# the fallback: the answers of the type in the whole text, findall's last one being tailkd's; a choice
# letter in parentheses anywhere comes before every bare capital
_ANYWHERE = {"number": [_number(r"\s", capture=True)], "yesno": [_YESNO],
             "choice": [rf"\A(?s:.*){_PAREN}(?s:.*)", _BARE]}

# exact_match drops these from both the filtered answer and the gold (gold is canonical already)
_NUMBER_IGNORE = [",", r"\$", r"\s", r"(?<![\d.])0+(?=\d)", r"^-(?=0$)"]


def answer_prefix(pattern: str) -> str:
    """The part of ``task.answer.pattern`` before its answer span: the pattern must be ``PREFIX(.+)``
    (or ``(.*)``), the span running to the end of the text, as every shipped task has it."""
    found = re.fullmatch(r"(?s)(.*)\(\.[+*]\)", pattern)
    try:  # inside (?is:...) below, where a global flag such as (?i) is an error
        mirrorable = found is not None and not re.compile(f"(?is:{found.group(1)})").groups
    except re.error:
        mirrorable = False
    if not mirrorable:
        raise ConfigError(f"task.answer.pattern {pattern!r}: an lm-eval export needs it as PREFIX(.+), "
                          f"with no group or global flag in PREFIX, so that lm-eval's regex can mirror it")
    return found.group(1)


def answer_regex(extractor: AnswerExtractor) -> str:
    """One regex whose last match's group is the answer tailkd's ``extractor`` reads (before the
    filters and ``regexes_to_ignore`` below finish normalising it)."""
    kind = extractor.type.name
    branches = []
    if extractor.pattern is not None:
        prefix = answer_prefix(extractor.pattern.pattern)
        # tailkd compiles the pattern IGNORECASE|DOTALL
        branches.append(rf"\A(?s:.*)(?is:{prefix}){_IN_HEAD[kind]}(?s:.*)")
    if extractor.fallback:
        branches += _ANYWHERE[kind]
    return "|".join(branches) or r"(?!)"  # neither pattern nor fallback: tailkd reads nothing


def lm_eval_filter(extractor: AnswerExtractor) -> list[dict[str, Any]]:
    """lm-eval's ``filter_list`` entry steps: the regex, the normalisation lm-eval can express, and
    ``take_first`` (one answer per question)."""
    steps: list[dict[str, Any]] = [
        {"function": "regex", "regex_pattern": answer_regex(extractor), "group_select": -1, "fallback": INVALID}]
    kind = extractor.type.name
    if kind == "choice":  # "(b)" is B; map, not uppercase, keeps an unread answer "[invalid]"
        steps.append({"function": "map", "mapping_dict": dict(_CHOICE_MAP), "default_value": INVALID})
    elif kind == "yesno":
        steps += [{"function": "lowercase"},
                  {"function": "map", "mapping_dict": dict(_YESNO_MAP), "default_value": INVALID}]
    return steps + [{"function": "take_first"}]


def lm_eval_metric(extractor: AnswerExtractor) -> dict[str, Any]:
    metric: dict[str, Any] = {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}
    if extractor.type.name == "number":
        metric["regexes_to_ignore"] = list(_NUMBER_IGNORE)
    return metric
