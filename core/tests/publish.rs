//! Publishing to edge KV: versioned datasets made live by the manifest, unchanged content
//! never rewritten, old versions collected, and a publish that dies midway leaving the
//! edge on the previous complete version until a retry completes it; a store rolled back
//! by a power cut repaired on the next start.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::TestApp;
use verge_core::db::Database;
use verge_core::publish::{
    self, DatasetContent, DatasetSource, EdgeStore, LocalEdgeStore, Publisher, RedisEdgeStore, StoreError,
};
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};

/// A dataset source whose content the test sets.
#[derive(Debug, Default)]
struct Fixture(Mutex<Vec<DatasetContent>>);

impl Fixture {
    fn set(&self, datasets: &[(&str, &[(&str, &str)])]) {
        *self.0.lock().unwrap() = datasets
            .iter()
            .map(|(name, parts)| DatasetContent {
                name: name.to_string(),
                parts: parts.iter().map(|(p, v)| (p.to_string(), v.as_bytes().to_vec())).collect(),
            })
            .collect();
    }
}

#[async_trait]
impl DatasetSource for Fixture {
    async fn build(&self, _: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// Reads a dataset the way an edge does: the manifest first, then only the parts of the
/// version it names.
async fn edge_read(store: &dyn EdgeStore, dataset: &str, parts: &[&str]) -> Option<(u64, Vec<String>)> {
    let manifest = Manifest::decode(&store.get(MANIFEST_KEY).await.unwrap()?).unwrap();
    let version = manifest.get(dataset)?.version;
    let mut values = Vec::new();
    for part in parts {
        let bytes =
            store.get(&versioned_key(dataset, version, part)).await.unwrap().expect("a part the manifest names");
        values.push(String::from_utf8(bytes).unwrap());
    }
    Some((version, values))
}

async fn setup() -> (TestApp, Arc<Fixture>, LocalEdgeStore, tempfile::TempDir) {
    let app = TestApp::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = LocalEdgeStore::open(&dir.path().join("edge/kv.db")).await.unwrap();
    (app, Arc::new(Fixture::default()), store, dir)
}

#[tokio::test]
async fn versions_are_published_then_made_live_and_unchanged_content_writes_nothing() {
    let (app, fixture, store, _dir) = setup().await;
    let db = &app.app.state.db;
    let sources: Vec<Arc<dyn DatasetSource>> = vec![fixture.clone()];
    fixture.set(&[("flags/prod", &[("0", "a"), ("1", "b")])]);

    let first = publish::publish_to(db, &sources, &store, &()).await.unwrap();
    assert_eq!((first.snapshot, first.written.clone(), first.keys_written), (1, vec!["flags/prod".into()], 3));
    assert_eq!(edge_read(&store, "flags/prod", &["0", "1"]).await, Some((1, vec!["a".into(), "b".into()])));

    let again = publish::publish_to(db, &sources, &store, &()).await.unwrap();
    assert_eq!((again.snapshot, again.keys_written), (1, 0), "unchanged state writes nothing");

    fixture.set(&[("flags/prod", &[("0", "a"), ("1", "c")])]);
    let second = publish::publish_to(db, &sources, &store, &()).await.unwrap();
    assert_eq!(second.snapshot, 2);
    assert_eq!(edge_read(&store, "flags/prod", &["0", "1"]).await, Some((2, vec!["a".into(), "c".into()])));
    assert!(store.get("flags/prod/v1/0").await.unwrap().is_some(), "the previous version stays for in-flight readers");

    fixture.set(&[("flags/prod", &[("0", "z")])]);
    let third = publish::publish_to(db, &sources, &store, &()).await.unwrap();
    assert_eq!(third.keys_removed, 2, "version 1 is collected once version 3 is live");
    assert_eq!(
        store.keys_with_prefix("flags/prod/v").await.unwrap(),
        ["flags/prod/v2/0", "flags/prod/v2/1", "flags/prod/v3/0"]
    );

    fixture.set(&[]);
    let gone = publish::publish_to(db, &sources, &store, &()).await.unwrap();
    assert_eq!(gone.snapshot, 4);
    assert!(store.keys_with_prefix("flags/prod/").await.unwrap().is_empty(), "a removed dataset leaves nothing");
    assert_eq!(edge_read(&store, "flags/prod", &[]).await, None);
}

/// Individually keyed records under `rec/`, as links are.
#[derive(Debug, Default)]
struct KeyedFixture(Mutex<Vec<(String, Vec<u8>)>>);

#[async_trait]
impl DatasetSource for KeyedFixture {
    async fn build(&self, _: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        Ok(Vec::new())
    }

    fn keyed_prefix(&self) -> Option<&'static str> {
        Some("rec/")
    }

    async fn keyed_values(&self, _: &Database, keys: &[String]) -> Result<Vec<publish::KeyedValue>, sqlx::Error> {
        let records = self.0.lock().unwrap();
        let value = |key: &String| records.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        Ok(keys.iter().map(|key| (key.clone(), value(key))).collect())
    }

    async fn keyed_all(&self, _: &Database) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// What a publish told its progress, in order.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<(&'static str, usize)>>);

impl publish::Progress for Recorded {
    fn planned(&self, keys: usize) {
        self.0.lock().unwrap().push(("planned", keys));
    }

    fn written(&self, keys: usize) {
        self.0.lock().unwrap().push(("written", keys));
    }
}

#[tokio::test]
async fn progress_knows_the_total_before_the_first_write() {
    let (app, fixture, store, _dir) = setup().await;
    let db = &app.app.state.db;
    let keyed = Arc::new(KeyedFixture::default());
    let sources: Vec<Arc<dyn DatasetSource>> = vec![fixture.clone(), keyed.clone()];
    let parts: Vec<(String, String)> = (0..1200).map(|i| (i.to_string(), format!("value {i}"))).collect();
    let parts: Vec<(&str, &str)> = parts.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    fixture.set(&[("flags/big", &parts)]);
    *keyed.0.lock().unwrap() = (0..3).map(|i| (format!("rec/{i}"), vec![b'x'; i + 1])).collect();

    let progress = Recorded::default();
    let report = publish::publish_to(db, &sources, &store, &progress).await.unwrap();
    let seen = progress.0.lock().unwrap().clone();
    // 1,200 parts in chunks of 500, the manifest, then the keyed records.
    let expected =
        [("planned", 1204), ("written", 500), ("written", 500), ("written", 200), ("written", 1), ("written", 3)];
    assert_eq!(seen, expected);
    assert_eq!(report.keys_written, 1204);

    keyed.0.lock().unwrap()[1].1 = b"changed".to_vec();
    let progress = Recorded::default();
    publish::publish_to(db, &sources, &store, &progress).await.unwrap();
    assert_eq!(*progress.0.lock().unwrap(), [("planned", 1), ("written", 1)], "only the changed record");
}

/// Lets `allowed` writes through, then fails every write, as a process killed midway.
#[derive(Debug)]
struct DiesMidway {
    inner: LocalEdgeStore,
    allowed: Mutex<usize>,
}

#[async_trait]
impl EdgeStore for DiesMidway {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let alive = {
            let mut allowed = self.allowed.lock().unwrap();
            let alive = *allowed > 0;
            *allowed = allowed.saturating_sub(1);
            alive
        };
        if !alive {
            return Err(StoreError::Backend { store: "dies-midway".into(), message: "killed".into() });
        }
        self.inner.put_many(entries).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys_with_prefix(prefix).await
    }
    fn describe(&self) -> String {
        "dies-midway".into()
    }
}

#[tokio::test]
async fn a_publish_killed_midway_leaves_the_previous_version_live_and_a_retry_completes() {
    let (app, fixture, store, _dir) = setup().await;
    let db = &app.app.state.db;
    let sources: Vec<Arc<dyn DatasetSource>> = vec![fixture.clone()];
    let parts_v1: Vec<(String, String)> = (0..1200).map(|i| (format!("{i:04}"), format!("old-{i}"))).collect();
    let as_refs = |parts: &[(String, String)]| parts.iter().map(|(p, v)| (p.clone(), v.clone())).collect::<Vec<_>>();
    let set = |parts: &[(String, String)]| {
        let owned = as_refs(parts);
        let refs: Vec<(&str, &str)> = owned.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
        fixture.set(&[("ac/shards", &refs)]);
    };
    set(&parts_v1);
    publish::publish_to(db, &sources, &store, &()).await.unwrap();

    let parts_v2: Vec<(String, String)> = (0..1200).map(|i| (format!("{i:04}"), format!("new-{i}"))).collect();
    set(&parts_v2);
    // The first 500-key chunk lands, then the process "dies".
    let dying = DiesMidway { inner: store.clone(), allowed: Mutex::new(1) };
    let err = publish::publish_to(db, &sources, &dying, &()).await.unwrap_err();
    assert!(err.to_string().contains("killed"), "{err}");
    assert!(store.get("ac/shards/v2/0000").await.unwrap().is_some(), "the publish really got midway");

    let all: Vec<&str> = parts_v1.iter().map(|(p, _)| p.as_str()).collect();
    let (version, values) = edge_read(&store, "ac/shards", &all).await.unwrap();
    assert_eq!(version, 1, "the edge still sees the previous version");
    assert!(values.iter().all(|v| v.starts_with("old-")), "and all of it");

    let retry = publish::publish_to(db, &sources, &store, &()).await.unwrap();
    assert_eq!(retry.snapshot, 2);
    let (version, values) = edge_read(&store, "ac/shards", &all).await.unwrap();
    assert_eq!(version, 2);
    assert!(values.iter().all(|v| v.starts_with("new-")));
}

#[tokio::test]
async fn the_outbox_is_transactional_and_drained_by_the_publisher() {
    let (app, fixture, store, _dir) = setup().await;
    let db = app.app.state.db.clone();
    fixture.set(&[("rl/policies", &[("0", "p1")])]);
    let publisher = Publisher::new(db.clone(), vec![fixture.clone()], vec![Arc::new(store.clone())]);
    assert!(publisher.run_once(false).await.unwrap().is_none(), "nothing queued, nothing done");

    let mut tx = db.pool().begin().await.unwrap();
    publish::enqueue(&mut tx, "rl/policies").await.unwrap();
    tx.rollback().await.unwrap();
    assert!(publisher.run_once(false).await.unwrap().is_none(), "a rolled-back write queues nothing");

    let mut tx = db.pool().begin().await.unwrap();
    publish::enqueue(&mut tx, "rl/policies").await.unwrap();
    tx.commit().await.unwrap();
    let reports = publisher.run_once(false).await.unwrap().expect("published");
    assert_eq!(reports[0].written, ["rl/policies"]);
    assert!(publisher.run_once(false).await.unwrap().is_none(), "the outbox was drained");
}

/// The edge store commits without fsync, so a power cut can roll it back to an earlier
/// commit after the outbox was drained; the core's start-up reconcile must notice.
#[tokio::test]
async fn the_start_up_reconcile_repairs_a_store_a_power_cut_rolled_back() {
    let (app, fixture, store, _dir) = setup().await;
    let db = app.app.state.db.clone();
    let publisher = Publisher::new(db.clone(), vec![fixture.clone()], vec![Arc::new(store.clone())]);
    fixture.set(&[("flags/dev", &[("0", "one")])]);
    publisher.run_once(true).await.unwrap().expect("published");
    let manifest_v1 = store.get(MANIFEST_KEY).await.unwrap().unwrap();

    fixture.set(&[("flags/dev", &[("0", "two")])]);
    let mut tx = db.pool().begin().await.unwrap();
    publish::enqueue(&mut tx, "flags/dev").await.unwrap();
    tx.commit().await.unwrap();
    publisher.run_once(false).await.unwrap().expect("published");
    assert_eq!(edge_read(&store, "flags/dev", &["0"]).await.unwrap().1, ["two"]);

    // The cut: the store loses its last commits (the v2 part, then the manifest naming it).
    store.put_many(&[(MANIFEST_KEY.to_owned(), manifest_v1)]).await.unwrap();
    store.delete_many(&store.keys_with_prefix("flags/dev/v2").await.unwrap()).await.unwrap();
    assert_eq!(edge_read(&store, "flags/dev", &["0"]).await.unwrap().1, ["one"], "rolled back");
    assert!(publisher.run_once(false).await.unwrap().is_none(), "the outbox no longer names the change");

    // What `Publisher::run` does first on every start.
    publisher.run_once(true).await.unwrap().expect("published");
    assert_eq!(edge_read(&store, "flags/dev", &["0"]).await.unwrap().1, ["two"], "repaired");
}

#[tokio::test]
async fn a_woken_publisher_reaches_the_edge_store_within_a_second() {
    let (app, fixture, store, _dir) = setup().await;
    let db = app.app.state.db.clone();
    fixture.set(&[("flags/dev", &[("0", "one")])]);
    let publisher = Publisher::new(db.clone(), vec![fixture.clone()], vec![Arc::new(store.clone())]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(publisher.clone().run(async { stopped.await.unwrap_or(()) }));

    let deadline = Instant::now() + Duration::from_secs(5);
    while edge_read(&store, "flags/dev", &["0"]).await.is_none() {
        assert!(Instant::now() < deadline, "the start-up reconcile never published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    fixture.set(&[("flags/dev", &[("0", "two")])]);
    let mut tx = db.pool().begin().await.unwrap();
    publish::enqueue(&mut tx, "flags/dev").await.unwrap();
    tx.commit().await.unwrap();
    let committed = Instant::now();
    publisher.wake();
    loop {
        if edge_read(&store, "flags/dev", &["0"]).await.unwrap().1 == ["two"] {
            break;
        }
        assert!(committed.elapsed() < Duration::from_secs(1), "not live within a second");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap();
}

/// Redis restarted without persistence comes back empty while the core runs on: the
/// running publisher notices and publishes everything again, under versions above those it
/// had seen, since edges may still cache parts of the old ones.
#[tokio::test]
async fn a_running_publisher_refills_a_store_that_lost_everything_without_reusing_a_version() {
    let (app, fixture, store, _dir) = setup().await;
    let db = app.app.state.db.clone();
    fixture.set(&[("flags/dev", &[("0", "one")])]);
    let publisher = Publisher::new(db.clone(), vec![fixture.clone()], vec![Arc::new(store.clone())]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(publisher.clone().run(async { stopped.await.unwrap_or(()) }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge_read(&store, "flags/dev", &["0"]).await.is_none() {
        assert!(Instant::now() < deadline, "the start-up reconcile never published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let a tick see the manifest, then lose every key.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let lost = Manifest::decode(&store.get(MANIFEST_KEY).await.unwrap().unwrap()).unwrap();
    store.delete_many(&store.keys_with_prefix("").await.unwrap()).await.unwrap();
    assert!(store.get(MANIFEST_KEY).await.unwrap().is_none());

    let deadline = Instant::now() + Duration::from_secs(5);
    let (version, values) = loop {
        if let Some(read) = edge_read(&store, "flags/dev", &["0"]).await {
            break read;
        }
        assert!(Instant::now() < deadline, "the emptied store was not filled again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(values, ["one"]);
    let refilled = Manifest::decode(&store.get(MANIFEST_KEY).await.unwrap().unwrap()).unwrap();
    assert!(refilled.snapshot > lost.snapshot, "snapshot {} after {}", refilled.snapshot, lost.snapshot);
    assert!(version > lost.get("flags/dev").unwrap().version, "version {version} reused");
    stop.send(()).unwrap();
    running.await.unwrap();
}

/// Wraps a store and, after each write, notes whether Redis holds the change counter that
/// native nodes poll.
#[derive(Debug)]
struct CounterWatch {
    store: RedisEdgeStore,
    redis: redis::Client,
    seen: Mutex<Vec<bool>>,
}

impl CounterWatch {
    fn counter(&self) -> Option<i64> {
        redis::cmd("GET").arg("edge:__changes").query(&mut self.redis.get_connection().unwrap()).unwrap()
    }
    fn note(&self) {
        let present = self.counter().is_some();
        self.seen.lock().unwrap().push(present);
    }
}

#[async_trait]
impl EdgeStore for CounterWatch {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(key).await
    }
    async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.store.put_many(entries).await?;
        if !entries.is_empty() {
            self.note();
        }
        Ok(())
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.store.delete_many(keys).await?;
        if !keys.is_empty() {
            self.note();
        }
        Ok(())
    }
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.store.keys_with_prefix(prefix).await
    }
    async fn whole(&self) -> Result<(), StoreError> {
        self.store.whole().await
    }
    fn describe(&self) -> String {
        self.store.describe()
    }
}

/// Native nodes drop their cached reads when the counter moves, and keep them while there
/// is none (a Redis that came back empty). So a publish into an empty Redis must not
/// create the counter before its last write: nodes would drop their only whole copy for a
/// store still without its manifest.
#[tokio::test]
async fn an_empty_redis_gets_its_change_counter_only_once_the_publish_is_whole() {
    let app = TestApp::new().await;
    let db = app.app.state.db.clone();
    let redis = common::services::PrivateRedis::start();
    let store = RedisEdgeStore::connect(&redis.url(), "edge:").await.unwrap();
    let watch = CounterWatch { store, redis: redis::Client::open(redis.url()).unwrap(), seen: Mutex::new(Vec::new()) };
    let fixture = Arc::new(Fixture::default());
    let parts: Vec<(String, String)> = (0..1_200).map(|i| (format!("p{i}"), format!("one {i}"))).collect();
    let parts: Vec<(&str, &str)> = parts.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    fixture.set(&[("flags/dev", &parts)]);
    let sources: Vec<Arc<dyn DatasetSource>> = vec![fixture.clone()];

    publish::publish_to(&db, &sources, &watch, &()).await.unwrap();
    let writes = std::mem::take(&mut *watch.seen.lock().unwrap());
    assert!(writes.len() >= 4, "three chunks and the manifest: {writes:?}");
    assert!(writes.iter().all(|present| !present), "the counter appeared mid-publish: {writes:?}");
    assert_eq!(watch.counter(), Some(1), "created once the publish is whole");

    // Once it exists, every write moves it: nodes see each change at once.
    fixture.set(&[("flags/dev", &[("p0", "two")])]);
    publish::publish_to(&db, &sources, &watch, &()).await.unwrap();
    let writes = std::mem::take(&mut *watch.seen.lock().unwrap());
    assert!(!writes.is_empty() && writes.iter().all(|present| *present), "{writes:?}");
    assert_eq!(watch.counter(), Some(1 + writes.len() as i64), "bumped once per write");

    // Emptied (a restart without persistence): the republish is invisible until whole.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.connection()).unwrap();
    publish::publish_to(&db, &sources, &watch, &()).await.unwrap();
    let writes = std::mem::take(&mut *watch.seen.lock().unwrap());
    assert!(!writes.is_empty() && writes.iter().all(|present| !present), "{writes:?}");
    assert_eq!(watch.counter(), Some(1));
    assert_eq!(edge_read(&watch, "flags/dev", &["p0"]).await.unwrap().1, ["two"]);
}

#[tokio::test]
async fn bulk_files_carry_the_state_between_runs_and_list_deletions() {
    use verge_core::publish::snapshot::{BulkFiles, Target};
    let (app, fixture, _store, dir) = setup().await;
    let db = &app.app.state.db;
    let sources: Vec<Arc<dyn DatasetSource>> = vec![fixture.clone()];
    let out = dir.path().join("cf");
    for (round, value) in ["a", "b", "c"].iter().enumerate() {
        fixture.set(&[("flags/prod", &[("0", value)])]);
        let files = BulkFiles::open(Target::Cloudflare, &out).unwrap();
        let report = publish::publish_to(db, &sources, &files, &()).await.unwrap();
        assert_eq!(report.snapshot, round as u64 + 1, "each run continues from the files");
        assert!(files.finish().unwrap());
    }
    let deleted: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(out.join("kv-delete.json")).unwrap()).unwrap();
    assert_eq!(deleted, ["flags/prod/v1/0"]);
    let bulk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("kv-bulk.json")).unwrap()).unwrap();
    let keys: Vec<&str> = bulk.as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["flags/prod/v2/0", "flags/prod/v3/0"], "the manifest is not in the data file");

    let files = BulkFiles::open(Target::Cloudflare, &out).unwrap();
    publish::publish_to(db, &sources, &files, &()).await.unwrap();
    assert!(!files.finish().unwrap(), "unchanged: nothing rewritten");
}

/// Something a test does just before each batch a publish writes.
#[async_trait]
trait BeforePut: Send + Sync + std::fmt::Debug {
    async fn before_put(&self);
}

/// A local store that runs `hook` before each `put_many`: how the tests below step in the
/// middle of a publish.
#[derive(Debug)]
struct Hooked<H> {
    inner: LocalEdgeStore,
    hook: H,
}

#[async_trait]
impl<H: BeforePut> EdgeStore for Hooked<H> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.hook.before_put().await;
        self.inner.put_many(entries).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys_with_prefix(prefix).await
    }
    fn describe(&self) -> String {
        format!("{:?}", self.hook)
    }
}

/// Commits a second writer's outbox row while a publish is writing: its id was minted
/// before the row the publisher read, as a transaction that began first and committed last.
#[derive(Debug)]
struct LateCommit {
    db: Database,
    late: Mutex<Option<String>>,
}

#[async_trait]
impl BeforePut for LateCommit {
    async fn before_put(&self) {
        let late = self.late.lock().unwrap().take();
        if let Some(id) = late {
            sqlx::query("INSERT INTO outbox (id, dataset, created_at) VALUES ($1, 'rec/late', 0)")
                .bind(id)
                .execute(self.db.pool())
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_write_that_commits_out_of_order_is_still_published() {
    let (app, _fixture, store, _dir) = setup().await;
    let db = app.app.state.db.clone();
    let keyed = Arc::new(KeyedFixture::default());
    // Writer A mints its outbox id first, and commits last.
    let minted_first = verge_core::ids::new_id("obx");
    tokio::time::sleep(Duration::from_millis(2)).await;
    *keyed.0.lock().unwrap() = vec![("rec/early".into(), b"b".to_vec()), ("rec/late".into(), b"a".to_vec())];
    let mut tx = db.pool().begin().await.unwrap();
    publish::enqueue(&mut tx, "rec/early").await.unwrap();
    tx.commit().await.unwrap();

    let racing =
        Hooked { inner: store.clone(), hook: LateCommit { db: db.clone(), late: Mutex::new(Some(minted_first)) } };
    let publisher = Publisher::new(db.clone(), vec![keyed.clone()], vec![Arc::new(racing)]);
    publisher.run_once(false).await.unwrap().expect("published writer B");
    assert_eq!(store.get("rec/early").await.unwrap().as_deref(), Some(&b"b"[..]));
    assert_eq!(store.get("rec/late").await.unwrap(), None, "writer A committed after the publisher read");

    publisher.run_once(false).await.unwrap().expect("writer A's row survived the first round");
    assert_eq!(store.get("rec/late").await.unwrap().as_deref(), Some(&b"a"[..]));
    assert!(publisher.run_once(false).await.unwrap().is_none(), "and the outbox is drained");
}

/// Writes wait at a gate: a publish into the store holds the turn to publish (on
/// PostgreSQL, the advisory lock) for as long as the test keeps the gate shut.
#[derive(Debug)]
struct Gate {
    entered: tokio::sync::Notify,
    open: tokio::sync::watch::Receiver<bool>,
}

#[async_trait]
impl BeforePut for Gate {
    async fn before_put(&self) {
        self.entered.notify_one();
        let _ = self.open.clone().wait_for(|open| *open).await;
    }
}

/// A replica that starts while another is publishing must still reconcile its own store
/// once the turn is free, not take "another replica holds the turn" for "nothing to do".
/// (On SQLite there is one process and no turn to wait for; the test then checks only
/// that the start-up reconcile happens.)
#[tokio::test]
async fn a_replica_starting_while_another_publishes_still_reconciles_its_store() {
    let (app, fixture, store, _dir) = setup().await;
    let db = app.app.state.db.clone();
    fixture.set(&[("flags/dev", &[("0", "one")])]);
    let other_dir = tempfile::tempdir().unwrap();
    let (gate, open) = tokio::sync::watch::channel(false);
    let gated = Arc::new(Hooked {
        inner: LocalEdgeStore::open(&other_dir.path().join("kv.db")).await.unwrap(),
        hook: Gate { entered: tokio::sync::Notify::new(), open },
    });
    let busy = Publisher::new(db.clone(), vec![fixture.clone()], vec![gated.clone()]);
    let holding = tokio::spawn(async move { busy.run_once(true).await });
    gated.hook.entered.notified().await;

    let starting = Publisher::new(db.clone(), vec![fixture.clone()], vec![Arc::new(store.clone())]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(starting.run(async { stopped.await.unwrap_or(()) }));
    // Past the starting replica's first rounds (a tick is half a second).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    gate.send(true).unwrap();
    holding.await.unwrap().unwrap().expect("the other replica published");

    let deadline = Instant::now() + Duration::from_secs(5);
    while edge_read(&store, "flags/dev", &["0"]).await.is_none() {
        assert!(Instant::now() < deadline, "the starting replica never reconciled its store");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap();
}
