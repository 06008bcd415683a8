#!/usr/bin/python3
"""Draw calls/s against caller threads from palitra_bench CSV files.

    /usr/bin/python3 bench/plot.py OUT.png LABEL=results.csv [LABEL=results.csv ...]

Each CSV is one palitra_bench run (--csv); the rows whose `round` is
`median` are plotted, one line per system, one panel per CSV (e.g. free
placement and `taskset -c 0`). Needs Debian's python3-matplotlib
(scripts/deps.sh bench).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    rows = [r for r in csv.DictReader(open(path)) if r["round"] == "median"]
    threads = sorted(int(k[len("calls_per_s_"):-1]) for k in rows[0] if k.startswith("calls_per_s_"))
    series = {}
    for r in rows:
        pts = [(n, float(r[f"calls_per_s_{n}t"])) for n in threads if r[f"calls_per_s_{n}t"]]
        if len(pts) > 1:
            series[r["system"]] = pts
    return threads, series


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, panels = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (label, path) in zip(axes[0], panels):
        threads, series = load(path)
        for name, pts in series.items():
            ax.plot([p[0] for p in pts], [p[1] / 1e3 for p in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(threads)
        ax.set_xticklabels([str(t) for t in threads])
        ax.set_xlabel("caller threads")
        ax.set_ylabel("calls/s (thousands)")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
