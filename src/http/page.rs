//! The status page: server-rendered HTML with inline SVG charts. No scripts, no external
//! fonts or CDN: it works offline and behind any proxy, and refreshes itself.

use std::fmt::Write;

use crate::event::{IncidentState, Timestamp};
use crate::status::{OutageView, SeriesView, StatusBoard};

/// Band width when the series' own threshold is not at hand (`open_z` of hour-wide buckets).
const DEFAULT_OPEN_Z: f64 = 6.0;

const REFRESH_SECS: u32 = 30;
const CHART_W: f64 = 1000.0;
const CHART_H: f64 = 140.0;

/// HTML-escapes text (names are validated upstream, but the page must not trust that).
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn hhmm(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    // 2024-01-17T14:10:00.000Z → 2024-01-17 14:10 UTC
    format!("{} {} UTC", &s[..10], &s[11..16])
}

fn duration(ms: i64) -> String {
    let m = ms.max(0) / 60_000;
    match (m / 1440, (m % 1440) / 60, m % 60) {
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m:02} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

pub(crate) fn render(board: &StatusBoard, instance: &str) -> String {
    render_at(board, instance, crate::status::wall_ms())
}

/// The page as of `now_ms` (wall clock: input freshness).
pub(crate) fn render_at(board: &StatusBoard, instance: &str, now_ms: i64) -> String {
    let view = board.incidents_at(now_ms);
    let shown = &view.open;
    let mut h = String::with_capacity(32 * 1024);
    // Input that stopped must never read as "all normal": nothing could have opened.
    let stale = view.input.as_ref().filter(|i| i.stale).map(|i| {
        let since = i.last_input.unwrap_or(i.watching_since);
        let what = if i.last_input.is_some() {
            "No data since"
        } else {
            "No data received since the start at"
        };
        (
            format!("{what} {}", hhmm(since)),
            duration(now_ms - since.millis()),
        )
    });
    let title = match (view.open_outages(), &stale) {
        (0, Some((no_data, _))) => no_data.clone(),
        (0, None) if !view.restored_series.is_empty() => {
            format!("{} open incidents (restored)", view.restored_series.len())
        }
        (0, None) => "All systems normal".to_string(),
        (1, _) => "1 open outage".to_string(),
        (n, _) => format!("{n} open outages"),
    };
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECS}">
<title>{title} · spikewatch</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}}
header{{background:#1d2330;color:#fff;padding:14px 24px;display:flex;justify-content:space-between;align-items:baseline}}
header h1{{margin:0;font-size:20px}} header span{{opacity:.7;font-size:13px}}
main{{max-width:1100px;margin:0 auto;padding:16px 24px}}
.card{{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:14px 18px;margin:0 0 16px}}
.card h2{{margin:0 0 6px;font-size:18px}} .meta{{font-size:14px;color:#4a5163;margin:2px 0}}
.sev{{display:inline-block;border-radius:4px;padding:1px 7px;font-size:12px;font-weight:600;color:#fff;vertical-align:middle}}
.critical{{background:#c62828}} .major{{background:#ef6c00}} .minor{{background:#f9a825;color:#1d2330}}
.ok{{background:#2e7d32;color:#fff;padding:18px;border-radius:8px;font-size:18px}}
.stale{{background:#5f6368;color:#fff;padding:18px;border-radius:8px;font-size:18px;margin:0 0 16px}}
.geos span{{display:inline-block;background:#eef1f6;border-radius:4px;padding:1px 6px;margin:2px 3px 0 0;font-size:13px}}
.hint{{background:#fff4e5;border-left:4px solid #ef6c00;padding:6px 10px;font-size:14px;margin-top:8px}}
table{{border-collapse:collapse;width:100%;background:#fff;font-size:14px}}
th,td{{text-align:left;padding:6px 8px;border-bottom:1px solid #e3e6ec}}
svg{{display:block;margin-top:8px;width:100%;height:auto}}
.legend{{font-size:12px;color:#4a5163}}
.map svg{{max-width:560px}}
</style></head><body>
<header><h1>{title}</h1><span>spikewatch · {instance} · refreshes every {REFRESH_SECS} s</span></header>
<main>
"#,
        title = esc(&title),
        instance = esc(instance),
    );
    if let Some((no_data, ago)) = &stale {
        let _ = write!(
            h,
            r#"<div class="stale">{no_data} ({ago} ago): no outage can open or resolve without input, so what this page shows may be out of date.</div>"#,
        );
    }
    if view.open_outages() == 0 && view.restored_series.is_empty() && stale.is_none() {
        h.push_str(r#"<div class="ok">No open outages.</div>"#);
    }
    for o in shown {
        card(&mut h, o, board);
    }
    for r in &view.restored {
        let _ = write!(
            h,
            r#"<section class="card restored"><h2>{service} · problems in {places} <span class="sev {sev}">{sev}</span></h2>
<p class="meta">Since {since}; {signals}; peak z {peak:.1} at {peak_at} in {geo}</p>
<p class="meta">Restored from saved state at a restart or rebalance: still open; details follow with its next event.</p></section>
"#,
            service = esc(&r.service),
            places = places(&r.countries),
            sev = r.severity.as_str(),
            since = hhmm(r.opened_at),
            signals = esc(&r.signals.join(", ")),
            peak = r.peak_zscore,
            peak_at = hhmm(r.peak_at),
            geo = geo_label(&r.peak_geo),
        );
    }
    if !view.restored_series.is_empty() {
        let _ = write!(
            h,
            r#"<p class="meta">{} open series incident(s) restored from saved state at a restart or rebalance; each is updated by its next event.</p>"#,
            view.restored_series.len()
        );
    }
    super::map::render(&mut h, shown);
    if !view.resolved.is_empty() {
        h.push_str(
            "<h2>Recently resolved</h2><table><tr><th>Service</th><th>Where</th><th>Signals</th>\
             <th>Opened</th><th>Lasted</th><th>Peak</th><th>Severity</th></tr>",
        );
        for r in view.resolved.iter().take(50) {
            let e = &r.latest;
            let end = e.resolved_at.unwrap_or(e.as_of).millis();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>z {:.1}</td>\
                 <td><span class=\"sev {sev}\">{sev}</span></td></tr>",
                esc(&e.service),
                places(&e.countries),
                esc(&e.signals.join(", ")),
                hhmm(e.opened_at),
                duration(end - e.opened_at.millis()),
                e.peak_zscore,
                sev = e.severity.as_str(),
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</main></body></html>\n");
    h
}

/// `*` means every geo; say so.
fn geo_label(geo: &str) -> String {
    if geo == "*" {
        "all geos".to_string()
    } else {
        esc(geo)
    }
}

/// Countries of an outage; `*` (service-wide) reads "all geos" when no country is named.
fn places(countries: &[String]) -> String {
    let named: Vec<String> = countries
        .iter()
        .filter(|c| c.as_str() != "*")
        .map(|c| esc(c))
        .collect();
    if named.is_empty() {
        "all geos".to_string()
    } else {
        named.join(", ")
    }
}

fn card(h: &mut String, o: &OutageView, board: &StatusBoard) {
    let e = &o.latest;
    // The strongest series this board charts (roll-ups always are, incident series once
    // they opened); its newest bucket is fresher than the latest event.
    let charted = e
        .affected
        .iter()
        .find_map(|a| board.series(&e.service, &a.geo, &a.signal).map(|s| (a, s)));
    let lead = charted.as_ref().map(|(a, _)| *a).or(e.affected.first());
    let as_of = charted
        .as_ref()
        .and_then(|(_, s)| s.buckets.last())
        .map_or(e.as_of.millis(), |p| {
            p.start.millis() + (e.as_of.millis() - lead.map_or(0, |a| a.bucket_start.millis()))
        })
        .max(e.as_of.millis());
    let agree = if e.confirmed {
        format!("confirmed by {}", esc(&e.signals.join(" and ")))
    } else {
        format!(
            "{} only so far (minor until another signal agrees)",
            esc(&e.signals.join(", "))
        )
    };
    let _ = write!(
        h,
        r#"<section class="card"><h2>{service} · problems in {places} <span class="sev {sev}">{sev}</span></h2>
<p class="meta">Since {since} (open {dur}); {agree}{reopened}</p>"#,
        service = esc(&e.service),
        places = places(&e.countries),
        sev = e.severity.as_str(),
        since = hhmm(e.opened_at),
        dur = duration(as_of - e.opened_at.millis()),
        reopened = if e.reopened > 0 {
            format!("; came back {} time(s) after going quiet", e.reopened)
        } else {
            String::new()
        },
    );
    if let Some(a) = lead {
        let (at, observed, expected, z) = match charted.as_ref().and_then(|(_, s)| s.buckets.last())
        {
            Some(p) if p.start >= a.bucket_start => (p.start, p.observed, p.expected, p.zscore),
            _ => (a.bucket_start, Some(a.observed), a.expected, a.zscore),
        };
        let numbers = match observed {
            Some(x) if expected > 0.0 => format!(
                "{x:.0} {} in the bucket of {}, {:.1}× normal (expected {expected:.1}, z {z:.1})",
                esc(&a.signal),
                hhmm(at),
                x / expected
            ),
            Some(x) => format!(
                "{x:.0} {} in the bucket of {}, vs ~0 expected",
                esc(&a.signal),
                hhmm(at)
            ),
            None => format!("no {} data in the bucket of {}", esc(&a.signal), hhmm(at)),
        };
        // Events come on open, growth ×1.5 and resolve only: a charted bucket since the
        // outage opened may be above the latest event's peak. Show the true peak.
        let (peak, peak_at) = charted
            .as_ref()
            .into_iter()
            .flat_map(|(_, s)| s.buckets.iter())
            .filter(|p| p.start >= e.opened_at && p.zscore > e.peak_zscore)
            .max_by(|x, y| x.zscore.total_cmp(&y.zscore))
            .map_or((e.peak_zscore, e.peak_at), |p| (p.zscore, p.start));
        let _ = write!(
            h,
            r#"<p class="meta">{geo}: {numbers}; peak z {peak:.1} at {peak_at}</p>"#,
            geo = geo_label(&a.geo),
            peak_at = hhmm(peak_at),
        );
    }
    let mut extra = Vec::new();
    // Sums as of the latest outage event (events come when something changes, not per bucket).
    for x in &e.above_baseline {
        extra.push(format!(
            "{:.0} {} above normal by {}",
            x.above_baseline,
            esc(&x.signal),
            hhmm(e.as_of)
        ));
    }
    if !e.top_categories.is_empty() {
        let total: f64 = e.top_categories.iter().map(|c| c.count).sum();
        let top: Vec<String> = e
            .top_categories
            .iter()
            .map(|c| {
                format!(
                    "{} ({:.0}%)",
                    esc(&c.category),
                    100.0 * c.count / total.max(1.0)
                )
            })
            .collect();
        extra.push(format!("top problems: {}", top.join(", ")));
    }
    if !extra.is_empty() {
        let _ = write!(h, r#"<p class="meta">{}</p>"#, extra.join("; "));
    }
    h.push_str(r#"<p class="meta geos">Affected: "#);
    for g in &e.geos {
        let _ = write!(h, "<span>{}</span>", geo_label(g));
    }
    if e.unlisted_series > 0 {
        let _ = write!(h, " and {} more series", e.unlisted_series);
    }
    h.push_str("</p>");
    if !e.concurrent_services.is_empty() {
        let _ = write!(
            h,
            r#"<div class="hint">Also failing in the same places: {}. Several services at once may point to a network or provider problem.</div>"#,
            esc(&e.concurrent_services.join(", "))
        );
    }
    if let Some((a, series)) = charted {
        let open_z = board
            .open_series_incident(&e.service, &a.geo, &a.signal)
            .map_or(DEFAULT_OPEN_Z, |i| i.latest.thresholds.open_z);
        let _ = write!(
            h,
            r#"<p class="legend">{geo} · {signal}</p>"#,
            geo = geo_label(&a.geo),
            signal = esc(&a.signal)
        );
        chart(h, &series, open_z, e.state == IncidentState::Resolved);
    }
    h.push_str("</section>\n");
}

/// Observed (line) against the expected value and its band (expected ± open_z·scale),
/// alerting buckets marked.
fn chart(h: &mut String, s: &SeriesView, open_z: f64, _resolved: bool) {
    let pts = &s.buckets;
    if pts.len() < 2 {
        return;
    }
    let t0 = pts[0].start.millis() as f64;
    let t1 = pts[pts.len() - 1].start.millis() as f64;
    let span = (t1 - t0).max(1.0);
    let top = pts
        .iter()
        .map(|p| (p.expected + open_z * p.scale).max(p.observed.unwrap_or(0.0)))
        .fold(1.0_f64, f64::max)
        * 1.05;
    let x = |t: Timestamp| (t.millis() as f64 - t0) / span * CHART_W;
    let y = |v: f64| CHART_H - (v.max(0.0) / top) * CHART_H;
    let mut band = String::new();
    for p in pts {
        let _ = write!(
            band,
            "{:.1},{:.1} ",
            x(p.start),
            y(p.expected + open_z * p.scale)
        );
    }
    for p in pts.iter().rev() {
        let _ = write!(
            band,
            "{:.1},{:.1} ",
            x(p.start),
            y(p.expected - open_z * p.scale)
        );
    }
    let line = |f: &dyn Fn(&crate::status::BucketPoint) -> Option<f64>| {
        let mut d = String::new();
        let mut pen_up = true;
        for p in pts {
            match f(p) {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_up { "M" } else { "L" },
                        x(p.start),
                        y(v)
                    );
                    pen_up = false;
                }
                None => pen_up = true,
            }
        }
        d
    };
    let mut alerts = String::new();
    let w = (CHART_W / pts.len() as f64).max(1.0);
    for p in pts.iter().filter(|p| p.alert) {
        let _ = write!(
            alerts,
            r##"<rect x="{:.1}" y="0" width="{w:.1}" height="{CHART_H}" fill="#c62828" fill-opacity="0.08"/>"##,
            x(p.start)
        );
    }
    let _ = write!(
        h,
        r##"<svg viewBox="0 0 {CHART_W} {h_total}" width="{CHART_W}" height="{h_total}" role="img" aria-label="observed vs expected for {label}">
{alerts}<polygon points="{band}" fill="#1565c0" fill-opacity="0.12"/>
<path d="{exp}" fill="none" stroke="#1565c0" stroke-width="1.5" stroke-dasharray="4 3"/>
<path d="{obs}" fill="none" stroke="#c62828" stroke-width="1.8"/>
<text x="2" y="11" font-size="11" fill="#4a5163">{top:.0}</text><text x="2" y="{ty}" font-size="11" fill="#4a5163">{from}</text><text x="{CHART_W}" y="{ty}" font-size="11" fill="#4a5163" text-anchor="end">{to}</text>
</svg><p class="legend">red: observed · dashed blue: expected · band: normal range (±{open_z} scales) · shaded: alerting</p>"##,
        h_total = CHART_H + 16.0,
        label = esc(&format!("{}/{}/{}", s.service, s.geo, s.signal)),
        band = band.trim_end(),
        exp = line(&|p| Some(p.expected)),
        obs = line(&|p| p.observed),
        ty = CHART_H + 13.0,
        from = hhmm(pts[0].start),
        to = hhmm(pts[pts.len() - 1].start),
    );
}
