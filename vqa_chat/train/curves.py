"""The training curves: loss per step and held-out accuracy per evaluation, as one PNG."""

from __future__ import annotations


def plot_curves(history: dict, path: str, stage1_steps: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps, losses = zip(*history["loss"]) if history["loss"] else ((), ())
    ax1.plot(steps, losses, lw=0.6, alpha=0.5, label="loss")
    if len(losses) >= 20:
        k = 20
        smooth = [sum(losses[i - k : i]) / k for i in range(k, len(losses) + 1)]
        ax1.plot(steps[k - 1 :], smooth, label=f"mean of {k}")
    ax1.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax1.legend()
    for key in sorted({k for _, acc in history["eval"] for k in acc}):
        pts = [(s, acc[key]) for s, acc in history["eval"] if key in acc]
        ax2.plot(*zip(*pts), marker="o", label=key)
    ax2.set(xlabel="step", ylabel="accuracy (%)", title="held-out accuracy", ylim=(0, 100))
    if stage1_steps:  # stage 1 scores the classifier (loss: classifier), stage 2 the generated answers
        for ax in (ax1, ax2):
            ax.axvline(stage1_steps, color="gray", ls="--", lw=0.8)
        ax2.text(stage1_steps, 3, " stage 2: the LM answers", color="gray", fontsize=8)
        ax2.text(stage1_steps, 3, "stage 1: classifier ", color="gray", fontsize=8, ha="right")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
