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
use verge_edge::events::{MAX_POST_EVENTS, Post};

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
        add(&mut post, &first);
        // Whatever else is already queued rides along, up to the batch limit.
        while post.count() < MAX_POST_EVENTS {
            match rx.try_recv() {
                Ok(batch) => add(&mut post, &batch),
                Err(_) => break,
            }
        }
        let count = post.count();
        let body = Bytes::from(post.finish());
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

fn add(post: &mut Post, batch: &[u8]) {
    if !post.add(batch) {
        tracing::warn!("an event batch of an unknown shape was dropped");
    }
}
