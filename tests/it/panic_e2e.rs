//! Client input must never panic the server, and a panic that happens anyway costs one call only
//! (issue 11): a cursor whose TIMESTAMPTZ bound holds a multi-byte character gets
//! INVALID_ARGUMENT, and a panicking handler served through the server's own gRPC stack
//! (`server::grpc_server`) answers INTERNAL while other calls on the same connection carry on.

use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use redshift_flight::panics::{PANIC_MESSAGE, catch_stream_panics};
use redshift_flight::plan::cursor::Cursor;
use tokio::sync::{Mutex, oneshot};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::common::{TestServer, pg, status, unique};

#[tokio::test]
async fn a_multi_byte_character_in_a_cursor_bound_is_invalid_argument() {
    let schema = unique("mbcursor");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.t (id int primary key, updated_at timestamptz); \
             INSERT INTO {schema}.t VALUES (1, TIMESTAMPTZ '2024-01-01 00:00:00+00');"
        ))
        .await
        .unwrap();
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for bound in [
        "2024-01-01 00:00:00+1é1",
        "2024-01-01 00:00:00+1é",
        "2024-01-01 00:00:00+é:00",
        "2024-01-01 00:00:00+05:3€",
        "2024-01-01 0é:00:00+00",
        "2é24-01-01 00:00:00+00",
    ] {
        let cursor = Cursor {
            schema: schema.clone(),
            table: "t".into(),
            key: "updated_at".into(),
            key_type: "timestamp with time zone".into(),
            bound: bound.into(),
        };
        let command = serde_json::json!({
            "table": format!("{schema}.t"),
            "mode": "incremental",
            "replication_key": "updated_at",
            "cursor": cursor.encode(),
        });
        let (code, message) = status(
            client
                .get_flight_info(FlightDescriptor::new_cmd(command.to_string()))
                .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{bound}: {message}");
        assert!(message.contains("invalid cursor"), "{bound}: {message}");
    }
    // The same connection still serves.
    let schema_result = client
        .get_schema(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .expect("GetSchema after the rejected cursors");
    assert_eq!(
        schema_result
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "updated_at"]
    );
    server.stop().await;
}

/// A Flight service whose GetFlightInfo panics, whose DoGet stream panics after one message, and
/// whose ListFlights stream stays open until released: enough to show that one call's panic
/// leaves the others on the same connection alone.
struct Panicky {
    release: Mutex<Option<oneshot::Receiver<()>>>,
}

type Boxed<T> = BoxStream<'static, Result<T, Status>>;

#[tonic::async_trait]
impl FlightService for Panicky {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = Boxed<FlightInfo>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;
    type DoExchangeStream = Boxed<FlightData>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let release = self.release.lock().await.take().expect("one ListFlights");
        let first = futures::stream::once(async { Ok(FlightInfo::default()) });
        let second = futures::stream::once(async move {
            let _ = release.await;
            Ok(FlightInfo::default())
        });
        Ok(Response::new(first.chain(second).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        // As `is_offset` did with `+1é1`: byte-slicing client text (byte 3 is inside `é`).
        let text = String::from_utf8_lossy(&request.into_inner().cmd).into_owned();
        let sliced = &text[..3];
        Ok(Response::new(FlightInfo {
            app_metadata: sliced.as_bytes().to_vec().into(),
            ..FlightInfo::default()
        }))
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Ok(Response::new(SchemaResult::default()))
    }

    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let stream = futures::stream::iter([1, 2]).map(|i| {
            assert!(i < 2, "panic while producing message {i}");
            Ok(FlightData::default())
        });
        // What the real DoGet does with its stream.
        Ok(Response::new(catch_stream_panics(stream, "test").boxed()))
    }

    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put"))
    }

    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }
}

#[tokio::test]
async fn a_panicking_call_is_internal_and_the_connection_lives_on() {
    let (release_tx, release_rx) = oneshot::channel();
    let service = Panicky {
        release: Mutex::new(Some(release_rx)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        redshift_flight::server::grpc_server()
            .add_service(FlightServiceServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stop_rx.await;
                },
            ),
    );
    // One channel: every call below shares one HTTP/2 connection.
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightServiceClient::new(channel);

    // A stream is open on the connection while the other call panics.
    let mut open = client
        .list_flights(Criteria::default())
        .await
        .unwrap()
        .into_inner();
    assert!(open.message().await.unwrap().is_some());

    let error = client
        .get_flight_info(FlightDescriptor::new_cmd("+1é1"))
        .await
        .expect_err("the handler panics");
    assert_eq!(
        (error.code(), error.message()),
        (Code::Internal, PANIC_MESSAGE)
    );

    // A stream that panics part way ends with INTERNAL after what it had sent.
    let results: Vec<Result<FlightData, Status>> = client
        .do_get(Ticket::default())
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].is_ok());
    let error = results[1].as_ref().unwrap_err();
    assert_eq!(
        (error.code(), error.message()),
        (Code::Internal, PANIC_MESSAGE)
    );

    // The open stream and new calls go on as if nothing happened.
    client
        .get_schema(FlightDescriptor::new_path(vec!["x".into()]))
        .await
        .expect("a new call on the same connection");
    release_tx.send(()).unwrap();
    let rest: Vec<FlightInfo> = tokio::time::timeout(Duration::from_secs(10), open.try_collect())
        .await
        .expect("the open stream finishes")
        .expect("the open stream was not reset");
    assert_eq!(rest.len(), 1);

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
