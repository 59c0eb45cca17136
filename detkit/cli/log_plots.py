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


def _nice_ticks(low: float, high: float, count: int = 8) -> list[float]:
    if high <= low:
        high = low + (abs(low) or 1.0)
    step = 10 ** np.floor(np.log10((high - low) / count))
    for multiple in (1, 2, 5, 10):
        if (high - low) / (step * multiple) <= count:
            step *= multiple
            break
    first = np.ceil(low / step) * step
    return [float(t) for t in np.arange(first, high + step * 1e-9, step)]


def _plot_opencv(series: Series, title: str, ylabel: str, out: Path,
                 size: tuple[int, int] = (960, 560)) -> None:
    import cv2

    width, height = size
    left, right, top, bottom = 90, 220, 50, 60
    image = np.full((height, width, 3), 255, np.uint8)
    xs_all = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys_all = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    finite = np.isfinite(ys_all)
    x0, x1 = float(xs_all.min()), float(xs_all.max())
    y0, y1 = (float(ys_all[finite].min()), float(ys_all[finite].max())) if finite.any() else (0, 1)
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = left + (x - x0) / (x1 - x0) * (width - left - right)
        v = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
        return np.stack([u, v], axis=-1).round().astype(np.int32)

    font, gray, black = cv2.FONT_HERSHEY_SIMPLEX, (220, 220, 220), (0, 0, 0)
    for tick in _nice_ticks(y0, y1):
        (u, v), = px(np.array([x0]), np.array([tick]))
        cv2.line(image, (left, v), (width - right, v), gray, 1)
        cv2.putText(image, f"{tick:.3g}", (8, v + 5), font, 0.45, black, 1, cv2.LINE_AA)
    for tick in _nice_ticks(x0, x1):
        (u, v), = px(np.array([tick]), np.array([y0]))
        cv2.line(image, (u, top), (u, height - bottom), gray, 1)
        cv2.putText(image, f"{tick:.6g}", (u - 15, height - bottom + 20), font, 0.45, black, 1,
                    cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (width - right, height - bottom), black, 1)
    cv2.putText(image, title, (left, 32), font, 0.7, black, 1, cv2.LINE_AA)
    cv2.putText(image, "iteration", (width // 2 - 60, height - 15), font, 0.5, black, 1,
                cv2.LINE_AA)
    cv2.putText(image, ylabel, (8, top - 12), font, 0.45, black, 1, cv2.LINE_AA)
    palette = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
               (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
    for index, (name, (xs, ys)) in enumerate(series.items()):
        color = palette[index % len(palette)]
        x, y = np.asarray(xs, float), np.asarray(ys, float)
        keep = np.isfinite(y)
        points = px(x[keep], y[keep])
        if len(points) > 1:
            cv2.polylines(image, [points.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA)
        for point in points if len(points) <= 50 else points[-1:]:
            cv2.circle(image, tuple(int(c) for c in point), 3, color, -1, cv2.LINE_AA)
        legend_y = top + 10 + 22 * index
        cv2.line(image, (width - right + 15, legend_y), (width - right + 40, legend_y), color, 3)
        cv2.putText(image, name[:22], (width - right + 48, legend_y + 5), font, 0.45, black, 1,
                    cv2.LINE_AA)
    if not cv2.imwrite(str(out), image):
        raise OSError(f"could not write {out}")


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
