//! The node's HTTP/1.1 server: small and strict, shaped for the edge's requests.
//!
//! Why not hyper: on a single-flag OFREP request the node spent about 12 µs of CPU, of
//! which hyper's dispatcher, body channel and buffers were the largest share of the part
//! that is ours (docs/edge.md has the figures). Edge requests are small and whole: a head,
//! at most a 64 KB body, one answer built in memory. This server does exactly that: it
//! parses the head with `httparse` (the parser hyper uses), reads a bounded body, answers
//! with one write, and keeps the connection when HTTP says to, pipelining included.
//!
//! It refuses rather than guesses. Anything a front proxy could read differently — both
//! `Transfer-Encoding` and `Content-Length`, lengths that disagree, a transfer coding other
//! than `chunked`, a malformed chunk, a 1.1 request without exactly one `Host` — is refused
//! (400, 413, 431 or 501) and the connection closed, so nothing can be smuggled through it;
//! what the client still sends after a refusal is read and dropped for a moment first, so
//! the refusal is not lost to a reset.

use std::io::{self, Write as _};
use std::time::{Duration, SystemTime};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use verge_edge::body::{self, Capped, MAX_BODY_BYTES};

/// Largest request head (request line and headers), as nginx's default large buffer.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one request head.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;
/// How long a client may take to send a whole head (idle time before it included), and
/// then its whole body, before the connection is closed: what stops slow-loris clients.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may take to leave.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused connection goes on reading (and dropping) what the client still
/// sends before it closes (see `Connection::linger`).
const LINGER_TIME: Duration = Duration::from_secs(2);

/// One connection: reads requests, hands each to `answer`, writes the answers in order.
/// Returns when the client closes, HTTP says to close, a read times out or `stopping`
/// turns true while the connection is between requests.
pub(crate) async fn serve_connection<S, A, F>(stream: S, mut stopping: watch::Receiver<bool>, answer: A)
where
    S: AsyncRead + AsyncWrite + Unpin,
    A: Fn(Request<Vec<u8>>) -> F,
    F: Future<Output = Response<Vec<u8>>>,
{
    let mut connection = Connection { stream, input: BytesMut::with_capacity(4096), output: Vec::with_capacity(1024) };
    loop {
        let request = match connection.read_request(&mut stopping).await {
            Ok(Some(request)) => request,
            Ok(None) | Err(Refused::Gone) => return,
            Err(Refused::With(response)) => {
                connection.encode(*response, false, false, Version::HTTP_11);
                if connection.flush().await.is_ok() {
                    connection.linger().await;
                }
                return;
            }
        };
        let keep_alive = wants_keep_alive(&request) && !*stopping.borrow();
        let head_only = request.method() == Method::HEAD;
        let version = request.version();
        let response = answer(request).await;
        connection.encode(response, head_only, keep_alive, version);
        if connection.flush().await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Why a request was not read: the connection is gone (closed, timed out, unreadable), or
/// it gets this answer and is then closed.
enum Refused {
    Gone,
    With(Box<Response<Vec<u8>>>),
}

impl From<io::Error> for Refused {
    fn from(_: io::Error) -> Self {
        Refused::Gone
    }
}

fn refuse(status: StatusCode, code: &str, detail: &str) -> Refused {
    Refused::With(Box::new(verge_edge::problem::response(status, code, detail)))
}

/// How the request says its body ends (RFC 9112 §6.3).
enum Framing {
    Length(usize),
    Chunked,
}

struct Connection<S> {
    stream: S,
    input: BytesMut,
    output: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Reads more of the request; `Gone` on a close, an error or past `deadline`.
    async fn fill(&mut self, deadline: Instant) -> Result<(), Refused> {
        // Room for a whole small request in one read. Between requests the buffer is empty,
        // and reserving then takes back the space consumed requests left behind, for free.
        if self.input.capacity() - self.input.len() < 1024 {
            self.input.reserve(4096);
        }
        match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.input)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => Err(Refused::Gone),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The next request, or `None` when the client closed (or the node is stopping)
    /// between requests.
    async fn read_request(
        &mut self,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<Option<Request<Vec<u8>>>, Refused> {
        // One deadline for the whole head, however it trickles in, and one for the body.
        let deadline = Instant::now() + READ_TIMEOUT;
        let (head_length, mut request) = loop {
            if let Some(parsed) = parse_head(&self.input)? {
                break parsed;
            }
            if self.input.is_empty() {
                // Between requests: a stopping node closes idle connections at once.
                if *stopping.borrow() {
                    return Ok(None);
                }
                tokio::select! {
                    biased;
                    filled = self.fill(deadline) => match filled {
                        Ok(()) => {}
                        Err(_) => return Ok(None),
                    },
                    _ = stopping.changed() => return Ok(None),
                }
            } else {
                self.fill(deadline).await?;
            }
        };
        self.input.advance(head_length);
        let framing = framing(&request)?;
        if let Framing::Length(length) = framing
            && length > MAX_BODY_BYTES
        {
            return Err(Refused::With(Box::new(body::too_large())));
        }
        if request.version() == Version::HTTP_11
            && request
                .headers()
                .get(header::EXPECT)
                .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"))
            && self.input.is_empty()
            && !matches!(framing, Framing::Length(0))
        {
            self.write_timed(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        *request.body_mut() = match framing {
            Framing::Length(length) => {
                if self.input.len() < length {
                    let deadline = Instant::now() + READ_TIMEOUT;
                    while self.input.len() < length {
                        self.fill(deadline).await?;
                    }
                }
                let body = self.input[..length].to_vec();
                self.input.advance(length);
                body
            }
            Framing::Chunked => self.read_chunked(Instant::now() + READ_TIMEOUT).await?,
        };
        Ok(Some(request))
    }

    /// A chunked body (RFC 9112 §7.1), up to the edge's cap; trailers are read and dropped.
    async fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, Refused> {
        let mut body = Capped::default();
        loop {
            let size = match httparse::parse_chunk_size(&self.input) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.input.advance(used);
                    size
                }
                Ok(httparse::Status::Partial) if self.input.len() <= MAX_CHUNK_LINE => {
                    self.fill(deadline).await?;
                    continue;
                }
                _ => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "bad_chunk",
                        "a chunk of the request body is malformed",
                    ));
                }
            };
            if size == 0 {
                return self.skip_trailers(deadline).await.map(|()| body.into_bytes());
            }
            if (body.len() as u64).saturating_add(size) > MAX_BODY_BYTES as u64 {
                return Err(Refused::With(Box::new(body::too_large())));
            }
            let size = size as usize;
            while self.input.len() < size + 2 {
                self.fill(deadline).await?;
            }
            body.push(&self.input[..size]).map_err(|_| Refused::With(Box::new(body::too_large())))?;
            if &self.input[size..size + 2] != b"\r\n" {
                return Err(refuse(StatusCode::BAD_REQUEST, "bad_chunk", "a chunk of the request body is malformed"));
            }
            self.input.advance(size + 2);
        }
    }

    async fn skip_trailers(&mut self, deadline: Instant) -> Result<(), Refused> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(&self.input, &mut fields) {
                Ok(httparse::Status::Complete((used, _))) => {
                    self.input.advance(used);
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if self.input.len() < MAX_HEAD_BYTES => self.fill(deadline).await?,
                _ => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "bad_trailer",
                        "the request's trailer fields are malformed",
                    ));
                }
            }
        }
    }

    /// Writes `response` into the output buffer: status line, the application's headers,
    /// the framing, `Date`, then the body (none for HEAD).
    fn encode(&mut self, response: Response<Vec<u8>>, head_only: bool, keep_alive: bool, version: Version) {
        let (parts, body) = response.into_parts();
        let out = &mut self.output;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &parts.headers {
            // The framing is this server's to say, from the body it sends.
            if matches!(*name, header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION) {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !(parts.status.is_informational()
            || matches!(parts.status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED))
        {
            let _ = write!(out, "content-length: {}\r\n", body.len());
        }
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if version == Version::HTTP_10 {
            // A 1.0 client closes unless told otherwise.
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"date: ");
        date::now(out);
        out.extend_from_slice(b"\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&body);
        }
    }

    /// Closes after a refusal the way nginx's lingering close does. A socket closed with
    /// unread input answers the client with a reset, and a client still sending the body
    /// we refused can lose the refusal to it before reading it. So: end our side, then read
    /// and drop what still arrives until the client ends its side or `LINGER_TIME` passes.
    async fn linger(&mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut sink = [0u8; 16 * 1024];
        while let Ok(Ok(read)) = tokio::time::timeout_at(deadline, self.stream.read(&mut sink)).await {
            if read == 0 {
                break;
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        let output = std::mem::take(&mut self.output);
        let written = self.write_timed(&output).await;
        self.output = output;
        written
    }

    async fn write_timed(&mut self, bytes: &[u8]) -> io::Result<()> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(written) => written,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// A parsed request head: its length in bytes, and the request with an empty body.
type Head = (usize, Request<Vec<u8>>);

/// A complete request head at the start of `input`, `None` while it is incomplete.
fn parse_head(input: &[u8]) -> Result<Option<Head>, Refused> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_length = match parsed.parse(input) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
        Ok(httparse::Status::Partial) if input.len() < MAX_HEAD_BYTES => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "head_too_large",
                &format!("request heads are limited to {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} fields"),
            ));
        }
        Err(_) => return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", "the request head is malformed")),
    };
    let malformed = || refuse(StatusCode::BAD_REQUEST, "bad_request", "the request head is malformed");
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| malformed())?;
    let uri = Uri::try_from(parsed.path.unwrap_or_default()).map_err(|_| malformed())?;
    let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| malformed())?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| malformed())?;
        headers.append(name, value);
    }
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_host",
            "a request of version 1.1 carries exactly one Host field",
        ));
    }
    let mut request = Request::new(Vec::new());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some((head_length, request)))
}

/// The body's framing, refusing every ambiguous or unsupported one.
fn framing(request: &Request<Vec<u8>>) -> Result<Framing, Refused> {
    let headers = request.headers();
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        if request.version() == Version::HTTP_10 || headers.contains_key(header::CONTENT_LENGTH) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "ambiguous_framing",
                "a request carries Transfer-Encoding or Content-Length, not both, and Transfer-Encoding only from version 1.1",
            ));
        }
        let mut all = codings.flat_map(|value| value.as_bytes().split(|&b| b == b',')).map(<[u8]>::trim_ascii);
        return match (all.next(), all.next()) {
            (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(refuse(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported_coding",
                "the only transfer coding accepted is chunked",
            )),
        };
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let parsed = (!part.is_empty() && part.len() <= 19 && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten();
            match (parsed, length) {
                (Some(parsed), None) => length = Some(parsed),
                (Some(parsed), Some(seen)) if parsed == seen => {}
                _ => return Err(refuse(StatusCode::BAD_REQUEST, "bad_content_length", "Content-Length is malformed")),
            }
        }
    }
    Ok(Framing::Length(length.map_or(0, |length| usize::try_from(length).unwrap_or(usize::MAX))))
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only when told `keep-alive`.
fn wants_keep_alive(request: &Request<Vec<u8>>) -> bool {
    let mut close = false;
    let mut keep = false;
    for value in request.headers().get_all(header::CONNECTION) {
        for option in value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            close |= option.eq_ignore_ascii_case(b"close");
            keep |= option.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    match request.version() {
        Version::HTTP_10 => keep && !close,
        _ => !close,
    }
}

/// The `Date` field, formatted once a second.
mod date {
    use std::cell::RefCell;

    use super::SystemTime;

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub(super) fn now(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        CACHED.with_borrow_mut(|(cached_second, text)| {
            if *cached_second != second || text.is_empty() {
                *cached_second = second;
                *text = httpdate::fmt_http_date(now);
            }
            out.extend_from_slice(text.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests;
