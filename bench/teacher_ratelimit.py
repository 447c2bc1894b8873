"""Collecting under a server's rate limit: sequential vs concurrent vs rate-limit-aware concurrent.

The fake OpenAI server (tests/fake_openai.py) accepts ``--limit`` requests per ``--window`` seconds
(a per-minute limit, scaled down so the bench takes seconds) and answers 429 with Retry-After past it.
Three fresh-cache collections of N annotations, one after the other: one request at a time;
``--concurrency`` at once, blind to the limit (headers ignored, nothing configured); and the same
concurrency with ``max_requests_per_minute`` set and the ``x-ratelimit-*`` headers read. Prints
requests sent, 429s met and wall time side by side::

    python bench/teacher_ratelimit.py [--n 200] [--limit 40] [--window 1.0] [--latency 0.05] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tailkd.tasks import load_task_data  # noqa: E402
from tailkd.teachers import build_collector, get_selector  # noqa: E402

from fake_openai import FakeOpenAI  # noqa: E402

KEY_ENV = "TAILKD_BENCH_FAKE_KEY"  # a key for the fake server only; a real OPENAI_API_KEY is not touched


def collect(data, args, **teacher_changes) -> tuple[float, int, int, int]:
    """(wall seconds, annotations, requests sent, 429s met) for one fresh-cache collection."""
    teacher = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "teacher" / "openai.yaml"), resolve=True)
    with FakeOpenAI(latency_s=args.latency, rpm_limit=args.limit, window_s=args.window) as server, \
            tempfile.TemporaryDirectory() as cache_dir:
        teacher.update(base_url=server.base_url, api_key_env=KEY_ENV,
                       retry={"max_attempts": 50, "base_delay_s": 0.05, "max_delay_s": args.window},
                       **teacher_changes)
        collector = build_collector(teacher, {"max_queries": args.n}, data.task, cache_dir=Path(cache_dir),
                                    progress=False)
        start = time.perf_counter()
        annotations = collector.collect(get_selector("random")(data.train, random.Random(0)))
        return time.perf_counter() - start, len(annotations), server.count, server.rate_limited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="annotations to buy")
    parser.add_argument("--limit", type=int, default=40, help="requests the server accepts per window")
    parser.add_argument("--window", type=float, default=1.0, help="the server's window, seconds (a scaled minute)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request at the server")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    os.environ[KEY_ENV] = "sk-bench-fake"
    task_cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    data = load_task_data({**task_cfg, "train_size": max(args.n, 1), "test_size": 1})
    floor = args.n / args.limit * args.window
    print(f"{args.n} annotations, server limit {args.limit} requests per {args.window:g} s (floor {floor:.1f} s), "
          f"{args.latency * 1000:.0f} ms per request")
    variants = {
        "sequential": {"max_concurrency": 1, "rate_limit_headers": False},
        f"concurrent x{args.concurrency}, blind": {"max_concurrency": args.concurrency, "rate_limit_headers": False},
        f"concurrent x{args.concurrency}, rate-limit aware": {
            "max_concurrency": args.concurrency, "max_requests_per_minute": args.limit,
            "rate_limit_window_s": args.window, "rate_limit_headers": True},
    }
    for name, changes in variants.items():
        wall, got, sent, limited = collect(data, args, **changes)
        print(f"  {name:<36} {wall:7.2f} s  {got} annotations  {sent} requests sent  {limited} x 429")


if __name__ == "__main__":
    main()
