//! Event batches to the core, merged across requests.
//!
//! Each request hands over the batch the edge application built (usually one event); a
//! single task joins them into posts of up to [`MAX_EVENTS`] and sends them to the core's
//! `POST /v1/events`, so reporting costs a request a channel send, not a connection. A
//! batch the core does not acknowledge is tried again (event ids make that safe) a few
//! times. On shutdown the task sends what it holds before the process exits; a crash
//! loses what is queued, at most what arrived since the last post (which goes out as soon
//! as the previous one is answered).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

/// Events in one post: the core's batch limit.
const MAX_EVENTS: usize = 1000;
/// Tries per post before its events are given up (logged with their count).
const ATTEMPTS: u32 = 4;

/// Hands batches to the sending task; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct EventSender(Option<mpsc::UnboundedSender<Vec<u8>>>);

/// Ends when every batch handed over has been sent (or given up).
#[derive(Debug)]
pub(crate) struct Flushed(Option<tokio::task::JoinHandle<()>>);

impl EventSender {
    /// Sends to `core_url` with `ingest_key`; `None` when this node does not report.
    pub(crate) fn start(target: Option<(http::Uri, String)>) -> (EventSender, Flushed) {
        let Some((core_url, key)) = target else { return (EventSender(None), Flushed(None)) };
        let (tx, rx) = mpsc::unbounded_channel();
        let endpoint = format!("{}/v1/events", core_url.to_string().trim_end_matches('/'));
        let task = tokio::spawn(send_loop(rx, endpoint, key));
        (EventSender(Some(tx)), Flushed(Some(task)))
    }

    pub(crate) fn reports(&self) -> bool {
        self.0.is_some()
    }

    pub(crate) fn send(&self, batch: Vec<u8>) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(batch);
        }
    }
}

impl Flushed {
    /// Waits (at most `grace`) for the queue to drain once every sender is dropped.
    pub(crate) async fn wait(self, grace: Duration) {
        let Some(task) = self.0 else { return };
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!("events still unsent after the grace period; dropping them");
        }
    }
}

async fn send_loop(mut rx: mpsc::UnboundedReceiver<Vec<u8>>, endpoint: String, key: String) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let auth = format!("Bearer {key}");
    while let Some(first) = rx.recv().await {
        let mut post = Post::default();
        post.add(&first);
        // Whatever else is already queued rides along, up to the batch limit.
        while post.count < MAX_EVENTS {
            match rx.try_recv() {
                Ok(batch) => post.add(&batch),
                Err(_) => break,
            }
        }
        let (count, body) = post.finish();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = http::Request::post(&endpoint)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::AUTHORIZATION, &auth)
                .body(Full::new(body.clone()))
                .expect("a valid request");
            match client.request(request).await {
                Ok(response) if response.status().is_success() => break,
                Ok(response) if response.status().is_client_error() && response.status() != 429 => {
                    tracing::warn!(status = %response.status(), count, "the core refused an event batch");
                    break;
                }
                outcome => {
                    let why = outcome.map_or_else(|err| err.to_string(), |r| r.status().to_string());
                    if attempt >= ATTEMPTS {
                        tracing::warn!(count, %why, "event batch not delivered; dropped");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
}

/// One `{"events":[…]}` body assembled from the application's batches.
#[derive(Debug, Default)]
struct Post {
    body: Vec<u8>,
    count: usize,
}

impl Post {
    fn add(&mut self, batch: &[u8]) {
        const HEAD: &[u8] = b"{\"events\":[";
        let Some(inner) = batch.strip_prefix(HEAD).and_then(|rest| rest.strip_suffix(b"]}")) else {
            tracing::warn!("an event batch of an unknown shape was dropped");
            return;
        };
        if inner.is_empty() {
            return;
        }
        if self.count > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(inner);
        // Every event opens with its id, and string values escape their quotes, so this
        // pattern counts events exactly.
        self.count += inner.windows(7).filter(|w| *w == b"{\"id\":\"").count();
    }

    fn finish(self) -> (usize, Bytes) {
        let mut out = Vec::with_capacity(self.body.len() + 13);
        out.extend_from_slice(b"{\"events\":[");
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"]}");
        (self.count, Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_merge_into_one_body_with_their_events_counted() {
        let mut post = Post::default();
        post.add(br#"{"events":[{"id":"evt_1","kind":"a","data":{"x":"{\"id\":\""}}]}"#);
        post.add(br#"{"events":[{"id":"evt_2","kind":"b"},{"id":"evt_3","kind":"c"}]}"#);
        post.add(b"not a batch");
        let (count, body) = post.finish();
        assert_eq!(count, 3);
        let parsed: Vec<&str> = std::str::from_utf8(&body).unwrap().matches("\"id\":\"evt_").collect();
        assert_eq!(parsed.len(), 3);
        assert!(body.starts_with(b"{\"events\":[{\"id\":\"evt_1\"") && body.ends_with(b"}]}"));
    }
}
