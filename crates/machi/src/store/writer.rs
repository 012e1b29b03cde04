//! SQLite's writer: one connection on a thread of its own.
//!
//! Writes queue up while a commit is on disk; the writer then runs the
//! queued ones in one SQLite transaction, each after the first inside its
//! own SAVEPOINT (group commit; the first is undone by rolling the
//! transaction back, which holds nothing else yet). A write that fails is rolled back to its savepoint and
//! leaves the others untouched; each caller is answered only after the
//! commit that holds its write is durable, and a failed commit fails every
//! write in it. So each change is still atomic and acknowledged only when
//! committed, while one disk sync serves many changes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use super::db::Tx;
use super::{AuthWatch, StoreError};
use crate::crypto::Keyring;

/// Answers one caller once the commit's outcome is known.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One write: runs inside its savepoint; returns whether it succeeded.
type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Completion) + Send>;

/// Most writes in one commit.
const MAX_BATCH: usize = 256;

/// The checkpoint running after a bulk write, if any.
type Checkpointing = Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>;

pub struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Writes sent to the writer thread and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
    checkpointing: Checkpointing,
}

impl Writer {
    pub fn start(
        conn: rusqlite::Connection,
        keyring: Arc<Keyring>,
        auth: Arc<AuthWatch>,
    ) -> Result<Writer, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let checkpointing = Checkpointing::default();
        let queued = Arc::new(AtomicUsize::new(0));
        let (c, q) = (checkpointing.clone(), queued.clone());
        let thread = std::thread::Builder::new()
            .name("machi-sqlite-writer".into())
            .spawn(move || run(conn, &keyring, &auth, rx, &q, &c))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(Writer {
            jobs,
            queued,
            thread,
            checkpointing,
        })
    }

    /// Writes waiting for the writer: sent, not yet begun (the queue
    /// behind the commit on disk).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the writer thread still takes writes.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Waits for the checkpoint started after a bulk write, if one runs
    /// (a command that exits after an import leaves the database file whole
    /// rather than a long log to copy at the next start).
    pub fn wait_for_checkpoint(&self) {
        let handle = self.checkpointing.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Runs `f` as one atomic write and waits for its commit.
    pub async fn submit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |tx: &mut Tx<'_>| match f(tx) {
            Ok(v) => (
                true,
                Box::new(move |commit: Result<(), StoreError>| {
                    let _ = done.send(commit.map(|()| v).map_err(E::from));
                }) as Completion,
            ),
            Err(e) => (
                false,
                Box::new(move |_| {
                    let _ = done.send(Err(e));
                }) as Completion,
            ),
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(E::from(StoreError::Task(
                "the SQLite writer has stopped".into(),
            )));
        }
        answer
            .await
            .map_err(|_| E::from(StoreError::Task("the write was abandoned".into())))?
    }
}

fn run(
    mut conn: rusqlite::Connection,
    keyring: &Keyring,
    auth: &AuthWatch,
    rx: mpsc::Receiver<Job>,
    queued: &AtomicUsize,
    checkpointing: &Checkpointing,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                for job in batch {
                    // The job never ran: drop it, which drops its answer channel.
                    drop(job);
                    tracing::error!(error = %msg, "cannot begin a SQLite write transaction");
                }
                continue;
            }
        };
        let mut tx = Tx::sqlite(tx, keyring);
        let mut broken = None;
        // Whether a write has succeeded in this transaction yet. Until one
        // has, a write runs without a savepoint and a failing one is undone
        // by rolling the whole (otherwise empty) transaction back and
        // beginning it again: inside a savepoint SQLite copies every page a
        // write touches into a statement journal (spilled to a temporary
        // file past 64 KiB), 1.19 MB of file writes for a 国内転入 of three
        // (`machi bench`), more than the log frames of its commit. At one
        // writer at a time that is every write.
        let mut held = false;
        for job in batch {
            if broken.is_some() {
                drop(job);
                continue;
            }
            let (open, release, undo) = if held {
                (
                    Some("SAVEPOINT machi_write"),
                    Some("RELEASE machi_write"),
                    "ROLLBACK TO machi_write; RELEASE machi_write",
                )
            } else {
                (None, None, "ROLLBACK; BEGIN IMMEDIATE")
            };
            if let Some(open) = open
                && let Err(e) = tx.execute_batch_raw(open)
            {
                broken = Some(e.to_string());
                drop(job);
                continue;
            }
            // The access-log head held for the batch, as the savepoint has it.
            let head = tx.audit_head_snapshot();
            // …and whether a revocation is to be announced: an undone
            // write's is not (its NOTIFY is undone with it).
            let auth_changed = tx.auth_changed();
            match catch_unwind(AssertUnwindSafe(|| job(&mut tx))) {
                Ok((true, c)) => match release.map_or(Ok(()), |r| tx.execute_batch_raw(r)) {
                    Ok(()) => {
                        held = true;
                        completions.push(c);
                    }
                    Err(e) => {
                        broken = Some(e.to_string());
                        c(Err(StoreError::Commit(e.to_string())));
                    }
                },
                Ok((false, c)) => {
                    let undone = tx.execute_batch_raw(undo);
                    tx.restore_audit_head(head);
                    tx.restore_auth_changed(auth_changed);
                    // Answered after the commit like the others (it keeps its
                    // own error): a checkpoint it deferred has started by then.
                    completions.push(c);
                    if let Err(e) = undone {
                        broken = Some(e.to_string());
                    }
                }
                Err(_) => {
                    // The job panicked: its caller sees the write abandoned.
                    tracing::error!("a write panicked; it was rolled back");
                    if let Err(e) = tx.execute_batch_raw(undo) {
                        broken = Some(e.to_string());
                    }
                    tx.restore_audit_head(head);
                    tx.restore_auth_changed(auth_changed);
                }
            }
        }
        let deferred = tx.checkpoint_deferred();
        let changed_auth = tx.auth_changed();
        let outcome = match broken {
            Some(msg) => {
                drop(tx);
                Err(msg)
            }
            None => tx.commit().map_err(|e| e.to_string()),
        };
        if outcome.is_ok() {
            auth.committed(changed_auth);
        }
        // Started (and waitable) before the writers hear of their commit.
        if deferred
            && let Some(h) = checkpoint_after_deferred(&conn)
            && let Ok(mut slot) = checkpointing.lock()
        {
            // An earlier one has finished or goes on alone.
            *slot = Some(h);
        }
        for c in completions {
            c(outcome.clone().map_err(StoreError::Commit));
        }
    }
}

/// Pages in the log after which SQLite copies it back into the database
/// file at a commit (its default).
const AUTO_CHECKPOINT_PAGES: i64 = 1000;

/// After a commit whose checkpoint was deferred: turns automatic
/// checkpoints on again and runs one (PASSIVE: it neither waits for nor
/// blocks readers and writers) on another connection.
fn checkpoint_after_deferred(conn: &rusqlite::Connection) -> Option<std::thread::JoinHandle<()>> {
    if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", AUTO_CHECKPOINT_PAGES) {
        tracing::warn!(error = %e, "cannot turn automatic checkpoints on again");
    }
    let path = conn.path().filter(|p| !p.is_empty()).map(str::to_string)?;
    let spawned = std::thread::Builder::new()
        .name("machi-sqlite-checkpoint".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let done = rusqlite::Connection::open(&path).and_then(|c| {
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
            });
            match done {
                Ok((log, copied)) => tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    log_pages = log,
                    copied_pages = copied,
                    "checkpoint after a bulk write"
                ),
                Err(e) => tracing::warn!(error = %e, "checkpoint after a bulk write failed"),
            }
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the checkpoint thread");
            None
        }
    }
}
