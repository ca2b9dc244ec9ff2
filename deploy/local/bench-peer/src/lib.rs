//! The peer the local host is measured against (`scripts/bench-edge`): the same Spin SDK,
//! the same wasip3 HTTP handler and the same response as the edge's health route, but no
//! key-value import, so stock `wasmtime serve -Scli` can run it. The difference between
//! the two runs is what the local host adds: its server, per-request store and KV.

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod component {
    use spin_sdk::http::{IntoResponse, Request};
    use spin_sdk::http_service;

    #[http_service]
    async fn health(request: Request) -> impl IntoResponse {
        if request.uri().path() == "/__verge/health" {
            let body = r#"{"status":"ok","snapshot":1,"datasets":{}}"#;
            spin_sdk::http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("cache-control", "no-store")
                .body(body.to_owned())
                .expect("static response")
        } else {
            spin_sdk::http::Response::builder().status(404).body(String::new()).expect("static response")
        }
    }
}
