//! The shared store: PostgreSQL, for several verification-server instances (see the
//! [module docs](super)). Every fact is a row of one log table, `vs_facts`; each instance
//! writes its own facts and imports the others' in log order.

use postgres::{Client, NoTls};
use tickwire_core::vs::{Revocation, VerifierState, VsFact, NONCE_HISTORY};

use super::{decode, encode, StoreError};

/// Schema migrations, in order; migration `i` brings `tickwire_schema.version` from `i` to
/// `i + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE vs_facts (
        seq BIGSERIAL PRIMARY KEY,
        instance TEXT NOT NULL,             -- the writing instance, random per process
        kind SMALLINT NOT NULL,             -- 1 revocation, 2 game server revoked, 3 nonce, 4 receipt
        gs_id BIGINT,
        sequence BIGINT,                    -- receipts: the digest sequence
        until_unix_ms BIGINT,               -- Jti revocations: the ticket's expiry
        body BYTEA NOT NULL                 -- postcard VsFact
    );
    CREATE UNIQUE INDEX vs_facts_revocation ON vs_facts (body) WHERE kind = 1;
    CREATE UNIQUE INDEX vs_facts_gs_revoked ON vs_facts (gs_id) WHERE kind = 2;
    CREATE UNIQUE INDEX vs_facts_receipt ON vs_facts (gs_id, sequence) WHERE kind = 4;
    CREATE INDEX vs_facts_nonce ON vs_facts (gs_id, seq) WHERE kind = 3;
"];

/// The advisory lock every writing transaction holds, so that the log's order (`seq`) is the
/// order in which transactions commit and a reader following `seq` misses nothing.
const WRITE_LOCK: i64 = 0x7469_636b_7769_7265; // "tickwire"

const REVOKED: i16 = 1;
const GS_REVOKED: i16 = 2;
const NONCE: i16 = 3;
const RECEIPT: i16 = 4;

/// A PostgreSQL store shared by verification-server instances.
pub struct PgStore {
    client: Client,
    /// This process's name in the log.
    instance: String,
    /// The last log entry imported or loaded.
    cursor: i64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("instance", &self.instance)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`, no TLS: loopback or a private
    /// network) and migrates the schema.
    ///
    /// # Errors
    /// Cannot connect, or the schema is newer than this build's.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut client = Client::connect(url, NoTls)?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS tickwire_schema (version INTEGER NOT NULL)")?;
        let version: i32 = match tx.query_opt("SELECT version FROM tickwire_schema", &[])? {
            Some(row) => row.get(0),
            None => {
                tx.execute("INSERT INTO tickwire_schema (version) VALUES (0)", &[])?;
                0
            }
        };
        let known = MIGRATIONS.len() as i32;
        if version > known {
            return Err(StoreError::TooNew {
                found: i64::from(version),
                known: i64::from(known),
            });
        }
        for migration in &MIGRATIONS[version as usize..] {
            tx.batch_execute(migration)?;
        }
        tx.execute("UPDATE tickwire_schema SET version = $1", &[&known])?;
        tx.commit()?;
        let instance = format!("{:016x}", u64::from_be_bytes(instance_id()));
        Ok(Self {
            client,
            instance,
            cursor: 0,
        })
    }

    /// Everything every instance promised, after forgetting `Jti` revocations that lapsed
    /// before `forget_before_unix_ms`; later [`fetch_foreign`](Self::fetch_foreign) calls
    /// return what is written after this.
    ///
    /// # Errors
    /// PostgreSQL failed, or a row does not decode.
    pub fn load_verifier(&mut self, forget_before_unix_ms: u64) -> Result<VerifierState, StoreError> {
        let forget = forget_before_unix_ms as i64;
        self.client.execute(
            "DELETE FROM vs_facts WHERE kind = $1 AND until_unix_ms < $2",
            &[&REVOKED, &forget],
        )?;
        let mut state = VerifierState::default();
        for row in self
            .client
            .query("SELECT seq, body FROM vs_facts ORDER BY seq", &[])?
        {
            self.cursor = self.cursor.max(row.get(0));
            match decode::<VsFact>("vs_facts", row.get(1))? {
                VsFact::Revoked(revocation) => state.revocations.push(revocation),
                VsFact::GameServerRevoked { gs_id } => state.revoked_game_servers.push(gs_id),
                VsFact::Nonce { gs_id, nonce } => state.nonces.push((gs_id, nonce)),
                VsFact::Receipt {
                    gs_id,
                    digest,
                    receipt,
                } => state.receipts.push((gs_id, digest, receipt)),
                other => {
                    return Err(StoreError::Corrupt {
                        table: "vs_facts",
                        detail: format!("this build cannot restore {other:?}"),
                    })
                }
            }
        }
        Ok(state)
    }

    /// Commits `facts` in one transaction under the write lock, keeping at most
    /// `receipts_per_gs` receipts and [`NONCE_HISTORY`] nonces per game server.
    ///
    /// # Errors
    /// PostgreSQL failed: nothing is written, and the facts must not be sent.
    pub fn persist_facts(&mut self, facts: Vec<VsFact>, receipts_per_gs: usize) -> Result<(), StoreError> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        for fact in facts {
            let body = encode(&fact);
            let (kind, gs_id, sequence, until): (i16, Option<i64>, Option<i64>, Option<i64>) = match &fact {
                VsFact::Revoked(Revocation::Jti { until_unix_ms, .. }) => {
                    (REVOKED, None, None, Some(*until_unix_ms as i64))
                }
                VsFact::Revoked(_) => (REVOKED, None, None, None),
                VsFact::GameServerRevoked { gs_id } => (GS_REVOKED, Some(*gs_id as i64), None, None),
                VsFact::Nonce { gs_id, .. } => (NONCE, Some(*gs_id as i64), None, None),
                VsFact::Receipt { gs_id, digest, .. } => {
                    (RECEIPT, Some(*gs_id as i64), Some(digest.sequence as i64), None)
                }
                other => {
                    return Err(StoreError::Corrupt {
                        table: "vs_facts",
                        detail: format!("this build cannot store {other:?}"),
                    })
                }
            };
            let insert = "INSERT INTO vs_facts (instance, kind, gs_id, sequence, until_unix_ms, body)
                          VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
            let params: [&(dyn postgres::types::ToSql + Sync); 6] =
                [&self.instance, &kind, &gs_id, &sequence, &until, &body];
            let inserted = tx.execute(insert, &params)?;
            if let (0, VsFact::Receipt { digest, .. }) = (inserted, &fact) {
                // A receipt for this sequence exists: the same digest keeps the first receipt
                // (any instance answers a retry with it); a game server that restarted and
                // reused the sequence for new content gets the new one.
                let existing = tx.query_one(
                    "SELECT body FROM vs_facts WHERE kind = $1 AND gs_id = $2 AND sequence = $3",
                    &[&RECEIPT, &gs_id, &sequence],
                )?;
                let same = match decode::<VsFact>("vs_facts", existing.get(0))? {
                    VsFact::Receipt { digest: kept, .. } => kept == *digest,
                    _ => false,
                };
                if !same {
                    tx.execute(
                        "DELETE FROM vs_facts WHERE kind = $1 AND gs_id = $2 AND sequence = $3",
                        &[&RECEIPT, &gs_id, &sequence],
                    )?;
                    tx.execute(insert, &params)?;
                }
            }
            let keep = match kind {
                NONCE => NONCE_HISTORY as i64,
                RECEIPT => receipts_per_gs as i64,
                _ => continue,
            };
            tx.execute(
                "DELETE FROM vs_facts WHERE kind = $1 AND gs_id = $2 AND seq NOT IN
                 (SELECT seq FROM vs_facts WHERE kind = $1 AND gs_id = $2 ORDER BY seq DESC LIMIT $3)",
                &[&kind, &gs_id, &keep],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The facts other instances committed since the last call, in commit order.
    ///
    /// # Errors
    /// PostgreSQL failed, or a row does not decode.
    pub fn fetch_foreign(&mut self) -> Result<Vec<VsFact>, StoreError> {
        let rows = self.client.query(
            "SELECT seq, instance, body FROM vs_facts WHERE seq > $1 ORDER BY seq LIMIT 4096",
            &[&self.cursor],
        )?;
        let mut facts = Vec::new();
        for row in rows {
            self.cursor = row.get(0);
            if row.get::<_, &str>(1) != self.instance {
                facts.push(decode("vs_facts", row.get(2))?);
            }
        }
        Ok(facts)
    }
}

/// A random name for this process in the log.
fn instance_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    if let Ok(random) = tickwire_udp::os::os_random() {
        id.copy_from_slice(&random[..8]);
    }
    id
}
