//! RFC 3339 timestamps from Unix milliseconds, without a date library.
//!
//! The edge stamps every event it sends with the time it happened, and the core's API
//! speaks RFC 3339. Pulling a calendar crate into every wasm artifact for one function is
//! not worth the bytes; the civil-from-days conversion below is exact for the proleptic
//! Gregorian calendar (Howard Hinnant's algorithm).

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let days = (unix_ms / 86_400_000) as i64;
    let ms_of_day = unix_ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, milli) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    if !(0..=9999).contains(&year) {
        return format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z");
    }
    // Digit by digit: with `format!`'s padding this was a visible share of what an event
    // costs at the edge (every event carries its time).
    let mut out = *b"0000-00-00T00:00:00.000Z";
    for (at, width, value) in [
        (0, 4, year as u64),
        (5, 2, u64::from(month)),
        (8, 2, u64::from(day)),
        (11, 2, hour),
        (14, 2, minute),
        (17, 2, second),
        (20, 3, milli),
    ] {
        let mut value = value;
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out.iter().map(|&byte| char::from(byte)).collect()
}

/// Parses an RFC 3339 timestamp (`Z` or a `±HH:MM` offset, optional fraction) to Unix
/// milliseconds; `None` when it is not one.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        if at == start {
            return None;
        }
        let fraction = &text[start..at.min(start + 3)];
        millis = fraction.parse::<i64>().ok()? * 10i64.pow(3 - fraction.len() as u32);
    }
    let offset_minutes = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let minutes = digits(at + 1..at + 3)? * 60 + digits(at + 4..at + 6)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    if civil_from_days(days) != (year, month as u32, day as u32) {
        return None;
    }
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60) * 1000) + millis)
}

/// (year, month, day) to days since 1970-01-01: the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_795_407_045_123), "2026-11-23T04:10:45.123Z");
        assert_eq!(rfc3339_millis(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ms in [0, 951_782_400_000, 1_795_407_045_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(ms)), Some(ms as i64));
        }
        assert_eq!(parse_rfc3339_millis("2022-01-01T00:00:00+00:00"), Some(1_640_995_200_000));
        assert_eq!(parse_rfc3339_millis("2022-01-01T01:30:00+01:30"), Some(1_640_995_200_000));
        assert_eq!(parse_rfc3339_millis("2021-12-31T23:00:00-01:00"), Some(1_640_995_200_000));
        assert_eq!(parse_rfc3339_millis("2022-01-01T00:00:00.5Z"), Some(1_640_995_200_500));
        for bad in ["2022-02-30T00:00:00Z", "2022-01-01 00:00:00Z", "2022-01-01T00:00:00", "2022-13-01T00:00:00Z", ""] {
            assert_eq!(parse_rfc3339_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_day_boundary_for_a_century_advances_by_one_day() {
        // Walks day by day and checks the calendar never skips or repeats a date.
        let mut previous = civil_from_days(0);
        for days in 1..36_525 {
            let next = civil_from_days(days);
            let expected_next_day = previous.2 + 1;
            if next.2 == 1 {
                assert!(next.1 != previous.1 || next.0 != previous.0, "day {days}");
            } else {
                assert_eq!((next.0, next.1, next.2), (previous.0, previous.1, expected_next_day), "day {days}");
            }
            previous = next;
        }
        assert_eq!(previous, (2069, 12, 31));
    }
}
