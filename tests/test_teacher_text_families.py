"""Teacher text from other model families (tailkd.tasks.teacher_text): the shapes Llama-2/3 chat,
Mistral/Mixtral, Gemma, Phi-3, Qwen2.5, DeepSeek-R1, Claude, GPT-4o, Flan-T5, Falcon and Vicuna write
when they answer a CommonsenseQA, StrategyQA or GSM8K question, zero-shot or few-shot. Written for these
tests in the shapes of public recorded generations (lm-eval sample logs, released model outputs), not
copied from them. Each case names the answer it concludes with, or None where the text genuinely hedges,
never concludes or says no answer: a wrong answer is worse than none."""

from __future__ import annotations

import pytest
from test_teacher_text import CQA, GSM, SQA

ROW = {"id": "f1", "question": "Where would you put a lamp you read by?",
       "choices": {"label": list("ABCDE"), "text": ["office", "desk", "bedroom", "ceiling", "house"]},
       "answerKey": "B"}
EXAMPLE = CQA.example_from_row(ROW, "f1", "test")
OPTIONS = ("A) office - too general\nB) desk - where people read\nC) bedroom - a whole room\n"
           "D) ceiling - not for reading\nE) house - too general")

CHOICE = [
    ("llama3-correct-answer-is", "The correct answer is B) desk.\n\nExplanation: A lamp you read by sits close to "
     "you, on a desk. An office (A) is too broad.", "B"),
    ("gpt4o-bold-answer-label", "**Answer:** B) desk\n\n**Explanation:** People read at a desk.", "B"),
    ("gpt4o-bold-letter-dot", "The correct answer is **B. desk**. You read at a desk.", "B"),
    ("mistral-letter-colon-text", "The answer is B: desk. Here's why: a desk is where one reads.", "B"),
    ("lm-eval-answer-paren", "Answer: (B)", "B"),
    ("vicuna-i-would-choose", "A reading lamp needs to be near the book. I would choose B, desk, since that is "
     "where people read.", "B"),
    ("phi3-option-is-correct", "A reading lamp should be near where you read. Option B is correct.", "B"),
    ("bare-letter-last-line", "A lamp on the ceiling is a fixture, not one you read by.\n\nB", "B"),
    ("markdown-heading", "Reading needs light close by.\n\n## Answer\nB) desk", "B"),
    ("latex-boxed-text", "A lamp you read by goes on a desk.\n\n$$\\boxed{\\text{B}}$$", "B"),
    ("letter-dot-text-last-line", "A lamp for reading sits close at hand.\n\nB. desk", "B"),
    ("answer-is-because", "The answer is B because a desk is where you read.", "B"),
    ("claude-options-then-heading", "Let's look at each option:\n\n" + OPTIONS + "\n\n### Final Answer\nB) desk", "B"),
    ("options-then-plain-conclusion", "Let's look at each option:\n\n" + OPTIONS + "\n\nSo a reading lamp "
     "belongs on a desk.", "B"),
    ("options-never-concluded", "Let's look at each option:\n\n" + OPTIONS, None),
    ("claude-options-then-best", "Let's look at each option:\n\n" + OPTIONS + "\n\nThe best answer is **B) desk**.",
     "B"),
    ("claude-others-after", "The best answer is **B) desk**.\n\nThe other options are less fitting: A) office is "
     "too broad, C) bedroom is a whole room.", "B"),
    ("letter-is-the-correct-answer", "B is the correct answer. People read there, while an office is too broad.",
     "B"),
    ("r1-think-then-reply", "<think>\nMaybe the answer is C, bedroom? Wait, a desk is more specific.\n</think>\n\n"
     "The correct answer is **B) desk**.\n\n**Explanation:** A desk is where one reads.", "B"),
    ("r1-think-unfinished", "<think>\nA lamp you read by. Maybe the answer is C, bedroom. Wait, but a desk is more "
     "specific. Let me check the other options. Office could", None),
    ("qwen-answer-boxed", "The answer is: \\boxed{B}", "B"),
    ("claude-answer-tags", "<thinking>\nMaybe the answer is C, bedroom? No: a desk is where one reads.\n</thinking>\n"
     "<answer>B</answer>", "B"),
    ("grpo-reasoning-answer-tags", "<reasoning>\nMaybe the answer is C. No, people read at a desk.\n</reasoning>\n"
     "<answer>\nB\n</answer>", "B"),
    ("flan-t5-choice-text", "desk", "B"),
    ("flan-t5-label", "(B)", "B"),
    ("lowercase-letter", "People read at a desk. So the answer is b.", "B"),
    ("gemma-bold-first", "**B) desk**\n\nHere's why: people read at desks.", "B"),
    ("answer-then-other-option", "Answer: B\n\nExplanation: While option A (office) might have a lamp, the desk is "
     "the most specific place.", "B"),
    ("inspect-answer-dollar", "A lamp goes on a desk.\nANSWER: $B$", "B"),
    ("bold-label-bold-letter", "A lamp goes on a desk.\n\n**ANSWER**: **B**", "B"),
    ("ranked-then-concluded", "Ranking the options from most to least likely:\n1. B) desk\n2. C) bedroom\n"
     "3. A) office\n\nThe most likely answer is B) desk.", "B"),
    ("ranked-never-concluded", "Ranking the options from most to least likely:\n1. B) desk\n2. C) bedroom\n"
     "3. A) office", None),
    ("alpaca-next-instruction", "A lamp you read by stands on a desk. So the answer is (b).\n### Instruction:\n"
     "Where do you keep milk?\n### Response:\nThe answer is (a).", "B"),
    ("llama2-next-inst", "So the answer is (b).</s><s>[INST] Where is milk kept? [/INST] The answer is (a).", "B"),
    ("vicuna-next-user", "The answer is (b).\nUSER: Where is milk kept?\nASSISTANT: The answer is (a).", "B"),
    ("hedge-could-be", "The answer could be A or C.", None),
    ("hedge-either", "I'm not sure; it's either B or D.", None),
    ("hedge-two-labelled", "The answer is B) desk or C) bedroom.", None),
    ("none-fit", "None of the options really fit this question.", None),
]

YESNO = [
    ("llama2-sure-heres-my-answer", "Sure! Here's my answer:\n\nNo, Aristotle did not use a laptop. Laptops were "
     "invented in the 20th century.", "no"),
    ("gpt4o-bold-answer-label", "**Answer:** No\n\n**Explanation:** Aristotle died in 322 BC.", "no"),
    ("answer-is-bold", "Aristotle died in 322 BC, long before laptops. The answer is: **No**.", "no"),
    ("answer-false", "Answer: False", "no"),
    ("answer-to-the-question-is", "Therefore, the answer to the question \"Could Aristotle use a laptop?\" is no. "
     "Laptops were invented in the 20th century.", "no"),
    ("gemma-bold-first", "**No.**\n\nHere's why: Aristotle died in 322 BC.", "no"),
    ("r1-think-then-reply", "<think>\nLaptops appeared in the 1980s. Yes? No, he died long before.\n</think>\n\n"
     "**Answer:** No. Aristotle died in 322 BC.", "no"),
    ("r1-think-unfinished", "<think>\nAristotle died in 322 BC. So the answer is no. But wait, maybe the question "
     "means", None),
    ("llama31-boxed-text", "Aristotle lived in ancient Greece.\n\nThe final answer is: $\\boxed{\\text{No}}$", "no"),
    ("phi3-first-and-last", "No, it is unlikely that Aristotle used a laptop.\n\nAnswer: No", "no"),
    ("flan-t5-bare", "no", "no"),
    ("exclaimed-first", "Yes! Hydrogen has atomic number 1, so it is the lightest element.", "yes"),
    ("markdown-heading", "Aristotle died in 322 BC.\n\n## Answer\nNo", "no"),
    ("i-would-say", "I would say yes, because hydrogen is the lightest element.", "yes"),
    ("label-over-reasoning", "Answer: Hydrogen has no neutrons in its common isotope, and it is the lightest "
     "element. Yes.", "yes"),
    ("definitive-no", "Aristotle died in 322 BC.\n\nSo, the answer is a definitive no.", "no"),
    ("paraphrase-without-yes-no", "Answer: It is not possible for Aristotle to have used a laptop.", None),
    ("llama2-refusal", "I apologize, but I cannot provide an answer to that question as it is not factually "
     "coherent.", None),
    ("hedge-could-be-either", "The answer could be yes or no depending on the definition.", None),
    ("hedge-yes-and-no", "Yes and no.", None),
]

NUMBER = [
    ("gsm8k-hashes", "She sells 16 - 7 = 9 eggs at $2 each: 9 * 2 = 18.\n#### 18", "18"),
    ("gsm8k-hashes-then-invented", "Janet makes 9 * 2 = 18 dollars a day.\n#### 18\n\nA robe takes 2 bolts of blue "
     "fiber and half that much white fiber.", "18"),
    ("minerva-final-answer", "She makes 9 * 2 = $18.\nFinal Answer: The final answer is 18. I hope it is correct.",
     "18"),
    ("llama31-steps-boxed", "## Step 1: Eggs left\n16 - 3 - 4 = 9.\n\n## Step 2: Money\n9 * 2 = 18.\n\n"
     "The final answer is: $\\boxed{18}$", "18"),
    ("bold-answer-dollars", "Janet sells 9 eggs at $2 each.\n\n**Answer:** $18", "18"),
    ("bold-final-answer-unit", "She makes 9 * $2 = $18.\n\n**Final Answer:** 18 dollars", "18"),
    ("no-statement-last-number", "Janet sells 16 - 3 - 4 = 9 eggs and makes 9 * 2 = $18 every day.", "18"),
    ("answer-cents", "The answer is $18.00.", "18"),
    ("answer-thousands", "Answer: 1,250", "1250"),
    ("r1-think-boxed-display", "<think>\n16 - 3 - 4 = 9, 9 * 2 = 18. Wait, is it 13? No, 9.\n</think>\n\nJanet "
     "sells 9 eggs a day, so she makes **$18**.\n\n**Final Answer**\n\\[\n\\boxed{18}\n\\]", "18"),
    ("r1-think-unfinished", "<think>\nJanet has 16 eggs. 16 - 3 = 13. 13 - 4 = 9. 9 * 2 = 18. Hmm, wait, maybe "
     "she also", None),
    ("grpo-answer-tags", "<reasoning>\n16 - 3 - 4 = 9 eggs, 9 * 2 = 18. Is the answer 9? No, dollars.\n"
     "</reasoning>\n<answer>\n18\n</answer>", "18"),
    ("label-over-equation", "Answer: Janet sells 16 - 3 - 4 = 9 eggs. She makes 9 * 2 = $18 every day.", "18"),
    ("label-over-reasoning", "Answer: Janet has 16 eggs. She eats 3 and bakes with 4, so she sells 9 for $2 each, "
     "making $18.", "18"),
    ("escaped-dollars", "She sells 9 eggs for \\$2 each, so she makes \\$18.", "18"),
    ("latex-inline-boxed", "\\[ 9 \\times 2 = 18 \\]\n\nThus, Janet makes \\(\\boxed{18}\\) dollars.", "18"),
    ("percent", "So the discount is 25%. The answer is 25%.", "25"),
    ("next-human-turn", "Janet makes $18.\n\nHuman: What is 2 + 2?\nAssistant: 4", "18"),
    ("hedge-either", "The answer is either 15 or 16.", None),
]

CASES = ([pytest.param(CQA, text, answer, id=f"choice-{name}") for name, text, answer in CHOICE]
         + [pytest.param(SQA, text, answer, id=f"yesno-{name}") for name, text, answer in YESNO]
         + [pytest.param(GSM, text, answer, id=f"number-{name}") for name, text, answer in NUMBER])


@pytest.mark.parametrize("task, text, answer", CASES)
def test_other_families_read_to_the_answer_they_conclude_with(task, text, answer):
    reading = task.read_teacher(text, EXAMPLE if task is CQA else None)
    assert reading.answer == answer, reading
    if answer is not None:  # what a student learns from carries no tag, no draft, no next turn
        marks = ("<answer>", "</think>", "<reasoning>", "<thinking>", "### Instruction", "[INST]", "USER:")
        assert not any(mark in (reading.rationale or "") for mark in marks)
