//! Walking a `limit`/`offset` listing to the end without trusting the server's total: stops on an
//! empty page, on the total, on a page with nothing new, and fails past a hard item cap. Pure.

use std::collections::HashSet;

/// Most items one listing collects before paging is abandoned as runaway.
pub const MAX_LIST_ITEMS: usize = 100_000;

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

/// Accumulates pages, de-duplicating by id (items with an empty id are all kept).
pub(crate) struct Pager<T> {
    items: Vec<T>,
    seen: HashSet<String>,
    offset: u64,
    max_items: usize,
}

impl<T> Pager<T> {
    pub fn new(max_items: usize) -> Self {
        Self { items: Vec::new(), seen: HashSet::new(), offset: 0, max_items }
    }

    /// Takes a page fetched at the current offset, with the total the server reported.
    pub fn take(&mut self, page: Vec<T>, total: u64, id: impl Fn(&T) -> &str) -> Result<Next, Runaway> {
        if page.is_empty() {
            return Ok(Next::Done);
        }
        self.offset += page.len() as u64;
        let before = self.items.len();
        for item in page {
            let key = id(&item);
            if key.is_empty() || self.seen.insert(key.to_string()) {
                self.items.push(item);
            }
        }
        if self.items.len() > self.max_items {
            return Err(Runaway { collected: self.items.len() });
        }
        if self.items.len() == before || self.offset >= total {
            return Ok(Next::Done);
        }
        Ok(Next::Fetch(self.offset))
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("id-{i}")).collect()
    }

    fn take(p: &mut Pager<String>, page: Vec<String>, total: u64) -> Result<Next, Runaway> {
        p.take(page, total, |s| s.as_str())
    }

    #[test]
    fn pages_until_the_total() {
        let mut p = Pager::new(100);
        assert_eq!(take(&mut p, ids(0..3), 7), Ok(Next::Fetch(3)));
        assert_eq!(take(&mut p, ids(3..6), 7), Ok(Next::Fetch(6)));
        assert_eq!(take(&mut p, ids(6..7), 7), Ok(Next::Done));
        assert_eq!(p.into_items(), ids(0..7));
    }

    #[test]
    fn stops_on_an_empty_page_when_the_total_is_too_high() {
        let mut p = Pager::new(100);
        assert_eq!(take(&mut p, ids(0..3), 1_000_000), Ok(Next::Fetch(3)));
        assert_eq!(take(&mut p, vec![], 1_000_000), Ok(Next::Done));
        assert_eq!(p.into_items().len(), 3);
    }

    #[test]
    fn stops_when_the_server_ignores_the_offset() {
        let mut p = Pager::new(100);
        assert_eq!(take(&mut p, ids(0..3), 50), Ok(Next::Fetch(3)));
        assert_eq!(take(&mut p, ids(0..3), 50), Ok(Next::Done), "nothing new");
        assert_eq!(p.into_items(), ids(0..3));
    }

    #[test]
    fn duplicates_across_pages_are_dropped() {
        let mut p = Pager::new(100);
        assert_eq!(take(&mut p, ids(0..3), 7), Ok(Next::Fetch(3)));
        assert_eq!(take(&mut p, ids(2..5), 7), Ok(Next::Fetch(6)));
        assert_eq!(take(&mut p, ids(5..7), 7), Ok(Next::Done));
        assert_eq!(p.into_items(), ids(0..7));
    }

    #[test]
    fn fails_past_the_item_cap() {
        let mut p = Pager::new(5);
        assert_eq!(take(&mut p, ids(0..3), u64::MAX), Ok(Next::Fetch(3)));
        assert_eq!(take(&mut p, ids(3..6), u64::MAX), Err(Runaway { collected: 6 }));
    }

    #[test]
    fn items_without_id_are_kept() {
        let mut p = Pager::new(10);
        assert_eq!(take(&mut p, vec![String::new(), String::new()], 2), Ok(Next::Done));
        assert_eq!(p.into_items().len(), 2);
    }
}
