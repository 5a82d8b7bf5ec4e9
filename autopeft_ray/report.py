"""Reports of a run folder: Pareto front plot, hypervolume over evaluations, a table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopeft_ray.exceptions import invalid_value
from autopeft_ray.objectives import PARAM_FRACTION, SCORE
from autopeft_ray.space import PeftConfiguration


def _points(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(r["metrics"][SCORE], r["metrics"][PARAM_FRACTION]) for r in records]


def best_under(folder: str | Path, max_fraction: float) -> dict[str, Any]:
    """The highest-scoring completed configuration with at most ``max_fraction`` parameters."""
    from autopeft_ray.run_folder import completed_points, read_records

    done = [
        r
        for r in completed_points(read_records(folder))
        if r["metrics"][PARAM_FRACTION] <= max_fraction
    ]
    if not done:
        raise invalid_value(
            "max_fraction",
            max_fraction,
            expected=f"a budget that at least one completed trial in {folder} meets",
        )
    return max(done, key=lambda r: r["metrics"][SCORE])


def read_baselines(folder: str | Path) -> list[dict[str, Any]]:
    """The baselines trained at the search fidelity (``baselines.json``), if any."""
    import json

    from autopeft_ray.search import BASELINES_FILE

    path = Path(folder) / BASELINES_FILE
    return json.loads(path.read_text()) if path.exists() else []


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
    lines = [
        "| # | D_SA | D_PA | L_PT | layers | param fraction (%) | score | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(records):
        config = PeftConfiguration.from_dict(r["configuration"])
        layers = "".join("1" if b else "0" for b in config.layers)
        lines.append(
            f"| {i} | {config.sa_size} | {config.pa_size} | {config.pt_length} | {layers} | "
            f"{100 * r['metrics'][PARAM_FRACTION]:.4f} | {r['metrics'][SCORE]:.4f} | {r['status']} |"
        )
    return "\n".join(lines)


def write_report(
    folder: str | Path,
    *,
    reference_point: tuple[float, float] = (0.0, 1.0),
    compare: Sequence[str | Path] = (),
) -> Path:
    """Write ``report/`` in a run folder: ``pareto_front.png``, ``hypervolume.png``, ``report.md``.

    ``compare`` adds the hypervolume traces of other run folders (e.g. a random
    search) to ``hypervolume.png``. Baselines trained at the search fidelity
    (``baselines.json``) are drawn and tabled beside the front.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autopeft_ray.pareto import hypervolume_trace
    from autopeft_ray.run_folder import completed_points, pareto_records, read_records

    folder = Path(folder)
    out = folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    done = sorted(completed_points(read_records(folder)), key=lambda r: r["finished_at"])
    points = _points(done)
    on_front = pareto_records(done)
    front = _points(on_front)

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
    baselines = read_baselines(folder)
    for b in baselines:
        x, y = 100 * b["metrics"][PARAM_FRACTION]["mean"], b["metrics"][SCORE]["mean"]
        ax.scatter([x], [y], marker="s", s=30, color="k")
        ax.annotate(b["name"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("trainable parameters (% of base model)")
    ax.set_ylabel("dev score")
    ax.set_title(f"Pareto front: {folder.name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pareto_front.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in [folder, *map(Path, compare)]:
        run_points = _points(
            sorted(completed_points(read_records(run)), key=lambda r: r["finished_at"])
        )
        if run_points:
            trace = hypervolume_trace(run_points, reference_point)
            ax.plot(range(1, len(trace) + 1), trace, label=run.name)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "hypervolume.png", dpi=120)
    plt.close(fig)

    text = [
        f"# AutoPEFT report: {folder.name}",
        "",
        f"{len(done)} completed evaluations; {len(on_front)} on the Pareto front.",
        "",
        "## Pareto front",
        "",
        markdown_table(on_front),
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
    ]
    (out / "report.md").write_text("\n".join(text))
    return out
