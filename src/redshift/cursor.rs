//! Reading a query's rows on the connection, for results too small to be worth an UNLOAD: a
//! cursor (`DECLARE ... CURSOR FOR`, then `FETCH FORWARD n` until it runs dry) inside a
//! transaction on one pooled connection, so the server holds at most `n` rows at a time.
//!
//! Rows arrive as text: Redshift does not implement PostgreSQL's binary result format. The
//! transaction sets `extra_float_digits` (so REAL and DOUBLE PRECISION print every digit they
//! hold), `timezone` UTC (TIMESTAMPTZ prints with `+00`) and `DateStyle` ISO, each `SET LOCAL`,
//! so nothing outlives it on the pooled connection.
//!
//! A cursor dropped before it ran dry (the client went away, an error) cancels what runs and
//! closes its connection instead of returning it to the pool inside an open transaction.

use deadpool_postgres::Object;
use tokio_postgres::SimpleQueryMessage;

use super::{CancelOnDrop, Redshift, RedshiftError, TextRow};
use crate::sql::{Sql, sql};

/// The cursor's name on its connection (one cursor per connection at a time).
const CURSOR: &str = "rsf_direct";

/// One `FETCH`: the result's column names and up to the fetch size of rows.
#[derive(Debug, Clone, Default)]
pub struct TextBatch {
    /// The result's column names, in order (empty when the batch has no rows).
    pub columns: Vec<String>,
    /// The rows, each value Redshift's text or NULL.
    pub rows: Vec<TextRow>,
}

/// An open cursor over a query's rows; see the module docs.
pub struct RowCursor {
    client: Option<Object>,
    fetch: Sql,
    fetch_rows: usize,
    address: String,
    user: String,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    done: bool,
}

impl std::fmt::Debug for RowCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCursor")
            .field("address", &self.address)
            .field("fetch_rows", &self.fetch_rows)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Redshift {
    /// Opens a cursor over `select` on a pooled connection, fetching `fetch_rows` rows at a time
    /// (at least 1). Errors in the query itself (a bad cast, division by zero) may surface here
    /// or at the first fetch.
    pub async fn open_cursor(
        &self,
        select: &Sql,
        fetch_rows: usize,
    ) -> Result<RowCursor, RedshiftError> {
        let client = self.connection().await?;
        let mut cursor = RowCursor {
            client: Some(client),
            fetch: sql!(
                "FETCH FORWARD ",
                Sql::int(fetch_rows.max(1) as u64),
                " FROM ",
                Sql::from(CURSOR)
            ),
            fetch_rows: fetch_rows.max(1),
            address: self.address.clone(),
            user: self.user(),
            tls: self.tls.clone(),
            done: false,
        };
        let open = sql!(
            "BEGIN; SET LOCAL extra_float_digits TO 3; SET LOCAL timezone TO 'UTC'; ",
            "SET LOCAL datestyle TO 'ISO, MDY'; DECLARE ",
            Sql::from(CURSOR),
            " CURSOR FOR ",
            select
        );
        cursor.run(&open).await?;
        Ok(cursor)
    }
}

impl RowCursor {
    /// The next rows, or `None` once the cursor ran dry (it is then closed and its transaction
    /// committed; the connection goes back to the pool).
    pub async fn next_batch(&mut self) -> Result<Option<TextBatch>, RedshiftError> {
        if self.done {
            return Ok(None);
        }
        let fetch = self.fetch.clone();
        let batch = self.run(&fetch).await?;
        if batch.rows.len() < self.fetch_rows {
            self.run(&sql!("CLOSE ", Sql::from(CURSOR), "; COMMIT"))
                .await?;
            self.done = true;
            // The transaction is over: the connection may serve others again.
            drop(self.client.take());
        }
        Ok((!batch.rows.is_empty()).then_some(batch))
    }

    /// Runs `statement` on the cursor's connection, cancelling it on Redshift if dropped first.
    async fn run(&mut self, statement: &Sql) -> Result<TextBatch, RedshiftError> {
        let Some(client) = self.client.as_ref() else {
            return Ok(TextBatch::default());
        };
        let mut guard = CancelOnDrop {
            token: Some(client.cancel_token()),
            tls: self.tls.clone(),
        };
        let result = client.simple_query(statement.as_str()).await;
        guard.token = None;
        let messages = result.map_err(|e| RedshiftError::from_pg(e, &self.address, &self.user))?;
        let mut batch = TextBatch::default();
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) => {
                    batch.columns = columns.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(row) => {
                    if batch.columns.is_empty() {
                        batch.columns =
                            row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    batch.rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        Ok(batch)
    }
}

impl Drop for RowCursor {
    fn drop(&mut self) {
        // Ended early: the transaction is still open. The connection is taken out of the pool and
        // closed (Redshift then rolls the transaction back), never handed to someone else.
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}
