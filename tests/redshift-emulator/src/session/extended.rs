//! The extended query protocol: Parse/Bind/Describe/Execute/Close are forwarded to the
//! backend's prepared statements and portals of the same names, their responses relayed at
//! Flush/Sync; UNLOAD, EMULATOR and user statements become local statements and portals the
//! emulator answers in order (pending backend responses are drained first), honouring "skip
//! until Sync" after an error.
//!
//! May import: `super`, `crate::sql`.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::Portal;
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::Response;
use pgwire::api::stmt::NoopQueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Flush, Parse, ParseComplete,
    Sync as PgSync, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::local::local_statement;
use super::relay::Until;
use super::{Session, backend_lost, no_backend};
use crate::sql::classify;

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(NoopQueryParser)
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let name = message.name.clone().unwrap_or_default();
        match local_statement(classify(&message.query), &message.query) {
            Err(sql) => {
                state.local_statements.remove(&name);
                let parse = Parse::new(message.name, sql, message.type_oids);
                Self::forward(state, PgWireFrontendMessage::Parse(parse)).await
            }
            Ok(local) => {
                Self::drain(client, state).await?;
                if state.skipping {
                    return Ok(());
                }
                state.local_statements.insert(name, local);
                client
                    .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
                    .await?;
                Ok(())
            }
        }
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let statement = message.statement_name.clone().unwrap_or_default();
        let portal = message.portal_name.clone().unwrap_or_default();
        match state.local_statements.get(&statement).cloned() {
            None => {
                state.local_portals.remove(&portal);
                Self::forward(state, PgWireFrontendMessage::Bind(message)).await
            }
            Some(local) => {
                Self::drain(client, state).await?;
                if state.skipping {
                    return Ok(());
                }
                state.local_portals.insert(portal, local);
                client
                    .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
                    .await?;
                Ok(())
            }
        }
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let name = message.name.clone().unwrap_or_default();
        let is_statement = message.target_type == TARGET_TYPE_BYTE_STATEMENT;
        let local = if is_statement {
            state.local_statements.contains_key(&name)
        } else {
            state.local_portals.contains_key(&name)
        };
        if !local {
            return Self::forward(state, PgWireFrontendMessage::Describe(message)).await;
        }
        Self::drain(client, state).await?;
        if state.skipping {
            return Ok(());
        }
        if is_statement {
            client
                .feed(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(vec![]),
                ))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::NoData(NoData::new()))
            .await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let portal = message.name.clone().unwrap_or_default();
        let Some(local) = state.local_portals.get(&portal).cloned() else {
            return Self::forward(state, PgWireFrontendMessage::Execute(message)).await;
        };
        Self::drain(client, state).await?;
        if state.skipping {
            return Ok(());
        }
        let result = self.run_local(state, &local).await;
        if !Self::report(client, result).await? {
            state.skipping = true;
        }
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let name = message.name.clone().unwrap_or_default();
        let removed = if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            state.local_statements.remove(&name)
        } else {
            state.local_portals.remove(&name)
        };
        if removed.is_none() {
            return Self::forward(state, PgWireFrontendMessage::Close(message)).await;
        }
        Self::drain(client, state).await?;
        if state.skipping {
            return Ok(());
        }
        client
            .feed(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_flush<C>(&self, client: &mut C, _message: Flush) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        Self::drain(client, &mut guard).await?;
        client.flush().await?;
        Ok(())
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        backend
            .send(PgWireFrontendMessage::Sync(PgSync::new()))
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
        state.pending = 0;
        state.skipping = false;
        // the unnamed portal ends with the transaction-less sync
        state.local_portals.remove("");
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // on_execute is overridden: portals never reach pgwire's own execution path
        Err(PgWireError::NotReadyForQuery)
    }
}
