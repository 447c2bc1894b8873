"""Sequential vs concurrent teacher collection against the fake OpenAI server (tests/fake_openai.py).

Buys N chain-sum annotations from a server that takes LATENCY seconds per request, once with
``max_concurrency=1`` and once with ``max_concurrency=C``, each with a fresh cache, and prints both
wall times and the speed-up::

    python bench/teacher_concurrency.py [--n 200] [--latency 0.2] [--concurrency 16]
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


def collect_once(data, n: int, latency_s: float, concurrency: int) -> tuple[float, int, int, int]:
    """(wall seconds, annotations, requests sent, most in flight) for one fresh-cache collection. The
    pool repeats a few questions: a repeat is served from the cache once its twin was answered."""
    teacher = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "teacher" / "openai.yaml"), resolve=True)
    with FakeOpenAI(latency_s=latency_s) as server, tempfile.TemporaryDirectory() as cache_dir:
        teacher.update(base_url=server.base_url, api_key_env=KEY_ENV, max_concurrency=concurrency)
        collector = build_collector(teacher, {"max_queries": n}, data.task, cache_dir=Path(cache_dir), progress=False)
        order = get_selector("random")(data.train, random.Random(0))
        start = time.perf_counter()
        annotations = collector.collect(order)
        wall = time.perf_counter() - start
        hits = sum(a.meta["cache_hit"] for a in annotations)
        assert len(annotations) == n and server.count == n - hits, (len(annotations), server.count, hits)
        return wall, len(annotations), server.count, server.max_in_flight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="annotations to buy")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request at the server")
    parser.add_argument("--concurrency", type=int, default=16, help="max_concurrency of the concurrent run")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "sk-bench-fake"
    task_cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    data = load_task_data({**task_cfg, "train_size": max(args.n, 1), "test_size": 1})

    print(f"{args.n} annotations, {args.latency * 1000:.0f} ms per request, fresh cache each run")
    rows = []
    for concurrency in (1, args.concurrency):
        wall, got, sent, in_flight = collect_once(data, args.n, args.latency, concurrency)
        rows.append(wall)
        print(f"  max_concurrency={concurrency:<3d} {wall:7.2f} s  {got / wall:6.1f} annotations/s  "
              f"{sent} requests, at most {in_flight} in flight (latency floor {sent * args.latency / concurrency:.2f} s)")
    print(f"speed-up: {rows[0] / rows[1]:.1f}x with max_concurrency={args.concurrency}")


if __name__ == "__main__":
    main()
