//! The storefront's catalog at the edge: where products and listing pages live in KV, and
//! the record that holds them.
//!
//! A product lives at `catalog/p/<handle>`, a page of a category's listing at
//! `catalog/c/<handle>/<page>` and of a collection's at `catalog/k/<handle>/<page>` (pages
//! from 1): a storefront read is one KV get. The core renders each answer's JSON body
//! itself, so the edge parses no JSON. Prices change on their own when a price list starts
//! or ends, so a record holds one body per stretch of time between those moments
//! ([`Segment`]) and the edge serves the one covering its clock: a sale appears and
//! disappears on time even before the core republishes (which it does at each moment, to
//! roll the record forward).

/// Prefix of every catalog key.
pub const PREFIX: &str = "catalog/";
/// Products on one listing page.
pub const PAGE_SIZE: usize = 24;
/// Longest handle of a product, category or collection.
pub const MAX_HANDLE_LEN: usize = 120;
const FORMAT: u8 = 1;

/// The key of the published product `handle`.
pub fn product_key(handle: &str) -> String {
    format!("{PREFIX}p/{handle}")
}

/// Which listing a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Category,
    Collection,
}

impl Listing {
    fn letter(self) -> char {
        match self {
            Listing::Category => 'c',
            Listing::Collection => 'k',
        }
    }
}

/// The key naming a whole listing (what the core enqueues when it changes).
pub fn listing_key(listing: Listing, handle: &str) -> String {
    format!("{PREFIX}{}/{handle}", listing.letter())
}

/// The key of one page of a listing.
pub fn page_key(listing: Listing, handle: &str, page: usize) -> String {
    format!("{PREFIX}{}/{handle}/{page}", listing.letter())
}

/// A handle: 1–120 of `a-z`, `0-9` and `-`, neither starting nor ending with `-`.
pub fn is_handle(handle: &str) -> bool {
    (1..=MAX_HANDLE_LEN).contains(&handle.len())
        && handle.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !handle.starts_with('-')
        && !handle.ends_with('-')
}

/// One answer, valid from `from` (inclusive) until `until` (exclusive), Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub from: u64,
    /// `u64::MAX`: until the next publish.
    pub until: u64,
    /// A strong validator of `body`, quoted, for `ETag`.
    pub etag: String,
    /// The JSON answer.
    pub body: Vec<u8>,
}

/// A product's or a listing page's answers over time, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub segments: Vec<Segment>,
}

impl Record {
    /// The answer at `now`; `None` when no segment covers it (a record the core has not
    /// rolled forward, which it does at every boundary).
    pub fn at(&self, now: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.from <= now && now < s.until)
    }

    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.segments.iter().map(|s| 22 + s.etag.len() + s.body.len()).sum();
        let mut out = Vec::with_capacity(3 + size);
        out.push(FORMAT);
        out.extend_from_slice(&(self.segments.len() as u16).to_le_bytes());
        for segment in &self.segments {
            out.extend_from_slice(&segment.from.to_le_bytes());
            out.extend_from_slice(&segment.until.to_le_bytes());
            out.push(segment.etag.len() as u8);
            out.extend_from_slice(segment.etag.as_bytes());
            out.extend_from_slice(&(segment.body.len() as u32).to_le_bytes());
            out.extend_from_slice(&segment.body);
        }
        out
    }

    /// The segment covering `now` straight from encoded bytes, copying only its body.
    pub fn decode_at(bytes: &[u8], now: u64) -> Result<Option<Segment>, DecodeError> {
        let mut found = None;
        walk(bytes, |from, until, etag, body| {
            if found.is_none() && from <= now && now < until {
                found = Some(Segment { from, until, etag: etag.to_owned(), body: body.to_vec() });
            }
        })?;
        Ok(found)
    }

    /// Every segment, for tests and tools.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut segments = Vec::new();
        walk(bytes, |from, until, etag, body| {
            segments.push(Segment { from, until, etag: etag.to_owned(), body: body.to_vec() });
        })?;
        Ok(Record { segments })
    }
}

/// Calls `visit` with each segment of an encoded record, having checked the whole record.
fn walk(bytes: &[u8], mut visit: impl FnMut(u64, u64, &str, &[u8])) -> Result<(), DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(1)? != [FORMAT] {
        return Err(DecodeError);
    }
    let count = u16::from_le_bytes(reader.array()?);
    let mut segments = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let from = u64::from_le_bytes(reader.array()?);
        let until = u64::from_le_bytes(reader.array()?);
        let etag_len = usize::from(reader.take(1)?[0]);
        let etag = std::str::from_utf8(reader.take(etag_len)?).map_err(|_| DecodeError)?;
        let body_len = u32::from_le_bytes(reader.array()?) as usize;
        segments.push((from, until, etag, reader.take(body_len)?));
    }
    if reader.at != bytes.len() {
        return Err(DecodeError);
    }
    for (from, until, etag, body) in segments {
        visit(from, until, etag, body);
    }
    Ok(())
}

/// A catalog record this build cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("catalog record is truncated or of an unknown format")
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(DecodeError)?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(from: u64, until: u64, body: &str) -> Segment {
        Segment { from, until, etag: format!("\"{body}\""), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn the_segment_covering_now_is_served() {
        let record = Record {
            segments: vec![segment(0, 100, "full"), segment(100, 200, "sale"), segment(200, u64::MAX, "after")],
        };
        let bytes = record.encode();
        assert_eq!(Record::decode(&bytes).unwrap(), record);
        assert_eq!(Record::decode_at(&bytes, 99).unwrap().unwrap().body, b"full");
        assert_eq!(Record::decode_at(&bytes, 100).unwrap().unwrap().body, b"sale");
        assert_eq!(Record::decode_at(&bytes, 5_000).unwrap().unwrap().etag, "\"after\"");
        let bounded = Record { segments: vec![segment(10, 20, "only")] };
        assert_eq!(Record::decode_at(&bounded.encode(), 20).unwrap(), None);
        assert_eq!(bounded.at(15).unwrap().body, b"only");
    }

    #[test]
    fn truncated_or_foreign_records_are_refused() {
        let bytes = Record { segments: vec![segment(0, 1, "x")] }.encode();
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut]), Err(DecodeError), "cut at {cut}");
        }
        let mut foreign = bytes.clone();
        foreign[0] = 9;
        assert_eq!(Record::decode_at(&foreign, 0), Err(DecodeError));
    }

    #[test]
    fn handles_are_url_safe_slugs() {
        for good in ["shirt", "t-shirt-2", "a", &"x".repeat(120)] {
            assert!(is_handle(good), "{good}");
        }
        for bad in ["", "-a", "a-", "Shirt", "a_b", "a/b", "é", &"x".repeat(121)] {
            assert!(!is_handle(bad), "{bad}");
        }
        assert_eq!(page_key(Listing::Collection, "menu", 2), "catalog/k/menu/2");
        assert_eq!(listing_key(Listing::Category, "shoes"), "catalog/c/shoes");
    }
}
