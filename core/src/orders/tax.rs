//! Flat tax per region, computed per line in integer minor units so that totals, taxes
//! and refunds never lose a cent: each line's tax is rounded once (half to even, as
//! bookkeeping does), and the order's tax is the sum of its lines'.

use std::collections::BTreeMap;

/// The rate for an address: its `country-region` when configured, else its country's,
/// else none (`""`, 0).
pub(super) fn rate_for(rates: &BTreeMap<String, i64>, country: &str, region: Option<&str>) -> (String, i64) {
    if let Some(region) = region {
        let key = format!("{country}-{region}");
        if let Some(bp) = rates.get(&key) {
            return (key, *bp);
        }
    }
    match rates.get(country) {
        Some(bp) => (country.to_owned(), *bp),
        None => (String::new(), 0),
    }
}

/// `amount × bp / 10 000`, rounded half to even.
pub(super) fn tax_on(amount: i64, bp: i64) -> i64 {
    let product = i128::from(amount) * i128::from(bp);
    let (quotient, remainder) = (product / 10_000, product % 10_000);
    let rounded = match (remainder * 2).cmp(&10_000) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => quotient + (quotient % 2),
    };
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_rounds_half_to_even_in_minor_units() {
        assert_eq!(tax_on(1000, 1900), 190);
        assert_eq!(tax_on(50, 1000), 5);
        assert_eq!(tax_on(25, 1000), 2, "2.5 rounds to even 2");
        assert_eq!(tax_on(35, 1000), 4, "3.5 rounds to even 4");
        assert_eq!(tax_on(1999, 725), 145, "144.93 rounds up");
        assert_eq!(tax_on(0, 1900), 0);
    }

    #[test]
    fn the_most_specific_configured_region_applies() {
        let rates = BTreeMap::from([("US-CA".to_owned(), 725), ("DE".to_owned(), 1900)]);
        assert_eq!(rate_for(&rates, "US", Some("CA")), ("US-CA".to_owned(), 725));
        assert_eq!(rate_for(&rates, "US", Some("NY")), (String::new(), 0));
        assert_eq!(rate_for(&rates, "DE", Some("BY")), ("DE".to_owned(), 1900));
    }
}
