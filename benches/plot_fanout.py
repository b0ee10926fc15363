"""Plots the fan-out sweep: deliveries/s at max rate and p99 latency at a fixed delivery rate,
against subscriber count, one line per server.

Usage: python3 benches/plot_fanout.py SWEEP.csv [MORE.csv ...] OUT.png
(the CSV from `cargo bench --bench fanout -- --sweep --csv SWEEP.csv`; benches/plot.sh makes a
venv with matplotlib and runs both). Given several runs, each point is the best one: the highest
deliveries/s at max rate, the lowest p99 at the fixed rate (on a machine shared with other
work, the run where the server was least disturbed).
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"tickwire": "#1f77b4", "tokio": "#d62728", "node": "#2ca02c", "ceiling": "#7f7f7f",
          "uws": "#9467bd", "uws-defer": "#9467bd", "uws-cork": "#8c564b"}
# The ceiling is a bound, the uws variants are explanations (BENCHMARKS.md): not drawn solid.
STYLES = {"ceiling": "--", "uws-defer": ":", "uws-cork": "-."}


def better(scenario, a, b):
    """Whether row a is the better measurement of the same point than row b."""
    if scenario == "sweep-max":
        return float(a["deliveries_per_sec"]) > float(b["deliveries_per_sec"])
    return int(a["p99_us"]) < int(b["p99_us"])


def main(paths, out):
    best = {}
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["scenario"], row["server"], int(row["subscribers"]))
                if key not in best or better(row["scenario"], row, best[key]):
                    best[key] = row
    series = defaultdict(lambda: defaultdict(list))
    for (scenario, server, _), row in best.items():
        series[scenario][server].append(row)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, rows in series["sweep-max"].items():
        rows.sort(key=lambda r: int(r["subscribers"]))
        x = [int(r["subscribers"]) for r in rows]
        left.plot(x, [float(r["deliveries_per_sec"]) / 1e6 for r in rows], marker="o",
                  label=server, color=COLORS.get(server), linestyle=STYLES.get(server, "-"))
    for server, rows in series["sweep-100k"].items():
        rows.sort(key=lambda r: int(r["subscribers"]))
        x = [int(r["subscribers"]) for r in rows]
        right.plot(x, [int(r["p99_us"]) / 1000 for r in rows], marker="o",
                   label=server, color=COLORS.get(server), linestyle=STYLES.get(server, "-"))
    left.set(xscale="log", xlabel="subscribers (one topic, broadcast)", ylabel="deliveries/s (millions)",
             title="Max rate: deliveries per second")
    right.set(xscale="log", yscale="log", xlabel="subscribers (one topic, broadcast)",
              ylabel="p99 publish-to-receive (ms)", title="100,000 deliveries/s: p99 latency")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("tickwire fan-out vs peers (server on one core, generator on the other)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1:-1], sys.argv[-1])
