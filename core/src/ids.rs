//! Minting ids in the core: `verge_shared::ids` with the system clock and OS randomness.

pub fn new_id(prefix: &str) -> String {
    let ms = crate::time::now_millis().0.max(0) as u64;
    verge_shared::ids::format_id(prefix, ms, rand::random())
}
