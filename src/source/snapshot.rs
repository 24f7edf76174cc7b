//! One consistent point in time shared by every reader: a coordinator transaction exports its
//! snapshot, and each worker connection imports it, so an export taken while Airflow runs sees
//! every table as of the same instant.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::source::{DatabaseUrl, connect};

/// `work_mem` of the reading sessions. Joins to `dag_run` are hash joins; below this (times
/// `hash_mem_multiplier`, 2 by default) their hash table stays in memory instead of spilling
/// both sides to temporary files, which made PostgreSQL's side of a 2M-row task_instance
/// export about twice as expensive. The server allocates it only while a join runs.
pub const READER_WORK_MEM: &str = "64MB";

/// The exported snapshot; its transaction stays open for as long as this value lives.
pub struct Snapshot {
    /// Snapshot identifier for `SET TRANSACTION SNAPSHOT`.
    pub id: String,
    /// Transaction start time, RFC 3339 UTC: the instant the export reflects.
    pub taken_at: String,
    /// The coordinator connection holding the snapshot open.
    client: Client,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("id", &self.id)
            .field("taken_at", &self.taken_at)
            .finish()
    }
}

impl Snapshot {
    /// Opens a read-only repeatable-read transaction on `client` and exports its snapshot.
    ///
    /// # Errors
    /// [`Error::Query`] when the server refuses (e.g. a hot standby without snapshot export).
    pub async fn export(client: Client) -> Result<Snapshot> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(Error::query("snapshot transaction"))?;
        let row = client
            .query_one(
                "SELECT pg_export_snapshot(), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                &[],
            )
            .await
            .map_err(Error::query("pg_export_snapshot()"))?;
        Ok(Snapshot {
            id: row.get(0),
            taken_at: row.get(1),
            client,
        })
    }

    /// The coordinator connection, inside the snapshot transaction (for planning queries that
    /// must see the same data).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A new connection whose transaction sees exactly this snapshot, tuned for long COPY
    /// reads: [`READER_WORK_MEM`], no JIT (compiling each range's query cost more than it
    /// saved) and no parallel workers (`--jobs` already sets how many backends read).
    ///
    /// # Errors
    /// Connection failures, or the server refusing the snapshot.
    pub async fn attach(&self, url: &DatabaseUrl) -> Result<Client> {
        let client = connect(url).await?;
        let id = self.id.replace('\'', "''");
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
            ))
            .await
            .map_err(Error::query("SET TRANSACTION SNAPSHOT"))?;
        // Settings older servers lack are skipped (`jit` is 11+, parallel query 9.6+).
        client
            .batch_execute(&format!(
                "SELECT set_config('work_mem', '{READER_WORK_MEM}', true);
                 SELECT set_config('max_parallel_workers_per_gather', '0', true)
                   WHERE current_setting('server_version_num')::int >= 90600;
                 SELECT set_config('jit', 'off', true)
                   WHERE current_setting('server_version_num')::int >= 110000;"
            ))
            .await
            .map_err(Error::query("reader session settings"))?;
        Ok(client)
    }
}
