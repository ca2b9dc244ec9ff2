//! One shard's bytes: an `fst` map from keys to postings, the terms they name, and the
//! pins whose prefix falls in the shard's range.
//!
//! ```text
//! u8 format (1)
//! u32 n, n bytes: fst map, key -> (u32::MAX - rank) << 32 | offset of the key's postings
//! u32 n, n bytes: postings, per key: varint count, then count × (varint term, varint start)
//! u32 terms, (terms + 1) × u32 offsets into the records that follow
//! records: varint rank, u8 flags, then text, payload (JSON or empty), language, each a
//!          varint length and UTF-8 bytes
//! u32 n, n bytes: pins: varint count, then count × (prefix, varint n, n × varint term)
//! ```
//!
//! Integers are little-endian; `start` is where the key begins in the term's folded text,
//! in characters, so a match can be highlighted in the original.

/// Flag bit: the term was mixed in from trending queries, not imported.
pub(crate) const TRENDING: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardError {
    UnknownFormat(u8),
    Truncated,
    BadFst(String),
}

impl std::fmt::Display for ShardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardError::UnknownFormat(v) => write!(f, "autocomplete shard format {v} is newer than this edge"),
            ShardError::Truncated => f.write_str("autocomplete shard is truncated"),
            ShardError::BadFst(e) => write!(f, "autocomplete shard map is unreadable: {e}"),
        }
    }
}

impl std::error::Error for ShardError {}

/// A term as a shard stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) rank: u32,
    pub(crate) flags: u8,
    pub(crate) text: String,
    /// Raw JSON, or empty for none.
    pub(crate) payload: String,
    pub(crate) language: String,
}

/// A key and its postings (term within the shard, start in the term's folded text).
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    pub(crate) key: String,
    pub(crate) rank: u32,
    pub(crate) postings: Vec<(u32, u32)>,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_section(out: &mut Vec<u8>, section: &[u8]) {
    out.extend_from_slice(&(section.len() as u32).to_le_bytes());
    out.extend_from_slice(section);
}

/// Encodes a shard; `keys` sorted by key, unique.
pub(crate) fn encode(keys: &[KeyEntry], records: &[Record], pins: &[(String, Vec<u32>)]) -> Vec<u8> {
    let mut postings = Vec::new();
    let mut map = fst::MapBuilder::memory();
    for entry in keys {
        let value = (u64::from(u32::MAX - entry.rank) << 32) | postings.len() as u64;
        map.insert(entry.key.as_bytes(), value).expect("keys are sorted and unique");
        put_varint(&mut postings, entry.postings.len() as u64);
        for (term, start) in &entry.postings {
            put_varint(&mut postings, u64::from(*term));
            put_varint(&mut postings, u64::from(*start));
        }
    }
    let map = map.into_inner().expect("an in-memory map cannot fail to write");
    let mut body = Vec::new();
    let mut offsets = Vec::with_capacity(records.len() + 1);
    for record in records {
        offsets.push(body.len() as u32);
        put_varint(&mut body, u64::from(record.rank));
        body.push(record.flags);
        put_str(&mut body, &record.text);
        put_str(&mut body, &record.payload);
        put_str(&mut body, &record.language);
    }
    offsets.push(body.len() as u32);
    let mut pin_bytes = Vec::new();
    put_varint(&mut pin_bytes, pins.len() as u64);
    for (prefix, terms) in pins {
        put_str(&mut pin_bytes, prefix);
        put_varint(&mut pin_bytes, terms.len() as u64);
        for term in terms {
            put_varint(&mut pin_bytes, u64::from(*term));
        }
    }
    let mut out = Vec::with_capacity(map.len() + postings.len() + body.len() + pin_bytes.len() + 32);
    out.push(1);
    put_section(&mut out, &map);
    put_section(&mut out, &postings);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for offset in offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out.extend_from_slice(&body);
    put_section(&mut out, &pin_bytes);
    out
}

/// A shard ready to search: the map is used in place, records are read on demand.
pub struct Shard {
    pub(crate) fst: fst::raw::Fst<Vec<u8>>,
    postings: Vec<u8>,
    offsets: Vec<u32>,
    records: Vec<u8>,
    pub(crate) pins: Vec<(String, Vec<u32>)>,
}

/// Reads varints and strings from a byte slice, failing on truncation.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, ShardError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(ShardError::Truncated)?;
            self.at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(n);
            }
        }
        Err(ShardError::Truncated)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ShardError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or(ShardError::Truncated)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, ShardError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn section(&mut self) -> Result<&'a [u8], ShardError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, ShardError> {
        let n = self.varint()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| ShardError::Truncated)
    }
}

/// A term read from a shard, borrowing its strings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TermRef<'a> {
    pub(crate) rank: u32,
    pub(crate) flags: u8,
    pub(crate) text: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) language: &'a str,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("keys", &self.fst.len()).field("terms", &self.len()).finish()
    }
}

impl Shard {
    pub fn decode(bytes: &[u8]) -> Result<Shard, ShardError> {
        let mut reader = Reader::new(bytes);
        let format = reader.take(1)?[0];
        if format != 1 {
            return Err(ShardError::UnknownFormat(format));
        }
        let fst = fst::raw::Fst::new(reader.section()?.to_vec()).map_err(|e| ShardError::BadFst(e.to_string()))?;
        let postings = reader.section()?.to_vec();
        let terms = reader.u32()? as usize;
        let mut offsets = Vec::with_capacity(terms + 1);
        for _ in 0..=terms {
            offsets.push(reader.u32()?);
        }
        let body_len = *offsets.last().unwrap_or(&0) as usize;
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(ShardError::Truncated);
        }
        let records = reader.take(body_len)?.to_vec();
        let mut pins_reader = Reader::new(reader.section()?);
        let mut pins = Vec::new();
        for _ in 0..pins_reader.varint()? {
            let prefix = pins_reader.str()?.to_owned();
            let n = pins_reader.varint()? as usize;
            let mut terms_of = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                let term = pins_reader.varint()? as u32;
                if term as usize >= terms {
                    return Err(ShardError::Truncated);
                }
                terms_of.push(term);
            }
            pins.push((prefix, terms_of));
        }
        Ok(Shard { fst, postings, offsets, records, pins })
    }

    /// The postings of the key whose value's low half is `offset`.
    pub(crate) fn postings(&self, offset: u32) -> Result<Vec<(u32, u32)>, ShardError> {
        let mut reader = Reader::new(self.postings.get(offset as usize..).ok_or(ShardError::Truncated)?);
        let n = reader.varint()? as usize;
        let mut out = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let term = reader.varint()? as u32;
            let start = reader.varint()? as u32;
            if term as usize + 1 >= self.offsets.len() {
                return Err(ShardError::Truncated);
            }
            out.push((term, start));
        }
        Ok(out)
    }

    pub(crate) fn term(&self, term: u32) -> Result<TermRef<'_>, ShardError> {
        let start = *self.offsets.get(term as usize).ok_or(ShardError::Truncated)? as usize;
        let mut reader = Reader::new(self.records.get(start..).ok_or(ShardError::Truncated)?);
        let rank = reader.varint()? as u32;
        let flags = reader.take(1)?[0];
        Ok(TermRef { rank, flags, text: reader.str()?, payload: reader.str()?, language: reader.str()? })
    }

    /// Terms in this shard.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
