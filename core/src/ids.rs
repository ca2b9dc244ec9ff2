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

pub fn new_id(prefix: &str) -> String {
    let ms = crate::time::now_millis().0.max(0) as u64;
    verge_shared::ids::format_id(prefix, ms, rand::random())
}
