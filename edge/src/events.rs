//! Events an edge reports to the core, gathered per request and sent as one batch.
//!
//! Handlers push events while they answer; [`crate::handle`] hands the whole batch to the
//! platform after the response is built, which sends it with `wait_until`/`send_async` or
//! after the response is written, never on the hot path. The body is exactly what
//! `POST /v1/events` on the core accepts, and each event carries an id minted here so that
//! a batch the platform retries counts once.
//!
//! Where an instance serves many requests (Spin, Workers isolates, the native node), an
//! outbound call per request would cost more than the request itself: a [`Coalescer`]
//! holds the batches that arrive while a post is in flight and sends them as one [`Post`]
//! when it is answered, so under load an instance makes one call per round trip to the
//! core. Nothing waits for a timer, so nothing is held back at low load, and the sending
//! task runs until the queue is empty, so retiring an instance loses nothing.

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
    /// `{"events":[{…},{…}` so far: [`Events::into_batch`] only closes it.
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

    /// Opens the body at the first event, with room for a click's.
    fn open(&mut self) {
        if self.count == 0 {
            self.body.reserve(384);
            self.body.push_str(BATCH_HEAD);
        } else {
            self.body.push(',');
        }
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
        self.open();
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

    /// False when the platform will not send events: skip work done only for them.
    pub fn is_enabled(&self) -> bool {
        self.enabled
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
        let mut body = self.body;
        body.push_str("]}");
        Some(body.into_bytes())
    }
}

fn truncate(value: &str) -> &str {
    match value.char_indices().nth(MAX_FIELD_CHARS) {
        Some((cut, _)) => &value[..cut],
        None => value,
    }
}

const BATCH_HEAD: &str = "{\"events\":[";

/// The core's limit on events in one `POST /v1/events`.
pub const MAX_POST_EVENTS: usize = 1000;

/// The number of events in a batch [`Events::into_batch`] made: every event opens with its
/// id, and string values escape their quotes, so the pattern counts events exactly.
pub fn count_events(batch: &[u8]) -> usize {
    const OPEN: &[u8] = b"{\"id\":\"";
    // Only at a `{` can an event open: a byte search, not a window compare at every byte.
    let mut count = 0;
    let mut rest = batch;
    while let Some(at) = rest.iter().position(|&b| b == b'{') {
        rest = &rest[at..];
        if rest.starts_with(OPEN) {
            count += 1;
            rest = &rest[OPEN.len()..];
        } else {
            rest = &rest[1..];
        }
    }
    count
}

/// One `{"events":[…]}` body merged from request batches.
#[derive(Debug, Default)]
pub struct Post {
    body: Vec<u8>,
    count: usize,
}

impl Post {
    /// Adds a batch's events; a batch of another shape is left out and `false` returned.
    pub fn add(&mut self, batch: &[u8]) -> bool {
        self.add_counted(batch, None)
    }

    /// [`Post::add`] for a batch whose events were counted already.
    fn add_counted(&mut self, batch: &[u8], count: Option<usize>) -> bool {
        let Some(inner) = batch.strip_prefix(BATCH_HEAD.as_bytes()).and_then(|rest| rest.strip_suffix(b"]}")) else {
            return false;
        };
        if !inner.is_empty() {
            if self.count > 0 {
                self.body.push(b',');
            }
            self.body.extend_from_slice(inner);
            self.count += count.unwrap_or_else(|| count_events(inner));
        }
        true
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 13);
        out.extend_from_slice(b"{\"events\":[");
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"]}");
        out
    }
}

/// The batches of one instance waiting for its post in flight; see the module docs.
#[derive(Debug, Default)]
pub struct Coalescer {
    waiting: std::collections::VecDeque<(Vec<u8>, usize)>,
    sending: bool,
}

impl Coalescer {
    /// Queues a request's batch. True when no post is in flight: the caller must then start
    /// the sending task, which sends [`Coalescer::next_post`] until it answers `None`.
    pub fn add(&mut self, batch: Vec<u8>) -> bool {
        let count = count_events(&batch);
        self.waiting.push_back((batch, count));
        !std::mem::replace(&mut self.sending, true)
    }

    /// Everything waiting, merged into posts of at most [`MAX_POST_EVENTS`]; `None` when
    /// nothing is, which ends the sending task (the next [`Coalescer::add`] starts another).
    pub fn next_post(&mut self) -> Option<Vec<u8>> {
        let mut post = Post::default();
        while let Some((_, count)) = self.waiting.front() {
            if post.count() > 0 && post.count() + count > MAX_POST_EVENTS {
                break;
            }
            let (batch, count) = self.waiting.pop_front().expect("a front");
            post.add_counted(&batch, Some(count));
        }
        if post.count() == 0 {
            self.sending = false;
            return None;
        }
        Some(post.finish())
    }

    /// Ends the sending task before the queue is empty, for platforms that bound how long
    /// a request's work may run after its response (Workers' `waitUntil`): the next
    /// [`Coalescer::add`] starts a task that takes over what still waits.
    pub fn release(&mut self) {
        self.sending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> Vec<u8> {
        let events: Vec<String> = ids.iter().map(|id| format!(r#"{{"id":"{id}","kind":"k","data":{{}}}}"#)).collect();
        format!(r#"{{"events":[{}]}}"#, events.join(",")).into_bytes()
    }

    #[test]
    fn batches_merge_into_one_body_with_their_events_counted() {
        let mut post = Post::default();
        assert!(post.add(br#"{"events":[{"id":"evt_1","kind":"a","data":{"x":"{\"id\":\""}}]}"#));
        assert!(post.add(&batch(&["evt_2", "evt_3"])));
        assert!(!post.add(b"not a batch"));
        assert_eq!(post.count(), 3);
        let body = post.finish();
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("one JSON body");
        let ids: Vec<&str> = parsed["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["evt_1", "evt_2", "evt_3"]);
    }

    #[test]
    fn batches_arriving_during_a_post_go_out_together_in_the_next() {
        let mut coalescer = Coalescer::default();
        assert!(coalescer.add(batch(&["evt_1"])), "the first batch starts a sender");
        let first = coalescer.next_post().unwrap();
        assert_eq!(count_events(&first), 1);
        // While that post is in flight, three requests finish: no new sender each.
        for id in ["evt_2", "evt_3", "evt_4"] {
            assert!(!coalescer.add(batch(&[id])));
        }
        let second = coalescer.next_post().unwrap();
        assert_eq!(count_events(&second), 3);
        assert!(coalescer.next_post().is_none(), "the sender ends when nothing waits");
        assert!(coalescer.add(batch(&["evt_5"])), "and the next batch starts another");
        coalescer.release();
        assert!(coalescer.add(batch(&["evt_6"])), "a released sender is replaced by the next batch's");
        assert_eq!(count_events(&coalescer.next_post().unwrap()), 2, "which takes what still waited");
    }

    #[test]
    fn a_post_never_holds_more_than_the_core_takes() {
        let mut coalescer = Coalescer::default();
        let ids: Vec<String> = (0..600).map(|i| format!("evt_{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        coalescer.add(batch(&refs));
        coalescer.add(batch(&refs));
        coalescer.add(batch(&refs[..10]));
        let sizes: Vec<usize> = std::iter::from_fn(|| coalescer.next_post()).map(|post| count_events(&post)).collect();
        assert_eq!(sizes, [600, 610], "every event once, no post over {MAX_POST_EVENTS}");
    }
}
