"""Where the Hydra configs live, and checks that need more than one config group to make sense."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tailkd.errors import ConfigError


def config_dir() -> Path:
    """The repository's ``conf/`` in a source checkout (editable install), else the copy packaged in
    the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"tailkd's configs are missing: neither {here.parents[1] / 'conf'} nor {here / 'conf'} exists")


def validate(cfg: DictConfig) -> None:
    """Impossible settings, named before anything is loaded or paid for."""
    checks = [
        (cfg.trainer.batch_size >= 1, f"trainer.batch_size must be >= 1 (got {cfg.trainer.batch_size})"),
        (cfg.trainer.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1 (got {cfg.trainer.eval_batch_size})"),
        (cfg.trainer.lr > 0, f"trainer.lr must be positive (got {cfg.trainer.lr})"),
        (0 <= cfg.trainer.warmup_ratio < 1, f"trainer.warmup_ratio must be in [0, 1) (got {cfg.trainer.warmup_ratio})"),
        (str(cfg.student.max_length) == "auto" or (isinstance(cfg.student.max_length, int) and cfg.student.max_length >= 16),
         f"student.max_length must be auto or a number >= 16 (got {cfg.student.max_length})"),
        (cfg.student.get("truncation", "keep_answer") in ("keep_answer", "drop"),
         f"student.truncation must be keep_answer or drop (got {cfg.student.get('truncation')})"),
        (cfg.task.max_new_tokens >= 1, f"task.max_new_tokens must be >= 1 (got {cfg.task.max_new_tokens})"),
    ]
    every = cfg.trainer.get("checkpoint_every_n_steps")
    checks.append((every is None or (isinstance(every, int) and every >= 1),
                   f"trainer.checkpoint_every_n_steps must be a positive integer or null (got {every})"))
    threads = cfg.trainer.get("num_threads")
    checks.append((threads is None or threads >= 1, f"trainer.num_threads must be >= 1 or null (got {threads})"))
    for field in ("train_size", "test_size"):
        value = cfg.task.get(field)
        checks.append((value is None or value >= 1, f"task.{field} must be >= 1 or null (got {value})"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    from tailkd.models.student import check_student_cfg  # imports torch: only when training

    check_student_cfg(cfg.student)
