"""PNG plots for the report: accuracy vs teacher budget per method, accuracy vs teacher spend with the
round-by-round curves of active methods (ELAD), per-signal AUROC."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from tailkd.report.aggregate import BUDGET_KEYS, Group, label
from tailkd.report.runs import is_method_key, is_signal_key


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window on a cluster node
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_budget(groups: list[Group], keys: list[str], metric: str, path: Path) -> Path | None:
    """One line per method (with its signals), one panel per everything else that varies (task, teacher
    error rate, student, ...); error bars are the std over seeds."""
    line_keys = [k for k in keys if k == "method" or is_signal_key(k) or is_method_key(k)]
    panel_keys = [k for k in keys if k not in BUDGET_KEYS and k not in line_keys]
    panels: dict[str, dict[str, list[Group]]] = defaultdict(lambda: defaultdict(list))
    for g in groups:
        if not math.isnan(g.mean(metric)):
            panel = label(g, panel_keys) or g.setting.get("task", "")
            panels[panel][label(g, line_keys) or g.setting.get("method", "")].append(g)
    if not panels:
        return None
    plt = _pyplot()
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (task, lines) in zip(axes.flat, sorted(panels.items())):
        for name, members in sorted(lines.items()):
            members = sorted(members, key=Group.budget)
            stds = [0.0 if math.isnan(g.std(metric)) else g.std(metric) for g in members]
            ax.errorbar([g.budget() for g in members], [g.mean(metric) for g in members], yerr=stds,
                        marker="o", capsize=3, label=name)
        ax.set_title(task)
        ax.set_xlabel("teacher budget (queries)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def spend_key(groups: list[Group]) -> str:
    """What the spend axis counts: USD where any run accounted money, else queries. A local or recorded
    teacher costs nothing an answer, and in USD every round of every run would sit at 0."""
    paid = any(float(r.results.get("teacher_cost_usd") or 0.0) > 0 for g in groups for r in g.runs)
    return "teacher_cost_usd" if paid else "teacher_queries"


def spend_curves(groups: list[Group], keys: list[str], metric: str,
                 spend: str = "teacher_cost_usd") -> dict[str, dict[str, list[tuple[float, float]]]] | None:
    """Panel -> line -> (spend, accuracy) points; None without any run that reports ``rounds``. A run
    that reports ``rounds`` (ELAD) is a curve, its round-by-round points averaged over the seeds tested
    after that round; any other run is one point at its final spend."""
    panel_keys = [k for k in keys if k not in BUDGET_KEYS and k != "method" and not is_signal_key(k)
                  and not is_method_key(k)]
    line_keys = [k for k in keys if k not in panel_keys and k not in BUDGET_KEYS]
    if not any(r.results.get("rounds") for g in groups for r in g.runs):
        return None
    # a line's name: the method and only the line settings that differ, short ("selection=elad")
    line_keys = [k for k in line_keys if k == "method" or len({g.setting.get(k, "") for g in groups}) > 1]
    panels: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for g in groups:
        name = " ".join(f"{k.removeprefix('method.')}={g.setting[k]}" if k != "method" else g.setting[k]
                        for k in line_keys if g.setting.get(k, "") != "") or g.setting.get("method", "")
        panel = label(g, panel_keys) or g.setting.get("task", "")
        rounds = [r.results.get("rounds") or [] for r in g.runs]
        if any(rounds):
            depth = min(len(x) for x in rounds if x)
            for i in range(depth):  # spend and accuracy from the same seeds: those tested after round i
                tested = [x[i] for x in rounds if x and metric in x[i]]
                if tested:
                    panels[panel][name].append((sum(float(t[spend]) for t in tested) / len(tested),
                                                sum(float(t[metric]) for t in tested) / len(tested)))
        elif not math.isnan(g.mean(metric)) and not math.isnan(g.mean(spend)):
            panels[panel][name].append((g.mean(spend), g.mean(metric)))
    return panels


def plot_accuracy_vs_spend(groups: list[Group], keys: list[str], metric: str, path: Path,
                           spend: str = "teacher_cost_usd") -> Path | None:
    """Accuracy against what was spent, ``spend`` (the report passes :func:`spend_key`'s: USD where any
    was spent, as revisions cost more than fresh answers and methods compare at equal money, not equal
    queries), from :func:`spend_curves`."""
    panels = spend_curves(groups, keys, metric, spend)
    if panels is None:
        return None
    plt = _pyplot()
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.5 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (panel, lines) in zip(axes.flat, sorted(panels.items())):
        for name, points in sorted(lines.items()):
            points = sorted(points)
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
        ax.set_title(panel)
        ax.set_xlabel(f"teacher spend ({spend})")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_signal_auroc(groups: list[Group], keys: list[str], aurocs: list[str], path: Path) -> Path | None:
    """Bars per signal, one per setting that computed it; a dashed line marks chance (0.5)."""
    with_signals = [g for g in groups if any(g.values(a) for a in aurocs)]
    if not with_signals:
        return None
    plt = _pyplot()
    colours = plt.get_cmap("tab20").colors
    width = 0.8 / len(with_signals)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.8 * len(aurocs) + 0.25 * len(with_signals)),
                                    4.5 + 0.22 * math.ceil(len(with_signals) / 2)))
    for i, g in enumerate(with_signals):
        offset = (i - (len(with_signals) - 1) / 2) * width
        present = [(j, g.mean(a), g.std(a)) for j, a in enumerate(aurocs) if not math.isnan(g.mean(a))]
        ax.bar([j + offset for j, _, _ in present], [m for _, m, _ in present], width,
               yerr=[0.0 if math.isnan(s) else s for _, _, s in present], capsize=2,
               color=colours[i % len(colours)], label=label(g, keys) or f"setting {i}")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(aurocs)), [a.removeprefix("auroc_") for a in aurocs])
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUROC (right vs wrong annotations)")
    ax.legend(fontsize="x-small", ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
