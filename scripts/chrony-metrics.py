#!/usr/bin/env python3
"""Figures of one compare-chrony case from both implementations' offset logs.

Usage: chrony-metrics.py --case ID --scenario NAME --node N --window S RUN_DIR...

Each RUN_DIR holds one seed's run: chrony.offsets (clknetsim's -o log: one
line per simulated second, one column per node, offset in seconds) and
ntplab/samples.csv (`ntplab run --out`: host `client`, offset_s per second).
The same code computes every figure for both implementations:
  sync time  the first second from which |offset| <= 1 ms to the end (as
             chrony's find_sync, without its frequency condition; "never" when
             the last second is above 1 ms);
  RMS, max   of |offset| over the seconds at or after --window (chrony's
             max_sync_time, where clknetsim -r resets its statistics);
  requests   the NTP packets the compared client sent to port 123 over the
             whole run, lost ones included (chronyd: clknetsim's packet
             log, chrony.packets; ntplab: ntplab/packets.jsonl, from the
             scenario host `client`'s address): the price of its polling.
Prints a Markdown table: median [min-max] over the runs. A run that never
synchronized counts as slower than any that did in the sync-time median
(which is "never" when half the runs or more never synchronized); the
[min-max] range and "never in N" then describe the runs that did and did
not. Standard library only.
"""
import argparse
import csv
import json
import math
import os
import statistics
import tomllib

LIMIT = 1e-3


def chrony_offsets(path, node):
    out = []
    with open(path) as f:
        for i, line in enumerate(f, start=1):
            cols = line.split()
            if len(cols) >= node:
                out.append((float(i), float(cols[node - 1])))
    return out


def ntplab_offsets(path, host="client"):
    out = []
    if not os.path.exists(path):
        # ntplab wrote no trace (its scenario was refused): no figures, and
        # the run counts as never synchronized.
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["host"] == host:
                out.append((float(row["t_s"]), float(row["offset_s"])))
    return out


def chrony_requests(path, node):
    # clknetsim's packet log: time, from node, to node, delay, source port,
    # destination port, ... (every packet sent, lost ones too).
    try:
        with open(path) as f:
            return sum(1 for line in f if (c := line.split())[1:2] == [str(node)] and c[5:6] == ["123"])
    except OSError:
        return None


def ntplab_requests(path, address):
    try:
        with open(path) as f:
            return sum(1 for line in f if (p := json.loads(line))["dst"].endswith(":123") and p["src"].rsplit(":", 1)[0] == address)
    except OSError:
        return None


def client_address(scenario):
    with open(scenario, "rb") as f:
        hosts = tomllib.load(f).get("host", [])
    return next((h.get("address") for h in hosts if h.get("name") == "client"), None)


def figures(series, window):
    if not series:
        return None, None, None
    sync = None
    if abs(series[-1][1]) <= LIMIT:
        sync = 0.0
        for t, o in series:
            if abs(o) > LIMIT or not math.isfinite(o):
                sync = t
    tail = [o for t, o in series if t >= window]
    rms = math.sqrt(sum(o * o for o in tail) / len(tail)) if tail else None
    mx = max(abs(o) for o in tail) if tail else None
    return sync, rms, mx


def summary(values, fmt):
    got = [v for v in values if v is not None]
    never = len(values) - len(got)
    if not got:
        return "never"
    # A run that never synchronized counts as later than any that did: the
    # median is "never" when half the runs or more never synchronized.
    median = statistics.median([math.inf if v is None else v for v in values])
    head = "never" if math.isinf(median) else fmt(median)
    text = f"{head} [{fmt(min(got))}-{fmt(max(got))}]"
    if never:
        text += f", never in {never}"
    return text


def us(v):
    return f"{v * 1e6:.1f} us" if v < 1e-3 else (f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.3g} s")


def secs(v):
    return f"{v:.0f} s"


def counts(values):
    if any(v is None for v in values):
        return "-"
    return f"{statistics.median(values):.0f} [{min(values)}-{max(values)}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--node", type=int, required=True)
    ap.add_argument("--window", type=float, required=True)
    ap.add_argument("--per-seed", action="store_true", help="also a row per seed (the run directory's name)")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    address = client_address(os.path.join(root, a.scenario))
    rows = {"chronyd 4.3": [], "ntplab": []}
    for run in a.runs:
        rows["chronyd 4.3"].append(figures(chrony_offsets(f"{run}/chrony.offsets", a.node), a.window)
                                   + (chrony_requests(f"{run}/chrony.packets", a.node),))
        rows["ntplab"].append(figures(ntplab_offsets(f"{run}/ntplab/samples.csv"), a.window)
                              + (ntplab_requests(f"{run}/ntplab/packets.jsonl", address),))
    print(f"## {a.case} (`{a.scenario}`), {len(a.runs)} seeds, statistics from {a.window:.0f} s")
    print()
    print("| implementation | sync time (1 ms) | RMS offset | max offset | requests |")
    print("|---|---|---|---|---|")
    for name, figs in rows.items():
        print(f"| {name} | {summary([f[0] for f in figs], secs)} | {summary([f[1] for f in figs], us)} | {summary([f[2] for f in figs], us)} | {counts([f[3] for f in figs])} |")
    if a.per_seed:
        print()
        print("| seed | sync chronyd / ntplab | RMS chronyd / ntplab | max chronyd / ntplab | requests chronyd / ntplab |")
        print("|---|---|---|---|---|")
        never = "never"
        for run, c, n in zip(a.runs, rows["chronyd 4.3"], rows["ntplab"]):
            cell = [" / ".join(never if v is None else f(v) for v in (c[i], n[i])) for i, f in ((0, secs), (1, us), (2, us))]
            reqs = " / ".join("-" if v is None else str(v) for v in (c[3], n[3]))
            print(f"| {run.rstrip('/').split('/')[-1]} | {cell[0]} | {cell[1]} | {cell[2]} | {reqs} |")


if __name__ == "__main__":
    main()
