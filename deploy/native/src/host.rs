//! The edge's `Host` over tokio: KV from [`crate::kv`], the clock and randomness of the
//! operating system, the client from the socket (and a trusted proxy's country header),
//! events to [`crate::events`]; and the accept loop that hands each connection to
//! [`crate::http1`] and each request to `verge_edge::handle`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use verge_edge::{Client, Host, HostError};

use crate::events::EventSender;
use crate::http1;
use crate::kv::Kv;

/// What every request of this node shares.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kv: Kv,
    pub(crate) events: EventSender,
    pub(crate) country_header: Option<http::HeaderName>,
}

/// One request's view of the node.
struct NativeHost<'a> {
    node: &'a Node,
    client: Client,
    /// The clock as first read for this request (0 = not yet): the edge asks four or five
    /// times per OFREP request, and one time serves them all, as on the Spin entry.
    now_millis: AtomicU64,
}

impl Host for NativeHost<'_> {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.node.kv.get(key).await
    }

    async fn counter_add(&self, key: &str, delta: i64) -> Result<i64, HostError> {
        self.node.kv.counter_add(key, delta).await
    }

    fn now_millis(&self) -> u64 {
        match self.now_millis.load(Ordering::Relaxed) {
            0 => {
                let since_epoch =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let now = since_epoch.as_millis() as u64;
                self.now_millis.store(now, Ordering::Relaxed);
                now
            }
            now => now,
        }
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's random source");
    }

    fn send_after_response(&self, batch: Vec<u8>) {
        self.node.events.send(batch);
    }

    fn reports_events(&self) -> bool {
        self.node.events.reports()
    }
}

impl Node {
    /// Answers one request, as the edge application does on every platform.
    pub(crate) async fn answer(&self, request: http::Request<Vec<u8>>, peer: SocketAddr) -> http::Response<Vec<u8>> {
        let (mut parts, body) = request.into_parts();
        // The edge reads the host from the URI, where the platforms put it. The path is
        // kept as parsed (a cheap clone), only the authority is parsed here. A `Host`
        // that is no authority leaves the URI as it came (the edge then reads it from the
        // header, and finds nothing under it).
        if parts.uri.authority().is_none() {
            let authority = match parts.headers.get(http::header::HOST) {
                Some(host) => http::uri::Authority::from_maybe_shared(Bytes::copy_from_slice(host.as_bytes())).ok(),
                None => Some(http::uri::Authority::from_static("localhost")),
            };
            if let Some(authority) = authority {
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(http::uri::Scheme::HTTP);
                uri.authority = Some(authority);
                uri.path_and_query =
                    Some(parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
                if let Ok(uri) = http::Uri::from_parts(uri) {
                    parts.uri = uri;
                }
            }
        }
        let country = verge_edge::client::country(self.country_header.as_ref().map(http::HeaderName::as_str), |name| {
            parts.headers.get(name).map(http::HeaderValue::as_bytes)
        });
        let client = Client { ip: Some(peer.ip()), country };
        let host = NativeHost { node: self, client, now_millis: AtomicU64::new(0) };
        verge_edge::handle(&host, http::Request::from_parts(parts, body)).await
    }
}

/// Serves until `shutdown` resolves, then lets connections finish the request they are
/// on for at most `grace`; idle ones close at once. At most `max_connections` are open at
/// once: past that the node stops accepting, and new connections wait in the kernel's
/// backlog until one closes, rather than each taking a file descriptor and memory.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
    max_connections: u32,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    // Every connection holds a slot until it ends: all slots free again means all closed.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections as usize));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            http1::serve_connection(stream, stopping, |request| node.answer(request, peer)).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(grace, slots.acquire_many(max_connections)).await.is_err() {
        tracing::warn!("connections still open after the grace period; closing them");
    }
    Ok(())
}
