"""``tailkd-rescore RUN_DIR [RUN_DIR ...] --ta NAME``: score the teacher annotations finished TAiL runs
bought with another TA, without buying or training anything again.

Which TA spots a teacher's wrong answers best is a question about the annotations, not the student: a
full ``tail`` run per TA retrains the student for nothing. This reads each run's task settings and
``annotations.jsonl``, scores every annotation as TAiL's TA-on-teacher signal does (the same
``build_ta`` and tokenizer texts), and prints the new TA's AUROC against gold pooled over the runs, with
a 95% bootstrap interval; where the runs measured TA-on-teacher themselves, also their TA's AUROC on
the same annotations and the paired difference. Every annotation's scores go to ``--out`` (JSON lines).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

from omegaconf import OmegaConf

from tailkd.config import config_dir
from tailkd.console import quiet
from tailkd.errors import ConfigError, TailkdError
from tailkd.jsonl import read_rows

log = logging.getLogger("tailkd")


def ta_config(name: str, overrides: list[str]) -> dict:
    """A ``conf/ta/`` preset by name, or a YAML file, with ``key=value`` overrides."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else config_dir() / "ta" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / "ta").glob("*.yaml"))
        raise ConfigError(f"--ta {name}: no such TA preset or file; presets: {known}")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def rescore(run_dirs: list[Path], ta_cfg: dict, device: str = "cpu", cache_dir: Path | None = None) -> list[dict]:
    """One row per annotation of every run: its gold verdict, the new TA's scores and the run's own."""
    from tailkd.methods.annotate import default_cache_dir
    from tailkd.methods.pipeline import inference_precision, training_texts
    from tailkd.signals.assistant import Attempt
    from tailkd.signals.ta import build_ta
    from tailkd.tasks import load_task_data

    runs = []
    for run in run_dirs:
        if not (run / "config_resolved.yaml").is_file() or not (run / "annotations.jsonl").is_file():
            raise ConfigError(f"{run} is not a finished tailkd run (it needs config_resolved.yaml and annotations.jsonl)")
        runs.append((run, OmegaConf.to_container(OmegaConf.load(run / "config_resolved.yaml"), resolve=True)))
    tasks = {json.dumps(cfg["task"], sort_keys=True) for _, cfg in runs}
    if len(tasks) > 1:  # the TA's tokenizer texts and prompts come from the task
        raise ConfigError("the runs were made with different task settings; rescore each task's runs separately")
    data = load_task_data(runs[0][1]["task"])
    examples = {e.id: e for e in data.train}
    ta = build_ta(ta_cfg, data.task, cache_dir or default_cache_dir(), training_texts(data), device=device)
    rows = []
    for run, cfg in runs:
        annotations = [a for a in read_rows(run / "annotations.jsonl") if a["example_id"] in examples]
        own = {(r["id"], r.get("sample_index", 0)): (r.get("ta_teacher") or {}).get("confidence")
               for r in read_rows(run / "signals.jsonl", missing_ok=True)}
        # under the run's autocast, as the run scored them: the same TA gives the run's own numbers
        precision = inference_precision(OmegaConf.create(cfg), ta.model) if ta.model is not None else nullcontext()
        with precision:
            scores = ta.score([Attempt(examples[a["example_id"]], a["rationale"], a["answer"]) for a in annotations])
        for a, score in zip(annotations, scores):
            key = (a["example_id"], a.get("sample_index", 0))
            rows.append({"run": str(run), "seed": cfg.get("seed"), "id": key[0], "sample_index": key[1],
                         "teacher_answer": a["answer"], "teacher_correct": a["answer"] == examples[key[0]].answer,
                         "confidence": score.confidence, "mean_logprob": score.mean_logprob,
                         "answer_prob": score.answer_prob, "run_confidence": own.get(key)})
    return rows


def summary(rows: list[dict], name: str) -> list[str]:
    from tailkd.report.pooled import auroc_with_interval, paired_auroc_difference

    labels = [r["teacher_correct"] for r in rows]
    lines = [f"{len(rows)} annotations ({sum(labels)} right) from {len({r['run'] for r in rows})} runs"]
    new = auroc_with_interval([r["confidence"] for r in rows], labels)
    if new is None:
        return lines + ["every annotation is right, or every one wrong: no AUROC"]
    lines.append(f"AUROC of {name}'s confidence in the teacher: {new[0]:.3f} [{new[1]:.3f}, {new[2]:.3f}]")
    if all(r["run_confidence"] is not None for r in rows):
        own = [r["run_confidence"] for r in rows]
        old = auroc_with_interval(own, labels)
        diff = paired_auroc_difference([r["confidence"] for r in rows], own, labels)
        lines.append(f"AUROC of the runs' own TA on the same annotations: {old[0]:.3f} [{old[1]:.3f}, {old[2]:.3f}]")
        lines.append(f"{name} minus the runs' TA, paired over the annotations: {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tailkd-rescore", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished tailkd run folders (each with annotations.jsonl)")
    parser.add_argument("--ta", required=True, help="a conf/ta preset name (qwen2.5-coder-1.5b-embedded, ...) or a YAML file")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the TA config (batch_size=4)")
    parser.add_argument("--out", type=Path, default=None, help="where the per-annotation scores go (default: rescored-<ta>.jsonl)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet()
    try:
        cfg = ta_config(args.ta, args.set)
        rows = rescore(args.runs, cfg, device=args.device)
    except TailkdError as err:
        sys.exit(f"tailkd-rescore: {err}")
    out = args.out or Path(f"rescored-{cfg.get('name', Path(args.ta).stem)}.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for line in summary(rows, cfg.get("name", args.ta)):
        print(line)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
