//! The server over an in-memory stream: what a client sends, byte for byte, and what it
//! gets back, with an application that echoes what it was handed.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

use super::serve_connection;

/// Answers `METHOD URI 1.x [body]` so a test sees exactly what the server parsed.
async fn echo(request: Request<Vec<u8>>) -> Response<Vec<u8>> {
    let version = if request.version() == http::Version::HTTP_10 { "1.0" } else { "1.1" };
    let text =
        format!("{} {} {version} [{}]", request.method(), request.uri(), String::from_utf8_lossy(request.body()));
    let mut response = Response::new(text.into_bytes());
    if request.uri().path() == "/empty" {
        *response.status_mut() = StatusCode::NO_CONTENT;
        response.body_mut().clear();
    }
    response
}

fn start() -> (DuplexStream, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (stop, stopping) = watch::channel(false);
    let served = tokio::spawn(serve_connection(server, stopping, echo));
    (client, stop, served)
}

/// Everything the server writes until it closes, with `Date` values blanked.
async fn read_all(client: &mut DuplexStream) -> String {
    let mut bytes = Vec::new();
    client.read_to_end(&mut bytes).await.unwrap();
    blank_dates(&String::from_utf8(bytes).unwrap())
}

fn blank_dates(text: &str) -> String {
    text.split("\r\n")
        .map(|line| if line.starts_with("date: ") { "date: *" } else { line })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Sends `parts` one write at a time, then closes the sending side.
async fn exchange(parts: &[&[u8]]) -> String {
    let (mut client, _stop, served) = start();
    for part in parts {
        // The server may have closed already (a refusal): what it wrote is still read.
        if client.write_all(part).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let _ = client.shutdown().await;
    let transcript = read_all(&mut client).await;
    served.await.unwrap();
    transcript
}

fn ok(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\ndate: *\r\n\r\n{body}", body.len())
}

/// The status lines in a transcript (echoed bodies never contain `HTTP/`).
fn statuses(transcript: &str) -> Vec<String> {
    transcript
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|rest| format!("HTTP/1.1 {}", rest.split("\r\n").next().unwrap()))
        .collect()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let transcript = exchange(&[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    let expected = [ok("GET /a 1.1 []"), ok("POST /b 1.1 [abc]"), ok("GET /c?q=1 1.1 []")].concat();
    assert_eq!(transcript, expected);
}

#[tokio::test]
async fn a_head_and_body_split_across_reads_are_put_back_together() {
    let transcript =
        exchange(&[b"POST /split HT", b"TP/1.1\r\nHost: x\r\nContent-", b"Length: 11\r\n\r\nhello", b" world"]).await;
    assert_eq!(transcript, ok("POST /split 1.1 [hello world]"));
}

#[tokio::test]
async fn a_chunked_body_is_decoded_with_extensions_and_trailers() {
    let transcript = exchange(&[
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n",
        b"6\r\n world\r\n0\r\nTrailer-Field: t\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    ])
    .await;
    assert_eq!(transcript, [ok("POST /c 1.1 [hello world]"), ok("GET /next 1.1 []")].concat());
}

/// Request smuggling needs two readings of one request's end; every such request is
/// refused, and the connection closes so nothing after it is read as a request.
#[tokio::test]
async fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: [(&[u8], &str); 7] = [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "400 Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", "400 Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501 Not Implemented"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "400 Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400 Bad Request"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", "400 Bad Request"),
    ];
    for (request, status) in cases {
        let transcript = exchange(&[request, smuggled]).await;
        assert_eq!(statuses(&transcript), [format!("HTTP/1.1 {status}")], "{}", String::from_utf8_lossy(request));
        assert!(transcript.contains("connection: close\r\n"), "{transcript}");
        assert!(transcript.contains("application/problem+json"), "{transcript}");
        assert!(!transcript.contains("smuggled"), "{transcript}");
    }
}

#[tokio::test]
async fn repeated_equal_lengths_are_one_length() {
    let transcript =
        exchange(&[b"POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi"]).await;
    assert_eq!(transcript, ok("POST /l 1.1 [hi]"));
}

#[tokio::test]
async fn host_is_required_once_on_http_1_1() {
    for request in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"] {
        let transcript = exchange(&[request]).await;
        assert_eq!(statuses(&transcript), ["HTTP/1.1 400 Bad Request"], "{transcript}");
        assert!(transcript.contains("bad_host"), "{transcript}");
    }
    // HTTP/1.0 predates Host, and absolute-form carries the authority in the target.
    assert_eq!(
        exchange(&[b"GET /old HTTP/1.0\r\n\r\n"]).await,
        ok("GET /old 1.0 []").replace("\r\ndate", "\r\nconnection: close\r\ndate")
    );
    assert_eq!(
        exchange(&[b"GET http://go.example/a HTTP/1.1\r\nHost: go.example\r\n\r\n"]).await,
        ok("GET http://go.example/a 1.1 []")
    );
}

#[tokio::test]
async fn bodies_past_the_cap_are_refused_unread() {
    let declared =
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", verge_edge::body::MAX_BODY_BYTES + 1);
    let transcript = exchange(&[declared.as_bytes()]).await;
    assert_eq!(statuses(&transcript), ["HTTP/1.1 413 Payload Too Large"]);

    let chunk = vec![b'a'; 40 * 1024];
    let mut chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    let transcript = exchange(&[&chunked]).await;
    assert_eq!(statuses(&transcript), ["HTTP/1.1 413 Payload Too Large"]);
    // A chunk size no counter can hold is too large, not a wrap-around.
    let huge =
        exchange(&[b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"]).await;
    assert_eq!(statuses(&huge), ["HTTP/1.1 413 Payload Too Large"]);
}

/// A client refused while still sending its body may finish sending: the server reads and
/// drops it rather than close under it (a reset that can lose the refusal), and the client
/// reads the refusal. One that neither sends nor closes is let go after `LINGER_TIME`.
#[tokio::test(start_paused = true)]
async fn a_refused_client_may_finish_sending_and_still_reads_the_refusal() {
    let length = verge_edge::body::MAX_BODY_BYTES * 2;
    let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n");
    // A small pipe: the body can only get through if the server keeps reading.
    let (mut client, server) = tokio::io::duplex(4096);
    let (_stop, stopping) = watch::channel(false);
    let served = tokio::spawn(serve_connection(server, stopping, echo));
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&vec![b'a'; length]).await.expect("the body after a refusal is read, not reset");
    client.shutdown().await.unwrap();
    let transcript = read_all(&mut client).await;
    assert_eq!(statuses(&transcript), ["HTTP/1.1 413 Payload Too Large"]);
    assert!(transcript.contains("connection: close\r\n"), "{transcript}");
    served.await.unwrap();

    let (mut client, _stop, served) = start();
    client.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    served.await.unwrap();
    assert_eq!(started.elapsed(), super::LINGER_TIME);
    assert_eq!(statuses(&read_all(&mut client).await), ["HTTP/1.1 413 Payload Too Large"]);
}

#[tokio::test]
async fn heads_past_the_limits_get_431() {
    let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n", "a".repeat(super::MAX_HEAD_BYTES));
    assert_eq!(statuses(&exchange(&[long.as_bytes()]).await), ["HTTP/1.1 431 Request Header Fields Too Large"]);
    let many: String = (0..=super::MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(statuses(&exchange(&[many.as_bytes()]).await), ["HTTP/1.1 431 Request Header Fields Too Large"]);
    assert_eq!(statuses(&exchange(&[b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"]).await), ["HTTP/1.1 400 Bad Request"]);
}

#[tokio::test]
async fn connection_options_decide_whether_the_connection_stays() {
    let next = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    // Closed after the answer: a 1.1 `close`, a 1.0 request without keep-alive.
    for request in [&b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..], b"GET /a HTTP/1.0\r\n\r\n"] {
        let transcript = exchange(&[request, next]).await;
        assert_eq!(statuses(&transcript).len(), 1, "{transcript}");
        assert!(transcript.contains("connection: close\r\n"), "{transcript}");
    }
    let transcript = exchange(&[b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", next]).await;
    assert_eq!(statuses(&transcript).len(), 2, "{transcript}");
    assert!(transcript.starts_with(&ok("GET /a 1.0 []").replace("\r\ndate", "\r\nconnection: keep-alive\r\ndate")));
    assert!(!transcript.contains("connection: close"), "{transcript}");
}

#[tokio::test]
async fn head_answers_carry_the_length_without_the_body_and_204_no_length() {
    let transcript = exchange(&[b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    assert_eq!(
        transcript,
        "HTTP/1.1 200 OK\r\ncontent-length: 14\r\ndate: *\r\n\r\nHTTP/1.1 204 No Content\r\ndate: *\r\n\r\n"
    );
}

#[tokio::test]
async fn expect_100_continue_gets_the_interim_answer_before_the_body_is_sent() {
    let (mut client, _stop, _served) = start();
    client
        .write_all(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0; 25];
    client.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"ok").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_all(&mut client).await, ok("POST /e 1.1 [ok]"));
}

#[tokio::test]
async fn a_stopping_node_finishes_the_request_in_flight_and_closes_idle_connections() {
    // Idle between requests: closed as soon as the node stops.
    let (mut idle, stop, served) = start();
    idle.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The date takes 29 bytes where `ok` has one star.
    let mut first = vec![0; ok("GET /a 1.1 []").len() + 28];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(blank_dates(&String::from_utf8(first).unwrap()), ok("GET /a 1.1 []"));
    stop.send(true).unwrap();
    served.await.unwrap();
    assert_eq!(read_all(&mut idle).await, "");

    // Mid-request: answered, told to close, closed.
    let (mut busy, stop, served) = start();
    busy.write_all(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab").await.unwrap();
    tokio::task::yield_now().await;
    stop.send(true).unwrap();
    busy.write_all(b"cd").await.unwrap();
    let transcript = read_all(&mut busy).await;
    served.await.unwrap();
    assert_eq!(transcript, ok("POST /b 1.1 [abcd]").replace("\r\ndate", "\r\nconnection: close\r\ndate"));
}

/// Sends `bytes` one a second; the client back once the server stops reading.
async fn trickle(mut client: DuplexStream, bytes: &'static [u8]) -> DuplexStream {
    for byte in bytes {
        if client.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    client
}

#[tokio::test(start_paused = true)]
async fn silent_and_slow_clients_are_dropped_at_the_read_deadline() {
    let (mut silent, _stop, served) = start();
    let started = tokio::time::Instant::now();
    served.await.unwrap();
    assert_eq!(started.elapsed(), super::READ_TIMEOUT);
    assert_eq!(read_all(&mut silent).await, "");

    // A head that trickles in is dropped at the same deadline, however often it moves;
    // so is a body, from the end of its head.
    let body = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    let slow_head: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
    for (sent_at_once, trickled) in [(&b""[..], slow_head), (body, &[b'a'; 99][..])] {
        let (mut client, _stop, served) = start();
        client.write_all(sent_at_once).await.unwrap();
        let started = tokio::time::Instant::now();
        let trickling = tokio::spawn(trickle(client, trickled));
        served.await.unwrap();
        assert_eq!(started.elapsed(), super::READ_TIMEOUT);
        let mut client = trickling.await.unwrap();
        assert_eq!(read_all(&mut client).await, "");
    }
}
