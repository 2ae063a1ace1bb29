"""Figures of a task benchmark report: accuracy after K shots per method, and the drift curves."""

from __future__ import annotations

from pathlib import Path


def plot_task_report(report: dict, path: Path) -> Path:
    """One figure, two panels: few-shot accuracy vs K for every method; online vs frozen under drift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drift = report.get("drift")
    fig, axes = plt.subplots(1, 2 if drift else 1, figsize=(11 if drift else 6, 4), squeeze=False)
    ax = axes[0][0]
    rows = report["adaptation"]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["shots"])
        ax.errorbar(
            [r["shots"] for r in mine], [r["value"] for r in mine], yerr=[r["stderr"] for r in mine],
            marker="o", capsize=3, label=method, linestyle="--" if method in report.get("controls", {}) else "-",
        )  # fmt: skip
    ax.set_xlabel("K (shots per class, each seen once)")
    ax.set_ylabel(rows[0]["metric"].replace("_", " "))
    ax.set_title(f"{report['task']}: unseen devices ({rows[0]['n_devices']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if drift:
        ax = axes[0][1]
        ax.plot(drift["window_end"], drift["online"], marker=".", label="online learning (one update per sample)")
        ax.plot(drift["window_end"], drift["frozen"], marker=".", label="frozen after the K shots")
        ax.axvline(drift["settings"]["drift_start"], color="grey", linestyle="--", label="drift starts")
        ax.set_xlabel("samples streamed")
        ax.set_ylabel("prequential accuracy")
        ax.set_title(f"drift: {drift['drift']}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
