"""How the teacher's answers were read: a misread teacher looks like a bad one, so every run says.

A reader that takes the letter of an invented next question, or a listing of the choices, for the
teacher's answer does not fail: it parses, and the student learns the wrong labels. What gives it
away is the distribution: one answer far above its share in gold. :func:`parse_audit` reports the
share of texts cut at an invented continuation, the share unparsed (and why), the parsed answers'
distribution beside gold's, the teacher's accuracy, and which answers are over-represented.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tailkd.teachers.annotation import Annotation

log = logging.getLogger(__name__)

# an answer is over-represented when its share among parsed answers is this far above its share in
# gold on the same questions, and at least this many times it; judged from this many answers on
SKEW_MARGIN = 0.15
SKEW_RATIO = 1.5
SKEW_MIN_ANSWERS = 20
SHOWN_ANSWERS = 10  # numbers take many values: the distribution lists the most common


def _shares(counts: Counter, total: int) -> dict[str, float]:
    return {str(k): round(v / total, 4) for k, v in counts.most_common(SHOWN_ANSWERS)} if total else {}


def parse_audit(annotations: Sequence[Annotation], gold: Mapping[str, str]) -> dict[str, Any]:
    """The audit of ``annotations`` against ``gold`` (example id -> answer, where known)."""
    n = len(annotations)
    parsed = [a for a in annotations if a.answer is not None]
    graded = [a for a in annotations if a.example_id in gold]
    graded_parsed = [a for a in graded if a.answer is not None]
    answers = Counter(a.answer for a in graded_parsed)
    truth = Counter(gold[a.example_id] for a in graded_parsed)
    over = []
    if len(graded_parsed) >= SKEW_MIN_ANSWERS:
        total = len(graded_parsed)
        for answer, count in answers.items():
            p, g = count / total, truth.get(answer, 0) / total
            if p - g >= SKEW_MARGIN and p >= SKEW_RATIO * g:
                over.append({"answer": answer, "share": round(p, 4), "gold_share": round(g, 4)})
    right = sum(a.answer == gold[a.example_id] for a in graded)
    return {
        "annotations": n,
        "cut_share": round(sum(a.cut_at is not None for a in annotations) / n, 4) if n else None,
        "unparsed_share": round((n - len(parsed)) / n, 4) if n else None,
        "unparsed_by_reason": dict(Counter(a.parse for a in annotations if a.answer is None)),
        "parsed_by_rule": dict(Counter(a.parse for a in parsed)),
        "answers": _shares(Counter(a.answer for a in parsed), len(parsed)),
        "graded": len(graded),
        "gold_answers": _shares(truth, len(graded_parsed)),
        # right among all graded (a parse failure counts wrong), and among those the teacher answered
        "accuracy": round(right / len(graded), 4) if graded else None,
        "accuracy_parsed": round(right / len(graded_parsed), 4) if graded_parsed else None,
        "overrepresented": over,
    }


def log_audit(audit: Mapping[str, Any]) -> None:
    """One line for the run log; a warning per over-represented answer (a misreading looks like this)."""
    if not audit["annotations"]:
        return
    accuracy = "" if audit["accuracy"] is None else (
        f"; right {audit['accuracy']:.1%} of graded ({audit['accuracy_parsed']:.1%} of those answered)")
    log.info("teacher text: %d annotations, %.1f%% cut at an invented continuation, %.1f%% unparsed %s%s; "
             "answers %s", audit["annotations"], 100 * audit["cut_share"], 100 * audit["unparsed_share"],
             audit["unparsed_by_reason"] or "", accuracy, audit["answers"])
    for item in audit["overrepresented"]:
        log.warning("teacher answer %r is %.0f%% of the parsed answers but %.0f%% of gold on the same questions: "
                    "is the teacher's text misread? (annotations.jsonl has each text and what was read)",
                    item["answer"], 100 * item["share"], 100 * item["gold_share"])
