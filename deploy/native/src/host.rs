//! The edge's `Host` over tokio: KV from [`crate::kv`], the clock and randomness of the
//! operating system, the client from the socket (and a trusted proxy's country header),
//! events to [`crate::events`]; and the hyper server that hands each request to
//! `verge_edge::handle`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use verge_edge::{Client, Host, HostError, body};

use crate::events::EventSender;
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

type Response = http::Response<Full<Bytes>>;

impl Node {
    async fn handle(&self, request: http::Request<Incoming>, peer: SocketAddr) -> Response {
        let (mut parts, incoming) = request.into_parts();
        // The edge reads the host from the URI, where the platforms put it. The path is
        // kept as hyper parsed it (a cheap clone), only the authority is parsed here.
        // A `Host` that is no authority leaves the URI as it came (the edge then reads it
        // from the header, and finds nothing under it).
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
        let country = verge_edge::client::country(self.country_header.as_ref().map(http::HeaderName::as_str), |name| {
            parts.headers.get(name).map(http::HeaderValue::as_bytes)
        });
        let client = Client { ip: Some(peer.ip()), country };
        // No edge route reads a GET or HEAD body.
        let body = if matches!(parts.method, http::Method::GET | http::Method::HEAD) {
            Vec::new()
        } else {
            match read_body(&parts.headers, incoming).await {
                Ok(body) => body,
                Err(refused) => return refused.map(|b| Full::new(Bytes::from(b))),
            }
        };
        let host = NativeHost { node: self, client, now_millis: AtomicU64::new(0) };
        let response = verge_edge::handle(&host, http::Request::from_parts(parts, body)).await;
        response.map(|body| Full::new(Bytes::from(body)))
    }
}

/// Reads the body up to the edge's cap (`verge_edge::body`), frame by frame.
async fn read_body(headers: &http::HeaderMap, mut incoming: Incoming) -> Result<Vec<u8>, http::Response<Vec<u8>>> {
    if body::declared_too_large(headers) {
        return Err(body::too_large());
    }
    let mut capped = body::Capped::default();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|_| body::unreadable())?;
        if let Some(data) = frame.data_ref() {
            capped.push(data).map_err(|_| body::too_large())?;
        }
    }
    Ok(capped.into_bytes())
}

/// Serves until `shutdown` resolves, then drains connections for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let service = service_fn(move |request| {
            let node = node.clone();
            async move { Ok::<_, std::convert::Infallible>(node.handle(request, peer).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the grace period; closing them");
    }
    Ok(())
}
