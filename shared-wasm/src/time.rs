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
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
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
