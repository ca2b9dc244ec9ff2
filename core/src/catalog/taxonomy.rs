//! `/v1/catalog/categories` and `/v1/catalog/collections`: where products are filed.
//!
//! Categories form a tree (a `parent` each, never a cycle: a move that would make one is
//! refused, naming the loop); collections are flat sets a merchant curates (a season, a
//! restaurant's menu). Both are named by a handle that never changes, so storefront URLs
//! stay stable; both publish one listing at the edge, paged. A category's listing also
//! holds the products of every category below it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use verge_shared::catalog::{self as edge, Listing};

use super::storefront::category_and_ancestors;
use super::{CatalogReaders, CatalogWriters, check_handle};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Which of the two a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Category,
    Collection,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Category => "catalog_categories",
            Kind::Collection => "catalog_collections",
        }
    }
    fn links(self) -> (&'static str, &'static str) {
        match self {
            Kind::Category => ("catalog_product_categories", "category_id"),
            Kind::Collection => ("catalog_product_collections", "collection_id"),
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Category => "category",
            Kind::Collection => "collection",
        }
    }
    fn listing(self) -> Listing {
        match self {
            Kind::Category => Listing::Category,
            Kind::Collection => Listing::Collection,
        }
    }
}

/// A category or collection as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct GroupView {
    id: String,
    handle: String,
    title: String,
    description: String,
    /// Categories only: the parent's handle, absent at the top.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    /// Categories only: order among siblings.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<i64>,
    /// Products filed directly under it, any status.
    products: i64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGroup {
    /// 1–120 of a-z, 0-9, `-`; unique; never changes.
    handle: String,
    title: String,
    #[serde(default)]
    description: String,
    /// Categories only: the parent category's handle.
    #[serde(default)]
    parent: Option<String>,
    /// Categories only: order among siblings (default 0, then by title).
    #[serde(default)]
    position: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupChange {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Categories only: a new parent's handle, or `null` to move it to the top.
    #[serde(default, with = "crate::error::null_or_absent")]
    #[schema(value_type = Option<String>)]
    parent: Option<Option<String>>,
    #[serde(default)]
    position: Option<i64>,
}

async fn load(conn: &mut sqlx::AnyConnection, kind: Kind, handle: &str) -> Result<Option<GroupView>, sqlx::Error> {
    let parent = match kind {
        Kind::Category => "(SELECT p.handle FROM catalog_categories p WHERE p.id = g.parent_id)",
        Kind::Collection => "NULL",
    };
    let position = if kind == Kind::Category { "g.position" } else { "NULL" };
    let (links, column) = kind.links();
    let sql = format!(
        "SELECT g.*, {parent} AS parent_handle, {position} AS shown_position,
           (SELECT COUNT(*) FROM {links} l WHERE l.{column} = g.id) AS product_count
         FROM {} g WHERE g.handle = $1",
        kind.table()
    );
    let Some(row) = sqlx::query(&sql).bind(handle).fetch_optional(&mut *conn).await? else { return Ok(None) };
    Ok(Some(GroupView {
        id: row.try_get("id")?,
        handle: row.try_get("handle")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        parent: row.try_get("parent_handle")?,
        position: row.try_get("shown_position")?,
        products: row.try_get("product_count")?,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
    }))
}

async fn load_or_404(conn: &mut sqlx::AnyConnection, kind: Kind, handle: &str) -> Result<GroupView, ApiError> {
    load(conn, kind, handle)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {} has the handle `{handle}`", kind.noun())))
}

fn check_text(title: Option<&str>, description: Option<&str>, errors: &mut Vec<FieldError>) {
    if title.is_some_and(|t| t.trim().is_empty() || t.chars().count() > 500) {
        errors.push(FieldError { field: "/title".into(), message: "must hold 1–500 characters".into() });
    }
    if description.is_some_and(|d| d.chars().count() > 50_000) {
        errors.push(FieldError { field: "/description".into(), message: "must be at most 50000 characters".into() });
    }
}

/// The id of the category `parent`, refusing one that is `moving` or lies below it.
async fn parent_id(conn: &mut sqlx::AnyConnection, parent: &str, moving: Option<&str>) -> Result<String, ApiError> {
    let field = |message: String| ApiError::validation(vec![FieldError { field: "/parent".into(), message }]);
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM catalog_categories WHERE handle = $1")
        .bind(parent)
        .fetch_optional(&mut *conn)
        .await?;
    let id = id.ok_or_else(|| field(format!("no category has the handle `{parent}`")))?;
    if let Some(moving) = moving {
        let above = category_and_ancestors(conn, parent).await?;
        if let Some(at) = above.iter().position(|h| h == moving) {
            let mut lineage: Vec<&str> = above[..=at].iter().rev().map(String::as_str).collect();
            lineage.push(moving);
            return Err(field(format!("would make a cycle: {}", lineage.join(" → "))));
        }
    }
    Ok(id)
}

/// Every listing key a change to `handle` touches, and the products filed under it.
async fn enqueue_group(conn: &mut sqlx::AnyConnection, kind: Kind, handle: &str, id: &str) -> Result<(), sqlx::Error> {
    let handles = match kind {
        Kind::Category => category_and_ancestors(conn, handle).await?,
        Kind::Collection => vec![handle.to_owned()],
    };
    for handle in handles {
        enqueue(conn, &edge::listing_key(kind.listing(), &handle)).await?;
    }
    let (links, column) = kind.links();
    let products: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT p.handle FROM catalog_products p JOIN {links} l ON l.product_id = p.id
         WHERE l.{column} = $1 AND p.status = 'published'"
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    for product in products {
        enqueue(conn, &edge::product_key(&product)).await?;
    }
    Ok(())
}

async fn create(state: AppState, kind: Kind, actor: crate::audit::Actor, new: NewGroup) -> Result<GroupView, ApiError> {
    let mut errors = Vec::new();
    check_handle(&new.handle, "/handle", &mut errors);
    check_text(Some(&new.title), Some(&new.description), &mut errors);
    if kind == Kind::Collection && (new.parent.is_some() || new.position.is_some()) {
        errors.push(FieldError { field: "/parent".into(), message: "collections have no parent or position".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut tx = state.db.begin_write().await?;
    let parent = match &new.parent {
        Some(parent) => Some(parent_id(&mut tx, parent, None).await?),
        None => None,
    };
    let id = crate::ids::new_id(if kind == Kind::Category { "cat" } else { "col" });
    let now = now_millis().0;
    let sql = match kind {
        Kind::Category => "INSERT INTO catalog_categories (id, handle, title, description, parent_id, position, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (handle) DO NOTHING",
        Kind::Collection => "INSERT INTO catalog_collections (id, handle, title, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (handle) DO NOTHING",
    };
    let query = sqlx::query(sql).bind(&id).bind(&new.handle).bind(new.title.trim()).bind(&new.description);
    let query = match kind {
        Kind::Category => query.bind(parent).bind(new.position.unwrap_or(0)).bind(now),
        Kind::Collection => query.bind(now),
    };
    if query.execute(&mut *tx).await?.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "handle_exists",
            format!("a {} already has the handle `{}`", kind.noun(), new.handle),
        ));
    }
    let view = load_or_404(&mut tx, kind, &new.handle).await?;
    crate::audit::record(&mut tx, &actor, &format!("{}.create", kind.noun()), kind.noun(), &id, None, Some(&view))
        .await?;
    enqueue_group(&mut tx, kind, &new.handle, &id).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(view)
}

async fn change(
    state: AppState,
    kind: Kind,
    actor: crate::audit::Actor,
    handle: String,
    change: GroupChange,
) -> Result<GroupView, ApiError> {
    let mut errors = Vec::new();
    check_text(change.title.as_deref(), change.description.as_deref(), &mut errors);
    if kind == Kind::Collection && (change.parent.is_some() || change.position.is_some()) {
        errors.push(FieldError { field: "/parent".into(), message: "collections have no parent or position".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut tx = state.db.begin_write().await?;
    let before = load_or_404(&mut tx, kind, &handle).await?;
    // The old ancestors' listings lose the products a move takes away.
    enqueue_group(&mut tx, kind, &handle, &before.id).await?;
    let now = now_millis().0;
    sqlx::query(&format!(
        "UPDATE {} SET title = COALESCE($1, title), description = COALESCE($2, description), updated_at = $3 WHERE id = $4",
        kind.table()
    ))
    .bind(change.title.as_deref().map(str::trim))
    .bind(change.description.as_deref())
    .bind(now)
    .bind(&before.id)
    .execute(&mut *tx)
    .await?;
    if let Some(parent) = &change.parent {
        let parent = match parent {
            Some(parent) => Some(parent_id(&mut tx, parent, Some(&handle)).await?),
            None => None,
        };
        sqlx::query("UPDATE catalog_categories SET parent_id = $1 WHERE id = $2")
            .bind(parent)
            .bind(&before.id)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(position) = change.position {
        sqlx::query("UPDATE catalog_categories SET position = $1 WHERE id = $2")
            .bind(position)
            .bind(&before.id)
            .execute(&mut *tx)
            .await?;
    }
    let after = load_or_404(&mut tx, kind, &handle).await?;
    crate::audit::record(
        &mut tx,
        &actor,
        &format!("{}.update", kind.noun()),
        kind.noun(),
        &before.id,
        Some(&before),
        Some(&after),
    )
    .await?;
    enqueue_group(&mut tx, kind, &handle, &before.id).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(after)
}

async fn delete(
    state: AppState,
    kind: Kind,
    actor: crate::audit::Actor,
    handle: String,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let before = load_or_404(&mut tx, kind, &handle).await?;
    if kind == Kind::Category {
        let children: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM catalog_categories WHERE parent_id = $1")
            .bind(&before.id)
            .fetch_one(&mut *tx)
            .await?;
        if children > 0 {
            return Err(ApiError::conflict(
                "category_has_children",
                format!("category `{handle}` has {children} categories below it; move or delete them first"),
            ));
        }
    }
    enqueue_group(&mut tx, kind, &handle, &before.id).await?;
    let (links, column) = kind.links();
    sqlx::query(&format!("DELETE FROM {links} WHERE {column} = $1")).bind(&before.id).execute(&mut *tx).await?;
    sqlx::query(&format!("DELETE FROM {} WHERE id = $1", kind.table())).bind(&before.id).execute(&mut *tx).await?;
    crate::audit::record::<GroupView>(
        &mut tx,
        &actor,
        &format!("{}.delete", kind.noun()),
        kind.noun(),
        &before.id,
        Some(&before),
        None,
    )
    .await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}

async fn list(state: AppState, kind: Kind, params: PageParams) -> Result<Page<GroupView>, ApiError> {
    let cursor = Cursor::for_text_keys(&params)?;
    let handles: Vec<String> =
        sqlx::query_scalar(&format!("SELECT handle FROM {} WHERE handle > $1 ORDER BY handle LIMIT $2", kind.table()))
            .bind(cursor.after())
            .bind(cursor.fetch_limit())
            .fetch_all(state.db.pool())
            .await?;
    let mut conn = state.db.pool().acquire().await?;
    let mut items = Vec::with_capacity(handles.len());
    for handle in &handles {
        items.extend(load(&mut conn, kind, handle).await?);
    }
    Ok(cursor.page(items, |g| g.handle.clone()))
}

macro_rules! group_routes {
    ($kind:expr, $noun:literal, $path:literal, $create:ident, $list:ident, $get:ident, $update:ident, $delete:ident) => {
        #[doc = concat!("Create a ", $noun, ".")]
        #[utoipa::path(
            post, path = $path, tag = "catalog", request_body = NewGroup,
            security(("admin_key" = ["admin", "catalog:write"])),
            responses(
                (status = 201, body = GroupView), (status = 401, body = Problem), (status = 403, body = Problem),
                (status = 409, description = "The handle is taken", body = Problem),
                (status = 422, description = "A bad member, or an unknown parent", body = Problem),
            )
        )]
        pub(crate) async fn $create(
            State(state): State<AppState>,
            Authorized(principal, _): Authorized<CatalogWriters>,
            ApiJson(new): ApiJson<NewGroup>,
        ) -> Result<(StatusCode, Json<GroupView>), ApiError> {
            Ok((StatusCode::CREATED, Json(create(state, $kind, principal.actor(), new).await?)))
        }

        #[doc = concat!("Every ", $noun, ", by handle.")]
        #[utoipa::path(
            get, path = $path, tag = "catalog", params(PageParams),
            security(("admin_key" = ["admin", "read", "catalog:write", "inventory:write"])),
            responses(
                (status = 200, body = inline(Page<GroupView>)),
                (status = 400, description = "A cursor this API did not return", body = Problem),
                (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
            )
        )]
        pub(crate) async fn $list(
            State(state): State<AppState>,
            _: Authorized<CatalogReaders>,
            ApiQuery(params): ApiQuery<PageParams>,
        ) -> Result<Json<Page<GroupView>>, ApiError> {
            Ok(Json(list(state, $kind, params).await?))
        }

        #[doc = concat!("One ", $noun, ".")]
        #[utoipa::path(
            get, path = concat!($path, "/{handle}"), tag = "catalog", params(("handle" = String, Path)),
            security(("admin_key" = ["admin", "read", "catalog:write", "inventory:write"])),
            responses((status = 200, body = GroupView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
        )]
        pub(crate) async fn $get(
            State(state): State<AppState>,
            _: Authorized<CatalogReaders>,
            Path(handle): Path<String>,
        ) -> Result<Json<GroupView>, ApiError> {
            let mut conn = state.db.pool().acquire().await?;
            Ok(Json(load_or_404(&mut conn, $kind, &handle).await?))
        }

        #[doc = concat!("Change a ", $noun, "'s title, description", ", parent or position (categories).")]
        #[utoipa::path(
            patch, path = concat!($path, "/{handle}"), tag = "catalog", params(("handle" = String, Path)),
            request_body = GroupChange, security(("admin_key" = ["admin", "catalog:write"])),
            responses(
                (status = 200, body = GroupView), (status = 401, body = Problem), (status = 403, body = Problem),
                (status = 404, body = Problem),
                (status = 422, description = "A bad member, an unknown parent, or a move that makes a cycle", body = Problem),
            )
        )]
        pub(crate) async fn $update(
            State(state): State<AppState>,
            Authorized(principal, _): Authorized<CatalogWriters>,
            Path(handle): Path<String>,
            ApiJson(body): ApiJson<GroupChange>,
        ) -> Result<Json<GroupView>, ApiError> {
            Ok(Json(change(state, $kind, principal.actor(), handle, body).await?))
        }

        #[doc = concat!("Delete a ", $noun, "; its products stay, filed elsewhere or nowhere.")]
        #[utoipa::path(
            delete, path = concat!($path, "/{handle}"), tag = "catalog", params(("handle" = String, Path)),
            security(("admin_key" = ["admin", "catalog:write"])),
            responses(
                (status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
                (status = 409, description = "A category with categories below it", body = Problem),
            )
        )]
        pub(crate) async fn $delete(
            State(state): State<AppState>,
            Authorized(principal, _): Authorized<CatalogWriters>,
            Path(handle): Path<String>,
        ) -> Result<StatusCode, ApiError> {
            delete(state, $kind, principal.actor(), handle).await
        }
    };
}

group_routes!(
    Kind::Category,
    "category",
    "/v1/catalog/categories",
    create_category,
    list_categories,
    get_category,
    update_category,
    delete_category
);
group_routes!(
    Kind::Collection,
    "collection",
    "/v1/catalog/collections",
    create_collection,
    list_collections,
    get_collection,
    update_collection,
    delete_collection
);
