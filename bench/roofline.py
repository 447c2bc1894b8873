"""This machine's matmul throughput at a model's own shapes, in the run's dtype, measured in the calling process.

A bench counts the matmuls its model runs (every ``nn.Linear`` forward, and with ``backward=True`` the two of
its backward: the input gradient and the weight gradient) with :class:`MatmulCounter`, then times each
distinct shape alone with :func:`measure`. The sum is the time the same matmuls take at this machine's
throughput (the roofline time); the bench's own time against it is its share of the roofline. Measured in
the same process, under the same threads and the same machine load as the bench, so the share holds up on
a shared machine where absolute times swing. Attention's two batched matmuls (scores and values) are not
``nn.Linear``: they are counted in neither (2% of a SmolLM2-135M step at 56 tokens, more at longer lengths).

Run alone it prints the table for a SmolLM2-135M training step (random weights, the real shapes)::

    python bench/roofline.py [--tokens 448] [--precision bf16-mixed|32-true] [--threads N] [--clock wall|cpu]
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import torch

# (kind, m, k, n): "fwd" is x[m, k] @ W[n, k].T, "dgrad" g[m, n] @ W[n, k], "wgrad" g[m, n].T @ x[m, k]
Shape = tuple[str, int, int, int]
DTYPES = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16, "32-true": torch.float32}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def use_clock(name: str) -> None:
    """``cpu``: the process's CPU seconds, not wall seconds. With one torch thread a step's CPU time leaves out
    the time other jobs on a shared machine hold the core, so it swings far less; with more threads it also
    counts OpenMP threads spinning while they wait, so it is for ``--threads 1``."""
    global _clock
    _clock = CLOCKS[name]


def now() -> float:
    """The clock every bench times with (:func:`use_clock`)."""
    return _clock()


def flops(shape: Shape) -> int:
    _, m, k, n = shape
    return 2 * m * k * n


class MatmulCounter:
    """Counts the shapes of every ``nn.Linear`` call of ``model`` while in a ``with`` block (a forward hook
    on each, so LoRA layers, a sliced LM head and generation's KV-cache steps are counted as run)."""

    def __init__(self, model: torch.nn.Module, backward: bool = False, active: bool = True):
        self.model, self.backward, self.active = model, backward, active
        self.shapes: Counter[Shape] = Counter()
        self._handles: list = []

    def __enter__(self) -> MatmulCounter:
        if self.active:  # inactive: counts nothing, so that a bench's later rounds run without hooks
            self._handles = [m.register_forward_hook(self._hook) for m in self.model.modules()
                             if isinstance(m, torch.nn.Linear)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, module: torch.nn.Linear, args, output) -> None:
        x = args[0]
        m, k, n = x.numel() // x.shape[-1], module.in_features, module.out_features
        self.shapes["fwd", m, k, n] += 1
        if self.backward and torch.is_grad_enabled():
            if x.requires_grad:  # the gradient flows on into the layer below
                self.shapes["dgrad", m, k, n] += 1
            if module.weight.requires_grad:
                self.shapes["wgrad", m, k, n] += 1

    def per_call(self, calls: int) -> Counter[Shape]:
        """The shapes of one of ``calls`` identical calls (steps) counted together."""
        return Counter({s: c // calls for s, c in self.shapes.items()})


def _call(shape: Shape, dtype: torch.dtype):
    """One matmul of ``shape`` as autograd runs it (the weight transposed in place), into a buffer of its own:
    a fresh output would time the kernel's page faults, which the allocator mostly spares a training loop."""
    kind, m, k, n = shape
    if kind == "fwd":
        a, b, out = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype).t(), torch.empty(m, n, dtype=dtype)
    elif kind == "dgrad":
        a, b, out = torch.randn(m, n, dtype=dtype), torch.randn(n, k, dtype=dtype), torch.empty(m, k, dtype=dtype)
    else:
        a, b, out = torch.randn(m, n, dtype=dtype).t(), torch.randn(m, k, dtype=dtype), torch.empty(n, k, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def seconds_per_call(shape: Shape, dtype: torch.dtype, min_seconds: float = 0.01) -> float:
    """Mean seconds of one matmul of ``shape`` over calls filling ``min_seconds`` (at least one), after an
    untimed one (oneDNN builds its kernel for the shape)."""
    call = _call(shape, dtype)
    with torch.no_grad():
        call()
        calls, start = 0, now()
        while calls < 1 or now() - start < min_seconds:
            call()
            calls += 1
        return (now() - start) / calls


@dataclass
class Roofline:
    flops: float  # of the counted matmuls
    seconds: float  # they take at the throughput measured, shape by shape
    dtype: torch.dtype

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds

    def describe(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        return f"{self.flops / 1e12:.3f} TFLOP of matmuls, {self.seconds:.3f} s at {self.flops_per_s / 1e12:.2f} TFLOP/s {name}"


def shape_seconds(shapes, dtype: torch.dtype, min_seconds: float = 0.01) -> dict[Shape, float]:
    """Seconds per call of each distinct shape, timed one after the other."""
    return {shape: seconds_per_call(shape, dtype, min_seconds) for shape in shapes}


def roofline(shapes: Counter[Shape], seconds: dict[Shape, float], dtype: torch.dtype) -> Roofline:
    """The time ``shapes`` (shape: calls) take at the per-call ``seconds`` measured for each."""
    return Roofline(float(sum(count * flops(shape) for shape, count in shapes.items())),
                    sum(count * seconds[shape] for shape, count in shapes.items()), dtype)


def measure(shapes: Counter[Shape], dtype: torch.dtype, min_seconds: float = 0.01) -> Roofline:
    """The time ``shapes`` take at this machine's throughput, each distinct shape timed once."""
    return roofline(shapes, shape_seconds(shapes, dtype, min_seconds), dtype)


class Rounds:
    """Side-by-side variants of a bench and their shares of the roofline: each variant's matmuls are counted on
    its first run (:meth:`count`), and after each round of all variants every counted shape is timed again
    (:meth:`end_round`), so that times and rooflines are medians over the same spells of machine load."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, backward: bool = False):
        self.model, self.dtype, self.backward = model, dtype, backward
        self.shapes: dict[str, Counter[Shape]] = {}
        self.seconds: dict[str, list[float]] = {}
        self.rooflines: dict[str, list[Roofline]] = {}

    @contextmanager
    def count(self, name: str, calls: int = 1):
        """Counts the matmuls of the block, the first time for ``name``, as ``calls`` alike calls (steps)."""
        with MatmulCounter(self.model, self.backward, active=name not in self.shapes) as counter:
            yield
        self.shapes.setdefault(name, counter.per_call(calls))

    def record(self, name: str, *seconds: float) -> None:
        self.seconds.setdefault(name, []).extend(seconds)

    def run(self, name: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, timed, its matmuls counted the first time ``name`` runs."""
        with self.count(name):
            start = now()
            out = fn(*args, **kwargs)
            self.record(name, now() - start)
        return out

    def end_round(self) -> None:
        seconds = shape_seconds(set().union(*self.shapes.values()), self.dtype)
        for name, shapes in self.shapes.items():
            self.rooflines.setdefault(name, []).append(roofline(shapes, seconds, self.dtype))

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def roofline(self, name: str) -> Roofline:
        """``name``'s matmuls at the median of the throughputs measured after each round."""
        rooflines = self.rooflines[name]
        return Roofline(rooflines[0].flops, statistics.median(r.seconds for r in rooflines), self.dtype)

    def share(self, name: str, of: str | None = None) -> float:
        """``name``'s share of the roofline of ``of``'s matmuls (its own by default): roofline / median time."""
        return self.roofline(of or name).seconds / self.median(name)

    def describe(self, name: str) -> str:
        roof = self.roofline(name)
        return (f"{roof.flops / self.median(name) / 1e12:.3g} TFLOP/s, {100 * self.share(name):4.1f}% of the "
                f"roofline ({roof.flops_per_s / 1e12:.3g})")


def table(shapes: Counter[Shape], dtype: torch.dtype) -> list[str]:
    """One line per distinct shape: its throughput and its share of the total roofline time."""
    times = {shape: seconds_per_call(shape, dtype, min_seconds=0.2) for shape in shapes}
    total = sum(shapes[s] * t for s, t in times.items())
    return [f"  {kind:<5s} {m:>6d} x {k:>5d} x {n:>6d}  x{shapes[kind, m, k, n]:<3d} "
            f"{flops((kind, m, k, n)) / t / 1e12:5.2f} TFLOP/s  {100 * shapes[kind, m, k, n] * t / total:5.1f}% of the time"
            for (kind, m, k, n), t in sorted(times.items(), key=lambda item: (item[0][2], item[0][3], item[0][0]))]


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import smollm2_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=448, help="rows of every matmul: batch x length (8 x 56)")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="bf16-mixed")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_clock(args.clock)
    config = smollm2_config()
    h, i, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads * config.head_dim
    per_layer = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o gate up down
    shapes: Counter[Shape] = Counter()
    for kind in ("fwd", "dgrad", "wgrad"):
        for k, n in per_layer:
            shapes[kind, args.tokens, k, n] += config.num_hidden_layers
        shapes[kind, args.tokens, h, config.vocab_size] += 1  # the LM head
    dtype = DTYPES[args.precision]
    print(f"SmolLM2-135M training step at {args.tokens} tokens, {dtype}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})")
    print("\n".join(table(shapes, dtype)))
    print(f"roofline: {measure(shapes, dtype).describe()}")


if __name__ == "__main__":
    main()
