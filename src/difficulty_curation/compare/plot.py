"""`plot_comparison`: a comparison's transition matrix and per-row scatter as one PNG."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from difficulty_curation.compare.comparison import STATES, RunComparison


def plot_comparison(
    comparison: RunComparison,
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Save the transition matrix and a first-vs-last scatter of per-row difficulty as one figure (needs matplotlib).

    `path` ends with one of `outputs.FIGURE_SUFFIXES`; it is refused where it exists (unless
    `overwrite`), is a folder, is one of `inputs` (the runs compared) or lies inside a scoring run.

    Returns:
        The path written.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        ConfigError: `path` is refused (see `outputs.check_output_file`).
    """
    from difficulty_curation.errors import require
    from difficulty_curation.outputs import FIGURE_SUFFIXES, check_output_file, write_file
    from difficulty_curation.stats import save_figure

    inputs = tuple(inputs)
    guard = {"overwrite": overwrite, "inputs": inputs, "suffixes": FIGURE_SUFFIXES, "option": "--plot"}
    check_output_file(path, **guard)
    require("matplotlib", "plot", "the comparison plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, last = comparison.names[0], comparison.names[-1]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    matrix = np.array([[comparison.transitions[a][b] for b in STATES] for a in STATES])
    left.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        left.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    left.set_xticks(range(len(STATES)), STATES)
    left.set_yticks(range(len(STATES)), STATES)
    left.set_xlabel(last)
    left.set_ylabel(first)
    left.set_title(f"bucket transitions ({comparison.matched} rows)")
    pairs = [
        (row["difficulty"][0], row["difficulty"][-1])
        for row in comparison.deltas
        if row["difficulty"][0] is not None and row["difficulty"][-1] is not None
    ]
    if pairs:
        rng = np.random.default_rng(0)
        xs, ys = (np.array(values) + rng.uniform(-0.015, 0.015, len(pairs)) for values in zip(*pairs))
        right.scatter(xs, ys, s=10, alpha=0.6)
    right.plot([0, 1], [0, 1], color="grey", linewidth=1)
    right.set_xlim(-0.05, 1.05)
    right.set_ylim(-0.05, 1.05)
    right.set_xlabel(f"difficulty, {first}")
    right.set_ylabel(f"difficulty, {last}")
    rho = comparison.rank_correlation
    right.set_title("per row" + (f" (Spearman {rho:.2f})" if rho is not None else ""))
    return write_file(path, lambda temporary: save_figure(figure, temporary), **guard)


__all__ = ["plot_comparison"]
