//! Walking a `limit`/`offset` listing to the end without trusting the server's total: stops on an
//! empty page, on the total, on a page with nothing new, and fails past a hard item cap. Pure.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

/// Most items one listing collects before paging is abandoned as runaway. A run keeps about 100
/// bytes per listed task, so this bounds one listing's memory near 100 MB.
pub const MAX_LIST_ITEMS: usize = 1_000_000;

/// What to do after a page.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Fetch the page at this offset.
    Fetch(u64),
    Done,
}

/// The server kept sending new items past the cap.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Runaway {
    pub collected: usize,
}

/// Walks pages, passing on only items not seen before (items with an empty id are always passed
/// on). Remembers a 64-bit hash per id, not the items: a listing of any size costs the caller only
/// what it keeps of each page.
pub(crate) struct Pager {
    seen: HashSet<u64>,
    hasher: RandomState,
    collected: usize,
    offset: u64,
    max_items: usize,
}

impl Pager {
    pub fn new(max_items: usize) -> Self {
        Self { seen: HashSet::new(), hasher: RandomState::new(), collected: 0, offset: 0, max_items }
    }

    /// Takes a page fetched at the current offset, with the total the server reported; returns the
    /// page's new items and what to do next.
    pub fn take<T>(
        &mut self,
        page: Vec<T>,
        total: u64,
        id: impl Fn(&T) -> &str,
    ) -> Result<(Vec<T>, Next), Runaway> {
        if page.is_empty() {
            return Ok((page, Next::Done));
        }
        self.offset += page.len() as u64;
        let fresh: Vec<T> = page
            .into_iter()
            .filter(|item| {
                let key = id(item);
                key.is_empty() || self.seen.insert(self.hasher.hash_one(key))
            })
            .collect();
        self.collected += fresh.len();
        if self.collected > self.max_items {
            return Err(Runaway { collected: self.collected });
        }
        let next =
            if fresh.is_empty() || self.offset >= total { Next::Done } else { Next::Fetch(self.offset) };
        Ok((fresh, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("id-{i}")).collect()
    }

    /// Feeds pages until Done, collecting what the pager passes on.
    fn walk(p: &mut Pager, pages: Vec<(Vec<String>, u64)>) -> (Vec<String>, Vec<Result<Next, Runaway>>) {
        let mut items = Vec::new();
        let mut steps = Vec::new();
        for (page, total) in pages {
            match p.take(page, total, |s| s.as_str()) {
                Ok((fresh, next)) => {
                    items.extend(fresh);
                    steps.push(Ok(next));
                }
                Err(e) => steps.push(Err(e)),
            }
        }
        (items, steps)
    }

    #[test]
    fn pages_until_the_total() {
        let mut p = Pager::new(100);
        let (items, steps) = walk(&mut p, vec![(ids(0..3), 7), (ids(3..6), 7), (ids(6..7), 7)]);
        assert_eq!(steps, [Ok(Next::Fetch(3)), Ok(Next::Fetch(6)), Ok(Next::Done)]);
        assert_eq!(items, ids(0..7));
    }

    #[test]
    fn stops_on_an_empty_page_when_the_total_is_too_high() {
        let mut p = Pager::new(100);
        let (items, steps) = walk(&mut p, vec![(ids(0..3), 1_000_000), (vec![], 1_000_000)]);
        assert_eq!(steps, [Ok(Next::Fetch(3)), Ok(Next::Done)]);
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn stops_when_the_server_ignores_the_offset() {
        let mut p = Pager::new(100);
        let (items, steps) = walk(&mut p, vec![(ids(0..3), 50), (ids(0..3), 50)]);
        assert_eq!(steps, [Ok(Next::Fetch(3)), Ok(Next::Done)], "nothing new");
        assert_eq!(items, ids(0..3));
    }

    #[test]
    fn duplicates_across_pages_are_dropped() {
        let mut p = Pager::new(100);
        let (items, steps) = walk(&mut p, vec![(ids(0..3), 7), (ids(2..5), 7), (ids(5..7), 7)]);
        assert_eq!(steps, [Ok(Next::Fetch(3)), Ok(Next::Fetch(6)), Ok(Next::Done)]);
        assert_eq!(items, ids(0..7));
    }

    #[test]
    fn fails_past_the_item_cap() {
        let mut p = Pager::new(5);
        let (_, steps) = walk(&mut p, vec![(ids(0..3), u64::MAX), (ids(3..6), u64::MAX)]);
        assert_eq!(steps, [Ok(Next::Fetch(3)), Err(Runaway { collected: 6 })]);
    }

    #[test]
    fn items_without_id_are_kept() {
        let mut p = Pager::new(10);
        let (items, _) = walk(&mut p, vec![(vec![String::new(), String::new()], 2)]);
        assert_eq!(items.len(), 2);
    }
}
