//! Minting ids in the core: `verge_shared::ids` with the system clock and OS randomness.

/// Refuses a project or index name that is not a slug (`verge_shared::ids::is_slug`), as a
/// 422 on `field`.
pub(crate) fn check_slug(value: &str, field: &str) -> Result<(), crate::error::ApiError> {
    if verge_shared::ids::is_slug(value) {
        Ok(())
    } else {
        Err(crate::error::ApiError::validation(vec![crate::error::FieldError {
            field: field.into(),
            message: "must be 1-63 of a-z, 0-9, `-` and `_`, starting with a letter or digit".into(),
        }]))
    }
}

/// A new id: its time part is now, its 80 random bits fresh — except that ids minted in the
/// same millisecond by this process take the previous id's bits plus one (ULID's monotonic
/// rule). Lists ordered by id, such as the audit log, then keep the order writes happened
/// in even when two land within a millisecond, and a clock stepping back never reorders.
pub fn new_id(prefix: &str) -> String {
    static LAST: std::sync::Mutex<(u64, u128)> = std::sync::Mutex::new((0, 0));
    const RANDOM_BITS: u128 = (1 << 80) - 1;
    let now = crate::time::now_millis().0.max(0) as u64;
    let (ms, random) = {
        let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = if now <= last.0 && last.1 < RANDOM_BITS {
            (last.0, last.1 + 1)
        } else {
            (now.max(last.0), u128::from_be_bytes(pad(rand::random())) & RANDOM_BITS)
        };
        *last = next;
        next
    };
    let bytes = random.to_be_bytes();
    verge_shared::ids::format_id(prefix, ms, bytes[6..].try_into().expect("80 bits are 10 bytes"))
}

fn pad(random: [u8; 10]) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[6..].copy_from_slice(&random);
    bytes
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_minted_in_one_millisecond_sort_in_minting_order() {
        let ids: Vec<String> = (0..10_000).map(|_| super::new_id("aud")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "no id repeats");
    }
}
