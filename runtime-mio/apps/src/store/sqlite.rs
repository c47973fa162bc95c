//! The embedded store: one SQLite file (see the [module docs](super)).

use std::path::Path;

use rusqlite::{params, Connection, Transaction};

use super::{decode, encode, StoreError};
use tickwire_core::vs::{
    ProtectedReceipt, Revocation, TranscriptDigest, VerifierState, VsFact, NONCE_HISTORY, VS_NONCE_LEN,
};

/// Schema migrations, in order; migration `i` brings `user_version` from `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &["
    CREATE TABLE revocations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        body BLOB NOT NULL UNIQUE,          -- postcard Revocation
        until_unix_ms INTEGER               -- Jti revocations: the ticket's expiry; else NULL
    );
    CREATE TABLE revoked_game_servers (gs_id INTEGER PRIMARY KEY);
    CREATE TABLE nonces (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        gs_id INTEGER NOT NULL,
        nonce BLOB NOT NULL
    );
    CREATE INDEX nonces_by_gs ON nonces (gs_id, id);
    CREATE TABLE receipts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        gs_id INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        digest BLOB NOT NULL,               -- postcard TranscriptDigest
        receipt BLOB NOT NULL,              -- postcard ProtectedReceipt
        UNIQUE (gs_id, sequence)
    );
    CREATE TABLE consumed_jtis (
        jti BLOB PRIMARY KEY,
        until_unix_ms INTEGER NOT NULL
    );
"];

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and migrates it to this build's schema.
    ///
    /// # Errors
    /// [`StoreError`]: not a database, locked, or written by a newer version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Self { conn })
    }

    /// The schema version of the open store.
    ///
    /// # Errors
    /// SQLite failed.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// Everything a verifier promised, for [`Verifier::restore`](tickwire_core::vs::Verifier::restore),
    /// after forgetting `Jti` revocations that lapsed before `forget_before_unix_ms`.
    ///
    /// # Errors
    /// SQLite failed, or a row does not decode.
    pub fn load_verifier(&mut self, forget_before_unix_ms: u64) -> Result<VerifierState, StoreError> {
        self.conn.execute(
            "DELETE FROM revocations WHERE until_unix_ms IS NOT NULL AND until_unix_ms < ?1",
            params![forget_before_unix_ms as i64],
        )?;
        let mut state = VerifierState::default();
        let mut rows = self.conn.prepare("SELECT body FROM revocations ORDER BY id")?;
        for body in rows.query_map([], |row| row.get::<_, Vec<u8>>(0))? {
            state.revocations.push(decode("revocations", &body?)?);
        }
        let mut rows = self
            .conn
            .prepare("SELECT gs_id FROM revoked_game_servers ORDER BY gs_id")?;
        for gs_id in rows.query_map([], |row| row.get::<_, i64>(0))? {
            state.revoked_game_servers.push(gs_id? as u64);
        }
        let mut rows = self.conn.prepare("SELECT gs_id, nonce FROM nonces ORDER BY id")?;
        for row in rows.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))? {
            let (gs_id, nonce) = row?;
            let nonce: [u8; VS_NONCE_LEN] = nonce.try_into().map_err(|_| StoreError::Corrupt {
                table: "nonces",
                detail: "a nonce is not 32 bytes".into(),
            })?;
            state.nonces.push((gs_id as u64, nonce));
        }
        let mut rows = self
            .conn
            .prepare("SELECT gs_id, digest, receipt FROM receipts ORDER BY id")?;
        let receipts = rows.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        for row in receipts {
            let (gs_id, digest, receipt) = row?;
            let digest: TranscriptDigest = decode("receipts", &digest)?;
            let receipt: ProtectedReceipt = decode("receipts", &receipt)?;
            state.receipts.push((gs_id as u64, digest, receipt));
        }
        Ok(state)
    }

    /// Commits `facts` in one durable transaction, keeping at most `receipts_per_gs` receipts
    /// per game server (the verifier's `receipt_cache`). Nothing is written if it fails.
    ///
    /// # Errors
    /// SQLite failed (disk full, I/O error): the facts are not durable and must not be sent.
    pub fn persist_facts(
        &mut self,
        facts: impl IntoIterator<Item = VsFact>,
        receipts_per_gs: usize,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for fact in facts {
            persist_fact(&tx, fact, receipts_per_gs)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The `jti`s a game server consumed that are still live at `now_unix_ms` (the expired are
    /// forgotten), for `TicketVerifier::restore_consumed`.
    ///
    /// # Errors
    /// SQLite failed, or a row does not decode.
    pub fn load_consumed(&mut self, now_unix_ms: u64) -> Result<Vec<([u8; 16], u64)>, StoreError> {
        self.conn.execute(
            "DELETE FROM consumed_jtis WHERE until_unix_ms < ?1",
            params![now_unix_ms as i64],
        )?;
        let mut rows = self
            .conn
            .prepare("SELECT jti, until_unix_ms FROM consumed_jtis ORDER BY until_unix_ms")?;
        let mut out = Vec::new();
        for row in rows.query_map([], |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?)))? {
            let (jti, until) = row?;
            let jti: [u8; 16] = jti.try_into().map_err(|_| StoreError::Corrupt {
                table: "consumed_jtis",
                detail: "a jti is not 16 bytes".into(),
            })?;
            out.push((jti, until as u64));
        }
        Ok(out)
    }

    /// Commits consumed `jti`s (each with the Unix ms until which it must be refused) in one
    /// durable transaction, forgetting those expired before `now_unix_ms`.
    ///
    /// # Errors
    /// SQLite failed: the `jti`s are not durable and their Accepts must not be sent.
    pub fn persist_consumed(
        &mut self,
        jtis: impl IntoIterator<Item = ([u8; 16], u64)>,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for (jti, until) in jtis {
            tx.execute(
                "INSERT INTO consumed_jtis (jti, until_unix_ms) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO UPDATE SET until_unix_ms = max(until_unix_ms, excluded.until_unix_ms)",
                params![jti.as_slice(), until as i64],
            )?;
        }
        tx.execute(
            "DELETE FROM consumed_jtis WHERE until_unix_ms < ?1",
            params![now_unix_ms as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Receipts stored for game server `gs_id` and session `session_id`, by sequence: the
    /// audit trail of that session's transcript.
    ///
    /// # Errors
    /// SQLite failed, or a row does not decode.
    pub fn receipts_of_session(
        &self,
        gs_id: u64,
        session_id: u64,
    ) -> Result<Vec<(TranscriptDigest, ProtectedReceipt)>, StoreError> {
        let mut rows = self
            .conn
            .prepare("SELECT digest, receipt FROM receipts WHERE gs_id = ?1 ORDER BY sequence")?;
        let mut out = Vec::new();
        for row in rows.query_map(params![gs_id as i64], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })? {
            let (digest, receipt) = row?;
            let digest: TranscriptDigest = decode("receipts", &digest)?;
            if digest.session_id == session_id {
                out.push((digest, decode("receipts", &receipt)?));
            }
        }
        Ok(out)
    }

    /// How many rows each table holds, for tests and operators.
    ///
    /// # Errors
    /// SQLite failed.
    pub fn row_counts(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let mut out = Vec::new();
        for table in [
            "revocations",
            "revoked_game_servers",
            "nonces",
            "receipts",
            "consumed_jtis",
        ] {
            let count: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))?;
            out.push((table, count as u64));
        }
        Ok(out)
    }
}

fn persist_fact(tx: &Transaction<'_>, fact: VsFact, receipts_per_gs: usize) -> Result<(), StoreError> {
    match fact {
        VsFact::Revoked(revocation) => {
            let until = match revocation {
                Revocation::Jti { until_unix_ms, .. } => Some(until_unix_ms as i64),
                _ => None,
            };
            tx.execute(
                "INSERT OR IGNORE INTO revocations (body, until_unix_ms) VALUES (?1, ?2)",
                params![encode(&revocation), until],
            )?;
        }
        VsFact::GameServerRevoked { gs_id } => {
            tx.execute(
                "INSERT OR IGNORE INTO revoked_game_servers (gs_id) VALUES (?1)",
                params![gs_id as i64],
            )?;
        }
        VsFact::Nonce { gs_id, nonce } => {
            tx.execute(
                "INSERT INTO nonces (gs_id, nonce) VALUES (?1, ?2)",
                params![gs_id as i64, nonce.as_slice()],
            )?;
            tx.execute(
                "DELETE FROM nonces WHERE gs_id = ?1 AND id NOT IN
                 (SELECT id FROM nonces WHERE gs_id = ?1 ORDER BY id DESC LIMIT ?2)",
                params![gs_id as i64, NONCE_HISTORY as i64],
            )?;
        }
        VsFact::Receipt {
            gs_id,
            digest,
            receipt,
        } => {
            // A reused sequence with new content (a game server that restarted) replaces the
            // old receipt, as in the verifier's cache.
            tx.execute(
                "INSERT OR REPLACE INTO receipts (gs_id, sequence, digest, receipt) VALUES (?1, ?2, ?3, ?4)",
                params![
                    gs_id as i64,
                    digest.sequence as i64,
                    encode(&digest),
                    encode(&receipt)
                ],
            )?;
            tx.execute(
                "DELETE FROM receipts WHERE gs_id = ?1 AND id NOT IN
                 (SELECT id FROM receipts WHERE gs_id = ?1 ORDER BY sequence DESC LIMIT ?2)",
                params![gs_id as i64, receipts_per_gs as i64],
            )?;
        }
        other => {
            return Err(StoreError::Corrupt {
                table: "facts",
                detail: format!("this build cannot store {other:?}"),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tickwire-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.db")
    }

    #[test]
    fn facts_survive_a_reopen_bounded_and_pruned() {
        let path = temp_path("facts");
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mut facts = vec![
            VsFact::Revoked(Revocation::Client { client_id: 9 }),
            VsFact::Revoked(Revocation::Jti {
                jti: [1; 16],
                until_unix_ms: 1_000,
            }),
            VsFact::Revoked(Revocation::Client { client_id: 9 }),
            VsFact::GameServerRevoked { gs_id: 5 },
        ];
        for n in 0..NONCE_HISTORY as u8 + 3 {
            facts.push(VsFact::Nonce {
                gs_id: 7,
                nonce: [n; VS_NONCE_LEN],
            });
        }
        store.persist_facts(facts, 2).unwrap();
        drop(store);

        let mut store = SqliteStore::open(&path).unwrap();
        let state = store.load_verifier(2_000).unwrap();
        assert_eq!(
            state.revocations,
            vec![Revocation::Client { client_id: 9 }],
            "duplicates once, the lapsed jti forgotten"
        );
        assert_eq!(state.revoked_game_servers, vec![5]);
        assert_eq!(
            state.nonces.len(),
            NONCE_HISTORY,
            "the newest nonces per game server"
        );
        assert_eq!(state.nonces.first().unwrap().1, [3; VS_NONCE_LEN]);
    }

    #[test]
    fn consumed_jtis_are_kept_until_their_deadline() {
        let path = temp_path("jtis");
        let mut store = SqliteStore::open(&path).unwrap();
        store
            .persist_consumed([([1; 16], 5_000), ([2; 16], 9_000)], 1_000)
            .unwrap();
        store.persist_consumed([([1; 16], 4_000)], 1_000).unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.load_consumed(6_000).unwrap(),
            vec![([2; 16], 9_000)],
            "the later deadline of a jti kept; the expired forgotten"
        );
        assert_eq!(store.load_consumed(1_000).unwrap(), vec![([2; 16], 9_000)]);
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused() {
        let path = temp_path("newer");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let error = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::TooNew { found: 99, .. }), "{error}");
        assert!(error.to_string().contains("newer"));
    }
}
