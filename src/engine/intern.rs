//! Names (services, signals) as dense ids.

use ahash::AHashMap;

#[derive(Debug, Default)]
pub(super) struct Interner {
    pub(super) ids: AHashMap<Box<str>, u32>,
    pub(super) names: Vec<Box<str>>,
}

impl Interner {
    pub(super) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    pub(super) fn insert(&mut self, s: &str) -> u32 {
        if let Some(id) = self.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.into(), id);
        self.names.push(s.into());
        id
    }
    pub(super) fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}
