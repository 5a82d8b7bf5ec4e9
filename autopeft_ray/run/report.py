"""Reports of a run folder: Pareto front plot, hypervolume over evaluations, a table."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import PARAM_FRACTION, PEAK_MEMORY, SCORE
from autopeft_ray.space import PeftConfiguration

from .folder import RunFolder
from .records import (
    baseline_point,
    comparison_line,
    mark_dominated,
    objective_point,
    pareto_records,
    preset_comparison,
)

Folder = str | os.PathLike[str] | RunFolder
#: The report's text, beside its figures.
REPORT_FILE = "report.md"


def _run(folder: Folder) -> RunFolder:
    return folder if isinstance(folder, RunFolder) else RunFolder(folder)


def best_under(folder: Folder, max_fraction: float) -> dict[str, Any]:
    """The highest-scoring completed configuration with at most ``max_fraction`` parameters."""
    done = [r for r in _run(folder).completed() if r["metrics"][PARAM_FRACTION] <= max_fraction]
    if not done:
        raise invalid_value(
            "max_fraction",
            max_fraction,
            expected=f"a budget that at least one completed trial in {folder} meets",
        )
    return max(done, key=lambda r: r["metrics"][SCORE])


def baselines_table(baselines: list[dict[str, Any]]) -> str:
    lines = ["| baseline | param fraction (%) | score |", "|---|---|---|"]
    for b in baselines:
        metrics = b["metrics"]
        lines.append(
            f"| {b['name']} | {100 * metrics[PARAM_FRACTION]['mean']:.4f} | "
            f"{metrics[SCORE]['mean']:.4f} |"
        )
    return "\n".join(lines)


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The records as a table; with a ``dominated by`` column when they are marked
    (:func:`.records.mark_dominated`). Peak memory reads ``-`` in records written
    before it was measured."""
    marked = any("dominated_by" in r for r in records)
    lines = [
        "| # | D_SA | D_PA | L_PT | R_LoRA | layers | param fraction (%) | score | status |"
        + (" dominated by |" if marked else "")
        + " peak memory (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if marked else ""),
    ]
    for i, r in enumerate(records):
        config = PeftConfiguration.from_dict(r["configuration"])
        layers = "".join("1" if b else "0" for b in config.layers)
        line = (
            f"| {i} | {config.sa_size} | {config.pa_size} | {config.pt_length} | "
            f"{config.lora_rank} | {layers} | {100 * r['metrics'][PARAM_FRACTION]:.4f} | "
            f"{r['metrics'][SCORE]:.4f} | {r['status']} |"
        )
        if marked:
            line += f" {', '.join(r.get('dominated_by') or []) or '-'} |"
        lines.append(f"{line} {_memory(r['metrics'])} |")
    return "\n".join(lines)


def _memory(metrics: dict[str, Any]) -> str:
    value = metrics.get(PEAK_MEMORY)
    return "-" if value is None else f"{value:.2f}"


def relevance_table(relevance: dict[str, Any]) -> str:
    """Markdown table of ``relevance.json``: each dimension's inverse lengthscale."""
    lines = ["| dimension | relevance (median) | 10th-90th percentile |", "|---|---|---|"]
    for row in relevance["dimensions"]:
        lines.append(
            f"| {row['name']} | {row['median']:.3g} | {row['low']:.3g}-{row['high']:.3g} |"
        )
    return "\n".join(lines)


def top_dimensions(relevance: dict[str, Any], count: int = 3) -> str:
    """The ``count`` most relevant dimensions, with their relevance: ``layer_5 (2.1), ...``."""
    return ", ".join(f"{r['name']} ({r['median']:.2g})" for r in relevance["dimensions"][:count])


def relevance_text(relevance: dict[str, Any] | None, completed: int) -> list[str]:
    """The report's section on which dimensions matter."""
    head = ["## Which dimensions matter", ""]
    if relevance is None:
        return [
            *head,
            f"Not fitted: it needs at least 2 completed trials, and this run has {completed}.",
            "",
        ]
    return [
        *head,
        "Relevance is the inverse lengthscale of each dimension in the SAAS GP of the score "
        f"({relevance['source']}, fitted on {relevance['n_observations']} observations): "
        "near 0, the score does not depend on the dimension.",
        "",
        relevance_table(relevance),
        "",
        "![Relevance](relevance.png)",
        "",
    ]


def _plot_relevance(relevance: dict[str, Any], path: Any) -> None:
    import matplotlib.pyplot as plt

    rows = relevance["dimensions"][::-1]
    medians = [r["median"] for r in rows]
    errors = [
        [r["median"] - r["low"] for r in rows],
        [r["high"] - r["median"] for r in rows],
    ]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
    ax.barh([r["name"] for r in rows], medians, xerr=errors, color="tab:blue", alpha=0.8)
    ax.set_xlabel("relevance (inverse lengthscale, SAAS GP)")
    ax.set_title("Which dimensions matter")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reference_point_of(run: RunFolder) -> tuple[float, float]:
    """The search's reference point (``search.json``), else the default one."""
    from autopeft_ray.objectives.pareto import DEFAULT_REFERENCE_POINT

    saved = run.read_options().reference_point if run.has_options() else None
    return saved or DEFAULT_REFERENCE_POINT


def write_report(
    folder: Folder,
    *,
    reference_point: tuple[float, float] | None = None,
    compare: Sequence[Folder] = (),
    report_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Write ``report/`` in a run folder: ``pareto_front.png``, ``hypervolume.png``, ``report.md``.

    Returns where ``report.md`` is. A run folder in object storage gets its
    report there too (drawn in a local temporary folder, then uploaded), unless
    ``report_dir`` names a local folder to write it to instead.

    ``reference_point`` defaults to the search's. ``compare`` adds the
    hypervolume traces of other run folders (e.g. a random search) to
    ``hypervolume.png``. Baselines trained at the search fidelity
    (``baselines.json``) are drawn and tabled beside the front; which
    dimensions matter (``relevance.json``) is tabled and drawn in
    ``relevance.png``.
    """
    run = _run(folder)
    run.check_exists()
    reference = reference_point or reference_point_of(run)
    if report_dir is not None or run.is_local:
        out = Path(report_dir) if report_dir is not None else run.report_dir
        out.mkdir(parents=True, exist_ok=True)
        _draw(run, out, reference, compare)
        return str(out / REPORT_FILE)
    with tempfile.TemporaryDirectory(prefix="autopeft-report-") as tmp:
        _draw(run, Path(tmp), reference, compare)
        run.location.upload(tmp, RunFolder.REPORT)
    return run.location.uri(RunFolder.REPORT, REPORT_FILE)


def _draw(
    run: RunFolder, out: Path, reference: tuple[float, float], compare: Sequence[Folder]
) -> None:
    """Draw the figures and write ``report.md`` into the local folder ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autopeft_ray.objectives.pareto import hypervolume_trace

    done = run.completed()
    points = [objective_point(r) for r in done]
    baselines = run.read_baselines()
    on_front = mark_dominated(pareto_records(done), baselines)
    front = [objective_point(r) for r in on_front]
    comparison = preset_comparison(done, baselines)

    fig, ax = plt.subplots(figsize=(6, 4))
    if points:
        ax.scatter(
            [100 * p[1] for p in points], [p[0] for p in points], s=18, alpha=0.6, label="evaluated"
        )
        ax.step(
            [100 * p[1] for p in front],
            [p[0] for p in front],
            "r-o",
            where="post",
            label="Pareto front",
        )
        ax.set_xscale("symlog", linthresh=1e-3)
        dominated = [p for p, r in zip(front, on_front, strict=True) if r["dominated_by"]]
        if dominated:
            ax.scatter(
                [100 * p[1] for p in dominated],
                [p[0] for p in dominated],
                s=70,
                facecolors="none",
                edgecolors="k",
                label="front point a baseline dominates",
            )
    for b in baselines:
        point = baseline_point(b)
        if point is None:  # its training failed
            continue
        x, y = 100 * point[1], point[0]
        ax.scatter([x], [y], marker="s", s=30, color="k")
        ax.annotate(b["name"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("trainable parameters (% of base model)")
    ax.set_ylabel("dev score")
    ax.set_title(f"Pareto front: {run.name}")
    if points:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pareto_front.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for other in [run, *map(_run, compare)]:
        other_points = [objective_point(r) for r in other.completed()]
        if other_points:
            trace = hypervolume_trace(other_points, reference)
            ax.plot(range(1, len(trace) + 1), trace, label=other.name)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume")
    if ax.get_lines():
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hypervolume.png", dpi=120)
    plt.close(fig)

    relevance = run.read_relevance()
    if relevance is not None:
        _plot_relevance(relevance, out / "relevance.png")

    text = [
        f"# AutoPEFT report: {run.name}",
        "",
        f"{len(done)} completed evaluations; {len(on_front)} on the Pareto front.",
        "",
        *([comparison_line(comparison), ""] if baselines else []),
        "## Pareto front",
        "",
        markdown_table(on_front),
        "",
        "Peak memory: a GPU trial's most allocated at once; a CPU trial's process "
        "peak (resident set, interpreter and data included).",
        "",
        *(
            [
                "## Baselines at the same fidelity",
                "",
                "Trained with the same settings and seed as every searched configuration.",
                "",
                baselines_table(baselines),
                "",
            ]
            if baselines
            else []
        ),
        "![Pareto front](pareto_front.png)",
        "![Hypervolume](hypervolume.png)",
        "",
        *relevance_text(relevance, len(done)),
    ]
    (out / REPORT_FILE).write_text("\n".join(text))
