//! The hot-path cache: event names → the series an event counts toward.
//!
//! Looked up by the names themselves (one hash over service, geo and signal, then one probe),
//! not by interned ids: interning first would cost a probe of the geo interner and one of an
//! id-keyed cache, each a likely cache miss with 100,000 series. The interners are consulted
//! only on a miss.

use hashbrown::HashTable;

use super::{Route, SeriesKey};

struct Entry {
    hash: u64,
    key: SeriesKey,
    route: Route,
}

pub(super) struct RouteCache {
    table: HashTable<Entry>,
    hasher: ahash::RandomState,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache")
            .field("len", &self.table.len())
            .finish()
    }
}

impl Default for RouteCache {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            hasher: ahash::RandomState::new(),
        }
    }
}

impl RouteCache {
    pub(super) fn hash(&self, service: &str, geo: &str, signal: &str) -> u64 {
        self.hasher.hash_one((service, geo, signal))
    }

    /// The cached route of the names hashed to `hash`; `is_key` tells whether an interned key
    /// names them.
    pub(super) fn get(&self, hash: u64, is_key: impl Fn(SeriesKey) -> bool) -> Option<Route> {
        self.table
            .find(hash, |e| e.hash == hash && is_key(e.key))
            .map(|e| e.route)
    }

    pub(super) fn insert(&mut self, hash: u64, key: SeriesKey, route: Route) {
        self.table
            .insert_unique(hash, Entry { hash, key, route }, |e| e.hash);
    }

    pub(super) fn clear(&mut self) {
        self.table.clear();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes held: entries plus control bytes, at the table's capacity.
    pub(super) fn heap_bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<Entry>() + 1)
    }
}
