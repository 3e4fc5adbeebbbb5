#!/usr/bin/env python
"""Dohmatob et al. 2024's adaptive-ridge panel: test error vs sample size T, one curve per generation.

    python examples/adaptive_ridge_scaling.py                  # writes adaptive_ridge_scaling.png
    python examples/adaptive_ridge_scaling.py --quick          # fewer T values and replicates

Runs the ``dohmatob-adaptive-ridge`` preset (replace, λ = λ0·T^-ℓ, power-law spectrum) once per
T and draws the excess risk at a few generations g against T on log-log axes: the measured mean
(points, 95% CI), the exact ridge theory at the adaptive λ (dashed) and the paper's scaling-law
rate (dash-dot; a rate up to constants, so compare slopes, not levels). Synthetic generations
shift the law up; its slope stays −(1 − ℓ/β) while the variance term dominates.
"""

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import synthloop  # noqa: E402
from synthloop.experiment import load_experiment  # noqa: E402


def panel(Ts, generations: int, replicates: int, shown) -> plt.Figure:
    rows = []
    for T in Ts:
        experiment = load_experiment("dohmatob-adaptive-ridge", {"task.T": T, "generations": generations,
                                                                 "replicates": replicates, "workflows": ["replace"]})
        result = synthloop.run(experiment)
        m = result.metrics[result.metrics["metric"] == "excess_risk"]
        th = result.theory
        for g in shown:
            values = m[m["generation"] == g]["value"].to_numpy()
            exact = th[(th["generation"] == g) & (th["kind"] == "numerical")]["value"].item()
            rate = th[(th["generation"] == g) & (th["kind"] == "asymptotic")]["value"].item()
            rows.append((T, g, values.mean(), 1.96 * values.std(ddof=1) / np.sqrt(len(values)), exact, rate))
    task = experiment.task
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, g in enumerate(shown):
        r = np.array([row for row in rows if row[1] == g])
        color = f"C{i}"
        ax.errorbar(r[:, 0], r[:, 2], yerr=r[:, 3], fmt="o", color=color, ms=4, label=f"g = {g} (measured)")
        ax.plot(r[:, 0], r[:, 4], "--", color=color, lw=1.2)
        ax.plot(r[:, 0], r[:, 5], "-.", color=color, lw=1.0, alpha=0.7)
    ax.plot([], [], "k--", lw=1.2, label="exact ridge theory at λ0·T^-ℓ")
    ax.plot([], [], "k-.", lw=1.0, label="scaling-law rate (up to constants)")
    ax.set(xscale="log", yscale="log", xlabel="real sample size T (rows)", ylabel="excess test risk ‖ŵ − w*‖²_Σ (units of y²)",
           title=f"Adaptive ridge λ = {task.ridge:g}·T^-{task.ridge_exponent:g}, replace\n"
                 f"d={task.d}, λ_j = j^-{task.beta:g}, σ={task.sigma:g}, {replicates} replicates")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 values of T, 50 replicates")
    parser.add_argument("--out", default="adaptive_ridge_scaling.png")
    args = parser.parse_args(argv)
    Ts, replicates = ((100, 200, 400), 50) if args.quick else ((100, 200, 400, 800, 1600), 200)
    panel(Ts, generations=10, replicates=replicates, shown=(0, 1, 5, 10)).savefig(args.out, dpi=150)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
