//! Operators and console sessions, driven through the router with `oneshot` as a browser
//! would (forms, cookies, redirects): single-use invitations, strict session cookies, CSRF on
//! every form, sign-in throttling, no open redirect, roles enforced by the API itself, and
//! disabling an operator ending their sessions. core/tests/console.rs does the same in a
//! real browser.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Reply, TestApp};
use verge_core::operators::first_owner_invitation;

const HOST: &str = "127.0.0.1:8080";
const PASSWORD: &str = "a long console passphrase";

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

async fn post(app: &TestApp, uri: &str, cookie: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.send(request.body(Body::from(form(pairs))).unwrap()).await
}

async fn page(app: &TestApp, uri: &str, cookie: Option<&str>) -> Reply {
    let mut request = Request::builder().uri(uri).header(header::HOST, HOST);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

fn location(reply: &Reply) -> &str {
    reply.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// `name=value` of the `Set-Cookie` for `name`, and the whole header.
fn set_cookie(reply: &Reply, name: &str) -> Option<(String, String)> {
    reply.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.starts_with(&format!("{name}=")).then(|| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
    })
}

/// The page's CSRF token (every signed-in page carries one in its sign-out form).
fn csrf(reply: &Reply) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = reply.text.find(marker).unwrap_or_else(|| panic!("no CSRF token in {}", reply.text)) + marker.len();
    reply.text[start..].split('"').next().unwrap().to_owned()
}

/// Joins by invitation `token`; returns the session cookie.
async fn join(app: &TestApp, token: &str, email: &str) -> String {
    let reply = post(
        app,
        &format!("/console/invite/{token}"),
        None,
        &[("email", email), ("name", "Test"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(location(&reply), "/console/overview");
    set_cookie(&reply, "verge_console").expect("a session cookie").0
}

async fn owner(app: &TestApp) -> String {
    let invitation = first_owner_invitation(&app.app.state.db).await.unwrap().expect("no operator yet");
    join(app, &invitation.token, "owner@example.com").await
}

/// The owner invites an operator with `role`; returns the token of the link shown.
async fn invite(app: &TestApp, owner: &str, role: &str) -> String {
    let token = csrf(&page(app, "/console/operators", Some(owner)).await);
    let reply = post(app, "/console/operators", Some(owner), &[("csrf", &token), ("role", role)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let start = reply.text.find("/console/invite/").expect("an invitation link") + "/console/invite/".len();
    reply.text[start..].split('<').next().unwrap().to_owned()
}

async fn links(app: &TestApp) -> Vec<serde_json::Value> {
    let admin = app.admin().await;
    app.get("/v1/links", Some(&admin)).await.ok()["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn invitations_are_single_use_and_sessions_are_strict_cookies() {
    let app = TestApp::new().await;
    let first = first_owner_invitation(&app.app.state.db).await.unwrap().unwrap();
    // A later start withdraws the earlier printed link: only the newest works.
    let second = first_owner_invitation(&app.app.state.db).await.unwrap().unwrap();
    assert_eq!(page(&app, &format!("/console/invite/{}", first.token), None).await.status, StatusCode::NOT_FOUND);

    // Refusals name their field and create nothing.
    let refused = post(
        &app,
        &format!("/console/invite/{}", second.token),
        None,
        &[("email", "nope"), ("name", ""), ("password", "short")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in ["f-email-error", "f-name-error", "f-password-error"] {
        assert!(refused.text.contains(id), "{id} missing: {}", refused.text);
    }

    let reply = post(
        &app,
        &format!("/console/invite/{}", second.token),
        None,
        &[("email", " Owner@Example.com "), ("name", "Olive"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let (cookie, header) = set_cookie(&reply, "verge_console").unwrap();
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict") && header.contains("Path=/console"),
        "{header}"
    );
    assert!(!header.contains("Secure"), "plain HTTP on loopback cannot keep a Secure cookie: {header}");
    assert!(page(&app, "/console/overview", Some(&cookie)).await.text.contains("owner@example.com"));

    // Used links stay used; no second owner appears.
    assert_eq!(first_owner_invitation(&app.app.state.db).await.unwrap().map(|i| i.id), None);
    let again = post(
        &app,
        &format!("/console/invite/{}", second.token),
        None,
        &[("email", "intruder@example.com"), ("name", "I"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);

    // Served over a real host name (TLS in front), the cookie is Secure.
    let viewer = invite(&app, &cookie, "viewer").await;
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/console/invite/{viewer}"))
        .header(header::HOST, "console.example.com")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[("email", "v@example.com"), ("name", "V"), ("password", PASSWORD)])))
        .unwrap();
    let (_, header) = set_cookie(&app.send(request).await, "verge_console").unwrap();
    assert!(header.contains("; Secure"), "{header}");
}

#[tokio::test]
async fn every_page_needs_a_session_and_every_form_its_csrf_token() {
    let app = TestApp::new().await;
    let anonymous = page(&app, "/console/links?q=x", None).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/console/sign-in?next=%2Fconsole%2Flinks%3Fq%3Dx");
    let url = ("url", "https://example.com/x");
    assert_eq!(post(&app, "/console/links", None, &[url]).await.status, StatusCode::UNAUTHORIZED);

    let owner = owner(&app).await;
    let forged = post(&app, "/console/links", Some(&owner), &[url]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let wrong = post(&app, "/console/links", Some(&owner), &[url, ("csrf", "guess")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(links(&app).await.is_empty(), "a forged form created a link");

    let token = csrf(&page(&app, "/console/links", Some(&owner)).await);
    let made = post(&app, "/console/links", Some(&owner), &[url, ("csrf", &token), ("alias", "made-here")]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.text);
    let created = links(&app).await;
    assert_eq!(created.len(), 1);
    // The API refused nothing it should have, and the change is audited under the operator.
    let admin = app.admin().await;
    let audit = app.get("/v1/audit-log?target_type=link", Some(&admin)).await;
    assert!(audit.ok()["items"][0]["actor"].as_str().unwrap().starts_with("op_"), "{}", audit.text);
    // The API's refusal shows at its field, with its status, and stores nothing.
    let bad = post(&app, "/console/links", Some(&owner), &[("url", "javascript:alert(1)"), ("csrf", &token)]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains(r#"id="f-url-error""#), "{}", bad.text);
    assert_eq!(links(&app).await.len(), 1);
}

#[tokio::test]
async fn sign_in_is_throttled_and_never_leaves_the_console() {
    let app = TestApp::new().await;
    owner(&app).await;
    let sign_in = |next: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let form_page = page(
                app,
                &format!(
                    "/console/sign-in?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                ),
                None,
            )
            .await;
            let (cookie, _) = set_cookie(&form_page, "verge_console_signin").expect("a sign-in token cookie");
            let token = csrf(&form_page);
            post(
                app,
                "/console/sign-in",
                Some(&cookie),
                &[("email", "OWNER@example.com"), ("password", password), ("csrf", &token), ("next", next)],
            )
            .await
        }
    };
    let signed = sign_in("/console/flags", PASSWORD).await;
    assert_eq!((signed.status, location(&signed)), (StatusCode::SEE_OTHER, "/console/flags"));
    for off_site in ["//evil.example/console/", "https://evil.example/", "/console//evil.example", "/\\evil.example"] {
        let signed = sign_in(off_site, PASSWORD).await;
        assert_eq!(location(&signed), "/console/overview", "{off_site}");
    }
    // Without the sign-in form's own token (a cross-site post), nothing is checked.
    let forged = post(&app, "/console/sign-in", None, &[("email", "owner@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    for _ in 0..5 {
        let failed = sign_in("/console/overview", "not the password").await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
        assert!(failed.text.contains("do not match"));
    }
    let locked = sign_in("/console/overview", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.text);
    assert!(set_cookie(&locked, "verge_console").is_none());
}

#[tokio::test]
async fn roles_are_the_apis_scopes_and_a_disabled_operator_is_signed_out() {
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    let viewer = join(&app, &invite(&app, &owner, "viewer").await, "viewer@example.com").await;
    let editor = join(&app, &invite(&app, &owner, "editor").await, "editor@example.com").await;
    let url = ("url", "https://example.com/x");

    // A viewer gets no form, and the API refuses what they post anyway.
    let listing = page(&app, "/console/links", Some(&viewer)).await;
    assert!(!listing.text.contains(r#"action="/console/links" novalidate"#), "a viewer sees the form");
    let token = csrf(&listing);
    let refused = post(&app, "/console/links", Some(&viewer), &[url, ("csrf", &token)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.text.contains("lacks the scope"));
    assert!(links(&app).await.is_empty());
    // Only owners manage operators.
    let invited = post(&app, "/console/operators", Some(&viewer), &[("csrf", &token), ("role", "owner")]).await;
    assert_eq!(invited.status, StatusCode::FORBIDDEN);

    // An editor changes capabilities but not API keys.
    let token = csrf(&page(&app, "/console/links", Some(&editor)).await);
    assert_eq!(
        post(&app, "/console/links", Some(&editor), &[url, ("csrf", &token)]).await.status,
        StatusCode::SEE_OTHER
    );
    let keys = page(&app, "/console/keys", Some(&editor)).await;
    assert!(keys.text.contains("lacks the scope"), "{}", keys.text);

    // Disabling ends the session at once; the operator can no longer sign in.
    let operators = page(&app, "/console/operators", Some(&owner)).await;
    // Nobody can disable themselves (so an owner always remains): two buttons for three.
    assert_eq!(operators.text.matches("/disable\"").count(), 2, "{}", operators.text);
    let at = operators.text.find("viewer@example.com").unwrap();
    let id = operators.text[at..].split("/console/operators/").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let token = csrf(&operators);
    let disabled = post(&app, &format!("/console/operators/{id}/disable"), Some(&owner), &[("csrf", &token)]).await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER, "{}", disabled.text);
    assert_eq!(page(&app, "/console/links", Some(&viewer)).await.status, StatusCode::SEE_OTHER);
}

/// An order placed through the API, confirmed by the saga (a worker runs), for the console.
async fn confirmed_order(app: &TestApp) -> (String, tokio::sync::oneshot::Sender<()>) {
    use serde_json::json;
    let key = app.admin().await;
    let call = |method: Method, uri: &'static str, body: serde_json::Value| {
        let key = key.clone();
        async move { app.call(method, uri, Some(&key), Some(body)).await }
    };
    let product = json!({"handle": "tee", "title": "Tee", "status": "published", "variants": [
        {"sku": "TEE", "title": "Tee", "prices": [{"currency": "EUR", "amount": 2000}]}]});
    call(Method::POST, "/v1/catalog/products", product).await.ok();
    call(Method::POST, "/v1/inventory/locations", json!({"handle": "main", "name": "Main", "kind": "warehouse"}))
        .await
        .ok();
    call(
        Method::POST,
        "/v1/inventory/adjustments",
        json!({"sku": "TEE", "location": "main", "delta": 5, "reason": "received"}),
    )
    .await
    .ok();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = verge_core::jobs::Worker::new(app.app.state.clone(), verge_core::server::job_registry());
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let order = json!({"currency": "EUR", "email": "ada@example.com", "lines": [{"sku": "TEE", "quantity": 1}],
        "shipping_address": {"name": "Ada", "line1": "Hauptstraße 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment": {"method": "4242424242424242"}});
    let request = Request::post("/v1/orders")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "console-order-1")
        .body(Body::from(order.to_string()))
        .unwrap();
    let placed = app.send(request).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
    let id = placed.json["id"].as_str().unwrap().to_owned();
    for _ in 0..500 {
        if app.get(&format!("/v1/orders/{id}"), Some(&key)).await.json["status"] == "confirmed" {
            return (id, stop);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("order {id} was never confirmed");
}

#[tokio::test]
async fn an_operator_ships_and_refunds_an_order_from_its_page_through_the_api() {
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    let (id, _worker) = confirmed_order(&app).await;
    let listing = page(&app, "/console/orders", Some(&owner)).await;
    assert!(listing.text.contains(&format!("/console/orders/orders/{id}")), "{}", listing.text);
    let order_page = page(&app, &format!("/console/orders/orders/{id}"), Some(&owner)).await;
    assert_eq!(order_page.status, StatusCode::OK);
    assert!(order_page.text.contains("Timeline") && order_page.text.contains("confirmed"), "{}", order_page.text);
    let token = csrf(&order_page);

    // Actions are the API's: its refusals show on the page, with its status.
    let refund_early = post(
        &app,
        &format!("/console/orders/orders/{id}/1"),
        Some(&owner),
        &[("csrf", &token), ("1-amount", "500"), ("1-reason", "too soon")],
    )
    .await;
    assert_eq!(refund_early.status, StatusCode::CONFLICT, "{}", refund_early.text);
    let shipped = post(
        &app,
        &format!("/console/orders/orders/{id}/0"),
        Some(&owner),
        &[("csrf", &token), ("0-tracking", "DHL-1")],
    )
    .await;
    assert_eq!(shipped.status, StatusCode::SEE_OTHER, "{}", shipped.text);
    let admin = app.admin().await;
    assert_eq!(app.get(&format!("/v1/orders/{id}"), Some(&admin)).await.json["status"], "fulfilled");
    // The saga captures the payment after shipping; refunds wait for that.
    for _ in 0..500 {
        if app.get(&format!("/v1/orders/{id}"), Some(&admin)).await.json["payment"]["status"] == "captured" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let not_a_number = post(
        &app,
        &format!("/console/orders/orders/{id}/1"),
        Some(&owner),
        &[("csrf", &token), ("1-amount", "five"), ("1-reason", "damaged")],
    )
    .await;
    assert_eq!(not_a_number.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", not_a_number.text);
    let refunded = post(
        &app,
        &format!("/console/orders/orders/{id}/1"),
        Some(&owner),
        &[("csrf", &token), ("1-amount", "500"), ("1-reason", "damaged")],
    )
    .await;
    assert_eq!(refunded.status, StatusCode::SEE_OTHER, "{}", refunded.text);
    // The timeline names the operator who shipped it.
    let timeline = app.get(&format!("/v1/orders/{id}/timeline"), Some(&admin)).await;
    assert!(timeline.text.contains("\"op_"), "{}", timeline.text);
}

#[tokio::test]
async fn documents_created_from_the_console_are_checked_by_the_api() {
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    let token = csrf(&page(&app, "/console/webhooks", Some(&owner)).await);
    let bad =
        post(&app, "/console/webhooks/endpoints", Some(&owner), &[("csrf", &token), ("json", r#"{"url": "ftp://x"}"#)])
            .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(bad.text.contains("<code>url</code>") || bad.text.contains("<code>/url</code>"), "{}", bad.text);
    let not_json = post(&app, "/console/webhooks/endpoints", Some(&owner), &[("csrf", &token), ("json", "{")]).await;
    assert_eq!(not_json.status, StatusCode::UNPROCESSABLE_ENTITY);
    let admin = app.admin().await;
    assert_eq!(app.get("/v1/webhooks/endpoints", Some(&admin)).await.json["items"].as_array().unwrap().len(), 0);
    let good = r#"{"url": "https://example.com/hooks", "event_types": ["order.created"]}"#;
    let made = post(&app, "/console/webhooks/endpoints", Some(&owner), &[("csrf", &token), ("json", good)]).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text);
    assert!(made.text.contains("whsec_"), "the signing secret is shown once: {}", made.text);
    let endpoints = app.get("/v1/webhooks/endpoints", Some(&admin)).await.json;
    assert_eq!(endpoints["items"].as_array().unwrap().len(), 1);
    // Deleting from its page removes it.
    let id = endpoints["items"][0]["id"].as_str().unwrap();
    let deleted = post(&app, &format!("/console/webhooks/endpoints/{id}/0"), Some(&owner), &[("csrf", &token)]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text);
    assert_eq!(app.get("/v1/webhooks/endpoints", Some(&admin)).await.json["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_csv_import_reports_its_progress_batch_by_batch_and_each_refused_line() {
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    let token = csrf(&page(&app, "/console/links/import", Some(&owner)).await);
    let mut csv = String::from("url,alias,tags\n");
    for i in 0..150 {
        // Line 5 of the file (item 3) is not a link the API accepts.
        let url = if i == 3 { "javascript:alert(1)".to_owned() } else { format!("https://example.com/{i}") };
        csv.push_str(&format!("{url},imp-{i},batch;csv\n"));
    }
    let reply = post(&app, "/console/links/import", Some(&owner), &[("csrf", &token), ("csv", &csv)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text.contains("100 of 150") && reply.text.contains("150 of 150"), "{}", reply.text);
    assert!(reply.text.contains("line 5:"), "{}", reply.text);
    assert!(reply.text.contains("Done: 149 created, 1 refused, of 150."), "{}", reply.text);
    assert!(reply.text.trim_end().ends_with("</html>"));
    assert_eq!(links(&app).await.len(), 50, "the first page of what was created");
    let admin = app.admin().await;
    let tagged = app.get("/v1/links?tag=csv&limit=200", Some(&admin)).await;
    assert_eq!(tagged.ok()["items"].as_array().unwrap().len(), 149);
    // A file the console cannot read is refused whole, creating nothing more.
    let bad = post(&app, "/console/links/import", Some(&owner), &[("csrf", &token), ("csv", "href\nx\n")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("unknown column `href`"), "{}", bad.text);
}

#[tokio::test]
async fn console_pages_are_never_cached_framed_or_allowed_scripts() {
    let app = TestApp::new().await;
    let owner = owner(&app).await;
    for uri in ["/console/sign-in", "/console/overview", "/console/links"] {
        let reply = page(&app, uri, Some(&owner)).await;
        let header = |name: &str| reply.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(header("cache-control"), "no-store", "{uri}");
        assert_eq!(header("x-frame-options"), "DENY", "{uri}");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"),
            "{uri}: {csp}"
        );
        assert!(!reply.text.contains("<script"), "{uri} carries a script");
    }
}
