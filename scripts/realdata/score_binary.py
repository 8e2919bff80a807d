#!/usr/bin/env python3
"""Scores any spikewatch build on the labelled real series, as `cargo bench --bench realdata`
scores this one: how the engine at an older commit (one without the bench) did.

Usage:
    python3 scripts/realdata/score_binary.py BIN DIR [--config-dir benches/realdata]

BIN is a `spikewatch` binary (e.g. built from an old commit in a worktree); DIR is what
`scripts/realdata/fetch.sh DIR` made. Every series is replayed with `BIN replay --input FILE
--incidents ...` (and `--config benches/realdata/<dataset>.toml` when it exists), and its
per-series incidents are scored against its `label` column by the rules of
`src/replay/labels.rs`: a labelled window is found when an incident overlaps it or is
announced within 1 h of it, an incident that overlaps no window (± 1 h) is a false alert.
Standard library only.

`--hourly-config-dir D` replays the series whose step is an hour or more with D's configs
instead (a threshold per bucket width, README "What the sustained rule changes").

`--found-list FILE` also writes one line per labelled window, `<data set>/<series> <window
start, Unix s> <0|1>` (1: found), sorted, so two builds can be compared event by event (which
events one finds that the other loses), not only by their totals:

    join <(awk '{print $1"@"$2, $3}' a.txt | sort) <(awk '{print $1"@"$2, $3}' b.txt | sort) \
        | awk '$2 == 1 && $3 == 0' | wc -l      # found by a, lost by b

`--false-list FILE` writes one line per false alert, `<data set>/<series> <opened, UTC minute>`,
sorted: `diff` two builds' lists to see which false alerts one adds or removes.
"""
import argparse
import csv
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile

SLACK_MS = 3_600_000


def iso_ms(s):
    return int(dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def label_windows(rows, step):
    windows, start = [], None
    for ts, label in rows:
        if label and start is None:
            start = ts
        elif not label and start is not None:
            windows.append((start, ts))
            start = None
    if start is not None:
        windows.append((start, rows[-1][0] + step))
    return windows


def spans(events, end_ms):
    by_id = {}
    for e in events:
        s = by_id.setdefault(e["incident_id"], {"start": iso_ms(e["opened_at"]), "end": end_ms,
                                                "announced": [], "reopened": 0})
        opens = e["state"] == "opened" or e.get("reopened", 0) > s["reopened"]
        at = iso_ms(e["bucket_end"])
        if opens:
            s["announced"].append(at)
            s["end"] = end_ms
        s["reopened"] = e.get("reopened", 0)
        if e["state"] == "resolved":
            s["end"] = iso_ms(e["resolved_at"]) if e.get("resolved_at") else at
    return list(by_id.values())


def score(csv_path, events):
    rows, values = [], []
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append((int(float(r["timestamp"])) * 1000, r["label"].strip() == "1"))
            if r["value"].strip():
                values.append(float(r["value"]))
    step = int(statistics.median(b[0] - a[0] for a, b in zip(rows, rows[1:])))
    first, end = rows[0][0], rows[-1][0] + step
    windows = label_windows(rows, step)
    sp = spans(events, end)
    found, delays, flags = 0, [], []
    for ws, we in windows:
        lo, hi = ws - SLACK_MS, we + SLACK_MS
        delay = None
        for s in (s for s in sp if s["start"] < hi and s["end"] > lo):
            def announced(upto):
                c = [max(a - ws, 0) for a in s["announced"] if lo <= a < upto]
                return min(c) if c else None
            if s["start"] <= ws < s["end"]:
                d = announced(float("inf"))
                d = 0 if d is None else d
            else:
                d = announced(hi)
                d = max(s["start"] - ws, 0) if d is None else d
            delay = d if delay is None else min(delay, d)
        flags.append((ws // 1000, delay is not None))
        if delay is not None:
            found += 1
            delays.append(delay / 60_000)
    false_starts = [s["start"] for s in sp
                    if not any(s["start"] < we + SLACK_MS and s["end"] > ws - SLACK_MS
                               for ws, we in windows)]
    false = len(false_starts)
    count = all(v >= 0 and v == int(v) for v in values)
    return {"days": (end - first) / 86_400_000, "windows": len(windows), "found": found,
            "incidents": len(sp), "false": false, "delays": delays, "count": count,
            "flags": flags, "false_starts": false_starts}


def series_step_s(path):
    with open(path, newline="") as f:
        ts = [int(float(r["timestamp"])) for _, r in zip(range(50), csv.DictReader(f))]
    return statistics.median(b - a for a, b in zip(ts, ts[1:]))


def add(total, r):
    for k in ("days", "windows", "found", "incidents", "false"):
        total[k] = total.get(k, 0) + r[k]
    total["series"] = total.get("series", 0) + 1
    total.setdefault("delays", []).extend(r["delays"])


def row(name, t):
    if not t:
        return
    d = sorted(t["delays"])
    med = "%.0f min" % d[len(d) // 2] if d else "-"
    per = t["false"] / (t["days"] / 30) if t["days"] else 0
    print("%-22s %6d %7.1f %12s %10d %9d %14.2f %12s" % (
        name, t["series"], t["days"] / 30, "%d/%d" % (t["found"], t["windows"]),
        t["incidents"], t["false"], per, med))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("dir")
    ap.add_argument("--config-dir", default=os.path.join(here, "..", "..", "benches", "realdata"))
    ap.add_argument("--found-list", help="write one line per labelled window: found or not")
    ap.add_argument("--false-list", help="write one line per false alert: series and when it "
                    "opened (UTC), to compare two builds")
    ap.add_argument("--hourly-config-dir", help="configs for series with steps of an hour or "
                    "more (default: --config-dir), to try a threshold per bucket width")
    a = ap.parse_args()
    print("%-22s %6s %7s %12s %10s %9s %14s %12s" % (
        "data set", "series", "months", "events found", "incidents", "false",
        "false/ser-mon", "median delay"))
    # Builds from before `--incident-events` wrote per-series events to `--incidents`.
    help_text = subprocess.run([a.binary, "replay", "--help"], capture_output=True,
                               text=True).stdout
    series_flag = ["--incident-events", "series"] if "--incident-events" in help_text else []
    total, counts, found_lines, false_lines = {}, {}, [], []
    for ds in sorted(os.listdir(a.dir)):
        d = os.path.join(a.dir, ds)
        if not os.path.isdir(d) or ds == "raw":
            continue
        tally = {}
        for fn in sorted(os.listdir(d)):
            if not fn.endswith(".csv") or fn == "stats.csv":
                continue
            path = os.path.join(d, fn)
            cfg = os.path.join(a.config_dir, ds + ".toml")
            if a.hourly_config_dir and series_step_s(path) >= 3600:
                cfg = os.path.join(a.hourly_config_dir, ds + ".toml")
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as inc:
                cmd = [a.binary, "replay", "--input", path, "--output", os.devnull,
                       "--incidents", inc.name]
                if os.path.exists(cfg):
                    cmd += ["--config", cfg]
                cmd += series_flag
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                with open(inc.name) as f:
                    events = [json.loads(line) for line in f if line.strip()]
            r = score(path, events)
            found_lines += ["%s/%s %d %d" % (ds, fn[:-4], start, ok) for start, ok in r["flags"]]
            false_lines += ["%s/%s %s" % (ds, fn[:-4], dt.datetime.fromtimestamp(
                ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")) for ms in r["false_starts"]]
            add(tally, r)
            add(total, r)
            if r["count"]:
                add(counts, r)
        row(ds, tally)
    row("all", total)
    row("  of which counts", counts)
    if a.found_list:
        with open(a.found_list, "w") as f:
            f.write("".join(line + "\n" for line in sorted(found_lines)))
    if a.false_list:
        with open(a.false_list, "w") as f:
            f.write("".join(line + "\n" for line in sorted(false_lines)))


if __name__ == "__main__":
    sys.exit(main())
