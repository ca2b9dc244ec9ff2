//! Cursor pagination for every list: `?limit=&cursor=`, answered with `next_cursor`.
//!
//! Lists are ordered by id, and ids sort by creation time, so a cursor is just the last id
//! a page showed, wrapped so clients treat it as opaque. Fetching one row more than the
//! limit tells whether another page exists without a count query.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, FieldError};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
const CURSOR_VERSION: &str = "v1:";

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; only a cursor this API returned is valid.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A validated position in a list.
#[derive(Debug, Clone)]
pub struct Cursor {
    after: String,
    limit: u32,
}

impl Cursor {
    pub fn from_params(params: &PageParams) -> Result<Cursor, ApiError> {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(vec![FieldError {
                field: "limit".into(),
                message: format!("must be between 1 and {MAX_LIMIT}"),
            }]));
        }
        let after = match params.cursor.as_deref() {
            // `cursor=` is the first page, as absent is: forms and clients send it that way.
            None | Some("") => String::new(),
            Some(cursor) => decode(cursor)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned"))?,
        };
        Ok(Cursor { after, limit })
    }

    /// [`Cursor::from_params`] for lists ordered by a key of the caller's choosing (any
    /// text), not by a Verge id.
    pub fn for_text_keys(params: &PageParams) -> Result<Cursor, ApiError> {
        let plain = PageParams { limit: params.limit, cursor: None };
        let mut cursor = Cursor::from_params(&plain)?;
        if let Some(given) = params.cursor.as_deref().filter(|c| !c.is_empty()) {
            cursor.after = URL_SAFE_NO_PAD
                .decode(given)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| text.strip_prefix(CURSOR_VERSION).map(str::to_owned))
                .filter(|key| !key.is_empty())
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned"))?;
        }
        Ok(cursor)
    }

    /// The id to continue after (`''` for the first page).
    pub fn after(&self) -> &str {
        &self.after
    }

    /// Rows to fetch: one more than a page, to learn whether there is a next one.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    pub fn page<T>(&self, mut items: Vec<T>, id_of: impl Fn(&T) -> String) -> Page<T> {
        let more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        let next_cursor = if more { items.last().map(|last| encode(&id_of(last))) } else { None };
        Page { items, next_cursor }
    }
}

fn encode(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}{id}"))
}

fn decode(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix(CURSOR_VERSION)?;
    // Ids are ASCII letters, digits and `_`; anything else was not made by `encode`.
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(limit: Option<u32>, cursor: Option<&str>) -> Result<Cursor, ApiError> {
        Cursor::from_params(&PageParams { limit, cursor: cursor.map(str::to_owned) })
    }

    #[test]
    fn pages_carry_a_cursor_only_when_more_exist() {
        let c = cursor(Some(2), None).unwrap();
        assert_eq!(c.fetch_limit(), 3);
        let page = c.page(vec!["c", "b", "a"], |s| s.to_string());
        assert_eq!(page.items, ["c", "b"]);
        let next = cursor(Some(2), page.next_cursor.as_deref()).unwrap();
        assert_eq!(next.after(), "b");
        assert!(c.page(vec!["c", "b"], |s| s.to_string()).next_cursor.is_none());
    }

    #[test]
    fn rejects_bad_limits_and_forged_cursors() {
        assert_eq!(cursor(Some(0), None).unwrap_err().code(), "validation_failed");
        assert_eq!(cursor(Some(201), None).unwrap_err().code(), "validation_failed");
        assert_eq!(cursor(None, Some("!!")).unwrap_err().code(), "invalid_cursor");
        let forged = URL_SAFE_NO_PAD.encode("v1:x' OR 1=1");
        assert_eq!(cursor(None, Some(&forged)).unwrap_err().code(), "invalid_cursor");
    }
}
