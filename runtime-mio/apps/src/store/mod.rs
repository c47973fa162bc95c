//! The servers' durable state (`--store`): what a verification server promised
//! ([`VsFact`]s: revocations in force, game servers revoked for good, challenge nonces, signed
//! receipts) and the join-ticket `jti`s a game server consumed.
//!
//! Two backends behind one [`Store`]:
//! - a path: one SQLite file ([`SqliteStore`], `rusqlite` built in) — the default, for one
//!   instance. SQLite because the state is small and relational, one file is all an operator
//!   backs up, a transaction commits durably with one `fsync` in WAL mode, and its SQL carries
//!   over to PostgreSQL;
//! - `postgres://…`: PostgreSQL ([`PgStore`], the `postgres` crate), shared by several
//!   verification-server instances. Each instance writes its facts to one log, serialised by a
//!   transaction-scoped advisory lock so that the log's order is its commit order, and imports
//!   the others' facts every turn ([`Store::fetch_foreign`]) before it handles events: a
//!   revocation made at one instance is pushed by the others within a turn, a nonce used at
//!   one is a replay at the others, a digest receipted at one gets the same receipt at the
//!   others.
//!
//! Writes are write-ahead: the servers commit the facts of a turn *before* they flush the
//! packets that carry them, so after `kill -9` nothing a peer was told is forgotten. Schemas are
//! versioned and migrated forward on open; a store written by a newer version is refused.
//! Expired entries are pruned; the rest is bounded as the in-memory state is (the newest
//! [`NONCE_HISTORY`](tickwire_core::vs::NONCE_HISTORY) nonces and `receipt_cache` receipts per
//! game server).

mod postgres;
mod sqlite;

use std::path::Path;

use tickwire_core::vs::{VerifierState, VsFact};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused (the file is not a database, is locked, the disk is full, …).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A row does not decode: the file was edited or damaged.
    #[error("store: corrupt {table} row: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// PostgreSQL refused (cannot connect, authentication, a query failed).
    #[error("store: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// This backend cannot hold that state.
    #[error("store: {0}")]
    Unsupported(&'static str),
    /// The file was written by a newer tickwire, with a schema this one does not know.
    #[error("store schema version {found} is newer than this build's {known}: run a newer tickwire")]
    TooNew {
        /// The file's schema version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

impl From<StoreError> for std::io::Error {
    fn from(error: StoreError) -> Self {
        std::io::Error::other(error)
    }
}

/// An open store: SQLite or PostgreSQL.
#[derive(Debug)]
pub enum Store {
    /// One SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database, possibly shared by several verification servers.
    Postgres(Box<PgStore>),
}

impl Store {
    /// Opens the store `spec` names: a `postgres://` or `postgresql://` URL, else a SQLite
    /// file path.
    ///
    /// # Errors
    /// [`StoreError`]: cannot connect or open, or written by a newer version.
    pub fn open(spec: &Path) -> Result<Self, StoreError> {
        let text = spec.to_string_lossy();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Self::Postgres(Box::new(PgStore::connect(&text)?)))
        } else {
            Ok(Self::Sqlite(SqliteStore::open(spec)?))
        }
    }

    /// Everything verifiers promised, for `Verifier::restore`, after forgetting `Jti`
    /// revocations that lapsed before `forget_before_unix_ms`.
    ///
    /// # Errors
    /// The store failed, or a row does not decode.
    pub fn load_verifier(&mut self, forget_before_unix_ms: u64) -> Result<VerifierState, StoreError> {
        match self {
            Self::Sqlite(store) => store.load_verifier(forget_before_unix_ms),
            Self::Postgres(store) => store.load_verifier(forget_before_unix_ms),
        }
    }

    /// Commits `facts` in one durable transaction (keeping at most `receipts_per_gs` receipts
    /// per game server). Nothing is written if it fails.
    ///
    /// # Errors
    /// The store failed: the facts are not durable and must not be sent.
    pub fn persist_facts(&mut self, facts: Vec<VsFact>, receipts_per_gs: usize) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(store) => store.persist_facts(facts, receipts_per_gs),
            Self::Postgres(store) => store.persist_facts(facts, receipts_per_gs),
        }
    }

    /// Facts other instances committed since the last call (none for SQLite: one instance),
    /// for `Verifier::import`.
    ///
    /// # Errors
    /// The store failed, or a row does not decode.
    pub fn fetch_foreign(&mut self) -> Result<Vec<VsFact>, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(Vec::new()),
            Self::Postgres(store) => store.fetch_foreign(),
        }
    }

    /// The live `jti`s a game server consumed (SQLite only: a game server's own store).
    ///
    /// # Errors
    /// The store failed, or is PostgreSQL.
    pub fn load_consumed(&mut self, now_unix_ms: u64) -> Result<Vec<([u8; 16], u64)>, StoreError> {
        self.sqlite()?.load_consumed(now_unix_ms)
    }

    /// Commits consumed `jti`s (SQLite only).
    ///
    /// # Errors
    /// The store failed, or is PostgreSQL.
    pub fn persist_consumed(
        &mut self,
        jtis: Vec<([u8; 16], u64)>,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.sqlite()?.persist_consumed(jtis, now_unix_ms)
    }

    fn sqlite(&mut self) -> Result<&mut SqliteStore, StoreError> {
        match self {
            Self::Sqlite(store) => Ok(store),
            Self::Postgres(_) => Err(StoreError::Unsupported(
                "a game server keeps its consumed jtis in a SQLite file, not PostgreSQL",
            )),
        }
    }
}

fn encode(value: &impl serde::Serialize) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes plain data into a Vec")
}

fn decode<T: serde::de::DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}
