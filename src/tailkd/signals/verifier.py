"""A rule-based teaching assistant for maths: it re-does the arithmetic written in a rationale.

Every ``<expression> = <number>`` with + - * / x × is recomputed; the confidence is the share of
equations that hold, with the stated final answer checked against the last equation's result. A
rationale with no equation has nothing to refute and gets confidence 1.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Sequence

from tailkd.signals.assistant import Attempt, TAScore

_NUM = r"-?\d[\d,]*(?:\.\d+)?"
_EQUATION = re.compile(rf"((?:{_NUM}\s*[-+*/x×·÷]\s*)+{_NUM})\s*=\s*({_NUM})")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _evaluate(expression: str) -> float | None:
    cleaned = expression.replace(",", "").replace("×", "*").replace("·", "*").replace("÷", "/").replace("x", "*")
    try:
        tree = ast.parse(cleaned, mode="eval").body
    except SyntaxError:
        return None

    def walk(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        raise ValueError("not arithmetic")

    try:
        return walk(tree)
    except (ValueError, ZeroDivisionError):
        return None


def check_arithmetic(rationale: str, answer: str | None) -> tuple[int, int]:
    """(equations checked, equations wrong), the final answer counted as one more check."""
    checked = wrong = 0
    last = None
    for expression, stated in _EQUATION.findall(rationale.replace("$", "")):
        value = _evaluate(expression)
        if value is None:
            continue
        checked += 1
        last = float(stated.replace(",", ""))
        wrong += abs(value - last) > 1e-6 * max(1.0, abs(value))
    if last is not None and answer is not None:
        checked += 1
        try:
            wrong += abs(float(answer) - last) > 1e-6 * max(1.0, abs(last))
        except ValueError:
            wrong += 1
    return checked, wrong


class ArithmeticVerifierTA:
    """A :class:`~tailkd.signals.assistant.TeachingAssistant` of rules: no model, no batches."""

    model = None
    confidence = None
    batch_size = None
    version = 1

    def key(self, item: Attempt) -> tuple[str | None, str | None]:
        return item.rationale, item.answer

    def score(self, items: Sequence[Attempt], desc: str = "") -> list[TAScore]:
        """``desc`` is the model TAs' progress label; checking arithmetic is instant and shows none."""
        out = []
        for item in items:
            checked, wrong = check_arithmetic(item.rationale or "", item.answer)
            out.append(TAScore(1.0 if checked == 0 else (checked - wrong) / checked))
        return out
