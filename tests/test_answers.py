"""Answer extraction and normalisation (tailkd.tasks.answers), on hand-written cases and on real data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tailkd.errors import ConfigError
from tailkd.tasks import AnswerExtractor, Task
from tailkd.tasks.answers import answer_only
from tailkd.tasks.registry import load_examples

CONF_TASK = Path(__file__).resolve().parents[1] / "conf" / "task"
# the real data sits in shared/ beside the repository (/work/shared/data for /work/main)


def task_cfg(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_TASK / f"{name}.yaml"), resolve=True)


# the pattern the shipped task configs use, so these cases exercise the real configuration
PATTERN = task_cfg("gsm8k")["answer"]["pattern"]


def extractor(answer_type: str, fallback: bool = True) -> AnswerExtractor:
    return AnswerExtractor(answer_type, PATTERN, fallback)



def test_shipped_configs_use_the_same_pattern():
    # the cases below use the gsm8k pattern; every shipped task should score with the same one
    for path in sorted(CONF_TASK.glob("*.yaml")):
        assert task_cfg(path.stem)["answer"]["pattern"] == PATTERN, path.name


# -- number ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "written, value",
    [
        ("1,234", "1234"),
        ("12,345,678", "12345678"),
        ("$5", "5"),
        ("$1,234.50", "1234.5"),
        ("12 apples", "12"),
        ("5 km", "5"),
        ("-3", "-3"),
        ("\u22123", "-3"),  # unicode minus sign
        ("2.50", "2.5"),
        ("8.0", "8"),
        ("0.75", "0.75"),
        ("3/4", "0.75"),
        ("42", "42"),
    ],
)
def test_number_forms(written, value):
    number = extractor("number")
    assert number(f"The answer is {written}.") == value
    assert number(f"So in all: {written}") == value  # through the fallback as well
    assert number.normalise(written) == value


def test_number_equivalent_forms_compare_equal():
    number = extractor("number")
    assert number("The answer is 1/2.") == number("The answer is 0.5.") == number.normalise(0.5)
    assert number("The answer is $1,000.") == number("The answer is 1000 dollars.") == number.normalise(1000)
    assert number("The answer is 8.0") == number.normalise(8) == number.normalise("8")
    assert number("The answer is -3.") != number("The answer is 3.")
    assert number("The answer is 3/4.") not in ("3", "4", "34")


def test_number_the_answer_is():
    assert extractor("number")("The answer is 42.") == "42"
    assert extractor("number")("Step: 6 * 7 = 42.\nThe answer is: 42") == "42"
    assert extractor("number")("THE ANSWER IS 42") == "42"


def test_number_falls_back_to_the_last_number():
    text = "She has 3 apples and buys 4 more, so she has 7 apples"
    assert extractor("number")(text) == "7"


def test_number_pattern_span_beats_later_numbers():
    text = "40 + 2 = 42. The answer is 42. Check: 42 * 10 = 420 and 420 - 1 = 419."
    assert extractor("number")(text) == "42"


def test_number_the_last_answer_is_counts():
    # the module promises the last match of the pattern: a corrected answer wins
    assert extractor("number")("The answer is 5. Wait, no: the answer is 7.") == "7"
    # a last "the answer is" with no number in its span falls back to the earlier one
    assert extractor("number")("The answer is 7. I wonder if the answer is right.") == "7"


def test_number_strict_mode():
    strict, lenient = extractor("number", fallback=False), extractor("number")
    text = "She has 3 apples and buys 4 more, so 7"
    assert lenient(text) == "7"
    assert strict(text) is None
    assert strict(text + ". The answer is 7.") == "7"
    assert strict("The answer is unknown") is None
    assert lenient("no digits here") is None


def test_number_glued_to_a_word_is_no_number():
    number = extractor("number")
    assert number("the variable x-3") is None
    assert number("COVID-19 spread in 2020") == "2020"
    assert number("The answer is x-3, so 4.") == "4"


@pytest.mark.parametrize("text, value", [
    ("The answer is 5-3=2.", "2"),
    ("The answer is 4 - 7 = -3", "-3"),
    ("The answer is 3 + 4 = 7 dollars.", "7"),
    ("The answer is 12 * 3 = $36. Then 36 + 1 = 37.", "36"),
    ("The answer is 7 (3 + 4).", "7"),
    ("The answer is 10 - 4 = 6 apples = 6.", "6"),
    ("The answer is 12 = 3 × 4.", "12"),  # the answer first, then what it equals
    ("The answer is 12 (= 3 x 4).", "12"),
    ("The answer is $36 = 12 * $3.", "36"),
])
def test_number_span_concludes_after_the_last_equals(text, value):
    assert extractor("number")(text) == value


def test_yesno_negated_span():
    yesno = extractor("yesno")
    assert yesno("The answer is not yes.") == "no"
    assert yesno("The answer is not true") == "no"
    assert yesno("The answer is no, not yes.") == "no"
    assert yesno("The answer is yes, it is not.") == "yes"


# -- yes / no --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "written, value",
    [("yes", "yes"), ("Yes", "yes"), ("YES", "yes"), ("true", "yes"), ("True", "yes"),
     ("no", "no"), ("No", "no"), ("NO", "no"), ("false", "no"), ("FALSE", "no")],
)
def test_yesno_forms(written, value):
    yesno = extractor("yesno")
    assert yesno(f"The answer is {written}.") == value
    assert yesno.normalise(written) == value


def test_yesno_booleans():
    yesno = extractor("yesno")
    assert yesno.normalise(True) == "yes"
    assert yesno.normalise(False) == "no"


def test_yesno_extraction():
    yesno = extractor("yesno")
    assert yesno("The answer is no. Yes, I am sure.") == "no"  # the span, not the later "Yes"
    assert yesno("Is it? Yes. Then again, no") == "no"  # fallback: the last one
    assert yesno("I know nothing about yesterday; the answer is yes") == "yes"
    assert yesno("I know nothing about yesterday") is None  # no "no" inside "know" / "nothing"
    assert extractor("yesno", fallback=False)("Yes, it is.") is None


# -- choice ----------------------------------------------------------------------------------------

CHOICES = {"A": "band", "B": "choir", "C": "orchestra", "D": "A cappella", "E": "quartet"}


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The answer is (B).", "B"),
        ("The answer is B.", "B"),
        ("The answer is b", "B"),
        ("the answer is (c) orchestra", "C"),
        ("The answer is: (e) quartet.", "E"),
    ],
)
def test_choice_letters(text, letter):
    assert extractor("choice")(text) == letter
    assert extractor("choice")(text, CHOICES) == letter


def test_choice_normalise():
    choice = extractor("choice")
    assert choice.normalise("(B)") == "B"
    assert choice.normalise("B") == "B"
    assert choice.normalise("d") == "D"
    assert choice.normalise("orchestra", CHOICES) == "C"
    assert choice.normalise("Z") is None
    assert choice.normalise("orchestra") is None


def test_choice_text_maps_to_its_letter():
    choice = extractor("choice")
    assert choice("The answer is orchestra.", CHOICES) == "C"
    assert choice("The answer is Orchestra", CHOICES) == "C"
    assert choice("The answer is orchestra.") is None  # without the choices there is no letter
    # a capital that belongs to the choice's own text is not a choice letter
    assert choice("The answer is A cappella.", CHOICES) == "D"
    capitals = {"A": "capitol building", "B": "everything", "C": "washington d.c", "D": "russia", "E": "canada"}
    assert choice("The answer is washington d.c.", capitals) == "C"
    assert choice("The answer is Washington D.C.", capitals) == "C"
    # CommonsenseQA has choice texts that end in a full stop
    with_stop = {"A": "car shop", "B": "desk drawer", "C": "car.", "D": "warehouse", "E": "hand"}
    assert choice("The answer is car.", with_stop) == "C"


def test_choice_article_a_is_not_a_choice():
    choice = extractor("choice")
    assert choice("A band could play it, but the answer is (D).") == "D"
    assert choice("A choir sings; (E) quartet fits best") == "E"  # fallback prefers the parenthesised
    assert choice("The answer is A good one: (D).") == "D"


# -- bad config ------------------------------------------------------------------------------------

def test_unknown_answer_type():
    with pytest.raises(ConfigError, match=r"task\.answer\.type") as info:
        AnswerExtractor("numbr", PATTERN)
    assert "number" in str(info.value)  # names the valid types


def test_pattern_without_group():
    with pytest.raises(ConfigError, match=r"task\.answer\.pattern.*group"):
        AnswerExtractor("number", r"the answer is\s*.+")


def test_invalid_regex():
    with pytest.raises(ConfigError, match=r"task\.answer\.pattern.*not a valid regex"):
        AnswerExtractor("number", r"the answer is (\d+")


def test_task_with_bad_answer_config():
    cfg = task_cfg("gsm8k")
    cfg["answer"]["type"] = "float"
    with pytest.raises(ConfigError, match=r"task\.answer\.type"):
        Task(cfg)


# -- real data -------------------------------------------------------------------------------------

def readme_row_counts(data_dir: Path) -> dict[str, dict[str, int]]:
    """{folder: {file: rows}} from the README's table."""
    counts = {}
    for line in (data_dir / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"\d+(\s*,\s*\d+)*", cells[3]):
            continue
        files = [f.strip() for f in cells[2].split(",")]
        rows = [int(r) for r in cells[3].split(",")]
        counts[cells[0]] = dict(zip(files, rows, strict=True))
    return counts


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def number_after_hashes(solution: str) -> str:
    return solution.split("####")[-1].strip().replace(",", "")


# which file each split reads: the shared data has validation, not test, and gsm8k a test sample only
SPLITS = {
    "strategyqa": {"train": "train", "test": "validation"},
    "commonsense_qa": {"train": "train", "test": "validation"},
    "gsm8k": {"train": "test_sample", "test": "test_sample"},
}


def test_readme_counts_match_the_files(shared_data):
    counts = readme_row_counts(shared_data)
    assert set(counts) == set(SPLITS) | {"commonsense_qa_palm"}  # a teacher's folder (tests/test_teacher_text.py)
    for folder, files in counts.items():
        for name, rows in files.items():
            assert len(read_jsonl(shared_data / folder / f"{name}.jsonl")) == rows, (folder, name)


def test_gsm8k_worked_solution_gives_the_number_after_hashes(shared_data):
    task = Task(task_cfg("gsm8k"))
    rows = read_jsonl(shared_data / "gsm8k" / "test_sample.jsonl")
    assert len(rows) == readme_row_counts(shared_data)["gsm8k"]["test_sample"]
    for index, row in enumerate(rows):
        # the solutions are full of other numbers; the final one after "####" is the answer
        assert task.extract_answer(row["answer"]) == number_after_hashes(row["answer"]), index


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_real_rows_round_trip(shared_data, name):
    cfg = task_cfg(name)
    cfg["data_dir"] = str(shared_data / name)
    cfg["source"]["splits"] = dict(SPLITS[name])
    task = Task(cfg)
    strict_cfg = task_cfg(name)
    strict_cfg["answer"]["fallback"] = False
    strict = Task(strict_cfg)

    expected_rows = readme_row_counts(shared_data)[name]
    seen_files = {}
    for split, file_name in SPLITS[name].items():
        examples = load_examples(task, cfg, split)
        rows = read_jsonl(shared_data / name / f"{file_name}.jsonl")
        assert len(examples) == len(rows)
        seen_files[file_name] = len(examples)
        for example, row in zip(examples, rows, strict=True):
            where = f"{name}/{file_name} {example.id}"
            # the gold answer read from the row, computed here from the raw schema
            if name == "strategyqa":
                assert example.answer == ("yes" if row["answer"] else "no"), where
                assert example.id == row["qid"], where
            elif name == "commonsense_qa":
                assert example.answer == row["answerKey"], where
                assert example.id == row["id"], where
            else:
                assert example.answer == number_after_hashes(row["answer"]), where
                assert example.rationale and "<<" not in example.rationale and "####" not in example.rationale

            target = task.target(example.rationale, example.answer)
            assert task.extract_answer(target, example) == example.answer, where
            # through "the answer is", not only thanks to the fallback
            assert strict.extract_answer(target, example) == example.answer, where

            prompt = task.prompt(example)
            assert " ".join(row["question"].split()) in " ".join(prompt.split()), where
            if name == "commonsense_qa":
                texts = [t for t in row["choices"]["text"] if t]
                assert len(texts) == 5, where
                for label, text in zip(row["choices"]["label"], row["choices"]["text"]):
                    if text:
                        assert f"({label}) {text}" in prompt, where
                assert set(example.choices) >= set("ABCDE"), where
    assert seen_files == expected_rows


def test_commonsense_qa_choice_texts_score_as_their_letter(shared_data):
    """A student that answers with a choice's words is scored as if it had given the letter."""
    cfg = task_cfg("commonsense_qa")
    cfg["data_dir"] = str(shared_data / "commonsense_qa")
    cfg["source"]["splits"] = dict(SPLITS["commonsense_qa"])
    task = Task(cfg)
    checked = 0
    for split in ("train", "test"):
        for example in load_examples(task, cfg, split):
            texts = [t for t in example.choices.values() if t]
            for label, text in example.choices.items():
                if not text or texts.count(text) > 1:  # a few rows repeat a choice: ambiguous
                    continue
                assert task.extract_answer(f"The answer is {text}.", example) == label, (example.id, text)
                checked += 1
    assert checked > 3500


@pytest.mark.parametrize("answer_type, text, only", [
    ("choice", "(a)", True), ("choice", "A) fridge", True), ("choice", "A person needs a fridge.", False),
    ("choice", "(A) because it is cold", False), ("choice", "(F)", False), ("number", "16.", True),
    ("number", "12 + 7 = 19.", False), ("yesno", "Yes.", True), ("yesno", "Yes, because birds fly.", False)])
def test_an_answer_alone_is_told_from_reasoning(answer_type, text, only):
    assert answer_only(text, answer_type, {"A": "fridge", "B": "oven"}) is only
