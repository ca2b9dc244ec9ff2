//! Feature flags: environments, each environment's flags with the kill switch and a
//! definition editor (checked by the same evaluator the edges run; a refusal names the
//! broken rule by JSON pointer), change requests to approve or cancel, client keys, and the
//! stale-flag report. In a protected environment an edit becomes a change request that
//! another operator approves.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{self, Nav};
use super::{Console, Post, Reply, SignedIn, encode};
use crate::operators::sessions::Session;

pub(crate) async fn environments(State(console): State<Console>, SignedIn(session): SignedIn) -> Response {
    render_environments(&console, &session, &[], None).await
}

async fn render_environments(
    console: &Console,
    session: &Session,
    form: &[(String, String)],
    refusal: Option<&Reply>,
) -> Response {
    let reply = console.get(&session.operator, "/v1/flags/environments").await;
    if !reply.ok() {
        return super::failure(session, &reply);
    }
    let empty = Vec::new();
    let value = |name: &str| form.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str()).to_owned();
    let error = |name: &str| refusal.and_then(|r| r.field_error(&format!("/{name}")));
    let body = html! {
        h1 { "Feature flags" }
        section {
            h2 { "Environments" }
            div.table-wrap tabindex="0" role="region" aria-label="Environments" { table {
                thead { tr { th { "Environment" } th { "Flags" } th { "Protected" } th { "Updated" } } }
                tbody { @for env in reply.body["items"].as_array().unwrap_or(&empty) {
                    @let path = format!("/console/flags/{}/{}", page::cell(&env["project"]), page::cell(&env["name"]));
                    tr {
                        td { a href=(path) { (page::cell(&env["project"])) " / " (page::cell(&env["name"])) } }
                        td { (page::cell(&env["flags"])) }
                        td { (if env["protected"] == true { "yes" } else { "no" }) }
                        td { (page::cell(&env["updated_at"])) }
                    }
                } }
            } }
        }
        @if session.operator.role.writes() {
            section {
                h2 { "New environment" }
                @if let Some(reply) = refusal { (page::problem(&reply.detail().unwrap_or_default())) }
                form method="post" action="/console/flags" {
                    (page::csrf(session))
                    div.inline {
                        (page::input("Project", "project", "text", &value("project"), error("project").as_deref()))
                        (page::input("Name", "name", "text", &value("name"), error("name").as_deref()))
                        (page::select("Changes", "protected", &[("false", "apply at once"), ("true", "need approval (protected)")], &value("protected")))
                        button type="submit" { "Create environment" }
                    }
                }
            }
        }
    };
    let status = refusal.map_or(StatusCode::OK, |r| r.status);
    (status, page::page(Some(session), "Flags", Nav::Flags, body)).into_response()
}

pub(crate) async fn create_environment(State(console): State<Console>, post: Post) -> Response {
    let body = json!({ "project": post.field("project"), "name": post.field("name"), "protected": post.field("protected") == "true" });
    let reply = console.api(&post.session.operator, Method::POST, "/v1/flags/environments", Some(&body)).await;
    if reply.ok() {
        return Redirect::to(&format!(
            "/console/flags/{}/{}",
            encode(&post.field("project")),
            encode(&post.field("name"))
        ))
        .into_response();
    }
    render_environments(&console, &post.session, &post.fields, Some(&reply)).await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Said {
    #[serde(default)]
    said: String,
}

/// What the environment page shows besides the listing: a message, the flag form's
/// content and the API's refusal of it, a client key shown once.
#[derive(Default)]
struct Extra<'a> {
    said: String,
    flag_key: String,
    definition: String,
    refusal: Option<&'a Reply>,
    token: Option<String>,
}

pub(crate) async fn environment(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Path((project, env)): Path<(String, String)>,
    Query(said): Query<Said>,
) -> Response {
    render_environment(&console, &session, &project, &env, Extra { said: said.said, ..Extra::default() }).await
}

const TEMPLATE: &str = r#"{
  "state": "ENABLED",
  "variants": { "on": true, "off": false },
  "defaultVariant": "on"
}"#;

async fn render_environment(
    console: &Console,
    session: &Session,
    project: &str,
    env: &str,
    extra: Extra<'_>,
) -> Response {
    let who = &session.operator;
    let base = format!("/v1/flags/environments/{}/{}", encode(project), encode(env));
    let uris = [
        format!("{base}/flagd"),
        format!("{base}/changes?limit=20"),
        format!("{base}/client-keys"),
        format!("{base}/stale"),
    ];
    let (environments, document, changes, keys, stale) = tokio::join!(
        console.get(who, "/v1/flags/environments"),
        console.get(who, &uris[0]),
        console.get(who, &uris[1]),
        console.get(who, &uris[2]),
        console.get(who, &uris[3]),
    );
    if !environments.ok() {
        return super::failure(session, &environments);
    }
    if !document.ok() {
        return super::failure(session, &document);
    }
    let here = format!("/console/flags/{}/{}", encode(project), encode(env));
    let protected = environments.body["items"]
        .as_array()
        .and_then(|items| items.iter().find(|e| e["project"] == project && e["name"] == env))
        .is_some_and(|e| e["protected"] == true);
    let writes = who.role.writes();
    let empty = serde_json::Map::new();
    let flags = document.body["flags"].as_object().unwrap_or(&empty);
    let definition = if extra.definition.is_empty() { TEMPLATE.to_owned() } else { extra.definition.clone() };
    let body = html! {
        h1 { "Flags in " (project) " / " (env) }
        @if protected { p.muted { "Protected: every change is a change request that another operator approves." } }
        @if !extra.said.is_empty() { (page::notice(&extra.said)) }
        @if let Some(token) = &extra.token {
            div.notice role="status" { "New client key (shown once; store it now): " span.secret data-testid="client-key" { (token) } }
        }
        section {
            h2 { "Flags" }
            @if flags.is_empty() { p.muted { "No flags yet." } } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Flags" { table {
                    thead { tr { th { "Key" } th { "State" } th { "Default" } th { "Variants" } @if writes { th { "Kill switch" } } } }
                    tbody { @for (key, flag) in flags {
                        tr {
                            td { code { (key) } }
                            td { @if flag["state"] == "ENABLED" { span.ok { "ENABLED" } } @else { span.bad { (page::cell(&flag["state"])) } } }
                            td { (page::cell(&flag["defaultVariant"])) }
                            td { (flag["variants"].as_object().map(|v| v.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            @if writes { td {
                                @if flag["state"] == "ENABLED" {
                                    form method="post" action=(format!("{here}/flags/{}/kill", encode(key))) {
                                        (page::csrf(session))
                                        button.danger type="submit" aria-label=(format!("Kill {key}")) { "Kill" }
                                    }
                                } @else { "—" }
                            } }
                        }
                    } }
                } }
            }
        }
        @if writes {
            section {
                h2 { "Create or replace a flag" }
                (flag_form(session, &here, &extra.flag_key, &definition, extra.refusal))
            }
        }
        section {
            h2 { "Change requests" }
            (change_table(session, &changes.body, writes))
        }
        section {
            h2 { "Client keys" }
            @let none = Vec::new();
            ul { @for key in keys.body["items"].as_array().unwrap_or(&none) {
                li { (page::cell(&key["name"])) " " code { (page::cell(&key["id"])) } " since " (page::cell(&key["created_at"]))
                     @if !key["revoked_at"].is_null() { " (revoked)" } @else if writes {
                        " "
                        form method="post" action=(format!("{here}/flags")) {
                            (page::csrf(session))
                            input type="hidden" name="action" value="revoke-key";
                            input type="hidden" name="id" value=(page::cell(&key["id"]));
                            button.secondary type="submit" aria-label=(format!("Revoke {}", page::cell(&key["name"]))) { "Revoke" }
                        }
                     } }
            } }
            @if writes {
                form.inline method="post" action=(format!("{here}/flags")) {
                    (page::csrf(session))
                    input type="hidden" name="action" value="client-key";
                    (page::input("Name of what will use it", "client_key_name", "text", "", None))
                    button.secondary type="submit" { "Create client key" }
                }
            }
        }
        section {
            h2 { "Stale flags" }
            @let none = Vec::new();
            @let stale_items = stale.body["items"].as_array().unwrap_or(&none);
            @if stale_items.is_empty() { p.muted { "No flag has gone unevaluated for 30 days." } }
            ul { @for item in stale_items { li { code { (page::cell(&item["key"])) } " — last evaluated " (page::cell(&item["last_evaluated_at"])) } } }
            p { a href=(format!("/console/audit?target_under={}", encode(&format!("flags/{project}/{env}")))) { "This environment's audit trail, with diffs →" } }
        }
    };
    let status = extra.refusal.map_or(StatusCode::OK, |r| r.status);
    (status, page::page(Some(session), "Flags", Nav::Flags, body)).into_response()
}

fn flag_form(session: &Session, here: &str, key: &str, definition: &str, refusal: Option<&Reply>) -> Markup {
    let errors: Vec<(String, String)> = refusal
        .and_then(|r| r.body["errors"].as_array())
        .map(|errors| errors.iter().map(|e| (page::cell(&e["field"]), page::cell(&e["message"]))).collect())
        .unwrap_or_default();
    html! {
        @if let Some(reply) = refusal { (page::problem(&reply.detail().unwrap_or_default())) }
        form method="post" action=(format!("{here}/flags")) {
            (page::csrf(session))
            input type="hidden" name="action" value="put-flag";
            (page::input("Flag key", "key", "text", key, None))
            (page::input("Apply at (RFC 3339; empty for now)", "apply_at", "text", "", None))
            div.field {
                label for="f-definition" { "Definition (flagd JSON)" }
                @if errors.is_empty() {
                    textarea id="f-definition" name="definition" spellcheck="false" { (definition) }
                } @else {
                    textarea id="f-definition" name="definition" spellcheck="false" aria-invalid="true" aria-describedby="f-definition-error" { (definition) }
                    ul.error id="f-definition-error" { @for (field, message) in &errors { li { code { (field) } ": " (message) } } }
                }
            }
            button type="submit" { "Save flag" }
        }
    }
}

fn change_table(session: &Session, listing: &Value, writes: bool) -> Markup {
    let empty = Vec::new();
    let items = listing["items"].as_array().unwrap_or(&empty);
    html! {
        @if items.is_empty() { p.muted { "None." } } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Change requests" { table {
                thead { tr { th { "Request" } th { "Status" } th { "Applies at" } th { "Changes" } th { "Author" } @if writes { th { "Review" } } } }
                tbody { @for change in items {
                    @let id = page::cell(&change["id"]);
                    tr {
                        td { code { (id) } br; span.muted { (page::cell(&change["comment"])) } }
                        td { (page::cell(&change["status"])) }
                        td { (if change["apply_at"].is_null() { "on approval".to_owned() } else { page::cell(&change["apply_at"]) }) }
                        td { (change["changes"].as_array().map(|c| c.iter().map(|c| format!("{} {}", page::cell(&c["op"]), page::cell(&c["key"]))).collect::<Vec<_>>().join("; ")).unwrap_or_default()) }
                        td { (page::cell(&change["author"])) }
                        @if writes { td {
                            @if change["status"] == "pending" {
                                form method="post" action=(format!("/console/flags/changes/{}/approve", encode(&id))) {
                                    (page::csrf(session)) button type="submit" { "Approve" }
                                }
                                " "
                                form method="post" action=(format!("/console/flags/changes/{}/cancel", encode(&id))) {
                                    (page::csrf(session)) button.secondary type="submit" { "Cancel" }
                                }
                            }
                        } }
                    }
                } }
            } }
        }
    }
}

/// Puts a flag, or creates a client key (the form's `action`). In a protected environment
/// the flag becomes a change request.
pub(crate) async fn save_flag(
    State(console): State<Console>,
    Path((project, env)): Path<(String, String)>,
    post: Post,
) -> Response {
    let who = &post.session.operator;
    let base = format!("/v1/flags/environments/{}/{}", encode(&project), encode(&env));
    if post.field("action") == "revoke-key" {
        let reply = console
            .api(who, Method::DELETE, &format!("/v1/flags/client-keys/{}", encode(&post.field("id"))), None)
            .await;
        if !reply.ok() {
            return super::failure(&post.session, &reply);
        }
        let said = "Revoked the client key; edges refuse it within a second.";
        return back_to(&project, &env, said);
    }
    if post.field("action") == "client-key" {
        let body = json!({ "name": post.field("client_key_name") });
        let reply = console.api(who, Method::POST, &format!("{base}/client-keys"), Some(&body)).await;
        if !reply.ok() {
            return super::failure(&post.session, &reply);
        }
        let extra = Extra { token: reply.body["token"].as_str().map(str::to_owned), ..Extra::default() };
        return render_environment(&console, &post.session, &project, &env, extra).await;
    }
    let key = post.field("key");
    let definition = post.field("definition");
    let flag: Value = match serde_json::from_str(&definition) {
        Ok(flag) => flag,
        Err(err) => {
            let reply = Reply::refusal(StatusCode::UNPROCESSABLE_ENTITY, &format!("The definition is not JSON: {err}"));
            let extra = Extra { flag_key: key, definition, refusal: Some(&reply), ..Extra::default() };
            return render_environment(&console, &post.session, &project, &env, extra).await;
        }
    };
    let apply_at = post.field("apply_at");
    if !apply_at.is_empty() {
        let change = json!({ "changes": [{ "op": "put_flag", "key": key, "flag": flag }], "apply_at": apply_at,
                             "comment": format!("put {key} from the console at {apply_at}") });
        let reply = console.api(who, Method::POST, &format!("{base}/changes"), Some(&change)).await;
        if reply.ok() {
            let said = format!("Scheduled {key} for {apply_at} (or for approval, in a protected environment).");
            return back_to(&project, &env, &said);
        }
        let extra = Extra { flag_key: key, definition, refusal: Some(&reply), ..Extra::default() };
        return render_environment(&console, &post.session, &project, &env, extra).await;
    }
    let mut reply = console.api(who, Method::PUT, &format!("{base}/flags/{}", encode(&key)), Some(&flag)).await;
    let mut said = format!("Saved {key}; the edge serves it within a second.");
    if reply.body["code"] == "change_request_required" {
        let change = json!({ "changes": [{ "op": "put_flag", "key": key, "flag": flag }], "comment": format!("put {key} from the console") });
        reply = console.api(who, Method::POST, &format!("{base}/changes"), Some(&change)).await;
        said = format!("Proposed {key}: another operator must approve the change request.");
    }
    if reply.ok() {
        return back_to(&project, &env, &said);
    }
    let extra = Extra { flag_key: key, definition, refusal: Some(&reply), ..Extra::default() };
    render_environment(&console, &post.session, &project, &env, extra).await
}

pub(crate) async fn kill(
    State(console): State<Console>,
    Path((project, env, key)): Path<(String, String, String)>,
    post: Post,
) -> Response {
    let who = &post.session.operator;
    let base = format!("/v1/flags/environments/{}/{}", encode(&project), encode(&env));
    let mut reply = console.api(who, Method::POST, &format!("{base}/flags/{}/kill", encode(&key)), None).await;
    let mut said = format!("Killed {key}: edges answer its code default within a second.");
    if reply.body["code"] == "change_request_required" {
        let change = json!({ "changes": [{ "op": "kill_flag", "key": key }], "comment": format!("kill {key} from the console") });
        reply = console.api(who, Method::POST, &format!("{base}/changes"), Some(&change)).await;
        said = format!("Proposed killing {key}: another operator must approve.");
    }
    if !reply.ok() {
        return super::failure(&post.session, &reply);
    }
    back_to(&project, &env, &said)
}

/// Back to the environment's page, saying `said`.
fn back_to(project: &str, env: &str, said: &str) -> Response {
    Redirect::to(&format!("/console/flags/{}/{}?said={}", encode(project), encode(env), encode(said))).into_response()
}

/// Approves or cancels a change request (`verdict`), then returns to its environment.
pub(crate) async fn review(
    State(console): State<Console>,
    Path((id, verdict)): Path<(String, String)>,
    post: Post,
) -> Response {
    if verdict != "approve" && verdict != "cancel" {
        let reply = Reply::refusal(StatusCode::NOT_FOUND, "a change request is approved or cancelled");
        return super::failure(&post.session, &reply);
    }
    let who = &post.session.operator;
    let reply = console.api(who, Method::POST, &format!("/v1/flags/changes/{}/{verdict}", encode(&id)), None).await;
    if !reply.ok() {
        return super::failure(&post.session, &reply);
    }
    let said = if verdict == "approve" { format!("Approved {id}.") } else { format!("Cancelled {id}.") };
    let (project, env) = (page::cell(&reply.body["project"]), page::cell(&reply.body["environment"]));
    back_to(&project, &env, &said)
}
