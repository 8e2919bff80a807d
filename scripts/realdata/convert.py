#!/usr/bin/env python3
"""Convert raw public labelled time series into timestamp,value,label CSVs.

Standard library only.

Usage:
    python3 convert.py [--raw RAW_DIR] [--out OUT_DIR]     # convert + stats
    python3 convert.py --stats-only [--out OUT_DIR]         # recompute stats

Input layout (produced by fetch.sh):
    RAW_DIR/cloud_monitoring/<domain>/<name>.csv   microsoft/cloud-monitoring-dataset data/
    RAW_DIR/aiops2018_kpi_sample/sample_data.csv   NetManAIOps/Bagel sample_data.csv
    RAW_DIR/wsd/<n>.csv                            alumik/AnoTransfer-data real-world/

Output:
    OUT_DIR/<dataset>/<series>.csv   header: timestamp,value,label
        timestamp = integer epoch seconds UTC, sorted ascending, unique
        value     = the value exactly as written in the source (quotes stripped)
        label     = 0/1
    OUT_DIR/<dataset>/stats.csv      per-series summary (see STATS_FIELDS)
    OUT_DIR/stats_table.md           markdown table of all series
Rows missing in the source stay missing (no filling, no resampling).
"""
import argparse
import csv
import datetime as dt
import math
import os
import statistics
import sys

STATS_FIELDS = [
    "dataset", "file", "rows", "start_utc", "end_utc", "span_days",
    "interval_s", "missing_rows", "label1_rows", "anomaly_windows",
    "value_min", "value_median", "value_p99", "value_max", "is_count",
    "fano", "fano_diff",
]


def parse_ts(s):
    """Parse the timestamp styles found in the sources; naive => UTC."""
    s = s.strip().strip('"').strip()
    if s.isdigit():
        return int(s)
    s2 = s.replace("Z", "+00:00")
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            t = dt.datetime.strptime(s2, fmt)
        except ValueError:
            continue
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return int(t.timestamp())
    raise ValueError("unparsed timestamp %r" % s)


def write_series(path, rows):
    """rows: list of (ts:int, value:str, label:int). Sort, dedupe (keep first,
    but OR the labels), write."""
    rows.sort(key=lambda r: r[0])
    out = []
    dups = 0
    for ts, v, lab in rows:
        if out and out[-1][0] == ts:
            dups += 1
            out[-1] = (ts, out[-1][1], max(out[-1][2], lab))
            continue
        out.append((ts, v, lab))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["timestamp", "value", "label"])
        for ts, v, lab in out:
            w.writerow([ts, v, lab])
    return len(out), dups


def read_3col(path, ts_col, val_col, lab_col):
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        r = csv.reader(f)
        next(r)  # header
        for rec in r:
            if not rec or all(not c.strip() for c in rec):
                continue
            ts = parse_ts(rec[ts_col])
            v = rec[val_col].strip().strip('"')
            lab = int(float(rec[lab_col].strip().strip('"')))
            rows.append((ts, v, 1 if lab else 0))
    return rows


# ---------------------------------------------------------------- datasets

def conv_cloud_monitoring(raw, out):
    src = os.path.join(raw, "cloud_monitoring")
    if not os.path.isdir(src):
        return False
    dst = os.path.join(out, "cloud_monitoring")
    for dom in sorted(os.listdir(src)):
        d = os.path.join(src, dom)
        if not os.path.isdir(d):
            continue
        for fn in sorted(os.listdir(d)):
            if not fn.endswith(".csv"):
                continue
            rows = read_3col(os.path.join(d, fn), 0, 1, 2)
            name = "%s__%s" % (dom, fn)
            n, dups = write_series(os.path.join(dst, name), rows)
            if dups:
                print("  %s: %d duplicate timestamps merged" % (name, dups),
                      file=sys.stderr)
    return True


def conv_aiops_sample(raw, out):
    p = os.path.join(raw, "aiops2018_kpi_sample", "sample_data.csv")
    if not os.path.isfile(p):
        return False
    rows = read_3col(p, 0, 1, 2)
    write_series(os.path.join(out, "aiops2018_kpi_sample",
                              "bagel_sample_kpi.csv"), rows)
    return True


def conv_wsd(raw, out):
    """WSD (AnoTransfer): 210 web-service KPIs of Baidu, Sogou and eBay, 1 min. Rows with
    an empty value are missing data and stay missing; an empty label is 0."""
    src = os.path.join(raw, "wsd")
    if not os.path.isdir(src):
        return False
    dst = os.path.join(out, "wsd")
    for fn in sorted(os.listdir(src), key=lambda f: (len(f), f)):
        if not fn.endswith(".csv"):
            continue
        rows = []
        with open(os.path.join(src, fn), newline="") as f:
            r = csv.DictReader(f)
            for rec in r:
                v = (rec["value"] or "").strip()
                if not v:
                    continue
                lab = (rec["label"] or "0").strip()
                rows.append((int(float(rec["timestamp"])), v, 1 if float(lab or 0) else 0))
        # Zero-padded names sort as the series are numbered.
        write_series(os.path.join(dst, "%03d.csv" % int(fn[:-4])), rows)
    return True


CONVERTERS = [
    ("cloud_monitoring", conv_cloud_monitoring),
    ("aiops2018_kpi_sample", conv_aiops_sample),
    ("wsd", conv_wsd),
]


# ------------------------------------------------------------------- stats

def pct(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def series_stats(path):
    ts, vals, labs = [], [], []
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        for t, v, l in r:
            ts.append(int(t))
            try:
                vals.append(float(v))
            except ValueError:
                vals.append(float("nan"))
            labs.append(int(l))
    n = len(ts)
    diffs = [b - a for a, b in zip(ts, ts[1:])]
    interval = int(statistics.median(diffs)) if diffs else 0
    expected = (ts[-1] - ts[0]) // interval + 1 if interval else n
    windows = sum(1 for i, l in enumerate(labs)
                  if l == 1 and (i == 0 or labs[i - 1] == 0))
    fin = [v for v in vals if not math.isnan(v)]
    sv = sorted(fin)
    is_count = bool(fin) and all(v >= 0 and v == int(v) for v in fin)
    mean = statistics.fmean(fin) if fin else float("nan")
    fano = (statistics.pvariance(fin) / mean) if fin and mean > 0 else float("nan")
    # first differences only between rows exactly one interval apart
    d = [vals[i + 1] - vals[i] for i in range(n - 1)
         if diffs[i] == interval and not math.isnan(vals[i])
         and not math.isnan(vals[i + 1])]
    fano_diff = (statistics.pvariance(d) / (2 * mean)) if len(d) > 1 and mean > 0 else float("nan")

    def fmt(x):
        if isinstance(x, float):
            if math.isnan(x):
                return "nan"
            return "%.6g" % x
        return str(x)

    iso = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "file": os.path.basename(path),
        "rows": n,
        "start_utc": iso(ts[0]),
        "end_utc": iso(ts[-1]),
        "span_days": fmt((ts[-1] - ts[0]) / 86400.0),
        "interval_s": interval,
        "missing_rows": expected - n,
        "label1_rows": sum(labs),
        "anomaly_windows": windows,
        "value_min": fmt(sv[0]) if sv else "nan",
        "value_median": fmt(pct(sv, 0.5)),
        "value_p99": fmt(pct(sv, 0.99)),
        "value_max": fmt(sv[-1]) if sv else "nan",
        "is_count": "yes" if is_count else "no",
        "fano": fmt(fano),
        "fano_diff": fmt(fano_diff),
    }


def write_stats(out):
    table = []
    for name, _ in CONVERTERS:
        d = os.path.join(out, name)
        if not os.path.isdir(d):
            continue
        rows = []
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".csv") and fn != "stats.csv":
                s = series_stats(os.path.join(d, fn))
                s["dataset"] = name
                rows.append(s)
        with open(os.path.join(d, "stats.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=STATS_FIELDS, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        table.extend(rows)
        print("%s: %d series, %d rows, %d anomaly windows" % (
            name, len(rows), sum(r["rows"] for r in rows),
            sum(r["anomaly_windows"] for r in rows)))
    cols = ["dataset", "file", "rows", "span_days", "interval_s",
            "missing_rows", "anomaly_windows", "label1_rows", "value_median",
            "value_p99", "is_count", "fano", "fano_diff"]
    with open(os.path.join(out, "stats_table.md"), "w") as f:
        f.write("| " + " | ".join(cols) + " |\n")
        f.write("|" + "---|" * len(cols) + "\n")
        for r in table:
            f.write("| " + " | ".join(str(r[c]) for c in cols) + " |\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", default=os.path.join(here, "raw"))
    ap.add_argument("--out", default=here)
    ap.add_argument("--stats-only", action="store_true")
    a = ap.parse_args()
    if not a.stats_only:
        for name, fn in CONVERTERS:
            ok = fn(a.raw, a.out)
            print("%-24s %s" % (name, "converted" if ok else "raw input missing, skipped"))
    write_stats(a.out)


if __name__ == "__main__":
    main()
