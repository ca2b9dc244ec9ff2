//! The `edge/settings` dataset: edge behaviour the core controls, as one small KV value.
//!
//! Text, so it is readable in any KV browser, with a format line so it can change later:
//! `verge-edge-settings 1` then `name=value` lines. Unknown names are ignored, so a newer
//! core can add settings without breaking older edges; a missing name keeps its default.

/// The dataset name and its one part.
pub const DATASET: &str = "edge/settings";
pub const PART: &str = "settings";
const FORMAT_LINE: &str = "verge-edge-settings 1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Report requests that match no route as `edge.not_found` events.
    pub report_not_found: bool,
    /// The secret (hex) mixed with the day into visitor hashes, so a hash cannot be
    /// reversed by trying every IP address. Empty until the core publishes one.
    pub visitor_salt: String,
}

impl Default for EdgeSettings {
    fn default() -> EdgeSettings {
        EdgeSettings { report_not_found: true, visitor_salt: String::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl core::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "edge settings: {}", self.0)
    }
}

impl EdgeSettings {
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{FORMAT_LINE}\nreport_not_found={}\n", self.report_not_found);
        if !self.visitor_salt.is_empty() {
            text.push_str(&format!("visitor_salt={}\n", self.visitor_salt));
        }
        text.into_bytes()
    }

    pub fn decode(value: &[u8]) -> Result<EdgeSettings, SettingsError> {
        let text = core::str::from_utf8(value).map_err(|_| SettingsError("not UTF-8".into()))?;
        let mut lines = text.lines();
        if lines.next() != Some(FORMAT_LINE) {
            return Err(SettingsError("unknown format".into()));
        }
        let mut settings = EdgeSettings::default();
        for line in lines.filter(|line| !line.is_empty()) {
            let (name, value) = line.split_once('=').ok_or_else(|| SettingsError(format!("bad line `{line}`")))?;
            match name {
                "report_not_found" => {
                    settings.report_not_found = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(SettingsError(format!("report_not_found is `{value}`"))),
                    }
                }
                "visitor_salt" => settings.visitor_salt = value.to_owned(),
                _ => {}
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_newer_settings() {
        let off = EdgeSettings { report_not_found: false, visitor_salt: String::new() };
        assert_eq!(EdgeSettings::decode(&off.encode()).unwrap(), off);
        let salted = EdgeSettings { report_not_found: true, visitor_salt: "00ff".into() };
        assert_eq!(EdgeSettings::decode(&salted.encode()).unwrap(), salted);
        let newer = b"verge-edge-settings 1\nsomething_new=7\nreport_not_found=false\n";
        assert_eq!(EdgeSettings::decode(newer).unwrap(), off);
        assert_eq!(EdgeSettings::decode(b"verge-edge-settings 1\n").unwrap(), EdgeSettings::default());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(EdgeSettings::decode(b"verge-edge-settings 2\n").is_err());
        assert!(EdgeSettings::decode(b"verge-edge-settings 1\nreport_not_found=yes\n").is_err());
        assert!(EdgeSettings::decode(&[0xff]).is_err());
    }
}
