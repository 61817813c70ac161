//! Tests of [`super`]: what the zero-copy messages decode to, byte for byte against prost and
//! arrow-flight's decoder, and that the body's pieces are the batch's own memory.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::Int32Type;
use arrow_flight::decode::FlightRecordBatchStream;
use futures::TryStreamExt;

use super::*;

fn sample(rows: i64) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
    let names: ArrayRef = Arc::new(StringArray::from_iter(
        (0..rows).map(|i| (i % 7 != 0).then(|| format!("name {i}"))),
    ));
    let kinds: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::new(
        Int32Array::from_iter_values((0..rows).map(|i| (i % 3) as i32)),
        Arc::new(StringArray::from(vec!["a", "bb", "ccc"])),
    ));
    let at: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from_iter((0..rows).map(|i| (i % 5 != 0).then_some(i * 1000)))
            .with_timezone("UTC"),
    );
    RecordBatch::try_from_iter([("id", ids), ("name", names), ("kind", kinds), ("at", at)]).unwrap()
}

/// Encodes `batches` as the route does, then decodes them with arrow-flight's client decoder,
/// once from [`Message::into_flight_data`] and once from the gRPC bytes read back by prost.
async fn round_trip(batches: &[RecordBatch]) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let schema = batches[0].schema();
    let mut encoder = IpcEncoder::new(&schema).unwrap();
    let mut messages = vec![encoder.schema_message()];
    for batch in batches {
        messages.extend(encoder.encode(batch).unwrap());
    }
    let direct: Vec<FlightData> = messages
        .iter()
        .cloned()
        .map(Message::into_flight_data)
        .collect();
    let framed: Vec<FlightData> = messages
        .into_iter()
        .map(|m| {
            let bytes: Vec<u8> = m.into_grpc().concat();
            assert_eq!(bytes[0], 0, "not compressed");
            let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
            assert_eq!(
                len,
                bytes.len() - 5,
                "the prefix gives the message's length"
            );
            FlightData::decode(&bytes[5..]).unwrap()
        })
        .collect();
    assert_eq!(direct, framed, "prost reads back what the frames say");
    let decode = |data: Vec<FlightData>| async move {
        FlightRecordBatchStream::new_from_flight_data(futures::stream::iter(
            data.into_iter().map(Ok),
        ))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
    };
    (decode(direct).await, decode(framed).await)
}

#[tokio::test]
async fn batches_decode_to_what_was_encoded() {
    let batches = [sample(1000), sample(3).slice(1, 2), sample(0), sample(10)];
    let (direct, framed) = round_trip(&batches).await;
    assert_eq!(direct.len(), batches.len());
    for (i, (got, want)) in direct.iter().zip(&batches).enumerate() {
        assert_eq!(got.num_rows(), want.num_rows(), "batch {i}");
        for c in 0..want.num_columns() {
            assert_eq!(
                got.column(c).to_data(),
                want.column(c).to_data(),
                "batch {i} column {c}"
            );
        }
    }
    // (The sample's nullability depends on its nulls: the stream's schema is the first's.)
    assert!(direct.iter().all(|b| b.schema() == batches[0].schema()));
    assert_eq!(framed, direct);
}

#[tokio::test]
async fn large_batches_split_by_rows_and_decode_whole() {
    let big = sample(300_000);
    assert!(big.get_array_memory_size() > 3 * MAX_MESSAGE_BYTES);
    let mut encoder = IpcEncoder::new(&big.schema()).unwrap();
    let messages = encoder.encode(&big).unwrap();
    assert!(messages.len() >= 4, "{} messages", messages.len());
    for message in &messages {
        assert!(
            message.payload_len() <= MAX_MESSAGE_BYTES + 64 * 1024,
            "{}",
            message.payload_len()
        );
    }
    let (direct, framed) = round_trip(std::slice::from_ref(&big)).await;
    let whole = arrow::compute::concat_batches(&big.schema(), &framed).unwrap();
    assert_eq!(whole, big);
    assert_eq!(direct, framed);
}

#[test]
fn the_body_is_the_batches_own_memory() {
    let values: Vec<i64> = (0..100_000).collect();
    let array = Int64Array::from(values);
    let start = array.values().inner().as_ptr() as usize;
    let end = start + array.values().inner().len();
    let batch = RecordBatch::try_from_iter([("v", Arc::new(array) as ArrayRef)]).unwrap();
    let mut encoder = IpcEncoder::new(&batch.schema()).unwrap();
    let messages = encoder.encode(&batch).unwrap();
    assert_eq!(messages.len(), 1);
    let chunks = messages[0].clone().into_grpc();
    let shared = chunks
        .iter()
        .filter(|c| (start..end).contains(&(c.as_ptr() as usize)))
        .map(|c| c.len())
        .sum::<usize>();
    assert_eq!(
        shared, 800_000,
        "the values go out from the array's buffer, not a copy"
    );
}

/// A wide batch's small buffers (and all padding) go out copied together, in few chunks, not one
/// HTTP/2 frame each.
#[test]
fn small_pieces_are_gathered_into_few_chunks() {
    let batch = RecordBatch::try_from_iter((0..100).map(|c| {
        let array: ArrayRef = Arc::new(Int64Array::from_iter(
            (0..1000).map(|i| (i % 7 != 0).then_some(i * c)),
        ));
        (format!("c{c}"), array)
    }))
    .unwrap();
    let mut encoder = IpcEncoder::new(&batch.schema()).unwrap();
    let messages = encoder.encode(&batch).unwrap();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].body.len() >= 200,
        "{} pieces",
        messages[0].body.len()
    );
    let chunks = messages[0].clone().into_grpc();
    let total: usize = chunks.iter().map(Bytes::len).sum();
    assert!(
        chunks.len() <= 1 + total / COPY_BELOW,
        "{} chunks",
        chunks.len()
    );
    let bytes = chunks.concat();
    let data = FlightData::decode(&bytes[5..]).unwrap();
    assert_eq!(data, messages[0].clone().into_flight_data());
}

#[test]
fn flight_data_passes_through_unchanged() {
    let data = FlightData {
        flight_descriptor: Some(arrow_flight::FlightDescriptor::new_path(vec!["a".into()])),
        data_header: Bytes::from_static(b"header"),
        app_metadata: Bytes::from_static(b"{\"x\":1}"),
        data_body: Bytes::from(vec![7u8; 1000]),
    };
    let bytes = Message::from(data.clone()).into_grpc().concat();
    assert_eq!(FlightData::decode(&bytes[5..]).unwrap(), data);
    assert_eq!(Message::from(data.clone()).into_flight_data(), data);
    let empty = Message::default().into_grpc().concat();
    assert_eq!(empty, vec![0, 0, 0, 0, 0]);
}
