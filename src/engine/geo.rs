//! Geography hierarchy. A geo code rolls up by its `-` segments (`IT-RM` → `IT`), then through
//! configured parents (`IT` → `EU`), and everything ends at `*`, so a nationwide outage shows at
//! country level even where each city is small.

use ahash::AHashMap;

use super::settings::GeoSettings;

/// Index of a geo code in a [`GeoTable`].
pub type GeoId = u32;

/// The global geo every other geo rolls up to.
pub(crate) const GLOBAL: &str = "*";

/// Deepest hierarchy followed; a guard against pathological codes like `A-B-C-D-…`.
pub(crate) const MAX_DEPTH: usize = 8;

/// What a geo code resolved to under a capacity limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The code itself (possibly just created).
    Exact(GeoId),
    /// The table is full: the nearest ancestor that exists.
    Ancestor(GeoId),
    /// The table is full and no ancestor exists.
    Nothing,
}

/// The roll-up rule itself, without a table: the engine's [`GeoTable`], the demo's and the
/// scenario evaluation's roll-ups all follow it.
impl GeoSettings {
    /// Parent of a code: a configured parent wins, else the code minus its last `-` segment,
    /// else `*` (unless `no_global`).
    pub(crate) fn parent_of<'a>(&'a self, code: &'a str) -> Option<&'a str> {
        if code == GLOBAL {
            return None;
        }
        if let Some(p) = self.parents.get(code) {
            return Some(p);
        }
        if let Some((prefix, _)) = code.rsplit_once('-') {
            return Some(prefix);
        }
        (!self.no_global).then_some(GLOBAL)
    }

    /// The code and its ancestors, nearest first (at most [`MAX_DEPTH`]; a cycle of configured
    /// parents is cut where it repeats).
    pub(crate) fn lineage<'a>(&'a self, code: &'a str) -> Vec<&'a str> {
        let mut out = vec![code];
        while out.len() < MAX_DEPTH {
            match self.parent_of(out[out.len() - 1]) {
                Some(p) if !out.contains(&p) => out.push(p),
                _ => break,
            }
        }
        out
    }

    /// `ancestor` is `code` or rolls up from it (`IT` covers `IT-RM`, `*` covers all).
    pub(crate) fn covers(&self, ancestor: &str, code: &str) -> bool {
        ancestor == code || self.lineage(code).contains(&ancestor)
    }

    /// Levels above a code: `*` 0, `IT` 1, `IT-RM` 2 (more with configured parents).
    pub(crate) fn depth(&self, code: &str) -> usize {
        self.lineage(code).len() - 1
    }
}

/// Interns geo codes and remembers each one's chain of ancestors.
#[derive(Debug, Default)]
pub struct GeoTable {
    ids: AHashMap<Box<str>, GeoId>,
    names: Vec<Box<str>>,
    /// For each geo: itself first, then its ancestors, nearest first.
    chains: Vec<Box<[GeoId]>>,
    settings: GeoSettings,
}

impl GeoTable {
    pub(crate) fn new(settings: GeoSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// New hierarchy settings apply to geos interned from now on; existing chains stay, so
    /// existing series keep their roll-up.
    pub(crate) fn set_settings(&mut self, settings: GeoSettings) {
        self.settings = settings;
    }

    pub(crate) fn get(&self, code: &str) -> Option<GeoId> {
        self.ids.get(code).copied()
    }

    pub(crate) fn name(&self, id: GeoId) -> &str {
        &self.names[id as usize]
    }

    /// The geo and its ancestors, nearest first.
    pub(crate) fn chain(&self, id: GeoId) -> &[GeoId] {
        &self.chains[id as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Parent of a code (see [`GeoSettings::parent_of`]).
    pub(crate) fn parent_of(&self, code: &str) -> Option<String> {
        self.settings.parent_of(code).map(str::to_string)
    }

    /// Returns the id of `code`, creating it and its ancestors if needed.
    pub(crate) fn intern(&mut self, code: &str) -> GeoId {
        match self.resolve(code, usize::MAX) {
            Resolved::Exact(id) => id,
            Resolved::Ancestor(_) | Resolved::Nothing => unreachable!("no limit"),
        }
    }

    /// Like [`Self::intern`], but creates geos only while the table holds at most `max_geos`;
    /// beyond that an unknown code resolves to its nearest known ancestor, so a flood of new
    /// codes (typos, an attacker, a bug upstream) cannot exhaust memory.
    pub(crate) fn resolve(&mut self, code: &str, max_geos: usize) -> Resolved {
        if let Some(id) = self.get(code) {
            return Resolved::Exact(id);
        }
        // The new codes from `code` up to its first known ancestor (or the top).
        let mut path = vec![code.to_string()];
        let mut known = None;
        while path.len() < MAX_DEPTH {
            match self.parent_of(path.last().expect("non-empty")) {
                Some(p) if !path.contains(&p) => match self.get(&p) {
                    Some(id) => {
                        known = Some(id);
                        break;
                    }
                    None => path.push(p),
                },
                _ => break,
            }
        }
        if self.len().saturating_add(path.len()) > max_geos {
            return known.map_or(Resolved::Nothing, Resolved::Ancestor);
        }
        // Create from the top so each geo's chain can reuse its parent's.
        let mut parent_chain: Option<Box<[GeoId]>> =
            known.map(|id| self.chains[id as usize].clone());
        for name in path.iter().rev() {
            let id = match self.get(name) {
                Some(id) => id,
                None => {
                    let id = self.names.len() as GeoId;
                    let mut chain = vec![id];
                    if let Some(pc) = &parent_chain {
                        chain.extend_from_slice(pc);
                    }
                    // Routes hold at most MAX_DEPTH levels: drop the farthest ancestors.
                    chain.truncate(MAX_DEPTH);
                    self.ids.insert(name.as_str().into(), id);
                    self.names.push(name.as_str().into());
                    self.chains.push(chain.into_boxed_slice());
                    id
                }
            };
            parent_chain = Some(self.chains[id as usize].clone());
        }
        Resolved::Exact(self.get(code).expect("just interned"))
    }

    /// Approximate heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.names.iter().map(|n| 2 * n.len() + 40).sum::<usize>()
            + self.chains.iter().map(|c| c.len() * 4 + 16).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &GeoTable, id: GeoId) -> Vec<&str> {
        t.chain(id).iter().map(|&g| t.name(g)).collect()
    }

    #[test]
    fn city_rolls_up_to_country_and_global() {
        let mut t = GeoTable::new(GeoSettings::default());
        let rm = t.intern("IT-RM");
        assert_eq!(names(&t, rm), ["IT-RM", "IT", "*"]);
        let mi = t.intern("IT-MI");
        assert_eq!(names(&t, mi), ["IT-MI", "IT", "*"]);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn the_rule_without_a_table_matches_the_table() {
        let mut s = GeoSettings::default();
        s.parents.insert("IT".into(), "EU".into());
        assert_eq!(s.lineage("IT-RM"), ["IT-RM", "IT", "EU", "*"]);
        assert!(s.covers("EU", "IT-RM") && s.covers("*", "DE") && !s.covers("IT", "ITA"));
        assert_eq!((s.depth("*"), s.depth("DE"), s.depth("IT-RM")), (0, 1, 3));
        let mut t = GeoTable::new(s.clone());
        let id = t.intern("IT-RM");
        let names: Vec<&str> = t.chain(id).iter().map(|&g| t.name(g)).collect();
        assert_eq!(names, s.lineage("IT-RM"));
    }

    #[test]
    fn configured_parents_add_levels() {
        let mut s = GeoSettings::default();
        s.parents.insert("IT".into(), "EU".into());
        let mut t = GeoTable::new(s);
        let rm = t.intern("IT-RM");
        assert_eq!(names(&t, rm), ["IT-RM", "IT", "EU", "*"]);
    }

    #[test]
    fn no_global_stops_at_the_top_level() {
        let s = GeoSettings {
            no_global: true,
            ..GeoSettings::default()
        };
        let mut t = GeoTable::new(s);
        let rm = t.intern("IT-RM");
        assert_eq!(names(&t, rm), ["IT-RM", "IT"]);
    }

    #[test]
    fn deep_codes_are_bounded() {
        let mut t = GeoTable::new(GeoSettings::default());
        let id = t.intern("A-B-C-D-E-F-G-H-I-J-K");
        assert!(t.chain(id).len() <= MAX_DEPTH);
    }
}
