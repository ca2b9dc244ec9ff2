//! Events an edge reports to the core, gathered per request and sent as one batch.
//!
//! Handlers push events while they answer; [`crate::handle`] hands the whole batch to the
//! platform after the response is built, which sends it with `wait_until`/`send_async` or
//! after the response is written. So a request costs at most one outbound call, never on
//! the hot path. The body is exactly what `POST /v1/events` on the core accepts, and each
//! event carries an id minted here so that a batch the platform retries counts once.

use verge_shared::ids::format_id;
use verge_shared::time::rfc3339_millis;

use crate::host::Host;
use crate::json::push_string;

/// Longest string value an event field keeps; longer values are cut at a char boundary.
const MAX_FIELD_CHARS: usize = 256;

/// A batch of events under construction, serialized as it grows.
#[derive(Debug)]
pub struct Events {
    /// False when the platform will not send them: pushes are then no-ops.
    enabled: bool,
    /// `{…},{…}` without the surrounding `{"events":[` … `]}`.
    body: String,
    count: usize,
}

impl Default for Events {
    fn default() -> Events {
        Events::new(true)
    }
}

impl Events {
    pub fn new(enabled: bool) -> Events {
        Events { enabled, body: String::new(), count: 0 }
    }

    /// Records one event of `kind` (e.g. `edge.not_found`) with string fields.
    pub fn push<H: Host>(&mut self, host: &H, kind: &str, fields: &[(&str, &str)]) {
        self.push_flagged(host, kind, fields, &[]);
    }

    /// Records one event with string fields and boolean ones.
    pub fn push_flagged<H: Host>(&mut self, host: &H, kind: &str, fields: &[(&str, &str)], flags: &[(&str, bool)]) {
        if !self.enabled {
            return;
        }
        let now = host.now_millis();
        let mut random = [0u8; 10];
        host.fill_random(&mut random);
        if self.count > 0 {
            self.body.push(',');
        }
        self.body.push_str("{\"id\":\"");
        self.body.push_str(&format_id("evt", now, random));
        self.body.push_str("\",\"kind\":");
        push_string(&mut self.body, kind);
        self.body.push_str(",\"at\":\"");
        self.body.push_str(&rfc3339_millis(now));
        self.body.push_str("\",\"data\":{");
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                self.body.push(',');
            }
            push_string(&mut self.body, name);
            self.body.push(':');
            push_string(&mut self.body, truncate(value));
        }
        for (i, (name, value)) in flags.iter().enumerate() {
            if i > 0 || !fields.is_empty() {
                self.body.push(',');
            }
            push_string(&mut self.body, name);
            self.body.push_str(if *value { ":true" } else { ":false" });
        }
        self.body.push_str("}}");
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `POST /v1/events` body, or `None` when nothing happened worth reporting.
    pub fn into_batch(self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let mut out = String::with_capacity(self.body.len() + 14);
        out.push_str("{\"events\":[");
        out.push_str(&self.body);
        out.push_str("]}");
        Some(out.into_bytes())
    }
}

fn truncate(value: &str) -> &str {
    match value.char_indices().nth(MAX_FIELD_CHARS) {
        Some((cut, _)) => &value[..cut],
        None => value,
    }
}
