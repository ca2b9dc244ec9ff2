//! The one JSON string escaper the edge needs.
//!
//! The edge writes its few JSON bodies (problems, health, event batches) by hand to keep
//! serde out of the wasm artifacts; every string that is not a fixed literal of ours goes
//! through [`push_string`].

/// Appends `value` to `out` as a quoted JSON string.
pub(crate) fn push_string(out: &mut String, value: &str) {
    out.push('"');
    let mut rest = value;
    // Runs that need no escape (nearly every value) are copied whole.
    while let Some(at) = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            control => out.push_str(&format!("\\u{control:04x}")),
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::push_string;

    #[test]
    fn every_string_round_trips_through_a_json_parser() {
        for value in ["", "plain", "q\"uote", "back\\slash", "line\nbreak\r\ttab", "\u{1}\u{1f}", "é→🦀\"x", "end\\"]
        {
            let mut out = String::new();
            push_string(&mut out, value);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), value, "{out}");
        }
    }
}
