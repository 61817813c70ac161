//! The decode runtime: DoGet reads, decodes, normalises and IPC-encodes Parquet on a runtime of its
//! own, so CPU-heavy decoding never holds up the gRPC runtime's threads (accepting connections,
//! answering GetFlightInfo, writing frames of other streams). Each DoGet runs one task here, at
//! most a few messages ahead of its gRPC stream.
//!
//! A leaf: it imports nothing from the crate.

use std::fmt;
use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// A multi-threaded Tokio runtime for decoding.
pub struct Decoder {
    handle: Handle,
    threads: usize,
    runtime: Option<Runtime>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A runtime of `threads` worker threads (0: one per CPU).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("decode")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            threads,
            runtime: Some(runtime),
        })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The runtime's handle, to spawn on it from where the decoder is not at hand.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs `task` on the decode runtime.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime; tasks still
        // running belong to streams that are being torn down anyway.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_tasks_on_its_own_threads_and_drops_inside_a_runtime() {
        let decoder = Decoder::new(1).unwrap();
        assert_eq!(decoder.threads(), 1);
        let name = decoder
            .spawn(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("decode"));
        let pending = decoder.spawn(futures::future::pending::<()>());
        drop(decoder);
        assert!(pending.await.unwrap_err().is_cancelled());
    }
}
