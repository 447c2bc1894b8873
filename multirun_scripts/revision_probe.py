"""What a live teacher writes when ELAD asks it to revise: revision prompts (and fresh questions, for
comparison) for the student explanations an ELAD run recorded, without training anything.

    python multirun_scripts/revision_probe.py RUN/round3/selected.jsonl --n 16 \
        task=commonsense_qa task.data_dir=../shared/data/commonsense_qa_palm task.train_size=null \
        teacher=qwen-1.5b-embedded-csqa-fewshot teacher.dtype=bfloat16 teacher.batch_size=8

Per prompt (the method config's ``revision_prompt``, then each ``--prompt`` file): how many revisions
conclude with the student's own answer, how many are the answer line alone, how many are right; and the
teacher's fresh answers to the same questions. Answers go through the teacher cache like any run's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tailkd.config import config_dir
from tailkd.methods.annotate import cache_dir
from tailkd.methods.elad import Elad
from tailkd.schema import register
from tailkd.tasks.registry import load_task_data
from tailkd.teachers import build_collector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("selected", type=Path, help="an ELAD run's roundN/selected.jsonl")
    parser.add_argument("--n", type=int, default=16, help="explanations with at least two steps to probe")
    parser.add_argument("--prompt", type=Path, action="append", default=[], help="another revision prompt (jinja)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides: the task and the teacher")
    args = parser.parse_intermixed_args()
    register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["method=elad", *args.overrides])
    data = load_task_data(OmegaConf.to_container(cfg.task, resolve=True))
    examples = {e.id: e for e in data.train}
    collector = build_collector(OmegaConf.to_container(cfg.teacher, resolve=True), {"max_queries": None},
                                data.task, cache_dir=cache_dir(cfg))
    collector.backend.prepare(data.task, data.train)
    rows = [json.loads(line) for line in args.selected.open()]
    rows = [r for r in rows if len(r["steps"]) >= 2][: args.n]
    for r in rows:
        collector.examples[r["id"]] = examples[r["id"]]
    prompts = {"method.revision_prompt": cfg.method.revision_prompt} | {str(p): p.read_text() for p in args.prompt}
    right = sum(r["final_answer"] == examples[r["id"]].answer for r in rows)
    print(f"{len(rows)} explanations from {args.selected}; the student right on {right}")
    for name, prompt in prompts.items():
        elad = Elad(revision_prompt=prompt)
        requests = [elad.revision_request(collector, examples[r["id"]], r["explanation"]) for r in rows]
        revised = collector.buy(requests)
        report(name, rows, revised, examples)
    fresh = collector.buy([collector.requests_for(examples[r["id"]])[0] for r in rows])
    report("fresh (teacher.prompt)", rows, fresh, examples)


def report(name, rows, annotations, examples) -> None:
    by_id = {a.example_id: a for a in annotations}
    pairs = [(r, by_id[r["id"]]) for r in rows if r["id"] in by_id]
    agree = sum(a.answer == r["final_answer"] for r, a in pairs)
    alone = sum(len((a.rationale or "").strip()) < 5 for _, a in pairs)
    right = sum(a.answer == examples[r["id"]].answer for r, a in pairs)
    tokens = sum(a.output_tokens for _, a in pairs) / max(len(pairs), 1)
    print(f"{name}: {len(pairs)} answers, {agree} with the student's answer, {alone} the answer line alone, "
          f"{right} right, {tokens:.0f} tokens an answer")


if __name__ == "__main__":
    main()
