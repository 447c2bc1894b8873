"""Teacher text as real models write it: where its answer ends, which answer it concludes with.

A student's output is cut by ``task.until`` and scored leniently (:mod:`tailkd.tasks.answers`). A
teacher's text is what a student will learn from, so it is read strictly, in three steps:

1. **Cut the invented continuation.** A model prompted with few-shot exemplars and no stop sequence
   goes on past its answer with a new question of its own (PaLM: ``...So the answer is (e) raise
   corn.\\n\\nQ: What is ...\\nAnswer Choices:\\n(a) ...\\nA: ...``). The text is cut at the first of the
   request's stop sequences, a line that opens a new question (``Q:``, ``Question:``, ``Problem:``, a
   ``### Question 2`` header), a new chat turn (``Human:``, ``User:``, ``### Instruction:``, a chat
   template's ``<|eot_id|>``)
   or a repeated ``Answer Choices:`` block. A question restated at the very start is not a
   continuation: there the cut waits for the first answer. A reasoning model's ``<think>`` block is
   read past: its drafts name answers it drops, the reply after ``</think>`` states the one it keeps;
   one never closed is a draft cut short, with no answer (``unfinished``).
2. **Find the conclusion.** The answer is the one the teacher's reasoning concludes with: the last
   answer statement (the task's own pattern, ``the (final|correct|best) answer/choice/option is``,
   ``Answer:``, an ``### Answer`` heading, ``\\boxed{}``, ``<answer>`` tags, GSM8K's ``#### 18``, a
   choice's ``B is the correct answer``) that names an answer (an ``Answer:`` label over reasoning names
   a number or yes/no only when it opens with it); failing that an answer stated first (``Yes,
   because ...``, ``(b) lamp. ...``); failing that (with ``task.answer.fallback``) the last number of a
   numeric answer, or the last sentence when it names exactly one answer (a concluding line before a
   statement the token limit cut unfinished, ``... is satisfaction.\nThe answer is``, is the last).
3. **Refuse to guess.** A statement that names two different answers (``either (a) or (e)``, ``(a)
   run, (b) walk``, ``yes and no``) is a parse failure (``hedge``), and choices the text merely lists
   (``A) doorway ... E) chapel``) are no answer.

The rationale is the kept text before the concluding sentence, without a dangling connective ("So",
"Therefore, among A through E,"): the training target appends its own answer sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tailkd.tasks.answers import _YESNO, _YESNO_MAP, AnswerExtractor, canonical_number

# -- 1. the continuation ----------------------------------------------------------------------------

# a line that opens a new exemplar: "Q:", "Question:", "Question 2:", "**Question:**", "### Q:", "Problem:"
# (Minerva's prompts), a header of its own ("### Question 2", "**Question 2**"), or a repeated choices
# block; matched at a line start only
_QUESTION_MARKER = r"(?:[#*>]+[ \t]*)?(?:Q|Question|Problem)(?:[ \t]*\d+)?[ \t]*\**[ \t]*(?:[:：]|(?=\n))"
_NEW_QUESTION = re.compile(r"\n[ \t]*" + _QUESTION_MARKER, re.IGNORECASE)
_CHOICES_BLOCK = re.compile(r"\n[ \t]*(?:[#*>]+[ \t]*)?Answer[ \t]+Choices[ \t]*\**[ \t]*:", re.IGNORECASE)
# a chat model that goes on past its turn: a new user turn ("Human:", "User:") or the chat template's own
# tokens, when its text was decoded with them ("<|eot_id|>", "<|im_end|>", Gemma's "<end_of_turn>", "</s>");
# a model tuned on the Alpaca template (Alpaca, WizardLM, many Llama and Falcon fine-tunes) opens its next turn
# with "### Instruction:"
_NEW_TURN = re.compile(r"\n[ \t]*(?:[#*>]+[ \t]*)?(?:Human|User|Instruction)[ \t]*\**[ \t]*:"
                       r"|<\|\w+\|>|<(?:end|start)_of_turn>|</s>|\[INST\]", re.IGNORECASE)


def _first_stop(text: str, stops: Sequence[str], start: int) -> int | None:
    found = [at for stop in stops if stop and (at := text.find(stop, start)) >= 0]
    found += [m.start() for pattern in (_NEW_QUESTION, _CHOICES_BLOCK, _NEW_TURN)
              if (m := pattern.search(text, start))]
    found = [at for at in found if text[:at].strip()]  # a marker before any content restates the question
    return min(found) if found else None


def cut_continuation(text: str, stops: Sequence[str] = (), answered_at: int | None = None) -> int | None:
    """Where the invented continuation of ``text`` begins (None: nothing to cut). ``answered_at``: the
    end of the first answer statement, for a text that opens by restating the question (the cut then
    waits for the first marker after it)."""
    at = _first_stop(text, stops, 0)
    if at is None:
        return None
    opens_with_question = re.match(r"\s*" + _QUESTION_MARKER, text, re.IGNORECASE)
    if opens_with_question and answered_at is not None and at < answered_at:
        return _first_stop(text, stops, answered_at)
    return at


# -- 2. answer statements ---------------------------------------------------------------------------

_STATEMENT = re.compile(
    r"(?:\bthe\s+)?(?:\b(?:final|correct|best|right|most\s+likely|most\s+appropriate)\s+)?"
    r"\b(?:answer|choice|option)(?:\s+(?:choice|option))?"
    # "the answer to the question \"Could Aristotle use a laptop?\" is no" (Llama, Mistral)
    r"(?:\s+to\s+(?:the|this|that|your)\s+question(?:\s*[\"“][^\"”\n]{1,200}[\"”])?)?"
    r"(?:\s*\([^()\n]{1,40}\))?\s*"  # "(arabic numerals)"
    r"(?:\bis\b|\bwould\s+be\b|\bshould\s+be\b|\bwill\s+be\b|\bhas\s+to\s+be\b|[:=])\s*(?::\s*)?"
    r"([^\n]*)",
    re.IGNORECASE,
)
# an answer under a heading of its own, no colon: "### Final Answer\nB) desk", "**Answer**\nNo" (Claude,
# Gemma, GPT-4o's markdown); its span is the next line's
_HEADING = re.compile(r"^[ \t]*[#*_>]*[ \t]*(?:(?:my|the)[ \t]+)?(?:(?:final|correct|best)[ \t]+)?answer[ \t*_]*"
                      r"(?=\n)()", re.IGNORECASE | re.MULTILINE)
# a choice named before its verdict, at a sentence's start: "B is the correct answer.", "**B) desk** is the best
# answer here." (Claude, GPT-4o); read past, the fallback's last sentence names whatever it mentions last
_REVERSED = re.compile(r"(?:^|(?<=[.!?]\s))([^.!?\n]{1,60}?)\s+is\s+(?:the|my)\s+"
                       r"(?:(?:final|correct|best|right|most\s+likely|most\s+appropriate)\s+)?(?:answer|choice|option)\b",
                       re.IGNORECASE | re.MULTILINE)
# the answer in tags after the reasoning: Claude prompted for "<thinking>...</thinking><answer>B</answer>",
# a GRPO-tuned model's "<reasoning>...</reasoning>\n<answer>\n18\n</answer>"
_ANSWER_TAG = re.compile(r"<answer>\s*([^<]*?)\s*(?:</answer>|$)", re.IGNORECASE)
_REASONING_TAG = re.compile(r"</?(?:reasoning|thinking)>", re.IGNORECASE)  # not in a rationale
# GSM8K's own answer line, which models few-shot on its solutions or tuned on them write: "#### 18" (a number
# alone on the line: not a "#### 2. Total" heading); read past it, the last number may be an invented question's
_HASHES = re.compile(r"^[ \t]*####[ \t]*(\$?[-−–]?\d[\d,]*(?:\.\d+)?)[ \t]*$", re.MULTILINE)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
# the words a concluding sentence opens with
_CONCLUSION_WORDS = r"so|thus|therefore|hence|overall|in\s+conclusion"
# a dangling lead-in before "the answer is": dropped from the rationale with the statement
_CONNECTIVE = re.compile(
    r"^(?:(?:and|then|finally|consequently|accordingly|" + _CONCLUSION_WORDS + "|"
    r"in\s+summary|as\s+a\s+result|to\s+conclude|i\s+think|i\s+believe|we\s+can\s+conclude\s+that|"
    r"among\s+[A-E]\s+through\s+[A-E]|based\s+on\s+this|based\s+on\s+the\s+above)[\s,:;-]*)*$",
    re.IGNORECASE,
)
_TRAILING_CONNECTIVE = re.compile(r"(?:[,;]\s*|\s+)(?:and\s+)?(?:so|thus|therefore|hence|which\s+means)[\s,:]*$",
                                  re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
# where an answer span stops naming its answer: the end of its sentence or a reason that follows
_REASON = re.compile(r"\s*(?:,|;|:|-|—)?\s*\b(?:because|since|as|which|due to|given that|rather than|instead of)\b"
                     r"|\s*[,;]\s*not\b", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    start: int  # where the statement begins (its rationale ends here)
    end: int
    span: str  # the text that should name the answer
    label: bool = False  # "Answer: ...", "### Answer\n...": a label, where "the answer is ..." is a predicate


def statements(text: str, extractor: AnswerExtractor) -> list[Statement]:
    """Every answer statement of ``text``, by position: the task's own pattern, the generic forms,
    ``\\boxed{}``. Statements on one line are one conclusion: the earliest start is kept for the cut."""
    found: list[Statement] = []
    for match in extractor.matches(text):
        found.append(Statement(match.start(), match.end(1), match.group(1) or ""))
    for match in [*_STATEMENT.finditer(text), *_HEADING.finditer(text)]:
        span, span_at, end = match.group(1), match.start(1), match.end()
        if not span.strip(" \t*_`#"):  # "Answer:" on a line of its own: the answer is on the next one
            following = re.match(r"[ \t]*\n\s*([^\n]*)", text[end:])
            if following:
                span, span_at, end = following.group(1), end + following.start(1), end + following.end()
        # "Let's look at each option:\nA) office - too broad\nB) desk ...": the header of a listing of the
        # choices, not an answer (read, the listing's first line would be)
        if "\n" in text[match.start():span_at] and _LISTED_LINE.match(span) and _LISTED_LINE.match(
                text[end:].lstrip("\n").split("\n", 1)[0]):
            continue
        lead = text[match.start():span_at]
        found.append(Statement(match.start(), end, span, not re.search(r"\b(?:is|be)\b", lead, re.IGNORECASE)))
    if extractor.type.name == "choice":
        found += [Statement(m.start(1), m.end(1), m.group(1)) for m in _REVERSED.finditer(text)]
    for match in [*_BOXED.finditer(text), *_ANSWER_TAG.finditer(text), *_HASHES.finditer(text)]:
        found.append(Statement(match.start(), match.end(), match.group(1)))
    return sorted(found, key=lambda s: (s.start, -s.end))


def _head_end(text: str, statement: Statement) -> int:
    """Where the sentence that holds ``statement``'s answer ends in ``text``."""
    span_at = statement.end - len(statement.span)
    end = _SENTENCE_END.search(text, span_at)
    return max(end.start() if end else len(text), span_at)


def _head(span: str) -> str:
    """The part of a span that names the answer: markup off, up to its sentence's end or a reason."""
    span = re.sub(r"\\(?:boxed|text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", span)
    span = re.sub(r"[*_`$]+", "", span).strip()
    end = _SENTENCE_END.search(span)
    head = span[: end.start()] if end else span
    reason = _REASON.search(head)
    return (head[: reason.start()] if reason and reason.start() > 0 else head).strip()


# -- reading one span: the answers it names -----------------------------------------------------------

# strong labels: "(b)", "B)", "option b"; a bare capital only where no strong label or choice text is named
_STRONG_LABEL = re.compile(r"\(([A-Ea-e])\)|(?<![A-Za-z'])([A-Ea-e])[)\]]|(?<![A-Za-z'])([A-E]):(?!\S)"
                           r"|\b(?:[Oo]ption|[Cc]hoice)\s+([A-E])\b")
_BARE_LABEL = re.compile(r"(?<![A-Za-z'.])([A-E])(?![A-Za-z'\-]|\.[A-Za-z])")
_ARTICLE = re.compile(r"^(?:a|an|the|to)\s+", re.IGNORECASE)


def _choice_key(text: str) -> str:
    text = re.sub(r"[^\w\s'-]", " ", str(text).lower())
    return _ARTICLE.sub("", " ".join(text.split()))


def choice_answers(head: str, choices: Mapping[str, str] | None) -> set[str]:
    """The choice labels a span names: its letters (``(b)``, ``B)``, ``B``, ``option b``), else the
    choices whose text it names (the longest where one choice's text holds another's)."""
    labels = {next(g for g in m.groups() if g).upper() for m in _STRONG_LABEL.finditer(head)}
    if labels:
        return labels
    if choices:
        key = _choice_key(head)
        exact = {label for label, text in choices.items() if text and _choice_key(text) == key}
        if exact:
            return exact
        named = {label: _choice_key(text) for label, text in choices.items()
                 if text and _choice_key(text) and re.search(r"\b" + re.escape(_choice_key(text)) + r"\b", key)}
        named = {label for label, t in named.items() if not any(t != u and t in u for u in named.values())}
        if named:
            return named
    if re.fullmatch(r"[a-e]", head):  # "So the answer is b." (lowercase labels): a letter alone names its choice
        return {head.upper()}
    return set(_BARE_LABEL.findall(head))


_YESNO_PAIR = re.compile(r"\b(yes|no|true|false)\b\s*(?:or|and|/)\s*\b(yes|no|true|false)\b", re.IGNORECASE)


def yesno_answers(head: str) -> set[str]:
    """The first yes/no of a span ("not true" reads as no); both where it offers both ("yes or no")."""
    pair = _YESNO_PAIR.search(head)
    if pair and _YESNO_MAP[pair.group(1).lower()] != _YESNO_MAP[pair.group(2).lower()]:
        return {"yes", "no"}
    match = _YESNO.search(head)
    if not match:
        return set()
    value = _YESNO_MAP[match.group(1).lower()]
    if re.search(r"\bnot\s+$", head[: match.start()], re.IGNORECASE):
        value = "no" if value == "yes" else "yes"
    return {value}


def number_answers(head: str, extractor: AnswerExtractor) -> set[str]:
    """One number, read as the task's extractor reads a span ("5 - 3 = 2" is 2); two where the span
    offers alternatives ("5 or 6")."""
    if re.search(r"\bor\b", head):
        values = {n for part in re.split(r"\bor\b", head) if (n := canonical_number(part)) is not None}
        if len(values) > 1:
            return values
    value = extractor(f"the answer is {head}")
    return {value} if value is not None else set()


def span_answers(head: str, answer_type: str, extractor: AnswerExtractor,
                 choices: Mapping[str, str] | None) -> set[str]:
    if answer_type == "choice":
        return choice_answers(head, choices)
    if answer_type == "yesno":
        return yesno_answers(head)
    return number_answers(head, extractor)


# -- the reading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherReading:
    """What a teacher's text says. ``kept``: the text without its invented continuation; ``cut_at``:
    where that was cut in the original (None: nothing was); ``how``: which rule found the answer
    (statement, first, fallback) or why none was taken (hedge, no_answer, unfinished: a <think>
    block never closed)."""

    kept: str
    cut_at: int | None
    rationale: str | None
    answer: str | None
    how: str

    @property
    def parsed(self) -> bool:
        return self.answer is not None


# "Yes," / "No." but not "No one ..."; "(b)" / "B)" / "B." but not "A:", the few-shot answer marker
_FIRST_YESNO = re.compile(r"^[\s*_#>]*(yes|no|true|false)\b(?=[*_]*(?:\s*[,.!:;]|[ \t]*\n|\s*$))[\s.,:;!*_-]*",
                          re.IGNORECASE)
# a yes/no that stands as an answer at the end of a sentence ("..., so no."), not "no one", "no longer"
_STANDALONE_YESNO = re.compile(r"\b(yes|no|true|false)\b(?=[*_]*\s*(?:[,.!:;]|$))", re.IGNORECASE)
_FIRST_CHOICE = re.compile(r"^[\s*_#>]*(?:\(([A-Ea-e])\)|([A-E])[).](?=\s|$))[\s.,:;*_-]*")


def _answer_first(kept: str, answer_type: str, choices: Mapping[str, str] | None) -> tuple[str, int] | None:
    """An answer the text opens with ("Yes, because ...", "(b) lamp. ..."): (answer, where the rest
    begins)."""
    if answer_type == "yesno" and (m := _FIRST_YESNO.match(kept)):
        return _YESNO_MAP[m.group(1).lower()], m.end()
    if answer_type == "choice" and (m := _FIRST_CHOICE.match(kept)):
        first_line = kept.split("\n", 1)[0]
        if 0 in _listing_lines(kept) or len(_STRONG_LABEL.findall(first_line)) > 1:
            return None  # "A) doorway\nB) chapel ..." or "(a) doorway (b) chapel": a listing, not an answer
        label, rest = (m.group(1) or m.group(2)).upper(), m.end()
        text = (choices or {}).get(label)
        if text and kept[rest:].lower().startswith(text.lower()):  # "(a) table. A lamp ...": past "table."
            rest = len(kept) - len(kept[rest + len(text):].lstrip(" .,:;-*_\n"))
        return label, rest
    return None


# a line that lists a choice; a numbered list ("1. B) desk\n2. C) bedroom", a ranking never concluded) too
_LISTED_LINE = re.compile(r"\s*(?:[-*]\s*|\d{1,2}[.)]\s*)?\(?[A-Ea-e][).:]\s")


def _listing_lines(text: str) -> set[int]:
    """Indexes of the lines that list choices ("A) doorway", "(b) chapel", a ranking's "1. B) desk"): two
    or more in a text."""
    lines = text.split("\n")
    listed = {i for i, line in enumerate(lines) if _LISTED_LINE.match(line)}
    return listed if len(listed) > 1 else set()


def _fallback(kept: str, answer_type: str, extractor: AnswerExtractor,
              choices: Mapping[str, str] | None) -> set[str]:
    """The last number of a numeric answer (lm-eval's flexible extraction); for yes/no and choices the
    last sentence, outside any listing of the choices, when it names answers."""
    if answer_type == "number":
        found = extractor.type.find_all(kept)
        return {found[-1]} if found else set()
    listed = _listing_lines(kept)
    body = "\n".join(line for i, line in enumerate(kept.split("\n")) if i not in listed)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", body) if s.strip()]
    if not sentences:
        return set()
    if answer_type == "yesno":
        last = sentences[-1]
        # "it could be yes or no.": the sentence ends offering both (not "whether (yes or no) ... is no.")
        pair = _YESNO_PAIR.search(last)
        if pair and len(yesno_answers(pair.group(0))) > 1 and _STANDALONE_YESNO.match(last, pair.start(2)):
            return {"yes", "no"}
        return {_YESNO_MAP[w.lower()] for w in _STANDALONE_YESNO.findall(last)}
    # several labels in the last sentence ("(a) doorway (b) chapel") come back as several: no answer
    return span_answers(re.sub(r"[*_`$]+", "", sentences[-1]).strip(), answer_type, extractor, choices)


# an answer statement the token limit cut before it named anything, on a line of its own at the end: "The answer
# is", "Therefore, the answer", "the answer is <answer" (a prompt's "<answer>" placeholder, copied)
_UNFINISHED = re.compile(r"\n[^\n]*\banswer\b(?:\s+(?:is|would\s+be))?\s*:?\s*(?:<(?:answer>?)?)?\s*$",
                         re.IGNORECASE)
# a line that opens as a conclusion ("Based on this analysis, ...", "5. Therefore, ...", "The only option that ...")
_CONCLUDING = re.compile(r"\s*(?:\d{1,2}[.)]\s*)?(?:" + _CONCLUSION_WORDS + r"|based\s+on|given|after|the\s+only)\b",
                         re.IGNORECASE)


def _before_unfinished(kept: str) -> str:
    """``kept`` without an unfinished answer statement at its end, where the line before it concludes ("...
    Based on this analysis, the most likely feeling is satisfaction.\nThe answer is"): the fallback then reads
    that conclusion. After a listing of the choices, or reasoning that concludes nothing, ``kept`` as it is."""
    unfinished = _UNFINISHED.search(kept)
    if unfinished is None:
        return kept
    body = kept[: unfinished.start()].rstrip()
    return body if _CONCLUDING.match(body.rsplit("\n", 1)[-1]) else kept


def _rationale_before(kept: str, start: int) -> str | None:
    """The kept text before a statement, without the lead-in of the statement's own sentence."""
    before = _REASONING_TAG.sub("", kept[:start])
    bounds = list(_SENTENCE_END.finditer(before))
    lead = before[bounds[-1].end():] if bounds else before
    if _CONNECTIVE.match(lead.strip().strip("*#_ ")):
        before = before[: bounds[-1].end()] if bounds else ""
    before = re.sub(r"[\s*#_>]+$", "", before).strip()
    before = _TRAILING_CONNECTIVE.sub("", before)  # "a lamp needs a surface, so" + " The answer is (A)."
    # the target appends " The answer is (E).": the rationale ends its own sentence first
    before = re.sub(r"[,;:\-—]+$", "", before).strip()
    if before and before[-1] not in ".!?\"')":
        before += "."
    return before or None


def _rationale_after(kept: str, at: int) -> str | None:
    """The text after an answer stated first ("Answer: Yes. The Moon ..."): the reasons given for it."""
    rest = kept[at:].lstrip(" .!:;*_-\n")
    return rest[:1].upper() + rest[1:] if rest.strip() else None


def _reply_start(text: str) -> int:
    """Where a reasoning model's reply begins: after its ``</think>``, when a reply follows (0: the whole
    text). The thinking is drafts ("the answer is C? No ..."): the reply states the answer."""
    end = text.find("</think>")
    if end < 0 or not text[end + len("</think>"):].strip():
        return 0
    return end + len("</think>")


# a label ("Answer:") names a number or a yes/no only when it opens with it: chat models (Llama-2, Vicuna)
# echo a prompt's "Answer:" and write their reasoning after it, whose first sentence ("Janet has 16 eggs",
# "Hydrogen has no neutrons") is not the answer. (A choice's span is read strictly already.)
_OPENS_WITH = {"number": re.compile(r"[\s(~≈\\]*[-−–]?\d"),
               "yesno": re.compile(r"[\s(\"']*(?:not\s+)?(?:yes|no|true|false)\b", re.IGNORECASE)}


def read_teacher_text(text: str, answer_type: str, extractor: AnswerExtractor, *,
                      choices: Mapping[str, str] | None = None, stops: Sequence[str] = (),
                      fallback: bool = True) -> TeacherReading:
    """Read a teacher's ``text`` (see the module docstring)."""
    text = text.replace("\r\n", "\n")
    # a <think> block never closed: the model ran out of tokens mid-draft ("So the answer is no. But wait,
    # ..."), its last draft is no conclusion; read, it would be a guess (raise the teacher's max tokens)
    opened = text.find("<think>")
    if opened >= 0 and text.find("</think>", opened) < 0:
        return TeacherReading(text.strip(), None, text.strip() or None, None, "unfinished")
    # a <think> block left in the text (a recorded file, a local model) is read past, not cut as an
    # invented continuation: the answer and its rationale are the reply's
    reply_at = _reply_start(text)
    reply = text[reply_at:]
    first = statements(reply, extractor)
    cut = cut_continuation(reply, stops, _head_end(reply, first[0]) if first else None)
    cut_at = reply_at + cut if cut is not None else None
    kept = reply[:cut].strip() if cut is not None else reply.strip()
    kept = re.sub(r"^A\s*:\s*(?=\S)", "", kept)  # a few-shot exemplar's answer marker, not part of the answer
    found = statements(kept, extractor)
    for statement in reversed(found):
        head = _head(statement.span)
        if statement.label and answer_type in _OPENS_WITH and not _OPENS_WITH[answer_type].match(head):
            continue  # "Answer: Janet sells 16 - 3 - 4 = 9 eggs. ...": a label over the reasoning, not its answer
        answers = span_answers(head, answer_type, extractor, choices)
        if len(answers) > 1:
            return TeacherReading(kept, cut_at, kept or None, None, "hedge")
        if answers:
            # "The final answer is $\boxed{42}$": the statement that holds this one is where the rationale ends
            start = min(s.start for s in found if s.start <= statement.start < _head_end(kept, s))
            rationale = _rationale_before(kept, start) or _rationale_after(kept, _head_end(kept, statement))
            return TeacherReading(kept, cut_at, rationale, answers.pop(), "statement")
    opened = _answer_first(kept, answer_type, choices)
    if opened is not None:
        answer, rest = opened
        rationale = kept[rest:].strip()
        rationale = rationale[:1].upper() + rationale[1:] if rationale else None
        return TeacherReading(kept, cut_at, rationale, answer, "first")
    if fallback:
        body = _before_unfinished(kept)
        answers = _fallback(body, answer_type, extractor, choices)
        if len(answers) == 1:
            return TeacherReading(kept, cut_at, body or None, answers.pop(), "fallback")
        if len(answers) > 1:
            return TeacherReading(kept, cut_at, kept or None, None, "hedge")
    return TeacherReading(kept, cut_at, kept or None, None, "no_answer")
