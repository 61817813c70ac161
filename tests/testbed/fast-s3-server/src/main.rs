//! The test bed's fast S3 (issue 16): s3s-fs 0.14.1, a Rust S3 server over a directory, with one
//! change. s3s-fs answers GetObject by seeking to the range's start (no whole-object copy, unlike
//! moto) but streams the file in 4 KiB reads, each a blocking task of tokio's file API, which
//! caps one GET at about 100 MB/s and more than one core. Here GetObject is s3s-fs's own (headers,
//! ETag, range checks) with its body replaced by 1 MiB reads of the same bytes; every other
//! operation is s3s-fs's, unchanged (ListObjectsV2, DeleteObjects, multipart upload, conditional
//! PUT with If-None-Match / If-Match, ...).
//!
//! `testbed-fast-s3 --host H --port P --access-key K --secret-key S ROOT` (port 0: any free
//! port); prints `listening on http://ADDR` once it accepts connections. Started by
//! `tests/testbed/up` (TESTBED_S3=fast) and by the benchmark suite (`bench/hardware.py`).

use std::io::SeekFrom;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::io::ReaderStream;

/// Bytes per read of a GetObject body (and per chunk sent).
const READ_CHUNK: usize = 1 << 20;

/// s3s-fs with a faster GetObject body.
struct FastFs {
    inner: FileSystem,
    root: PathBuf,
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/SIZE` header.
fn range_start(content_range: &str) -> Option<u64> {
    content_range
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

impl FastFs {
    async fn get_object_fast(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        // s3s-fs resolved and checked the path (it refuses keys leaving the bucket) before this runs
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        let mut resp = self.inner.get_object(req).await?;
        let out = &mut resp.output;
        let length = u64::try_from(out.content_length.unwrap_or(0))
            .map_err(|e| s3_error!(e, InternalError))?;
        let start = match out.content_range.as_deref() {
            Some(range) => range_start(range)
                .ok_or_else(|| s3_error!(InternalError, "bad Content-Range {range}"))?,
            None => 0,
        };
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| s3_error!(e, NoSuchKey))?;
        file.set_max_buf_size(READ_CHUNK);
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| s3_error!(e, InternalError))?;
        out.body = Some(StreamingBlob::wrap(ReaderStream::with_capacity(
            file.take(length),
            READ_CHUNK,
        )));
        Ok(resp)
    }
}

/// `impl S3 for FastFs`: GetObject as above, the listed operations s3s-fs's own. (A macro around the
/// whole impl, so that `async_trait` sees every method.)
macro_rules! impl_s3 {
    ($($name:ident: $input:ident => $output:ident;)*) => {
        #[async_trait::async_trait]
        impl S3 for FastFs {
            async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
                self.get_object_fast(req).await
            }
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.inner.$name(req).await
                }
            )*
        }
    };
}

impl_s3! {
    create_bucket: CreateBucketInput => CreateBucketOutput;
    copy_object: CopyObjectInput => CopyObjectOutput;
    delete_bucket: DeleteBucketInput => DeleteBucketOutput;
    delete_object: DeleteObjectInput => DeleteObjectOutput;
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
    head_bucket: HeadBucketInput => HeadBucketOutput;
    head_object: HeadObjectInput => HeadObjectOutput;
    list_buckets: ListBucketsInput => ListBucketsOutput;
    list_objects: ListObjectsInput => ListObjectsOutput;
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
    put_object: PutObjectInput => PutObjectOutput;
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    upload_part: UploadPartInput => UploadPartOutput;
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
    list_parts: ListPartsInput => ListPartsOutput;
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
}

struct Args {
    host: String,
    port: u16,
    access_key: String,
    secret_key: String,
    root: PathBuf,
}

fn args() -> Result<Args, String> {
    let usage = "usage: testbed-fast-s3 --host H --port P --access-key K --secret-key S ROOT";
    let (mut host, mut port, mut access_key, mut secret_key, mut root) =
        (None, None, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value; {usage}"))
        };
        match arg.as_str() {
            "--host" => host = Some(value()?),
            "--port" => {
                port = Some(
                    value()?
                        .parse::<u16>()
                        .map_err(|e| format!("--port: {e}"))?,
                )
            }
            "--access-key" => access_key = Some(value()?),
            "--secret-key" => secret_key = Some(value()?),
            _ if !arg.starts_with('-') && root.is_none() => root = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected {arg}; {usage}")),
        }
    }
    Ok(Args {
        host: host.unwrap_or_else(|| "127.0.0.1".into()),
        port: port.unwrap_or(0),
        access_key: access_key.ok_or(usage)?,
        secret_key: secret_key.ok_or(usage)?,
        root: root.ok_or(usage)?,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let inner =
        FileSystem::new(&args.root).map_err(|e| format!("{}: {e:?}", args.root.display()))?;
    let root = std::env::current_dir()?.join(&args.root).canonicalize()?;
    let service = {
        let mut b = S3ServiceBuilder::new(FastFs { inner, root });
        b.set_auth(SimpleAuth::from_single(args.access_key, args.secret_key));
        b.build()
    };
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => { eprintln!("accept: {e}"); continue; }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = socket.set_nodelay(true);
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
