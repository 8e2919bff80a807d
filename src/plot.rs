//! SVG plots of observed vs expected, with the alert band (expected ± open_z·scale) and
//! incident spans shaded.
//!
//! Rendered with plotters' SVG backend and its built-in "naive" font metrics: text is written
//! as SVG `<text>` elements, and no font file is read at render time.

use std::path::Path;

use chrono::DateTime;
use plotters::prelude::*;

/// Fill of incident spans (an open incident), as it appears in the SVG.
pub const INCIDENT_FILL_SVG: &str = "#FFCCCC";
const INCIDENT_FILL: RGBColor = RGBColor(0xFF, 0xCC, 0xCC);
/// Fill of injected-outage marks (ground truth of generated traffic), as in the SVG.
pub const TRUTH_FILL_SVG: &str = "#7F7F7F";
const TRUTH_FILL: RGBColor = RGBColor(0x7F, 0x7F, 0x7F);
const BAND_FILL: RGBColor = RGBColor(0xDD, 0xE6, 0xF5);
const OBSERVED: RGBColor = RGBColor(0x1F, 0x4E, 0xB4);
const EXPECTED: RGBColor = RGBColor(0x30, 0x30, 0x30);

/// Most points drawn per line: longer series are reduced (max observed, mean expected per
/// group of buckets) so spikes stay visible and the file stays small.
pub(crate) const MAX_POINTS: usize = 1500;

/// One closed bucket of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotPoint {
    pub start_ms: i64,
    pub end_ms: i64,
    /// `None`: missing data.
    pub observed: Option<f64>,
    pub expected: f64,
    /// Half-width of the band around `expected` (open_z · scale).
    pub band: f64,
    /// An incident was open after this bucket.
    pub alert: bool,
}

/// One chart: a series, its incident spans, optional ground-truth spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Panel {
    pub title: String,
    pub points: Vec<PlotPoint>,
    /// Incident spans `[start, end)` in epoch ms, shaded.
    pub spans: Vec<(i64, i64)>,
    /// Injected outages `[start, end)` (generated traffic only), marked along the top.
    pub truth: Vec<(i64, i64)>,
}

impl Panel {
    /// A panel whose incident spans are the runs of buckets with `alert` set.
    pub(crate) fn new(title: String, points: Vec<PlotPoint>) -> Self {
        let spans = alert_spans(&points);
        Self {
            title,
            points,
            spans,
            truth: Vec::new(),
        }
    }
}

/// Runs of consecutive alert buckets as `[start, end)` spans.
pub(crate) fn alert_spans(points: &[PlotPoint]) -> Vec<(i64, i64)> {
    let mut spans: Vec<(i64, i64)> = Vec::new();
    let mut cur: Option<(i64, i64)> = None;
    for p in points {
        match (&mut cur, p.alert) {
            (Some(c), true) if p.start_ms <= c.1 => c.1 = p.end_ms,
            (_, true) => {
                if let Some(c) = cur.take() {
                    spans.push(c);
                }
                cur = Some((p.start_ms, p.end_ms));
            }
            (_, false) => {
                if let Some(c) = cur.take() {
                    spans.push(c);
                }
            }
        }
    }
    spans.extend(cur);
    spans
}

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot")]
    Empty,
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn draw_err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError::Draw(format!("{e:?}"))
}

/// Reduces a series to at most [`MAX_POINTS`]: per group, the largest observed value (spikes
/// stay visible), the mean expected and band, alert if any bucket alerted.
pub(crate) fn downsample(points: &[PlotPoint]) -> Vec<PlotPoint> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let group = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(group)
        .map(|c| {
            let n = c.len() as f64;
            PlotPoint {
                start_ms: c[0].start_ms,
                end_ms: c[c.len() - 1].end_ms,
                observed: c.iter().filter_map(|p| p.observed).reduce(f64::max),
                expected: c.iter().map(|p| p.expected).sum::<f64>() / n,
                band: c.iter().map(|p| p.band).sum::<f64>() / n,
                alert: c.iter().any(|p| p.alert),
            }
        })
        .collect()
}

/// Tick positions on round UTC times (every 1 min … 14 days), at most about 8.
pub(crate) fn time_ticks(from_ms: i64, to_ms: i64) -> (Vec<i64>, i64) {
    const MIN: i64 = 60_000;
    const STEPS: [i64; 15] = [
        MIN,
        5 * MIN,
        10 * MIN,
        15 * MIN,
        30 * MIN,
        60 * MIN,
        120 * MIN,
        180 * MIN,
        360 * MIN,
        720 * MIN,
        1440 * MIN,
        2 * 1440 * MIN,
        7 * 1440 * MIN,
        14 * 1440 * MIN,
        28 * 1440 * MIN,
    ];
    let span = (to_ms - from_ms).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8)
        .unwrap_or(STEPS[STEPS.len() - 1]);
    let first = from_ms.div_euclid(step) * step
        + if from_ms.rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    let ticks = (0..)
        .map(|i| first + i * step)
        .take_while(|&t| t <= to_ms)
        .collect();
    (ticks, step)
}

fn fmt_time(ms: i64, step_ms: i64, span_ms: i64) -> String {
    let Some(dt) = DateTime::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    if step_ms >= 86_400_000 {
        dt.format("%b %d").to_string()
    } else if span_ms > 86_400_000 {
        dt.format("%b %d %H:%M").to_string()
    } else {
        dt.format("%H:%M").to_string()
    }
}

/// Renders the panels stacked vertically, `width` × `panel_height` each, to an SVG document.
pub(crate) fn render_svg(
    panels: &[Panel],
    width: u32,
    panel_height: u32,
) -> Result<String, PlotError> {
    if panels.is_empty() {
        return Err(PlotError::Empty);
    }
    let mut svg = String::new();
    {
        let height = panel_height * panels.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let areas = root.split_evenly((panels.len(), 1));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            draw_panel(panel, area)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn draw_panel(
    panel: &Panel,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> Result<(), PlotError> {
    let pts = downsample(&panel.points);
    if pts.is_empty() {
        area.draw_text(
            &format!("{}: no data", panel.title),
            &("sans-serif", 16).into_font().color(&BLACK),
            (10, 10),
        )
        .map_err(draw_err)?;
        return Ok(());
    }
    let x0 = pts[0].start_ms;
    let x1 = pts[pts.len() - 1].end_ms.max(x0 + 1);
    let ymax = pts
        .iter()
        .map(|p| p.observed.unwrap_or(0.0).max(p.expected + p.band))
        .fold(1.0f64, f64::max)
        * 1.08;
    let span = x1 - x0;
    let (mut ticks, step) = time_ticks(x0, x1);
    // A label centred on a tick near either edge would be cut off.
    ticks.retain(|&t| t - x0 > span / 25 && x1 - t > span / 25);
    let (left_corner, ymax) = legend_corner(&pts, x0, x1, ymax);
    let legend_at = if left_corner {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::UpperRight
    };
    // Values stay per original bucket when points are merged for drawing (max observed, mean
    // expected), so the unit is the panel's own bucket.
    let bucket_ms = panel
        .points
        .first()
        .map_or(60_000, |p| p.end_ms - p.start_ms)
        .max(1);
    let per = if bucket_ms % 3_600_000 == 0 {
        format!("{} h", bucket_ms / 3_600_000)
    } else if bucket_ms % 60_000 == 0 {
        format!("{} min", bucket_ms / 60_000)
    } else {
        format!("{} s", bucket_ms / 1000)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(8)
        .margin_right(24)
        .x_label_area_size(40)
        .y_label_area_size(66)
        .build_cartesian_2d((x0..x1).with_key_points(ticks), 0f64..ymax)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("time (UTC)")
        .y_desc(format!("count per {per} bucket"))
        .axis_desc_style(("sans-serif", 12))
        .y_labels(5)
        .bold_line_style(RGBColor(0xE0, 0xE0, 0xE0))
        .light_line_style(RGBColor(0xF4, 0xF4, 0xF4))
        .x_label_formatter(&|ms| fmt_time(*ms, step, span))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw_err)?;

    if !panel.spans.is_empty() {
        chart
            .draw_series(
                panel
                    .spans
                    .iter()
                    .map(|&(a, b)| Rectangle::new([(a, 0.0), (b, ymax)], INCIDENT_FILL.filled())),
            )
            .map_err(draw_err)?
            .label("incident (alert)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], INCIDENT_FILL.filled()));
    }
    if !panel.truth.is_empty() {
        chart
            .draw_series(
                panel.truth.iter().map(|&(a, b)| {
                    Rectangle::new([(a, ymax * 0.975), (b, ymax)], TRUTH_FILL.filled())
                }),
            )
            .map_err(draw_err)?
            .label("injected outage")
            .legend(|(x, y)| Rectangle::new([(x, y - 3), (x + 14, y + 3)], TRUTH_FILL.filled()));
    }
    // Band: upper edge left to right, lower edge back.
    let mut poly: Vec<(i64, f64)> = pts
        .iter()
        .map(|p| ((p.start_ms + p.end_ms) / 2, p.expected + p.band))
        .collect();
    poly.extend(
        pts.iter()
            .rev()
            .map(|p| ((p.start_ms + p.end_ms) / 2, (p.expected - p.band).max(0.0))),
    );
    chart
        .draw_series(std::iter::once(Polygon::new(poly, BAND_FILL.filled())))
        .map_err(draw_err)?
        .label("expected ± open_z·scale")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BAND_FILL.filled()));
    chart
        .draw_series(LineSeries::new(
            pts.iter()
                .map(|p| ((p.start_ms + p.end_ms) / 2, p.expected)),
            EXPECTED.stroke_width(1),
        ))
        .map_err(draw_err)?
        .label("expected")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], EXPECTED));
    // Observed: one line per run of buckets with data (missing data breaks the line).
    let mut first = true;
    let mut run: Vec<(i64, f64)> = Vec::new();
    let mut runs: Vec<Vec<(i64, f64)>> = Vec::new();
    for p in &pts {
        match p.observed {
            Some(v) => run.push(((p.start_ms + p.end_ms) / 2, v)),
            None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    for r in runs {
        let s = chart
            .draw_series(LineSeries::new(r, OBSERVED.stroke_width(1)))
            .map_err(draw_err)?;
        if first {
            s.label("observed")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], OBSERVED));
            first = false;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xAA, 0xAA, 0xAA))
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// Where the legend goes: the upper corner (`true`: left) whose quarter of the chart holds
/// the lower data; if both quarters reach above half the height, the y range grows so the
/// legend sits above the data. It never hides an outage's onset.
fn legend_corner(pts: &[PlotPoint], x0: i64, x1: i64, ymax: f64) -> (bool, f64) {
    let span = x1 - x0;
    let busiest = |from: i64, to: i64| {
        pts.iter()
            .filter(|p| p.start_ms >= from && p.start_ms < to)
            .map(|p| p.observed.unwrap_or(0.0).max(p.expected + p.band))
            .fold(0.0f64, f64::max)
    };
    let (left, right) = (busiest(x0, x0 + span / 4), busiest(x1 - span / 4, x1));
    let left_side = left <= right;
    if left.min(right) / ymax < 0.55 {
        (left_side, ymax)
    } else {
        (left_side, ymax * 1.6)
    }
}

/// Renders and writes the panels to `path` (see `render_svg`).
pub fn write_svg(
    path: &Path,
    panels: &[Panel],
    width: u32,
    panel_height: u32,
) -> Result<(), PlotError> {
    let svg = render_svg(panels, width, panel_height)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(i: i64, obs: Option<f64>, alert: bool) -> PlotPoint {
        PlotPoint {
            start_ms: i * 60_000,
            end_ms: (i + 1) * 60_000,
            observed: obs,
            expected: 10.0,
            band: 6.0,
            alert,
        }
    }

    #[test]
    fn alert_runs_become_spans() {
        let pts: Vec<_> = (0..10)
            .map(|i| pt(i, Some(1.0), (3..6).contains(&i) || i == 9))
            .collect();
        assert_eq!(
            alert_spans(&pts),
            vec![(3 * 60_000, 6 * 60_000), (9 * 60_000, 10 * 60_000)]
        );
    }

    #[test]
    fn ticks_fall_on_round_utc_times() {
        let day = 86_400_000;
        let t0 = 1_704_067_200_000 + 3 * 3_600_000 + 17 * 60_000; // 2024-01-01 03:17
        let (ticks, step) = time_ticks(t0, t0 + 7 * day);
        assert_eq!(step, day);
        assert!(ticks.iter().all(|t| t % day == 0));
        assert_eq!(ticks.len(), 7);
        let (ticks, step) = time_ticks(t0, t0 + 5 * 3_600_000);
        assert_eq!(step, 3_600_000);
        assert_eq!(ticks[0], 1_704_067_200_000 + 4 * 3_600_000);
        assert_eq!(fmt_time(ticks[0], step, 5 * 3_600_000), "04:00");
    }

    #[test]
    fn legend_avoids_the_busy_side_or_makes_headroom() {
        let at = |high: &dyn Fn(i64) -> bool| -> Vec<PlotPoint> {
            (0..100)
                .map(|i| pt(i, Some(if high(i) { 100.0 } else { 10.0 }), false))
                .collect()
        };
        let end = 100 * 60_000;
        // An outage at the start: the legend goes right, the range stays.
        assert_eq!(
            legend_corner(&at(&|i| i < 20), 0, end, 110.0),
            (false, 110.0)
        );
        // At the end: left.
        assert_eq!(
            legend_corner(&at(&|i| i > 80), 0, end, 110.0),
            (true, 110.0)
        );
        // Both sides busy: headroom above the data.
        let (_, y) = legend_corner(&at(&|i| !(30..70).contains(&i)), 0, end, 110.0);
        assert!(y > 110.0 * 1.5);
    }

    #[test]
    fn downsampling_keeps_the_spike_and_bounds_points() {
        let mut pts: Vec<_> = (0..10_000).map(|i| pt(i, Some(10.0), false)).collect();
        pts[5_001].observed = Some(500.0);
        let d = downsample(&pts);
        assert!(d.len() <= MAX_POINTS);
        assert!(d.iter().any(|p| p.observed == Some(500.0)));
    }

    #[test]
    fn svg_has_text_spans_and_no_font_files() {
        let pts: Vec<_> = (0..200)
            .map(|i| {
                pt(
                    1_704_067_200 / 60 + i,
                    if i == 50 { None } else { Some(12.0) },
                    (100..120).contains(&i),
                )
            })
            .collect();
        let svg = render_svg(
            &[Panel::new("telegram/IT/complaints".into(), pts)],
            800,
            300,
        )
        .unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{}",
            &svg[..50]
        );
        assert!(svg.contains("<text"));
        assert!(svg.contains("telegram/IT/complaints"));
        assert!(svg.contains(INCIDENT_FILL_SVG), "incident span is shaded");
        assert!(
            svg.contains("count per 1 min bucket"),
            "the y axis has its unit"
        );
        assert!(svg.contains("time (UTC)"));
        assert!(!svg.contains(".ttf"));
    }
}
