//! The simple query protocol: a query string without local statements is forwarded whole
//! (with `version()` rewritten) and the backend's answer relayed; one with UNLOAD, EMULATOR or
//! user statements is split and run statement by statement, stopping at the first error, with
//! one ReadyForQuery at the end.
//!
//! May import: `super`, `crate::sql`.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::ReadyForQuery;
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::local::local_statement;
use super::relay::Until;
use super::{Session, backend_lost, no_backend};
use crate::sql::{StatementClass, classify, split_statements};

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let text = query.query;
        let statements = split_statements(&text).ok();
        let classes: Option<Vec<StatementClass>> = statements
            .as_ref()
            .map(|s| s.iter().map(|st| classify(&st.text)).collect());

        let has_local = classes
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| !matches!(c, StatementClass::Forward(_))));
        if !has_local {
            // forward the whole string, rewritten only if a version() call was found
            let rewritten = match (&statements, &classes) {
                (Some(stmts), Some(classes))
                    if stmts
                        .iter()
                        .zip(classes)
                        .any(|(s, c)| matches!(c, StatementClass::Forward(t) if *t != s.text)) =>
                {
                    classes
                        .iter()
                        .filter_map(|c| match c {
                            StatementClass::Forward(t) => Some(t.as_str()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join(";\n")
                }
                _ => text,
            };
            let backend = state.backend.as_mut().ok_or_else(no_backend)?;
            backend
                .send(PgWireFrontendMessage::Query(Query::new(rewritten)))
                .await
                .map_err(backend_lost)?;
            Self::relay(
                client,
                state,
                Until::Ready {
                    forward_ready: true,
                },
            )
            .await?;
            client.flush().await?;
            return Ok(());
        }

        let (Some(statements), Some(classes)) = (statements, classes) else {
            return Ok(());
        };
        for (stmt, class) in statements.iter().zip(classes) {
            match local_statement(class, &stmt.text) {
                Err(sql) => {
                    let backend = state.backend.as_mut().ok_or_else(no_backend)?;
                    backend
                        .send(PgWireFrontendMessage::Query(Query::new(sql)))
                        .await
                        .map_err(backend_lost)?;
                    if Self::relay(
                        client,
                        state,
                        Until::Ready {
                            forward_ready: false,
                        },
                    )
                    .await?
                    {
                        break;
                    }
                }
                Ok(local) => {
                    let result = self.run_local(state, &local).await;
                    if !Self::report(client, result).await? {
                        break;
                    }
                }
            }
        }
        let status = state.backend.as_ref().ok_or_else(no_backend)?.status;
        client.set_transaction_status(status);
        client
            .feed(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // on_query is overridden: queries never reach pgwire's own execution path
        Err(PgWireError::NotReadyForQuery)
    }
}
