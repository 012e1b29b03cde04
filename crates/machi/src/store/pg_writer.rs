//! PostgreSQL's group-committing appender: one connection on a thread of
//! its own takes the writes queued while a commit is on its way to disk
//! and runs them in one transaction, each inside its own SAVEPOINT and
//! tenant scope (row-level security reads `machi.tenant`, set per write).
//!
//! Used for the access log's entries (j1370): each read of personal data
//! appends one, and on the tenant's chain head they would otherwise take
//! turns, one commit (one WAL flush) each, holding the head's row lock
//! until that commit is on disk. Here the entries of concurrent reads are
//! chained one after another inside one transaction and made durable by
//! one commit; the chain is the same as if they had been appended one by
//! one (each entry's number and previous hash come from the head as the
//! entry before it in the batch left it), so verification is unchanged.
//!
//! As on SQLite's writer (see `writer`): a write that fails is rolled back
//! to its savepoint and leaves the others untouched; every caller is
//! answered only after the commit that holds its write is durable (so an
//! answered read's entry survives a crash), and a failed commit fails
//! every write in it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use machi_domain::ids::MunicipalityCode;

use super::db::{PgStatements, PgTx, Tx};
use super::{AuthWatch, PgConn, PgManager, StoreError};
use crate::crypto::Keyring;

/// Answers one caller once the commit's outcome is known.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One write: runs inside its savepoint; returns whether it succeeded.
type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Completion) + Send>;

/// Most writes in one commit.
const MAX_BATCH: usize = 256;

pub struct PgWriter {
    jobs: mpsc::Sender<(Option<MunicipalityCode>, Job)>,
    /// Writes sent and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
}

impl PgWriter {
    pub(super) fn start(
        manager: PgManager,
        keyring: Arc<Keyring>,
        auth: Arc<AuthWatch>,
    ) -> Result<PgWriter, StoreError> {
        let (jobs, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        std::thread::Builder::new()
            .name("machi-postgres-appender".into())
            .spawn(move || run(&manager, &keyring, &auth, rx, &q))
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(PgWriter { jobs, queued })
    }

    /// Runs `f` as one atomic write scoped to `tenant`, in the next group
    /// commit, and waits for that commit.
    pub async fn submit<T, E, F>(&self, tenant: Option<&MunicipalityCode>, f: F) -> Result<T, E>
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
        if self.jobs.send((tenant.cloned(), job)).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(E::from(StoreError::Task(
                "the PostgreSQL appender has stopped".into(),
            )));
        }
        answer
            .await
            .map_err(|_| E::from(StoreError::Task("the write was abandoned".into())))?
    }
}

/// The SQL that opens a write's savepoint (releasing the previous one, if
/// any, in the same round trip) and sets its tenant scope. A tenant code
/// is six ASCII digits (checked when parsed), so it is safe to inline;
/// anything else is refused.
fn open_sql(first: bool, tenant: Option<&MunicipalityCode>) -> Result<String, StoreError> {
    super::db::pg_begin_sql(
        if first {
            "SAVEPOINT machi_append"
        } else {
            "RELEASE machi_append; SAVEPOINT machi_append"
        },
        tenant,
    )
}

fn run(
    manager: &PgManager,
    keyring: &Keyring,
    auth: &AuthWatch,
    rx: mpsc::Receiver<(Option<MunicipalityCode>, Job)>,
    queued: &AtomicUsize,
) {
    let mut conn: Option<PgConn> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        if conn
            .as_ref()
            .is_none_or(|c| c.client.as_ref().is_none_or(|c| c.is_closed()))
        {
            conn = match r2d2::ManageConnection::connect(manager) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "the PostgreSQL appender cannot connect");
                    // Dropping the jobs drops their answer channels: each
                    // caller sees its write abandoned.
                    drop(batch);
                    continue;
                }
            };
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let refresh = c.plans_due();
        let PgConn {
            client: Some(client),
            statements,
            ..
        } = c
        else {
            continue;
        };
        let completions = run_batch(client, statements, keyring, batch, refresh);
        let outcome = completions.1;
        if let Ok(changed_auth) = outcome {
            auth.committed(changed_auth);
        }
        let outcome = outcome.map(|_| ());
        for c in completions.0 {
            c(outcome.clone().map_err(StoreError::Commit));
        }
    }
}

/// Runs one batch in one transaction; the completions to call and the
/// commit's outcome (whether the transaction took access away, see
/// [`Tx::mark_auth_changed`]). The BEGIN goes with the first write's
/// savepoint and scope, and the last RELEASE with the COMMIT: one round
/// trip each.
fn run_batch(
    client: &mut postgres::Client,
    statements: &mut PgStatements,
    keyring: &Keyring,
    batch: Vec<(Option<MunicipalityCode>, Job)>,
    refresh_plans: bool,
) -> (Vec<Completion>, Result<bool, String>) {
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut batch = batch.into_iter();
    let Some((tenant, first_job)) = batch.next() else {
        return (completions, Ok(false));
    };
    let begin = match open_sql(true, tenant.as_ref()) {
        // The cached plans dropped when due (`PgConn::begin_sql`).
        Ok(sql) if refresh_plans => format!("BEGIN; DISCARD PLANS; {sql}"),
        Ok(sql) => format!("BEGIN; {sql}"),
        Err(e) => {
            drop(first_job);
            return (completions, Err(e.to_string()));
        }
    };
    let tx = match PgTx::begin(client, &begin) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "cannot begin a PostgreSQL append transaction");
            // The jobs never ran: dropping them drops their answer channels.
            return (completions, Err(e.to_string()));
        }
    };
    let mut tx = Tx::postgres(tx, statements, keyring);
    let mut broken = None;
    let mut first = true;
    for (tenant, job) in std::iter::once((tenant, first_job)).chain(batch) {
        if broken.is_some() {
            drop(job);
            continue;
        }
        if !first {
            // A held access-log head is written under its own tenant's
            // scope (row-level security), before the scope changes.
            let switch = tx
                .audit_head()
                .is_some_and(|h| tenant.as_ref().is_none_or(|t| t.as_str() != h.tenant));
            let flushed = if switch {
                tx.flush_audit_head()
            } else {
                Ok(())
            };
            let opened = flushed
                .and_then(|()| open_sql(false, tenant.as_ref()))
                .and_then(|sql| tx.execute_batch_raw(&sql));
            if let Err(e) = opened {
                broken = Some(e.to_string());
                drop(job);
                continue;
            }
        }
        first = false;
        // The access-log head held for the batch, as the savepoint has it.
        let head = tx.audit_head_snapshot();
        // …and whether a revocation is to be announced: an undone write's
        // NOTIFY is undone with it, so a later one must send its own.
        let auth_changed = tx.auth_changed();
        match catch_unwind(AssertUnwindSafe(|| job(&mut tx))) {
            Ok((true, c)) => completions.push(c),
            Ok((false, c)) => {
                // Answered after the commit like the others, with its own error.
                completions.push(c);
                if let Err(e) = tx.execute_batch_raw("ROLLBACK TO machi_append") {
                    broken = Some(e.to_string());
                }
                tx.restore_audit_head(head);
                tx.restore_auth_changed(auth_changed);
            }
            Err(_) => {
                tracing::error!("a write panicked; it was rolled back");
                if let Err(e) = tx.execute_batch_raw("ROLLBACK TO machi_append") {
                    broken = Some(e.to_string());
                }
                tx.restore_audit_head(head);
                tx.restore_auth_changed(auth_changed);
            }
        }
    }
    let changed_auth = tx.auth_changed();
    let outcome = match broken {
        Some(msg) => {
            drop(tx);
            Err(msg)
        }
        None => tx
            .commit_after("RELEASE machi_append")
            .map(|()| changed_auth)
            .map_err(|e| e.to_string()),
    };
    (completions, outcome)
}
