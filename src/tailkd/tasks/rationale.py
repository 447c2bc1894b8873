"""Teacher text as a student should learn it.

Real teachers write blank lines between steps, markdown (``**bold**``, ``### headings``, numbered and
bulleted lists) and LaTeX (``\\[ 3 \\times 4 = 12 \\]``, ``\\boxed{12}``). A student fine-tuned on that
learns to write it too, and a blank line in its output ends generation at ``task.until``'s ``"\\n\\n"``
before the answer comes. :func:`clean_rationale` keeps every step and every number and drops the
markup: blank lines collapse to one line break, list items keep a plain ``- ``, emphasis and heading
marks go, display maths becomes inline text and common LaTeX commands become the symbols they print.
"""

from __future__ import annotations

import re

_LATEX_SYMBOLS = {
    r"\times": "×", r"\cdot": "·", r"\div": "÷", r"\pm": "±", r"\le": "≤", r"\leq": "≤", r"\ge": "≥",
    r"\geq": "≥", r"\neq": "≠", r"\approx": "≈", r"\%": "%", r"\$": "$", r"\,": " ", r"\;": " ", r"\!": "",
    r"\quad": " ", r"\qquad": " ", r"\left": "", r"\right": "",
}
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_WRAPPERS = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_DISPLAY = re.compile(r"\\\[(.*?)\\\]|\$\$(.*?)\$\$|\\\((.*?)\\\)", re.DOTALL)
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1|(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_BULLET = re.compile(r"^\s*[*+•]\s+", re.MULTILINE)


def _latex(math: str) -> str:
    for _ in range(3):  # nested \frac{\text{a}}{b}
        math = _WRAPPERS.sub(r"\1", math)
        math = _FRAC.sub(r"(\1)/(\2)", math)
    for command in sorted(_LATEX_SYMBOLS, key=len, reverse=True):
        math = re.sub(re.escape(command) + r"(?![A-Za-z])", lambda _, c=command: _LATEX_SYMBOLS[c], math)
    math = re.sub(r"\((\w+)\)/\((\w+)\)", r"\1/\2", math)  # (3)/(4) -> 3/4
    return re.sub(r"[ \t]+", " ", math).strip()


def clean_rationale(text: str) -> str:
    """Markup-free teacher text with single line breaks between its steps (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _DISPLAY.sub(lambda m: " " + _latex(next(g for g in m.groups() if g is not None)) + " ", text)
    text = _latex_inline(text)
    text = _EMPHASIS.sub(lambda m: m.group(2) if m.group(2) is not None else m.group(3), text)
    text = _HEADING.sub("", text)
    text = _BULLET.sub("- ", text)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line)


def _latex_inline(text: str) -> str:
    """LaTeX commands outside delimiters (teachers write ``\\boxed{12}`` in prose too)."""
    if "\\" not in text:
        return text
    return "\n".join(_latex(line) if "\\" in line else line for line in text.split("\n"))


SPLITS = ("sentence", "line")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


def split_steps(text: str | None, how: str = "sentence") -> list[str]:
    """The steps of an explanation: its sentences (a full stop, ! or ? and a space, or a line break;
    "2.5" stays whole) or its lines."""
    if not text or not text.strip():
        return []
    parts = text.split("\n") if how == "line" else _SENTENCE.split(text.strip())
    return [p.strip() for p in parts if p.strip()]


def same_step(a: str, b: str) -> bool:
    """Two steps say the same: equal up to case, spacing and a closing full stop."""
    def norm(text: str) -> str:
        return " ".join(text.lower().rstrip(".").split())

    return norm(a) == norm(b)
