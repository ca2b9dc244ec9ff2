//! The one JSON string escaper the edge needs.
//!
//! The edge writes its few JSON bodies (problems, health, event batches) by hand to keep
//! serde out of the wasm artifacts; every string that is not a fixed literal of ours goes
//! through [`push_string`].

/// Appends `value` to `out` as a quoted JSON string.
pub(crate) fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
