//! Following an execution's output for StreamOutput: reads `output.log`
//! from any logical offset and waits for more while the execution runs.
//! Never talks to the supervisor: the file and the execution's record are
//! the whole truth.

use std::{
    io::{self, ErrorKind},
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use super::Executor;
pub use crate::execdir::output_log::Chunk;
use crate::{execdir::output_log::OutputReader, store::ExecRecord};

/// Chunks read in one trip to the blocking pool.
const BATCH: usize = 4;

/// What a StreamOutput call yields.
#[derive(Debug)]
pub enum Item {
    Chunk(Chunk),
    /// The execution is over and all of its output was sent; the offset is
    /// the end of the output.
    End(Box<ExecRecord>, u64),
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("no execution {0:?}")]
    NotFound(String),
    #[error("cannot read the output of {id}: {source}")]
    Io { id: String, source: io::Error },
    #[error(transparent)]
    Exec(#[from] super::ExecError),
    #[error("the agent is shutting down; reconnect and resume from offset {offset}")]
    ShuttingDown { offset: u64 },
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(e.to_string()))?
}

/// Streams output from `offset`; with `follow`, until the execution ends.
/// The receiver gets items in order; dropping it stops the reader task.
pub fn stream(
    executor: &Executor,
    id: &str,
    offset: u64,
    follow: bool,
    shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Result<Item, FollowError>>, FollowError> {
    if executor.get(id)?.is_none() {
        return Err(FollowError::NotFound(id.to_owned()));
    }
    // A few chunks in flight per stream: enough to keep a fast reader busy,
    // little enough that a thousand streams stay small.
    let (tx, rx) = mpsc::channel(4);
    let executor = executor.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        if let Err(e) = pump(&executor, &id, offset, follow, &tx, shutdown).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(rx)
}

async fn pump(
    executor: &Executor,
    id: &str,
    offset: u64,
    follow: bool,
    tx: &mpsc::Sender<Result<Item, FollowError>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), FollowError> {
    let dir = executor.layout().dir(id);
    let io_err = |source| FollowError::Io { id: id.to_owned(), source };
    let mut live = executor.subscribe(id);
    let mut changes = if follow && live.is_some() { executor.watch_dir(&dir.0) } else { None };
    let mut reader: Option<OutputReader> = None;
    let mut next = offset;
    loop {
        // Whether it had ended before this pass: then this pass reads all.
        let ended = live.as_ref().is_none_or(|rx| rx.borrow().state.is_terminal());
        // File work (a seek may cross a long output) runs on the blocking
        // pool, never on the runtime's workers.
        if reader.is_none() {
            let path = dir.0.clone();
            match blocking(move || OutputReader::open_dir(&path, offset)).await {
                Ok(r) => reader = Some(r),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        while let Some(mut r) = reader.take() {
            let (chunks, read) = match blocking(move || {
                let mut chunks = Vec::with_capacity(BATCH);
                while chunks.len() < BATCH {
                    match r.next_chunk()? {
                        Some(c) => chunks.push(c),
                        None => break,
                    }
                }
                Ok((chunks, r))
            })
            .await
            {
                Ok((chunks, r)) => (chunks, r),
                Err(e) => return Err(io_err(e)),
            };
            let more = chunks.len() == BATCH;
            reader = Some(read);
            for chunk in chunks {
                next = chunk.offset + chunk.data.len() as u64;
                if tx.send(Ok(Item::Chunk(chunk))).await.is_err() {
                    return Ok(());
                }
            }
            if !more {
                break;
            }
        }
        if ended {
            let rec = executor.get(id)?.ok_or_else(|| FollowError::NotFound(id.to_owned()))?;
            let end = reader.as_ref().map_or(0, OutputReader::position);
            let _ = tx.send(Ok(Item::End(Box::new(rec), end))).await;
            return Ok(());
        }
        if !follow {
            return Ok(());
        }
        let poll_every = Duration::from_millis(if changes.is_some() { 1000 } else { 100 });
        let rx = live.as_mut().map(|rx| rx.changed());
        tokio::select! {
            _ = async { match changes.as_mut() { Some(w) => w.changed().await, None => std::future::pending().await } } => {}
            r = async { match rx { Some(f) => f.await, None => std::future::pending().await } } => {
                if r.is_err() { live = None; }
            }
            _ = tokio::time::sleep(poll_every) => {}
            _ = tx.closed() => return Ok(()),
            () = crate::shutdown::stopped(&mut shutdown) => return Err(FollowError::ShuttingDown { offset: next }),
        }
    }
}
