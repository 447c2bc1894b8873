"""Teacher text as real models write it (tailkd.tasks.teacher_text): the invented continuation cut, the
answer the teacher's reasoning concludes with, hedges and listings refused; on real rows from the shared
data and on small fixtures of the other shapes real teachers write."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tailkd.tasks import Task
from tailkd.teachers.annotation import Annotation, split_rationale
from tailkd.teachers.audit import parse_audit

CONF_TASK = Path(__file__).resolve().parents[1] / "conf" / "task"


def task(name: str) -> Task:
    return Task(OmegaConf.to_container(OmegaConf.load(CONF_TASK / f"{name}.yaml"), resolve=True))


CQA, SQA, GSM = task("commonsense_qa"), task("strategyqa"), task("gsm8k")
ROW = {"id": "q1", "question": "Where would you put a lamp to read?",
       "choices": {"label": list("ABCDE"), "text": ["table", "desk lamp", "doorway", "chapel", "encourage"]},
       "answerKey": "A"}
CHOICE_EXAMPLE = CQA.example_from_row(ROW, "q1", "test")


# -- PaLM's shape, on a row of the real file --------------------------------------------------------

PALM = ("The answer must be something that is grown in Illinois or Iowa. Of the above choices, only corn is "
        "grown in Illinois or Iowa. So the answer is (e) raise corn.\n\nQ: What is the best way to get to the "
        "airport?\nAnswer Choices:\n(a) taxi\n(b) bus\n(c) train\n(d) subway\n(e) airplane\nA: The answer must "
        "be a way to get to the airport. Of the above choices, only taxi makes the most sense for getting to "
        "the airport. So the answer is (a) taxi.\n\nQ: What is")


def test_an_invented_next_question_is_cut_and_the_answer_is_the_teachers_own():
    reading = CQA.read_teacher(PALM)
    assert reading.answer == "E" and reading.how == "statement"
    assert reading.cut_at == PALM.index("\n\nQ:") + 1 and "Q:" not in reading.kept
    # the rationale ends before "So the answer is": the target appends its own answer sentence
    assert reading.rationale == ("The answer must be something that is grown in Illinois or Iowa. Of the above "
                                 "choices, only corn is grown in Illinois or Iowa.")
    target = CQA.target(reading.rationale, reading.answer)
    assert "Q:" not in target and "Answer Choices" not in target and target.endswith("The answer is (E).")


@pytest.mark.parametrize("text, cut_from", [
    ("Reasoning. The answer is yes.\n\nQuestion: Is water wet?\nAnswer: Yes.", "\n\nQuestion:"),
    ("So the answer is (c) doorway.\nAnswer Choices:\n(a) table\n(b) desk", "\nAnswer Choices:"),
    ("So the answer is (c).\n\n**Question 2:** Where is ...", "\n\n**Question 2:**"),
    ("The answer is 12.\n### Q: A new problem", "\n### Q:"),
    # other families: a header without a colon, Minerva's "Problem:", a new chat turn, a chat template's tokens
    ("So the answer is (c).\n\n### Question 2\nWhere is ...", "\n\n### Question 2"),
    ("So the answer is (c).\n\n**Question 2**\nWhere is ...", "\n\n**Question 2**"),
    ("The answer is 12.\n\nProblem: Tom has 3 apples.", "\n\nProblem:"),
    ("So the answer is (c).\n\nHuman: Where is milk kept?\n\nAssistant: (a)", "\n\nHuman:"),
    ("So the answer is (c).\nUser: next one\nAssistant: (a)", "\nUser:"),
    ("So the answer is (c).<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n(a)", "<|eot_id|>"),
    ("So the answer is (c).<end_of_turn>\n<start_of_turn>user\n(a)", "<end_of_turn>"),
])
def test_every_shape_of_a_new_exemplar_is_cut(text, cut_from):
    reading = CQA.read_teacher(text)
    assert text[: reading.cut_at].strip() == reading.kept == text[: text.index(cut_from)].strip()


@pytest.mark.parametrize("name, text, answer", [
    # a reasoning model's drafts name answers it drops; its reply after </think> states the one it keeps
    ("commonsense_qa", "<think>\nFirst guess: the answer is (c) doorway. No, a doorway holds nothing.\n</think>\n\n"
     "**A) table**", "A"),
    ("commonsense_qa", "<think>\nB, C, D, E hold no lamp.\n</think>\n\nA) table\n\nIt holds a lamp up.", "A"),
    ("strategyqa", "<think>\nCould it be yes? He died in 322 BC.\n</think>\n\nNo. Laptops came much later.", "no"),
    ("strategyqa", "<think>\nHmm, yes or no? The answer is yes if ... no.\n</think>\n\n**No**", "no"),
    # a chat model that goes on with a new question or turn of its own, answered too
    ("commonsense_qa", "A lamp stands on a table. The answer is (A).\n\n### Question 2\nWhere is milk kept? "
     "The answer is (C).", "A"),
    ("commonsense_qa", "The answer is (A).\n\n**Question 2**\nWhere is milk kept? The answer is (C).", "A"),
    ("commonsense_qa", "The answer is (A).\n\nHuman: Where is milk kept?\n\nAssistant: The answer is (C).", "A"),
    ("commonsense_qa", "The answer is (A).\nUser: next one.\nAssistant: The answer is (C) doorway.", "A"),
    ("commonsense_qa", "The answer is (A).<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nThe answer is (C).",
     "A"),
    ("strategyqa", "He died in 322 BC. The answer is no.\n\nHuman: Is the sky blue?\nAssistant: The answer is yes.",
     "no"),
    ("strategyqa", "The answer is no.\n\n### Question 2\nIs the sky blue? The answer is yes.", "no"),
    ("gsm8k", "6 * 7 = 42. The answer is 42.\n\nHuman: What is 2+2?\n\nAssistant: The answer is 4.", "42"),
    ("gsm8k", "The answer is 42.\n\n### Question 2\nTom has 3 apples. The answer is 3.", "42"),
    ("gsm8k", "Final Answer: The final answer is $42$. I hope it is correct.\n\nProblem: Tom has 3 apples.\n"
     "Final Answer: The final answer is $3$.", "42"),  # Minerva's format
])
def test_other_families_answer_is_their_own_not_a_draft_or_a_next_turns(name, text, answer):
    reader = {"commonsense_qa": CQA, "strategyqa": SQA, "gsm8k": GSM}[name]
    assert reader.read_teacher(text, CHOICE_EXAMPLE if name == "commonsense_qa" else None).answer == answer


def test_a_think_block_is_read_past_and_the_cut_is_placed_in_the_whole_text():
    text = ("<think>\nThe answer is (c)? Question: is a doorway a surface? No.\n</think>\n\n"
            "A lamp stands on a table. The answer is (a).\n\nHuman: next?")
    reading = CQA.read_teacher(text, CHOICE_EXAMPLE)
    assert reading.answer == "A" and reading.rationale == "A lamp stands on a table."
    assert reading.cut_at == text.index("\n\nHuman:") + 1 and reading.how == "statement"


def test_a_question_restated_first_is_kept_and_the_cut_waits_for_the_answer():
    text = ("Q: Where would you put a lamp to read?\nAnswer Choices: (a) table (b) desk lamp (c) doorway\n"
            "A: A lamp to read by stands on a table. So the answer is (a).\n\nQ: Invented?\nA: So the answer is (c).")
    reading = CQA.read_teacher(text, CHOICE_EXAMPLE)
    assert reading.answer == "A" and reading.cut_at == text.index("\n\nQ: Invented") + 1


def test_stop_sequences_of_the_request_cut_too():
    assert CQA.read_teacher("So the answer is (b).###Next: (c)", stops=["###"]).kept == "So the answer is (b)."
    assert CQA.read_teacher("So the answer is (b).\nQ: next (c)", stops=[]).cut_at is not None  # markers regardless


# -- the forms real models conclude with --------------------------------------------------------------

@pytest.mark.parametrize("text, answer, rationale", [
    ("A lamp needs a surface. So the answer is (e) encourage.", "E", "A lamp needs a surface."),
    ("a lamp needs a surface, so the answer is (a).", "A", "a lamp needs a surface."),
    ("You read at a table. So the answer is table.", "A", "You read at a table."),  # the choice's text alone
    ("You read at a table. The answer is: Desk lamp", "B", "You read at a table."),
    ("Let's think step by step. A table holds a lamp.\nTherefore, among A through E, the answer is A.", "A",
     "Let's think step by step. A table holds a lamp."),
    ("A lamp stands on a table.\n\n**Answer: (A) table**", "A", "A lamp stands on a table."),
    ("A table holds the lamp.\nFinal answer: A", "A", "A table holds the lamp."),
    ("The correct answer is B) desk lamp, because it gives light.", "B", None),
    ("Tables hold lamps. The best option is (a) table rather than (c) doorway.", "A", "Tables hold lamps."),
    ("(a) table. A lamp to read by stands on a table.", "A", "A lamp to read by stands on a table."),
    ("We need light. \\boxed{A}", "A", "We need light."),
    ("The answer is B: table", "B", None),  # a letter and a text that disagree: the letter decides
    ("Answer: (a) table\nA lamp stands on a table.", "A", "A lamp stands on a table."),  # stated first
    ("A: A lamp stands on a table. So the answer is (a).", "A", "A lamp stands on a table."),  # exemplar marker
    ("(B)", "B", None),  # a model that answers with the label alone
    ("Tables hold lamps, so the answer (A, B, C, D, or E) is A.", "A", "Tables hold lamps."),
    ("A table holds it.\n\n**Final Answer:**\n(A) table", "A", "A table holds it."),
    ("table", "A", None),  # ... or the choice's text alone
])
def test_choice_answers_in_the_forms_real_teachers_write(text, answer, rationale):
    reading = CQA.read_teacher(text, CHOICE_EXAMPLE)
    assert reading.answer == answer
    if rationale is not None:
        assert reading.rationale == rationale


@pytest.mark.parametrize("text", [
    "Both could work. So the answer is either (a) table or (b) desk lamp.",
    "So the answer is (a) table, (b) desk lamp.",
    "The answer is A or C.",
    "Hmm. The answer is (b) desk lamp and (d) chapel.",
])
def test_a_hedge_or_two_answers_is_a_parse_failure_not_a_guess(text):
    reading = CQA.read_teacher(text, CHOICE_EXAMPLE)
    assert reading.answer is None and reading.how == "hedge"


def test_choices_the_text_merely_lists_are_no_answer():
    listing = "The choices are:\nA) table\nB) desk lamp\nC) doorway\nD) chapel\nE) encourage"
    assert CQA.read_teacher(listing, CHOICE_EXAMPLE).answer is None
    assert CQA.read_teacher("Options: (a) table (b) desk lamp (c) doorway (d) chapel (e) encourage",
                            CHOICE_EXAMPLE).answer is None
    # a listing followed by a conclusion: the conclusion
    assert CQA.read_teacher(listing + "\nA lamp goes on a table, so the answer is A.", CHOICE_EXAMPLE).answer == "A"


@pytest.mark.parametrize("text, answer", [
    ("Yes, because the Moon orbits the Earth.", "yes"),
    ("No. Squidward and Greenspan both play the clarinet.", "no"),
    ("**Yes**\n\nThe Moon orbits the Earth.", "yes"),
    ("The Moon orbits the Earth. So the answer is yes.", "yes"),
    ("It is not true that they differ, so the answer is: not true.", "no"),
    ("Yes, it orbits... Thinking again, it does not. So the answer is no.", "no"),  # the conclusion wins
    ("No one has been there. Thus the answer is yes.", "yes"),
    ("It orbits. Therefore, the answer (Yes or No) is No.", "no"),
])
def test_yes_no_answers_stated_first_or_last(text, answer):
    assert SQA.read_teacher(text).answer == answer


def test_yes_no_hedge_and_an_opening_no_that_is_a_word():
    assert SQA.read_teacher("It depends, so the answer is yes or no.").how == "hedge"
    assert SQA.read_teacher("No one knows where it came from.").answer is None  # "No one": not an answer
    # a last sentence that ends offering both is a hedge, not its last word ("no")
    assert SQA.read_teacher("It depends on the definition; it could be yes or no.").how == "hedge"
    assert SQA.read_teacher("Whether he could (yes or no) comes down to dates, and it is no.").answer == "no"


@pytest.mark.parametrize("text, answer", [
    ("3 * 4 = 12 apples.\nThe final answer is $\\boxed{12}$.", "12"),
    ("So $x = \\boxed{1,250}$", "1250"),
    ("She has 54 / 2 = 27 pens. The answer is 27.", "27"),
    ("He earns 3 * 35 = 105 dollars.", "105"),  # no statement: the last number (task.answer.fallback)
    ("So 18 in all, 2 left.\nTherefore, the answer (arabic numerals) is 18.", "18"),  # zero-shot CoT's extraction
])
def test_number_answers(text, answer):
    reading = GSM.read_teacher(text)
    assert reading.answer == answer


def test_a_boxed_answer_ends_the_rationale_at_its_statement():
    reading = GSM.read_teacher("3 * 4 = 12.\nThe final answer is $\\boxed{12}$.")
    assert reading.rationale == "3 * 4 = 12."


def test_without_fallback_an_unstated_answer_is_not_taken():
    strict = Task({**OmegaConf.to_container(OmegaConf.load(CONF_TASK / "gsm8k.yaml"), resolve=True),
                   "answer": {"type": "number", "pattern": "the answer is\\s*:?\\s*(.+)", "fallback": False}})
    assert strict.read_teacher("He earns 3 * 35 = 105 dollars.").answer is None


# -- real rows ------------------------------------------------------------------------------------------

def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_palm_answers_agree_with_a_hand_count_and_no_rationale_keeps_an_invented_question(shared_data):
    folder = shared_data / "commonsense_qa_palm"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there")
    examples = {r["id"]: CQA.example_from_row(r, r["id"], "train") for r in _read_jsonl(folder / "train.jsonl")}
    rows = _read_jsonl(folder / "teacher.jsonl")
    annotations = []
    for row in rows:
        # the hand count: the choice letters after the teacher's first "So the answer is", in its own part
        own = row["text"].split("\n\nQ:")[0]
        letters = {m.upper() for m in re.findall(r"\(([a-eA-E])\)", own.split("So the answer is", 1)[1])}
        hand = letters.pop() if len(letters) == 1 else None
        reading = CQA.read_teacher(row["text"], examples[row["example_id"]])
        assert reading.answer == hand, row["text"][:300]
        assert not re.search(r"\bQ:|Answer Choices", CQA.target(reading.rationale, reading.answer or "A"))
        annotations.append(Annotation(row["example_id"], "", row["text"], reading.rationale, reading.answer, 0, 0,
                                      0.0, "recorded", "palm-540b", cut_at=reading.cut_at, parse=reading.how))
    audit = parse_audit(annotations, {i: e.answer for i, e in examples.items()})
    assert audit["cut_share"] == 1.0 and 0.02 < audit["unparsed_share"] < 0.04  # the hedges ("either (a) or (d)")
    assert 0.76 <= audit["accuracy_parsed"] <= 0.78 and audit["overrepresented"] == []


def test_chatgpt_gsm8k_rows_read_as_the_scorer_reads_them(shared_data):
    path = shared_data / "gsm8k_chatgpt" / "teacher.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    readings = [(GSM.read_teacher(r["text"]), split_rationale(r["text"], GSM)[1]) for r in _read_jsonl(path)]
    assert not any(reading.cut_at for reading, _ in readings)  # zero-shot: nothing invented to cut
    differ = [(reading.how, old) for reading, old in readings if reading.answer != old]
    assert differ == [("hedge", "5")]  # "5 arms and 3 legs, or 8 limbs in total": two answers, not 5


# -- the audit ------------------------------------------------------------------------------------------

def _annotation(i: int, answer: str | None, how: str = "statement") -> Annotation:
    return Annotation(f"q{i}", "", "", None, answer, 0, 0, 0.0, "recorded", "m", cut_at=None, parse=how)


def test_the_audit_warns_when_one_answer_takes_far_more_than_its_share_in_gold(caplog):
    gold = {f"q{i}": "ABCDE"[i % 5] for i in range(100)}
    misread = [_annotation(i, "A" if i % 4 else gold[f"q{i}"]) for i in range(100)]
    audit = parse_audit(misread, gold)
    assert [o["answer"] for o in audit["overrepresented"]] == ["A"]
    honest = [_annotation(i, gold[f"q{i}"] if i % 4 else "ABCDE"[(i + 1) % 5]) for i in range(100)]
    assert parse_audit(honest, gold)["overrepresented"] == []
    from tailkd.teachers.audit import log_audit

    with caplog.at_level("WARNING"):
        log_audit(audit)
    assert "misread" in caplog.text


def test_the_audit_counts_failures_by_reason_and_grades_only_known_questions():
    gold = {"q0": "A", "q1": "B"}
    audit = parse_audit([_annotation(0, "A"), _annotation(1, None, "hedge"), _annotation(7, "C")], gold)
    assert audit["unparsed_by_reason"] == {"hedge": 1} and audit["graded"] == 2
    assert audit["accuracy"] == 0.5 and audit["accuracy_parsed"] == 1.0
    assert Counter(audit["answers"]) == Counter({"A": 0.5, "C": 0.5})


# -- through the collector, for every backend --------------------------------------------------------

def _collector(teacher: dict, tmp_path: Path, data):
    from tailkd.teachers import build_collector

    return build_collector(teacher, {"order": "random", "max_queries": None}, data.task,
                           cache_dir=tmp_path / "cache", ledger_path=tmp_path / "ledger.jsonl", progress=False)


def _cqa_data(rows: list[dict]):
    from tailkd.tasks import TaskData

    return TaskData(CQA, [CQA.example_from_row(r, r["id"], "train") for r in rows], [])


def test_recorded_text_is_cut_but_its_cut_tokens_still_count_as_spent(tmp_path):
    from tailkd.teachers.annotation import approx_tokens

    rows = [{**ROW, "id": f"q{i}"} for i in range(3)]
    path = tmp_path / "teacher.jsonl"
    path.write_text("".join(json.dumps({"example_id": r["id"], "text": PALM}) + "\n" for r in rows))
    data = _cqa_data(rows)
    collector = _collector({"backend": "recorded", "path": str(path), "prompt": "{{ question }}"}, tmp_path, data)
    annotations = collector.collect(data.train)
    assert [a.answer for a in annotations] == ["E"] * 3 and all(a.cut_at for a in annotations)
    assert all(a.output_tokens == approx_tokens(PALM) and a.text == PALM for a in annotations)  # paid in full
    assert all("Q:" not in data.task.target(a.rationale, a.answer) for a in annotations)
    assert all(a.parse == "statement" for a in annotations)


def test_live_requests_carry_the_tasks_stop_sequences_and_the_cache_outlives_them(fake, api_key, tmp_path):
    import yaml

    server = fake()
    teacher = yaml.safe_load((CONF_TASK.parent / "teacher" / "openai.yaml").read_text())
    teacher.update(base_url=server.base_url, timeout_s=2, retry={"max_attempts": 2, "base_delay_s": 0.01})
    data = _cqa_data([{**ROW, "id": f"q{i}", "question": f"Where would you put lamp {i}?"} for i in range(3)])
    _collector(teacher, tmp_path, data).collect(data.train)
    assert [r["body"]["stop"] for r in server.requests] == [list(CQA.teacher_stop)] * 3
    # answers bought with other stop sequences are the same answers read after the same cut: reused
    again = _collector({**teacher, "stop": ["###"]}, tmp_path, data)
    assert len(again.collect(data.train)) == 3 and len(server.requests) == 3
    _collector({**teacher, "send_stop": False}, tmp_path / "other", data).collect(data.train)
    assert all("stop" not in r["body"] for r in server.requests[3:]) and len(server.requests) == 6


def test_collect_on_the_palm_file_reports_the_teachers_accuracy_and_an_audit(shared_data, tmp_path):
    from test_teacher_openai import collect_cli, finish

    folder = shared_data / "commonsense_qa_palm"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there")
    run = tmp_path / "run"
    out = finish(collect_cli(run, tmp_path / "cache", "task=commonsense_qa", f"task.data_dir={folder}",
                             "teacher=recorded", f"teacher.path={folder / 'teacher.jsonl'}", "budget.max_queries=null"))
    audit = json.loads((run / "results.json").read_text())["teacher_parse"]
    assert audit["annotations"] == 6000 and audit["cut_share"] == 1.0
    assert 0.76 <= audit["accuracy_parsed"] <= 0.78 and audit["overrepresented"] == []
    assert "cut at an invented continuation" in out
    for line in (run / "annotations.jsonl").read_text().splitlines()[:500]:
        a = json.loads(line)
        assert "\nQ:" in a["text"] and "Q:" not in (a["rationale"] or "") and a["cut_at"] > 0
