//! DoGet's messages on their way to the socket without copies. [`IpcEncoder`] turns record
//! batches into [`Message`]s with arrow-ipc's `StreamEncoder`, which leaves every uncompressed
//! Arrow buffer where the Parquet decoder put it (an `Arc`-backed `Buffer`, handed over as
//! `Bytes`); [`Message::into_grpc`] frames one as a gRPC message of `FlightData` by writing the
//! protobuf field keys and lengths around those buffers, so the body is never gathered into one
//! `data_body` (arrow-flight's encoder copies every buffer into one) nor into tonic's encode
//! buffer (prost copies `bytes` fields). hyper's HTTP/2 sends chunks over 256 bytes as they are.
//!
//! Imports: nothing of the crate.

use std::collections::VecDeque;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::ipc::writer::{
    DictionaryHandling, DictionaryTracker, IpcDataGenerator, IpcWriteOptions, StreamEncoder,
};
use arrow_flight::FlightData;
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

/// Largest Arrow payload put in one message: larger batches are split by rows, as arrow-flight's
/// encoder does, so that clients' default 4 MiB receive limit holds with room to spare.
pub(crate) const MAX_MESSAGE_BYTES: usize = 2 << 20;

/// Body pieces smaller than this are copied into the chunk before them instead of going out as
/// chunks of their own: each chunk is an HTTP/2 DATA frame, whose handling (flow control, the
/// connection task's queue) costs about what copying 32 KiB does. Validity bitmaps, padding and
/// the columns of a wide table's batch are mostly small; the large buffers still go out as they
/// are.
const COPY_BELOW: usize = 32 * 1024;

/// The protobuf keys of `FlightData`'s fields (field number << 3 | length-delimited).
const KEY_DESCRIPTOR: u64 = 1 << 3 | 2;
const KEY_HEADER: u64 = 2 << 3 | 2;
const KEY_APP_METADATA: u64 = 3 << 3 | 2;
const KEY_BODY: u64 = 1000 << 3 | 2;

/// One `FlightData`, its body in the pieces the encoder produced (not concatenated).
#[derive(Debug, Clone, Default)]
pub(crate) struct Message {
    /// An encoded `FlightDescriptor`, if any (DoGet answers carry none).
    pub(crate) descriptor: Option<Bytes>,
    /// The IPC `Message` flatbuffer.
    pub(crate) header: Bytes,
    /// `app_metadata`.
    pub(crate) app_metadata: Bytes,
    /// The IPC body, in order.
    pub(crate) body: Vec<Bytes>,
}

impl Message {
    /// Bytes of header and body (what `bytes_sent` counts).
    pub(crate) fn payload_len(&self) -> usize {
        self.header.len() + self.body_len()
    }

    /// Bytes of the body.
    pub(crate) fn body_len(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }

    /// The gRPC message (a 5-byte prefix, then `FlightData` in protobuf) as chunks: the prefix,
    /// the field keys and the small header in one, then the body's pieces, each large one as it
    /// is and runs of small ones ([`COPY_BELOW`]) copied together.
    pub(crate) fn into_grpc(self) -> Vec<Bytes> {
        let body_len = self.body_len();
        let mut fields = BytesMut::with_capacity(32 + self.header.len() + self.app_metadata.len());
        for (key, value) in [
            (KEY_DESCRIPTOR, self.descriptor.as_ref()),
            (KEY_HEADER, Some(&self.header)),
            (KEY_APP_METADATA, Some(&self.app_metadata)),
        ] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                prost::encoding::encode_varint(key, &mut fields);
                prost::encoding::encode_varint(value.len() as u64, &mut fields);
                fields.put_slice(value);
            }
        }
        if body_len > 0 {
            prost::encoding::encode_varint(KEY_BODY, &mut fields);
            prost::encoding::encode_varint(body_len as u64, &mut fields);
        }
        let mut small = BytesMut::with_capacity(5 + fields.len() + COPY_BELOW);
        small.put_u8(0); // not compressed
        small.put_u32((fields.len() + body_len) as u32);
        small.put_slice(&fields);
        let mut chunks = Vec::new();
        for piece in self.body {
            if piece.len() < COPY_BELOW {
                small.extend_from_slice(&piece);
            } else {
                if !small.is_empty() {
                    chunks.push(small.split().freeze());
                }
                chunks.push(piece);
            }
        }
        if !small.is_empty() {
            chunks.push(small.freeze());
        }
        chunks
    }

    /// The message as one `FlightData`, its body gathered (a copy): for tonic's own encoder,
    /// when the service is served without [`super::route`].
    pub(crate) fn into_flight_data(self) -> FlightData {
        let data_body = match <[Bytes; 1]>::try_from(self.body) {
            Ok([one]) => one,
            Err(pieces) => pieces.concat().into(),
        };
        FlightData {
            flight_descriptor: self
                .descriptor
                .and_then(|d| arrow_flight::FlightDescriptor::decode(d).ok()),
            data_header: self.header,
            app_metadata: self.app_metadata,
            data_body,
        }
    }
}

impl From<FlightData> for Message {
    fn from(data: FlightData) -> Self {
        Self {
            descriptor: data.flight_descriptor.map(|d| d.encode_to_vec().into()),
            header: data.data_header,
            app_metadata: data.app_metadata,
            body: vec![data.data_body],
        }
    }
}

/// Record batches to [`Message`]s: the schema first, then per batch any dictionaries that
/// changed (sent whole, not as deltas) and the batch, split by rows above
/// [`MAX_MESSAGE_BYTES`].
pub(crate) struct IpcEncoder {
    encoder: StreamEncoder,
    options: IpcWriteOptions,
    schema: Schema,
    /// Whether the stream encoder has yet to emit its own schema message (its first output).
    schema_pending: bool,
}

impl std::fmt::Debug for IpcEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcEncoder").finish_non_exhaustive()
    }
}

impl IpcEncoder {
    /// An encoder of batches of `schema`.
    pub(crate) fn new(schema: &Schema) -> Result<Self, ArrowError> {
        let options =
            IpcWriteOptions::default().with_dictionary_handling(DictionaryHandling::Resend);
        Ok(Self {
            encoder: StreamEncoder::try_new_with_options(schema, options.clone())?,
            options,
            schema: schema.clone(),
            schema_pending: true,
        })
    }

    /// The schema message, which starts the stream (sent before the first batch is decoded).
    /// Its dictionary ids are the ones the stream encoder assigns: both number the schema's
    /// dictionary fields in the same order.
    pub(crate) fn schema_message(&self) -> Message {
        let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            &self.schema,
            &mut DictionaryTracker::new(false),
            &self.options,
        );
        Message {
            header: encoded.ipc_message.into(),
            ..Message::default()
        }
    }

    /// The messages of one batch: changed dictionaries, then the batch (in several messages if
    /// it is larger than [`MAX_MESSAGE_BYTES`]).
    pub(crate) fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Message>, ArrowError> {
        let mut messages = Vec::new();
        for part in split(batch) {
            let buffers = self.encoder.encode(&part)?;
            let mut stream = Rope::new(buffers.into_iter().map(Bytes::from));
            while let Some(message) = stream.next_message()? {
                messages.push(message);
            }
        }
        // The stream encoder opens with the schema, already sent by `schema_message`: only its
        // first message is looked at, not every message of the stream.
        if std::mem::take(&mut self.schema_pending)
            && messages.first().is_some_and(|m| is_schema(&m.header))
        {
            messages.remove(0);
        }
        Ok(messages)
    }
}

fn is_schema(header: &[u8]) -> bool {
    arrow::ipc::root_as_message(header)
        .is_ok_and(|m| m.header_type() == arrow::ipc::MessageHeader::Schema)
}

/// `batch` in slices of at most [`MAX_MESSAGE_BYTES`] of Arrow memory (one slice if smaller).
fn split(batch: &RecordBatch) -> Vec<RecordBatch> {
    let size = batch.get_array_memory_size();
    let rows = batch.num_rows();
    let parts = size.div_ceil(MAX_MESSAGE_BYTES).clamp(1, rows.max(1));
    if parts == 1 {
        return vec![batch.clone()];
    }
    let per_part = rows.div_ceil(parts);
    (0..rows)
        .step_by(per_part)
        .map(|start| batch.slice(start, per_part.min(rows - start)))
        .collect()
}

/// The encoder's output, an IPC stream in pieces, read as messages without joining the pieces.
struct Rope {
    pieces: VecDeque<Bytes>,
}

/// The IPC stream's continuation marker before each message's metadata length.
const CONTINUATION: u32 = 0xFFFF_FFFF;

impl Rope {
    fn new(pieces: impl Iterator<Item = Bytes>) -> Self {
        Self {
            pieces: pieces.filter(|p| !p.is_empty()).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The next `n` bytes, as the pieces (or parts of pieces) they are in.
    fn take(&mut self, mut n: usize) -> Result<Vec<Bytes>, ArrowError> {
        let mut taken = Vec::new();
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else {
                return Err(ArrowError::IpcError(
                    "the IPC encoder's output ended inside a message".into(),
                ));
            };
            if front.len() <= n {
                n -= front.len();
                taken.extend(self.pieces.pop_front());
            } else {
                taken.push(front.split_to(n));
                n = 0;
            }
        }
        Ok(taken)
    }

    /// The next `n` bytes in one piece (joined if they span several: only for small parts).
    fn take_joined(&mut self, n: usize) -> Result<Bytes, ArrowError> {
        let pieces = self.take(n)?;
        Ok(match <[Bytes; 1]>::try_from(pieces) {
            Ok([one]) => one,
            Err(pieces) => pieces.concat().into(),
        })
    }

    fn take_u32(&mut self) -> Result<u32, ArrowError> {
        let bytes = self.take_joined(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The next message, `None` at the end (or at an end-of-stream marker).
    fn next_message(&mut self) -> Result<Option<Message>, ArrowError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut len = self.take_u32()?;
        if len == CONTINUATION {
            len = self.take_u32()?;
        }
        if len == 0 {
            return Ok(None);
        }
        let header = self.take_joined(len as usize)?;
        let body_len = arrow::ipc::root_as_message(&header)
            .map_err(|e| ArrowError::IpcError(format!("unreadable IPC message: {e}")))?
            .bodyLength();
        let body = self.take(usize::try_from(body_len).unwrap_or(usize::MAX))?;
        Ok(Some(Message {
            header,
            body,
            ..Message::default()
        }))
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
