//! Instants as the database stores them (Unix milliseconds, UTC) and as the API shows
//! them (RFC 3339 strings).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub i64);

pub fn now_millis() -> Millis {
    Millis(jiff::Timestamp::now().as_millisecond())
}

/// Microseconds since the Unix epoch, for rate-limit decisions: the wall clock read once
/// at start-up plus the CPU's time-stamp counter since (quanta), because a system call for
/// the time was a fifth of an in-process decision. Replicas sharing Redis agree as well
/// as their start-up clocks did; NTP corrections made later are not followed, which over a
/// process's life is far below any rate limit's period.
pub fn unix_micros() -> u64 {
    use std::sync::OnceLock;
    static ANCHOR: OnceLock<(quanta::Clock, quanta::Instant, u64)> = OnceLock::new();
    let (clock, start, start_us) = ANCHOR.get_or_init(|| {
        let clock = quanta::Clock::new();
        let start = clock.now();
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (clock, start, wall.as_micros() as u64)
    });
    start_us + clock.now().duration_since(*start).as_micros() as u64
}

impl Millis {
    pub fn to_timestamp(self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0).unwrap_or(jiff::Timestamp::MAX)
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.to_timestamp())
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Millis, D::Error> {
        let text = String::deserialize(deserializer)?;
        let ts: jiff::Timestamp = text
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time with offset: {e}")))?;
        Ok(Millis(ts.as_millisecond()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let m = Millis(1_700_000_000_123);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Millis>(&json).unwrap(), m);
        let offset: Millis = serde_json::from_str("\"2023-11-15T00:13:20.123+02:00\"").unwrap();
        assert_eq!(offset, m);
        assert!(serde_json::from_str::<Millis>("\"yesterday\"").is_err());
    }
}
