//! The database: PostgreSQL when `DATABASE_URL` is set, otherwise an embedded SQLite file.
//!
//! Both go through sqlx's `Any` driver so one query serves both where the SQL is portable;
//! `Dialect` is there for the few places where semantics differ. Each dialect has its own
//! migrations folder, embedded in the binary. Times are stored as Unix milliseconds (UTC)
//! in BIGINT columns, which both dialects compare and index the same way.

use std::path::Path;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::config::Config;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Name of the SQLite file inside the data directory.
pub const SQLITE_FILE: &str = "verge.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    dialect: Dialect,
    /// Hot reads remembered for a moment; writers forget what they change.
    memo: crate::memo::Memo,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot connect to the {dialect:?} database: {source}")]
    Connect { dialect: Dialect, source: sqlx::Error },
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Database {
    /// Connects as the configuration says, creating the SQLite file on first run.
    pub async fn connect(config: &Config) -> Result<Database, DbError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let (url, dialect) = match &config.database_url {
            Some(url) => (url.expose_secret().to_owned(), Dialect::Postgres),
            None => (sqlite_url(&config.data_dir)?, Dialect::Sqlite),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|source| DbError::Connect { dialect, source })?
            // Statements are logged at debug level only; they carry no secrets but are noisy.
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = AnyPoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run while one writer commits; the busy timeout
                        // queues writers instead of failing them.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect { dialect, source })?;
        Ok(Database { pool, dialect, memo: crate::memo::Memo::default() })
    }

    /// Applies every pending migration of this dialect; a no-op when up to date.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.dialect {
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails
    /// with `database is locked` instead of waiting when another writer got there between
    /// its read and its write. PostgreSQL needs nothing special.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) fn memo(&self) -> &crate::memo::Memo {
        &self.memo
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn sqlite_url(data_dir: &Path) -> Result<String, DbError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|source| DbError::DataDir { path: data_dir.display().to_string(), source })?;
    let file = data_dir.join(SQLITE_FILE);
    Ok(format!("sqlite://{}?mode=rwc", file.display()))
}

/// True when `err` is a unique-constraint violation, in either dialect.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|e| e.is_unique_violation())
}

/// `text` with LIKE's wildcards and the escape character escaped, for `LIKE … ESCAPE '\'`.
pub(crate) fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
