"""Loss, learning-rate and metric curves of training runs, from their ``metrics.jsonl`` logs.

Writes ``losses.png`` (every loss term and the total against the iteration), ``lr.png`` and,
when the log has evaluation records, ``metrics.png`` (the evaluation metrics, e.g. bbox/AP and
bbox/AP50). Several runs are drawn on the same axes, labelled by their folder name. Uses
matplotlib when it is installed, else draws with OpenCV. ``detkit plot`` runs :func:`plot_logs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from detkit.engine.metrics_log import read_metrics

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]
_NOT_CURVES = {"type", "iter", "epoch", "lr", "time", "data_time"}


def load_curves(path: Path, kind: str, keys: Sequence[str] | None = None
                ) -> dict[str, tuple[list[float], list[float]]]:
    """``{name: (iterations, values)}`` of one record type (``"train"`` or ``"eval"``).

    When a run was resumed, the last record of each iteration wins.
    """
    by_iter: dict[int, dict] = {}
    for record in read_metrics(path):
        if record.get("type", "train") == kind and "iter" in record:
            by_iter[int(record["iter"])] = record
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for iteration in sorted(by_iter):
        for name, value in by_iter[iteration].items():
            wanted = name in keys if keys else (name not in _NOT_CURVES or
                                                (kind == "train" and name == "lr"))
            if wanted and isinstance(value, (int, float)):
                xs, ys = curves.setdefault(name, ([], []))
                xs.append(iteration)
                ys.append(float(value))
    return curves


def _plot_opencv(series: Series, title: str, ylabel: str, out: Path, size: tuple[int, int] = (960, 560)) -> None:
    """The curves on one chart with :func:`detkit.evaluation.charts.draw_line_chart`."""
    from detkit.evaluation.charts import PALETTE, draw_line_chart, write_png
    from detkit.evaluation.charts import Series as Line

    xs = np.concatenate([np.asarray(x, np.float64) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, np.float64) for _, y in series.values()])
    ys = ys[np.isfinite(ys)]
    low, high = (float(ys.min()), float(ys.max())) if len(ys) else (0.0, 1.0)
    margin = 0.05 * (high - low) or 0.05 * (abs(high) or 1.0)
    lines = [Line(np.asarray(x, np.float64), np.asarray(y, np.float64), PALETTE[i % len(PALETTE)], name)
             for i, (name, (x, y)) in enumerate(series.items())]
    image = draw_line_chart(lines, title, "iteration", ylabel, x_range=(float(xs.min()), float(xs.max())),
                            y_range=(low - margin, high + margin), size=size)
    write_png(out, image)


def _plot_matplotlib(series: Series, title: str, ylabel: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9.6, 5.6))
    for name, (xs, ys) in series.items():
        axes.plot(xs, ys, label=name, marker="o" if len(xs) <= 50 else None, markersize=3)
    axes.set(title=title, xlabel="iteration", ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def plot_series(series: Series, title: str, ylabel: str, out: Path) -> Path:
    """Draw line curves ``{label: (xs, ys)}`` into the PNG ``out``."""
    if not series:
        raise ValueError(f"nothing to plot for {title}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _plot_opencv(series, title, ylabel, out)
    else:
        _plot_matplotlib(series, title, ylabel, out)
    return out


def _log_path(run: str) -> Path:
    path = Path(run)
    path = path / "metrics.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log at {path}")
    return path


def plot_logs(runs: Sequence[str], out_dir: str | Path | None = None,
              keys: Sequence[str] | None = None) -> list[Path]:
    """Write ``losses.png``, ``lr.png`` and (with eval records) ``metrics.png``.

    Args:
        runs: Run folders or ``metrics.jsonl`` files.
        out_dir: Where the PNGs go (default: the first run's folder).
        keys: Only these names (losses or metrics) instead of all of them.

    Returns:
        The PNG files written.
    """
    paths = [_log_path(run) for run in runs]
    out = Path(out_dir) if out_dir else paths[0].parent
    several = len(paths) > 1
    losses: dict[str, tuple[list[float], list[float]]] = {}
    lrs: dict[str, tuple[list[float], list[float]]] = {}
    metrics: dict[str, tuple[list[float], list[float]]] = {}
    for path in paths:
        prefix = f"{path.parent.name}: " if several else ""
        for name, curve in load_curves(path, "train", keys).items():
            (lrs if name == "lr" else losses)[prefix + name] = curve
        for name, curve in load_curves(path, "eval", keys).items():
            metrics[prefix + name] = curve
    written = []
    if losses:
        written.append(plot_series(losses, "training losses", "loss", out / "losses.png"))
    if lrs:
        written.append(plot_series(lrs, "learning rate", "lr", out / "lr.png"))
    if metrics:
        written.append(plot_series(metrics, "evaluation", "metric", out / "metrics.png"))
    if not written:
        raise ValueError(f"no train or eval records in {', '.join(map(str, paths))}")
    return written
