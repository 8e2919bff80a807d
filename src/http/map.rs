//! The page's map: one tile per country on a fixed grid (Europe, where the product started,
//! and the larger markets around it), coloured by the worst open outage there. A tile grid
//! needs no map data, fonts or scripts, reads the same at any size, and gives every country
//! the same weight: an outage in Malta is as visible as one in Germany. Countries without a
//! place on the grid get tiles in a row of their own below it.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::event::Severity;
use crate::status::OutageView;

/// (ISO 3166-1 alpha-2, column, row).
const GRID: &[(&str, u8, u8)] = &[
    ("IS", 0, 0),
    ("NO", 5, 0),
    ("SE", 6, 0),
    ("FI", 7, 0),
    ("IE", 1, 1),
    ("GB", 2, 1),
    ("DK", 5, 1),
    ("EE", 7, 1),
    ("RU", 8, 1),
    ("NL", 3, 2),
    ("DE", 4, 2),
    ("PL", 5, 2),
    ("LT", 6, 2),
    ("LV", 7, 2),
    ("BY", 8, 2),
    ("KZ", 9, 2),
    ("CA", 0, 2),
    ("US", 0, 3),
    ("BE", 3, 3),
    ("LU", 4, 3),
    ("CZ", 5, 3),
    ("SK", 6, 3),
    ("UA", 7, 3),
    ("GE", 9, 3),
    ("FR", 2, 4),
    ("CH", 3, 4),
    ("AT", 4, 4),
    ("HU", 5, 4),
    ("RO", 6, 4),
    ("MD", 7, 4),
    ("AZ", 9, 4),
    ("MX", 0, 4),
    ("PT", 0, 5),
    ("ES", 1, 5),
    ("MC", 2, 5),
    ("IT", 3, 5),
    ("SI", 4, 5),
    ("HR", 5, 5),
    ("RS", 6, 5),
    ("BG", 7, 5),
    ("TR", 8, 5),
    ("AM", 9, 5),
    ("BR", 0, 6),
    ("MA", 1, 6),
    ("SM", 3, 6),
    ("BA", 5, 6),
    ("ME", 6, 6),
    ("MK", 7, 6),
    ("CY", 8, 6),
    ("IR", 9, 6),
    ("IN", 10, 6),
    ("CN", 11, 5),
    ("JP", 12, 5),
    ("AR", 0, 7),
    ("DZ", 1, 7),
    ("TN", 2, 7),
    ("MT", 3, 7),
    ("AL", 6, 7),
    ("GR", 7, 7),
    ("IL", 8, 7),
    ("IQ", 9, 7),
    ("PK", 10, 7),
    ("KR", 12, 6),
    ("EG", 7, 8),
    ("SA", 9, 8),
    ("AE", 10, 8),
    ("ZA", 6, 9),
    ("AU", 12, 8),
];

const TILE: u32 = 44;
const GAP: u32 = 4;
const COLS: u32 = 13;

/// What the map shows of one country.
#[derive(Debug, Default)]
struct Country {
    worst: Option<Severity>,
    services: Vec<String>,
    /// Affected geos below the country (cities, regions).
    places: usize,
}

/// Countries (first geo segment) of the open outages, with the worst severity and services.
fn countries(open: &[OutageView]) -> BTreeMap<String, Country> {
    let mut out: BTreeMap<String, Country> = BTreeMap::new();
    for o in open {
        let e = &o.latest;
        for c in e.countries.iter().filter(|c| c.as_str() != "*") {
            let x = out.entry(c.clone()).or_default();
            x.worst = x.worst.max(Some(e.severity));
            if !x.services.contains(&e.service) {
                x.services.push(e.service.clone());
            }
            x.places += e
                .geos
                .iter()
                .filter(|g| g.len() > c.len() && g.starts_with(c.as_str()))
                .count();
        }
    }
    out
}

fn fill(s: Option<Severity>) -> (&'static str, &'static str) {
    match s {
        Some(Severity::Critical) => ("#c62828", "#fff"),
        Some(Severity::Major) => ("#ef6c00", "#fff"),
        Some(Severity::Minor) => ("#f9a825", "#1d2330"),
        None => ("#e3e6ec", "#6b7385"),
    }
}

fn tile(h: &mut String, code: &str, col: u32, row: u32, c: Option<&Country>) {
    let (x, y) = (col * (TILE + GAP), row * (TILE + GAP));
    let (bg, fg) = fill(c.and_then(|c| c.worst));
    let class = if c.is_some() { "tile affected" } else { "tile" };
    let _ = write!(
        h,
        r#"<g class="{class}"><rect x="{x}" y="{y}" width="{TILE}" height="{TILE}" rx="5" fill="{bg}"/><text x="{tx}" y="{ty}" text-anchor="middle" font-size="13" font-weight="600" fill="{fg}">{code}</text>"#,
        tx = x + TILE / 2,
        ty = y + TILE / 2 + 2,
        code = super::page::esc(code),
    );
    if let Some(c) = c {
        if c.places > 0 {
            let _ = write!(
                h,
                r#"<text x="{tx}" y="{ty}" text-anchor="middle" font-size="9" fill="{fg}">{n} place{s}</text>"#,
                tx = x + TILE / 2,
                ty = y + TILE - 6,
                n = c.places,
                s = if c.places == 1 { "" } else { "s" },
            );
        }
        let _ = write!(
            h,
            "<title>{}: {}</title>",
            super::page::esc(code),
            super::page::esc(&c.services.join(", "))
        );
    }
    h.push_str("</g>");
}

/// An inline SVG tile map of the countries with an open outage; nothing when none is open.
pub(crate) fn render(h: &mut String, open: &[OutageView]) {
    let affected = countries(open);
    let everywhere = open
        .iter()
        .any(|o| o.latest.countries.iter().any(|c| c == "*"));
    if affected.is_empty() && !everywhere {
        return;
    }
    let on_grid: Vec<&str> = GRID.iter().map(|g| g.0).collect();
    let extra: Vec<&String> = affected
        .keys()
        .filter(|c| !on_grid.contains(&c.as_str()))
        .collect();
    let grid_rows = GRID.iter().map(|g| u32::from(g.2)).max().unwrap_or(0) + 1;
    let extra_rows = (extra.len() as u32).div_ceil(COLS);
    let width = COLS * (TILE + GAP);
    let height = (grid_rows + extra_rows) * (TILE + GAP);
    let _ = write!(
        h,
        r#"<section class="card map"><h2>Where</h2><svg viewBox="0 0 {width} {height}" role="img" aria-label="countries with open outages">"#
    );
    for &(code, col, row) in GRID {
        tile(h, code, col.into(), row.into(), affected.get(code));
    }
    for (i, code) in extra.iter().enumerate() {
        let i = i as u32;
        tile(h, code, i % COLS, grid_rows + i / COLS, affected.get(*code));
    }
    h.push_str("</svg>");
    let _ = write!(
        h,
        r#"<p class="legend">Worst open outage per country: <span class="sev critical">critical</span> <span class="sev major">major</span> <span class="sev minor">minor</span>{}</p></section>"#,
        if everywhere {
            "; some outages are service-wide (all geos)"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_no_two_countries_on_one_tile() {
        let mut seen = std::collections::HashSet::new();
        for &(code, col, row) in GRID {
            assert!(seen.insert((col, row)), "{code} shares a tile");
            assert!(u32::from(col) < COLS, "{code}");
        }
    }
}
