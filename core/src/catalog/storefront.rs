//! What a storefront reads at the edge: one record per published product and one per
//! page of each category's and collection's listing, rendered here as the JSON the edge
//! serves verbatim (`verge_shared::catalog`).
//!
//! Prices are rendered once per stretch of time between the moments a price list touching
//! the record starts or ends, so the edge switches to a sale price on time by its own
//! clock; the catalog clock republishes at each moment to roll the record forward. A
//! category's listing holds the products filed under it or any category below it, by
//! title. Availability is the coarse figure (`in_stock`, `low`, `out_of_stock`), never a
//! count: the edge is not where a sale is decided.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sqlx::Row;
use verge_shared::catalog::{self as edge, Listing, PAGE_SIZE, Record, Segment};

use crate::db::Database;
use crate::publish::{DatasetSource, KeyedValue, enqueue};

/// Where a product shows at the edge, before or after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) handle: String,
    pub(crate) title: String,
    pub(crate) published: bool,
    pub(crate) categories: Vec<String>,
    pub(crate) collections: Vec<String>,
}

/// The autocomplete index published product titles feed.
pub(crate) const AUTOCOMPLETE_PROJECT: &str = "catalog";
pub(crate) const AUTOCOMPLETE_INDEX: &str = "products";
/// How many price-list moments ahead a record holds answers for.
const SEGMENTS_AHEAD: usize = 16;

/// Enqueues, in the caller's transaction, every edge key a product change touches, and
/// keeps its title in the catalog's autocomplete index.
pub(crate) async fn enqueue_product(
    conn: &mut sqlx::AnyConnection,
    before: Option<&Placement>,
    after: Option<&Placement>,
) -> Result<(), sqlx::Error> {
    let mut keys = BTreeSet::new();
    for placement in [before, after].into_iter().flatten() {
        keys.insert(edge::product_key(&placement.handle));
        if placement.published {
            for category in &placement.categories {
                for handle in category_and_ancestors(conn, category).await? {
                    keys.insert(edge::listing_key(Listing::Category, &handle));
                }
            }
            for collection in &placement.collections {
                keys.insert(edge::listing_key(Listing::Collection, collection));
            }
        }
    }
    for key in &keys {
        enqueue(conn, key).await?;
    }
    let shown = |p: Option<&Placement>| p.filter(|p| p.published).map(|p| (p.handle.clone(), p.title.clone()));
    if shown(before) != shown(after) {
        feed_autocomplete(conn, shown(before), shown(after)).await?;
    }
    Ok(())
}

/// Enqueues the product (and listings) of every SKU in `skus`.
pub(crate) async fn enqueue_skus(conn: &mut sqlx::AnyConnection, skus: &BTreeSet<String>) -> Result<(), sqlx::Error> {
    let mut products = BTreeSet::new();
    for sku in skus {
        let product: Option<String> = sqlx::query_scalar("SELECT product_id FROM catalog_variants WHERE sku = $1")
            .bind(sku)
            .fetch_optional(&mut *conn)
            .await?;
        products.extend(product);
    }
    for id in products {
        if let Some(placement) = placement(conn, &id).await? {
            enqueue_product(conn, Some(&placement), Some(&placement)).await?;
        }
    }
    Ok(())
}

/// Where the product `id` shows at the edge now.
async fn placement(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<Placement>, sqlx::Error> {
    let Some(row) = sqlx::query("SELECT handle, title, status FROM catalog_products WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut groups = Vec::new();
    for (links, table, column) in [
        ("catalog_product_categories", "catalog_categories", "category_id"),
        ("catalog_product_collections", "catalog_collections", "collection_id"),
    ] {
        groups.push(
            sqlx::query_scalar(&format!(
                "SELECT t.handle FROM {links} l JOIN {table} t ON t.id = l.{column} WHERE l.product_id = $1"
            ))
            .bind(id)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    let collections = groups.pop().unwrap_or_default();
    let categories = groups.pop().unwrap_or_default();
    Ok(Some(Placement {
        handle: row.try_get("handle")?,
        title: row.try_get("title")?,
        published: row.try_get::<String, _>("status")? == "published",
        categories,
        collections,
    }))
}

/// Units of `sku` available to sell (on hand less reserved), over every location.
pub(crate) async fn units_available(conn: &mut sqlx::AnyConnection, sku: &str) -> Result<i64, sqlx::Error> {
    let sum: Option<i64> =
        sqlx::query_scalar("SELECT CAST(SUM(on_hand - reserved) AS BIGINT) FROM inventory_levels WHERE sku = $1")
            .bind(sku)
            .fetch_one(&mut *conn)
            .await?;
    Ok(sum.unwrap_or(0))
}

/// `handle` and the handles of every category above it.
pub(crate) async fn category_and_ancestors(
    conn: &mut sqlx::AnyConnection,
    handle: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let mut out = vec![handle.to_owned()];
    let mut current = handle.to_owned();
    // The tree has no cycles (writes refuse them); the bound only guards a corrupted row.
    for _ in 0..64 {
        let parent: Option<Option<String>> = sqlx::query_scalar(
            "SELECT p.handle FROM catalog_categories c LEFT JOIN catalog_categories p ON p.id = c.parent_id
             WHERE c.handle = $1",
        )
        .bind(&current)
        .fetch_optional(&mut *conn)
        .await?;
        match parent.flatten() {
            Some(parent) => {
                out.push(parent.clone());
                current = parent;
            }
            None => break,
        }
    }
    Ok(out)
}

/// Replaces the product's term in `catalog/products` (creating the index on first use).
async fn feed_autocomplete(
    conn: &mut sqlx::AnyConnection,
    before: Option<(String, String)>,
    after: Option<(String, String)>,
) -> Result<(), sqlx::Error> {
    let now = crate::time::now_millis().0;
    let settings = verge_shared::autocomplete::Settings::default().to_value().to_string();
    sqlx::query(
        "INSERT INTO autocomplete_indexes (id, project, name, settings, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (project, name) DO NOTHING",
    )
    .bind(crate::ids::new_id("aci"))
    .bind(AUTOCOMPLETE_PROJECT)
    .bind(AUTOCOMPLETE_INDEX)
    .bind(settings)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let index_id: String = sqlx::query_scalar("SELECT id FROM autocomplete_indexes WHERE project = $1 AND name = $2")
        .bind(AUTOCOMPLETE_PROJECT)
        .bind(AUTOCOMPLETE_INDEX)
        .fetch_one(&mut *conn)
        .await?;
    if let Some((handle, _)) = &before {
        sqlx::query("DELETE FROM autocomplete_terms WHERE index_id = $1 AND term_id = $2")
            .bind(&index_id)
            .bind(handle)
            .execute(&mut *conn)
            .await?;
    }
    if let Some((handle, title)) = &after {
        let payload = json!({ "handle": handle }).to_string();
        sqlx::query(
            "INSERT INTO autocomplete_terms (index_id, term_id, text, weight, payload, language, updated_at)
             VALUES ($1, $2, $3, 1, $4, NULL, $5)
             ON CONFLICT (index_id, term_id) DO UPDATE SET text = excluded.text, payload = excluded.payload,
               updated_at = excluded.updated_at",
        )
        .bind(&index_id)
        .bind(handle)
        .bind(title)
        .bind(payload)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    enqueue(conn, &verge_shared::autocomplete::dataset(AUTOCOMPLETE_PROJECT, AUTOCOMPLETE_INDEX)).await
}

/// The coarse availability the edge shows for `available` units.
pub(crate) fn availability(available: i64, managed: bool, low_stock: i64) -> &'static str {
    if !managed || available > low_stock {
        "in_stock"
    } else if available > 0 {
        "low"
    } else {
        "out_of_stock"
    }
}

/// A price list's amount for one SKU and currency, and when it applies.
#[derive(Debug, Clone)]
struct ListPrice {
    currency: String,
    amount: i64,
    starts_at: i64,
    ends_at: Option<i64>,
}

impl ListPrice {
    fn applies_at(&self, t: i64) -> bool {
        self.starts_at <= t && self.ends_at.is_none_or(|end| t < end)
    }
}

#[derive(Debug)]
struct VariantData {
    sku: String,
    title: String,
    options: Value,
    /// currency → (amount, sale amount)
    prices: BTreeMap<String, (i64, Option<i64>)>,
    lists: Vec<ListPrice>,
    availability: &'static str,
}

#[derive(Debug)]
struct ProductData {
    handle: String,
    title: String,
    description: String,
    images: Value,
    options: Value,
    metadata: Value,
    categories: Vec<Value>,
    collections: Vec<Value>,
    variants: Vec<VariantData>,
    updated_at: i64,
}

impl ProductData {
    /// Moments after `now` at which a price list touching this product starts or ends.
    fn moments(&self, now: i64) -> impl Iterator<Item = i64> + '_ {
        self.variants
            .iter()
            .flat_map(|v| &v.lists)
            .flat_map(|l| [Some(l.starts_at), l.ends_at])
            .flatten()
            .filter(move |&t| t > now)
    }

    /// Each variant's prices at `t`: what is charged, and what it is reduced from.
    fn prices_at(&self, t: i64) -> Vec<Vec<(String, i64, Option<i64>)>> {
        self.variants
            .iter()
            .map(|variant| {
                variant
                    .prices
                    .iter()
                    .map(|(currency, &(amount, sale))| {
                        let listed = variant
                            .lists
                            .iter()
                            .filter(|l| &l.currency == currency && l.applies_at(t))
                            .map(|l| l.amount)
                            .min();
                        let charged = [Some(amount), sale, listed].into_iter().flatten().min().unwrap_or(amount);
                        (currency.clone(), charged, (charged < amount).then_some(amount))
                    })
                    .collect()
            })
            .collect()
    }

    fn availability(&self) -> &'static str {
        let rank = |a: &str| match a {
            "in_stock" => 2,
            "low" => 1,
            _ => 0,
        };
        self.variants.iter().map(|v| v.availability).max_by_key(|a| rank(a)).unwrap_or("out_of_stock")
    }

    fn price_range(prices: &[Vec<(String, i64, Option<i64>)>]) -> Value {
        let mut range: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (currency, amount, _) in prices.iter().flatten() {
            let entry = range.entry(currency).or_insert((*amount, *amount));
            entry.0 = entry.0.min(*amount);
            entry.1 = entry.1.max(*amount);
        }
        range.into_iter().map(|(c, (min, max))| (c.to_owned(), json!({ "min": min, "max": max }))).collect()
    }

    fn body_at(&self, t: i64) -> Value {
        let prices = self.prices_at(t);
        let variants: Vec<Value> = self
            .variants
            .iter()
            .zip(&prices)
            .map(|(variant, prices)| {
                json!({
                    "sku": variant.sku,
                    "title": variant.title,
                    "options": variant.options,
                    "prices": prices.iter().map(|(currency, amount, compare_at)| json!({
                        "currency": currency, "amount": amount, "compare_at_amount": compare_at,
                    })).collect::<Vec<_>>(),
                    "availability": variant.availability,
                })
            })
            .collect();
        json!({
            "handle": self.handle,
            "title": self.title,
            "description": self.description,
            "images": self.images,
            "options": self.options,
            "categories": self.categories,
            "collections": self.collections,
            "variants": variants,
            "price_range": Self::price_range(&prices),
            "availability": self.availability(),
            "metadata": self.metadata,
            "updated_at": crate::time::Millis(self.updated_at).to_string(),
        })
    }

    fn summary_at(&self, t: i64) -> Value {
        json!({
            "handle": self.handle,
            "title": self.title,
            "image": self.images.get(0),
            "price_range": Self::price_range(&self.prices_at(t)),
            "availability": self.availability(),
        })
    }
}

/// Renders `at` for each stretch between the moments, from now on.
fn segments(moments: impl Iterator<Item = i64>, now: i64, at: impl Fn(i64) -> Value) -> Record {
    let moments: BTreeSet<i64> = moments.collect();
    let moments: Vec<i64> = moments.into_iter().take(SEGMENTS_AHEAD).collect();
    let mut segments = Vec::with_capacity(moments.len() + 1);
    let mut from = 0u64;
    for (i, until) in moments.iter().map(|&m| m as u64).chain([u64::MAX]).enumerate() {
        let t = if i == 0 { now } else { from as i64 };
        let body = serde_json::to_vec(&at(t)).expect("JSON values serialize");
        let etag = format!("\"{}\"", &verge_shared::sha256_hex(&body)[..20]);
        segments.push(Segment { from, until, etag, body });
        from = until;
    }
    Record { segments }
}

/// Publishes the catalog's keyed records.
#[derive(Debug)]
pub(crate) struct CatalogSource {
    /// Units at or below which a variant shows as `low`.
    pub(crate) low_stock: i64,
}

impl CatalogSource {
    async fn product(&self, db: &Database, product_id: &str) -> Result<Option<ProductData>, sqlx::Error> {
        let mut conn = db.pool().acquire().await?;
        let Some(row) = sqlx::query("SELECT * FROM catalog_products WHERE id = $1 AND status = 'published'")
            .bind(product_id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let json = |column: &str| -> Result<Value, sqlx::Error> {
            let text: String = row.try_get(column)?;
            serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.to_string().into()))
        };
        let mut taxonomy = Vec::new();
        for (links, table, column) in [
            ("catalog_product_categories", "catalog_categories", "category_id"),
            ("catalog_product_collections", "catalog_collections", "collection_id"),
        ] {
            let rows = sqlx::query(&format!(
                "SELECT t.handle, t.title FROM {links} l JOIN {table} t ON t.id = l.{column}
                 WHERE l.product_id = $1 ORDER BY t.handle"
            ))
            .bind(product_id)
            .fetch_all(&mut *conn)
            .await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                items.push(json!({ "handle": row.try_get::<String, _>(0)?, "title": row.try_get::<String, _>(1)? }));
            }
            taxonomy.push(items);
        }
        let collections = taxonomy.pop().unwrap_or_default();
        let categories = taxonomy.pop().unwrap_or_default();
        let now = crate::time::now_millis().0;
        let mut variants = Vec::new();
        for v in sqlx::query("SELECT * FROM catalog_variants WHERE product_id = $1 ORDER BY position")
            .bind(product_id)
            .fetch_all(&mut *conn)
            .await?
        {
            let variant_id: String = v.try_get("id")?;
            let sku: String = v.try_get("sku")?;
            let mut prices = BTreeMap::new();
            for p in sqlx::query("SELECT currency, amount, sale_amount FROM catalog_prices WHERE variant_id = $1")
                .bind(&variant_id)
                .fetch_all(&mut *conn)
                .await?
            {
                prices.insert(p.try_get("currency")?, (p.try_get("amount")?, p.try_get("sale_amount")?));
            }
            let mut lists = Vec::new();
            for l in sqlx::query(
                "SELECT pp.currency, pp.amount, pl.starts_at, pl.ends_at FROM catalog_price_list_prices pp
                 JOIN catalog_price_lists pl ON pl.id = pp.price_list_id
                 WHERE pp.sku = $1 AND (pl.ends_at IS NULL OR pl.ends_at > $2)",
            )
            .bind(&sku)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?
            {
                lists.push(ListPrice {
                    currency: l.try_get("currency")?,
                    amount: l.try_get("amount")?,
                    starts_at: l.try_get("starts_at")?,
                    ends_at: l.try_get("ends_at")?,
                });
            }
            let managed = v.try_get::<i64, _>("manage_inventory")? != 0;
            let available = units_available(&mut conn, &sku).await?;
            let options: String = v.try_get("options")?;
            variants.push(VariantData {
                title: v.try_get("title")?,
                options: serde_json::from_str(&options).map_err(|e| sqlx::Error::Decode(e.to_string().into()))?,
                availability: availability(available, managed, self.low_stock),
                sku,
                prices,
                lists,
            });
        }
        Ok(Some(ProductData {
            handle: row.try_get("handle")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            images: json("images")?,
            options: json("options")?,
            metadata: json("metadata")?,
            categories,
            collections,
            variants,
            updated_at: row.try_get("updated_at")?,
        }))
    }

    async fn product_record(&self, db: &Database, handle: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM catalog_products WHERE handle = $1")
            .bind(handle)
            .fetch_optional(db.pool())
            .await?;
        let Some(id) = id else { return Ok(None) };
        let now = crate::time::now_millis().0;
        Ok(self.product(db, &id).await?.map(|p| segments(p.moments(now), now, |t| p.body_at(t)).encode()))
    }

    /// Every page of one listing as it should be, and deletions of pages it no longer has.
    async fn listing_records(
        &self,
        db: &Database,
        listing: Listing,
        handle: &str,
    ) -> Result<Vec<KeyedValue>, sqlx::Error> {
        let (table, links, column) = match listing {
            Listing::Category => ("catalog_categories", "catalog_product_categories", "category_id"),
            Listing::Collection => ("catalog_collections", "catalog_product_collections", "collection_id"),
        };
        let row = sqlx::query(&format!("SELECT * FROM {table} WHERE handle = $1"))
            .bind(handle)
            .fetch_optional(db.pool())
            .await?;
        let listing_name = edge::listing_key(listing, handle);
        let had: i64 = sqlx::query_scalar("SELECT pages FROM catalog_listing_pages WHERE listing = $1")
            .bind(&listing_name)
            .fetch_optional(db.pool())
            .await?
            .unwrap_or(0);
        let mut out = Vec::new();
        let pages = match row {
            None => 0,
            Some(row) => {
                let id: String = row.try_get("id")?;
                let mut header = json!({
                    "type": match listing { Listing::Category => "category", Listing::Collection => "collection" },
                    "handle": handle,
                    "title": row.try_get::<String, _>("title")?,
                    "description": row.try_get::<String, _>("description")?,
                });
                let mut member_of = vec![id.clone()];
                if listing == Listing::Category {
                    let (parent, children, below) = self.category_family(db, &id).await?;
                    header["parent"] = json!(parent);
                    header["children"] = json!(children);
                    member_of.extend(below);
                }
                let placeholders: Vec<String> = (2..member_of.len() + 2).map(|n| format!("${n}")).collect();
                let sql = format!(
                    "SELECT DISTINCT p.id, p.title, p.handle FROM catalog_products p JOIN {links} l ON l.product_id = p.id
                     WHERE p.status = $1 AND l.{column} IN ({}) ORDER BY p.title, p.handle",
                    placeholders.join(", ")
                );
                let mut query = sqlx::query(&sql).bind("published");
                for id in &member_of {
                    query = query.bind(id);
                }
                let ids: Vec<String> =
                    query.fetch_all(db.pool()).await?.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
                let total = ids.len();
                let pages = total.div_ceil(PAGE_SIZE).max(1);
                let now = crate::time::now_millis().0;
                for (index, chunk) in ids.chunks(PAGE_SIZE).map(Some).chain([None]).take(pages).enumerate() {
                    let mut products = Vec::new();
                    for id in chunk.unwrap_or_default() {
                        if let Some(product) = self.product(db, id).await? {
                            products.push(product);
                        }
                    }
                    let page = index + 1;
                    let moments = products.iter().flat_map(|p| p.moments(now)).collect::<Vec<_>>();
                    let record = segments(moments.into_iter(), now, |t| {
                        json!({
                            "listing": header,
                            "page": page,
                            "pages": pages,
                            "total": total,
                            "page_size": PAGE_SIZE,
                            "products": products.iter().map(|p| p.summary_at(t)).collect::<Vec<_>>(),
                        })
                    });
                    out.push((edge::page_key(listing, handle, page), Some(record.encode())));
                }
                pages
            }
        };
        for gone in pages + 1..=had as usize {
            out.push((edge::page_key(listing, handle, gone), None));
        }
        sqlx::query(
            "INSERT INTO catalog_listing_pages (listing, pages) VALUES ($1, $2)
             ON CONFLICT (listing) DO UPDATE SET pages = excluded.pages",
        )
        .bind(&listing_name)
        .bind(pages as i64)
        .execute(db.pool())
        .await?;
        Ok(out)
    }

    /// A category's parent handle, its children (handle and title), and the ids of every
    /// category below it.
    async fn category_family(
        &self,
        db: &Database,
        id: &str,
    ) -> Result<(Option<String>, Vec<Value>, Vec<String>), sqlx::Error> {
        let parent: Option<String> = sqlx::query_scalar(
            "SELECT p.handle FROM catalog_categories c JOIN catalog_categories p ON p.id = c.parent_id WHERE c.id = $1",
        )
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
        let mut children = Vec::new();
        let mut below = Vec::new();
        let mut frontier = vec![id.to_owned()];
        while let Some(at) = frontier.pop() {
            let rows = sqlx::query(
                "SELECT id, handle, title FROM catalog_categories WHERE parent_id = $1 ORDER BY position, title",
            )
            .bind(&at)
            .fetch_all(db.pool())
            .await?;
            for row in rows {
                let child: String = row.try_get("id")?;
                if at == id {
                    children.push(json!({ "handle": row.try_get::<String, _>("handle")?, "title": row.try_get::<String, _>("title")? }));
                }
                if below.len() < 10_000 && !below.contains(&child) {
                    below.push(child.clone());
                    frontier.push(child);
                }
            }
        }
        Ok((parent, children, below))
    }
}

#[async_trait::async_trait]
impl DatasetSource for CatalogSource {
    async fn build(&self, _db: &Database) -> Result<Vec<crate::publish::DatasetContent>, sqlx::Error> {
        Ok(Vec::new())
    }

    fn keyed_prefix(&self) -> Option<&'static str> {
        Some(edge::PREFIX)
    }

    async fn keyed_values(&self, db: &Database, keys: &[String]) -> Result<Vec<KeyedValue>, sqlx::Error> {
        let mut out = Vec::new();
        for key in keys {
            let rest = &key[edge::PREFIX.len()..];
            match rest.split_once('/') {
                Some(("p", handle)) => out.push((key.clone(), self.product_record(db, handle).await?)),
                Some(("c", handle)) => out.extend(self.listing_records(db, Listing::Category, handle).await?),
                Some(("k", handle)) => out.extend(self.listing_records(db, Listing::Collection, handle).await?),
                _ => tracing::warn!(key, "unknown catalog key in the outbox; ignored"),
            }
        }
        Ok(out)
    }

    async fn keyed_all(&self, db: &Database) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        let mut all = Vec::new();
        let handles: Vec<String> =
            sqlx::query_scalar("SELECT handle FROM catalog_products WHERE status = 'published' ORDER BY handle")
                .fetch_all(db.pool())
                .await?;
        for handle in handles {
            if let Some(record) = self.product_record(db, &handle).await? {
                all.push((edge::product_key(&handle), record));
            }
        }
        for (listing, table) in
            [(Listing::Category, "catalog_categories"), (Listing::Collection, "catalog_collections")]
        {
            let handles: Vec<String> =
                sqlx::query_scalar(&format!("SELECT handle FROM {table} ORDER BY handle")).fetch_all(db.pool()).await?;
            for handle in handles {
                for (key, value) in self.listing_records(db, listing, &handle).await? {
                    if let Some(value) = value {
                        all.push((key, value));
                    }
                }
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(lists: Vec<ListPrice>) -> ProductData {
        ProductData {
            handle: "tee".into(),
            title: "Tee".into(),
            description: String::new(),
            images: json!([]),
            options: json!([]),
            metadata: json!({}),
            categories: vec![],
            collections: vec![],
            variants: vec![VariantData {
                sku: "TEE".into(),
                title: "Default".into(),
                options: json!({}),
                prices: BTreeMap::from([("EUR".to_owned(), (2000, Some(1800))), ("USD".to_owned(), (2200, None))]),
                lists,
                availability: "low",
            }],
            updated_at: 0,
        }
    }

    #[test]
    fn a_price_list_takes_over_exactly_while_it_runs() {
        let sale = ListPrice { currency: "EUR".into(), amount: 1500, starts_at: 1_000, ends_at: Some(2_000) };
        let p = product(vec![sale]);
        let record = segments(p.moments(500), 500, |t| p.body_at(t));
        assert_eq!(
            record.segments.iter().map(|s| (s.from, s.until)).collect::<Vec<_>>(),
            [(0, 1_000), (1_000, 2_000), (2_000, u64::MAX)]
        );
        let euro = |at: u64| {
            let body: Value = serde_json::from_slice(&record.at(at).unwrap().body).unwrap();
            (
                body["variants"][0]["prices"][0]["amount"].as_i64(),
                body["variants"][0]["prices"][0]["compare_at_amount"].as_i64(),
            )
        };
        assert_eq!(euro(999), (Some(1800), Some(2000)), "the standing sale price before the list");
        assert_eq!(euro(1_000), (Some(1500), Some(2000)), "the list while it runs");
        assert_eq!(euro(2_000), (Some(1800), Some(2000)), "and back after");
        let body: Value = serde_json::from_slice(&record.at(1_500).unwrap().body).unwrap();
        assert_eq!(body["price_range"]["USD"], json!({"min": 2200, "max": 2200}));
        assert_eq!(body["availability"], "low");
    }

    #[test]
    fn lists_in_the_past_add_no_segments() {
        let over = ListPrice { currency: "EUR".into(), amount: 1, starts_at: 0, ends_at: Some(10) };
        let p = product(vec![over]);
        assert_eq!(segments(p.moments(50), 50, |t| p.body_at(t)).segments.len(), 1);
    }

    #[test]
    fn availability_is_coarse() {
        assert_eq!(availability(0, true, 5), "out_of_stock");
        assert_eq!(availability(5, true, 5), "low");
        assert_eq!(availability(6, true, 5), "in_stock");
        assert_eq!(availability(0, false, 5), "in_stock");
    }
}
