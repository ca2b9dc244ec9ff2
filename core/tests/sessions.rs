//! Sign-in at the core on this run's backends: enumeration-safe answers, throttling,
//! refresh rotation and reuse, the session cap, cookies with CSRF, verification and reset
//! tokens, and the revocation records the edge reads.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Reply, TestApp};
use serde_json::{Value, json};
use verge_core::keys::Scope;

const PASSWORD: &str = "a long passphrase here";

async fn sign_up(app: &TestApp, email: &str) {
    let reply =
        app.call(Method::POST, "/auth/shop/sign-up", None, Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Reply {
    app.call(Method::POST, "/auth/shop/sign-in", None, Some(json!({"email": email, "password": password}))).await
}

async fn notification_token(app: &TestApp, admin: &str, kind: &str) -> String {
    let page = app.get(&format!("/v1/notifications?kind={kind}"), Some(admin)).await;
    let items = page.ok()["items"].as_array().unwrap().clone();
    items.last().unwrap()["data"]["token"].as_str().expect("the notification carries the token").to_owned()
}

#[tokio::test]
async fn answers_do_not_tell_which_emails_have_accounts() {
    let app = TestApp::new().await;
    sign_up(&app, "ada@example.com").await;
    // Signing up again is accepted alike, and tells the owner instead.
    sign_up(&app, "ADA@example.com").await;
    let admin = app.admin().await;
    let attempts = app.get("/v1/notifications?kind=customer.sign_up_attempted", Some(&admin)).await;
    assert_eq!(attempts.ok()["items"].as_array().unwrap().len(), 1);

    let wrong = sign_in(&app, "ada@example.com", "not the password at all").await;
    let unknown = sign_in(&app, "nobody@example.com", "not the password at all").await;
    assert_eq!(
        wrong.problem(StatusCode::UNAUTHORIZED, "unauthorized")["detail"],
        unknown.problem(StatusCode::UNAUTHORIZED, "unauthorized")["detail"]
    );
    for email in ["ada@example.com", "nobody@example.com"] {
        let reply =
            app.call(Method::POST, "/auth/shop/password-reset/request", None, Some(json!({"email": email}))).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
    }
    let resets = app.get("/v1/notifications?kind=customer.password_reset_requested", Some(&admin)).await;
    assert_eq!(resets.ok()["items"].as_array().unwrap().len(), 1, "only the real account gets a reset");

    let weak = app
        .call(Method::POST, "/auth/shop/sign-up", None, Some(json!({"email": "bo@example.com", "password": "short"})))
        .await;
    assert!(
        weak.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["detail"]
            .as_str()
            .unwrap()
            .contains("at least 10")
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_before_hashing() {
    let app = TestApp::new().await;
    sign_up(&app, "ada@example.com").await;
    for _ in 0..5 {
        sign_in(&app, "ada@example.com", "guess guess guess").await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let throttled = sign_in(&app, "ada@example.com", PASSWORD).await;
    throttled.problem(StatusCode::TOO_MANY_REQUESTS, "sign_in_throttled");
    assert_eq!(throttled.headers[header::RETRY_AFTER], "900");
    // Another account from the same place is not locked out by it.
    sign_up(&app, "bo@example.com").await;
    sign_in(&app, "bo@example.com", PASSWORD).await.ok();
    let admin = app.admin().await;
    let id =
        app.get("/v1/customers/shop?q=ada", Some(&admin)).await.ok()["items"][0]["id"].as_str().unwrap().to_owned();
    let history = app.get(&format!("/v1/customers/shop/{id}/history"), Some(&admin)).await;
    let failed =
        history.ok()["items"].as_array().unwrap().iter().filter(|e| e["action"] == "customer.sign_in_failed").count();
    assert_eq!(failed, 5);
}

#[tokio::test]
async fn refresh_rotates_reuse_ends_the_family_and_the_cap_ends_the_oldest() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    sign_up(&app, "ada@example.com").await;
    let settings =
        app.call(Method::PUT, "/v1/customers/shop/settings", Some(&admin), Some(json!({"max_sessions": 2}))).await;
    assert_eq!(settings.ok()["max_sessions"], 2);
    app.call(
        Method::PUT,
        "/v1/customers/shop/settings",
        Some(&admin),
        Some(json!({"idle_days": 100, "absolute_days": 10})),
    )
    .await
    .validation_fields();

    let first = sign_in(&app, "ada@example.com", PASSWORD).await.ok().clone();
    assert!(first["access_token"].as_str().unwrap().starts_with("v4.public."));
    let refresh =
        |token: &Value| app.call(Method::POST, "/auth/shop/refresh", None, Some(json!({"refresh_token": token})));
    let second = refresh(&first["refresh_token"]).await.ok().clone();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    refresh(&first["refresh_token"]).await.problem(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    refresh(&second["refresh_token"]).await.problem(StatusCode::UNAUTHORIZED, "session_ended");
    refresh(&json!("vrt_unknown")).await.problem(StatusCode::UNAUTHORIZED, "refresh_token_invalid");
    let me = app.get("/auth/shop/me", second["access_token"].as_str()).await;
    me.problem(StatusCode::UNAUTHORIZED, "token_revoked");

    // The cap: a third sign-in ends the oldest active session.
    let a = sign_in(&app, "ada@example.com", PASSWORD).await.ok().clone();
    let b = sign_in(&app, "ada@example.com", PASSWORD).await.ok().clone();
    let c = sign_in(&app, "ada@example.com", PASSWORD).await.ok().clone();
    app.get("/auth/shop/me", a["access_token"].as_str()).await.problem(StatusCode::UNAUTHORIZED, "token_revoked");
    let sessions = app.get("/auth/shop/sessions", c["access_token"].as_str()).await;
    let items = sessions.ok()["items"].as_array().unwrap();
    let ids: Vec<&Value> = items.iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, [&c["session_id"], &b["session_id"]]);
    assert_eq!(items[0]["current"], true);

    // Ending one session by id; another customer's id is not found.
    let end = app
        .call(
            Method::DELETE,
            &format!("/auth/shop/sessions/{}", b["session_id"].as_str().unwrap()),
            c["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(end.status, StatusCode::NO_CONTENT);
    app.get("/auth/shop/me", b["access_token"].as_str()).await.problem(StatusCode::UNAUTHORIZED, "token_revoked");
    app.call(Method::DELETE, "/auth/shop/sessions/ses_other", c["access_token"].as_str(), None)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    // A token is for its own project only.
    app.get("/auth/other/me", c["access_token"].as_str()).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

fn cookie_request(method: Method, uri: &str, cookies: &str, csrf: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, cookies)
        .header(header::HOST, "app.example.com");
    if let Some(csrf) = csrf {
        builder = builder.header("x-csrf-token", csrf);
    }
    builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn browser_sessions_use_secure_cookies_and_writes_need_the_csrf_token() {
    let app = TestApp::new().await;
    sign_up(&app, "ada@example.com").await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/auth/shop/sign-in")
        .header(header::HOST, "app.example.com")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"email": "ada@example.com", "password": PASSWORD, "session": "cookie", "remember": true})
                .to_string(),
        ))
        .unwrap();
    let reply = app.send(request).await;
    let body = reply.ok().clone();
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none(), "tokens stay in cookies");
    let set: Vec<&str> = reply.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    let find = |name: &str| *set.iter().find(|c| c.starts_with(&format!("{name}="))).unwrap();
    for name in ["verge_session", "verge_refresh"] {
        assert!(find(name).contains("HttpOnly") && find(name).contains("Secure"), "{}", find(name));
    }
    assert!(find("verge_refresh").contains("SameSite=Strict") && find("verge_refresh").contains("Path=/auth/shop"));
    assert!(!find("verge_csrf").contains("HttpOnly"));
    let value = |name: &str| find(name).split(';').next().unwrap().to_owned();
    let cookies = format!("{}; {}; {}", value("verge_session"), value("verge_refresh"), value("verge_csrf"));
    let csrf = body["csrf_token"].as_str().unwrap();

    // Reads pass on the cookie alone; writes need the CSRF header to match.
    assert_eq!(app.send(cookie_request(Method::GET, "/auth/shop/me", &cookies, None, "")).await.status, StatusCode::OK);
    app.send(cookie_request(Method::POST, "/auth/shop/refresh", &cookies, None, ""))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    app.send(cookie_request(Method::POST, "/auth/shop/sign-out", &cookies, Some("forged"), ""))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    let refreshed = app.send(cookie_request(Method::POST, "/auth/shop/refresh", &cookies, Some(csrf), "")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(refreshed.headers.get_all(header::SET_COOKIE).iter().count(), 3);
    let out = app.send(cookie_request(Method::POST, "/auth/shop/sign-out", &cookies, Some(csrf), "")).await;
    // The access cookie from before the refresh names the same session: signing out ends it.
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    assert!(out.headers.get_all(header::SET_COOKIE).iter().all(|c| c.to_str().unwrap().contains("Max-Age=0")));
}

#[tokio::test]
async fn verification_and_reset_tokens_work_once_and_a_reset_ends_every_session() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let reader = app.key(&[Scope::Read]).await;
    sign_up(&app, "ada@example.com").await;
    let token = notification_token(&app, &admin, "customer.verification_requested").await;
    let hidden = app.get("/v1/notifications?kind=customer.verification_requested", Some(&reader)).await;
    assert!(hidden.ok()["items"][0]["data"].get("token").is_none(), "a read key does not see tokens");
    let verify = |token: String| app.call(Method::POST, "/auth/shop/verify-email", None, Some(json!({"token": token})));
    assert_eq!(verify(token.clone()).await.status, StatusCode::NO_CONTENT);
    verify(token).await.problem(StatusCode::BAD_REQUEST, "token_invalid");
    let session = sign_in(&app, "ada@example.com", PASSWORD).await.ok().clone();
    assert_eq!(app.get("/auth/shop/me", session["access_token"].as_str()).await.ok()["email_verified"], true);

    app.call(Method::POST, "/auth/shop/password-reset/request", None, Some(json!({"email": "ada@example.com"}))).await;
    let reset = notification_token(&app, &admin, "customer.password_reset_requested").await;
    let new_password = "another long passphrase";
    let weak = app
        .call(Method::POST, "/auth/shop/password-reset", None, Some(json!({"token": reset, "password": "password123"})))
        .await;
    weak.validation_fields();
    let done = app
        .call(Method::POST, "/auth/shop/password-reset", None, Some(json!({"token": reset, "password": new_password})))
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.text);
    app.call(Method::POST, "/auth/shop/password-reset", None, Some(json!({"token": reset, "password": new_password})))
        .await
        .problem(StatusCode::BAD_REQUEST, "token_invalid");
    app.get("/auth/shop/me", session["access_token"].as_str()).await.problem(StatusCode::UNAUTHORIZED, "token_revoked");
    sign_in(&app, "ada@example.com", PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    sign_in(&app, "ada@example.com", new_password).await.ok();
}

#[tokio::test]
async fn reset_and_verification_requests_cannot_flood_an_inbox() {
    let app = TestApp::new().await;
    sign_up(&app, "ada@example.com").await;
    let request =
        |email: &str| app.call(Method::POST, "/auth/shop/password-reset/request", None, Some(json!({"email": email})));
    for _ in 0..3 {
        assert_eq!(request("ada@example.com").await.status, StatusCode::ACCEPTED);
    }
    request("ada@example.com").await.problem(StatusCode::TOO_MANY_REQUESTS, "reset_throttled");
    // An email without an account is counted alike, so the 429 tells nothing.
    for _ in 0..3 {
        assert_eq!(request("nobody@example.com").await.status, StatusCode::ACCEPTED);
    }
    request("nobody@example.com").await.problem(StatusCode::TOO_MANY_REQUESTS, "reset_throttled");
    let admin = app.admin().await;
    let sent = app.get("/v1/notifications?kind=customer.password_reset_requested", Some(&admin)).await;
    assert_eq!(sent.ok()["items"].as_array().unwrap().len(), 3);

    let session = sign_in(&app, "ada@example.com", PASSWORD).await.ok().clone();
    let ask = || app.call(Method::POST, "/auth/shop/verification", session["access_token"].as_str(), None);
    for _ in 0..3 {
        assert_eq!(ask().await.status, StatusCode::ACCEPTED);
    }
    ask().await.problem(StatusCode::TOO_MANY_REQUESTS, "verification_throttled");
}
