//! [`FlightRoutes`]: the Flight service as tonic serves it, except DoGet, whose answer is written
//! here as gRPC frames of the [`Message`]s DoGet produces, each body buffer a chunk of its own
//! (see [`super::wire`]), instead of going through tonic's encoder, which copies every message
//! into its buffer. The request, the statuses and the trailers are what tonic would produce:
//! a failure before the first message is a trailers-only answer, one later ends the stream's
//! trailers.
//!
//! Imports: the sibling service and wire modules only.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use arrow_flight::Ticket;
use arrow_flight::flight_service_server::FlightServiceServer;
use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use prost::Message as _;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

use super::RedshiftFlightService;
use super::wire::Message;

/// The path of DoGet, the one RPC answered here.
const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

/// The Flight service with DoGet's answers written without copies. Serve this in place of
/// `FlightServiceServer::new(service)`; every other RPC goes to that.
#[derive(Debug, Clone)]
pub struct FlightRoutes {
    service: RedshiftFlightService,
    others: FlightServiceServer<RedshiftFlightService>,
    max_request_bytes: usize,
}

impl FlightRoutes {
    /// Routes to `service`, accepting requests up to `max_request_bytes`.
    pub fn new(service: RedshiftFlightService, max_request_bytes: usize) -> Self {
        Self {
            others: FlightServiceServer::new(service.clone())
                .max_decoding_message_size(max_request_bytes)
                .max_encoding_message_size(usize::MAX),
            service,
            max_request_bytes,
        }
    }
}

impl NamedService for FlightRoutes {
    const NAME: &'static str = <FlightServiceServer<RedshiftFlightService> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for FlightRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != DO_GET {
            return Box::pin(self.others.call(request));
        }
        let service = self.service.clone();
        let limit = self.max_request_bytes;
        Box::pin(async move { Ok(do_get(service, request, limit).await) })
    }
}

async fn do_get(
    service: RedshiftFlightService,
    request: http::Request<Body>,
    limit: usize,
) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let ticket = match read_request(body, limit).await {
        Ok(ticket) => ticket,
        Err(status) => return status.into_http(),
    };
    let request = tonic::Request::from_http(http::Request::from_parts(parts, ticket));
    match service.do_get_messages(request).await {
        Ok(messages) => {
            let mut response = http::Response::new(Body::new(GrpcBody {
                messages,
                chunks: VecDeque::new(),
                done: false,
            }));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The one gRPC message of a unary request, decoded as a [`Ticket`].
async fn read_request(body: Body, limit: usize) -> Result<Ticket, Status> {
    let mut bytes = Limited::new(body, limit + 5)
        .collect()
        .await
        .map_err(|e| match e.downcast::<Status>() {
            Ok(status) => *status,
            Err(e) => Status::resource_exhausted(format!("the DoGet request is too large: {e}")),
        })?
        .to_bytes();
    if bytes.len() < 5 {
        return Err(Status::invalid_argument(
            "DoGet: the request has no message",
        ));
    }
    if bytes.get_u8() != 0 {
        return Err(Status::unimplemented(
            "DoGet: compressed requests are not accepted (send the ticket uncompressed)",
        ));
    }
    let len = bytes.get_u32() as usize;
    if len != bytes.len() {
        return Err(Status::invalid_argument(
            "DoGet: the request must be exactly one message",
        ));
    }
    Ticket::decode(bytes).map_err(|e| Status::invalid_argument(format!("DoGet: bad ticket: {e}")))
}

/// DoGet's answer body: each message's chunks, then the trailers with the final status.
struct GrpcBody {
    messages: BoxStream<'static, Result<Message, Status>>,
    chunks: VecDeque<Bytes>,
    done: bool,
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.clear();
        let fallback = Status::internal("the stream failed (its status was not valid in a header)");
        let _ = fallback.add_header(&mut headers);
    }
    headers
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.chunks.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.messages.poll_next_unpin(cx)) {
                Some(Ok(message)) => this.chunks.extend(message.into_grpc()),
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))));
                }
                None => {
                    this.done = true;
                    let ok = Status::new(tonic::Code::Ok, "");
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&ok)))));
                }
            }
        }
    }
}
