//! PostgreSQL: other processes' commits of linkage events wake this
//! process's long polls and webhook worker (`LISTEN`/`NOTIFY`).
//!
//! Every outbox insert also runs `pg_notify('machi_outbox', tenant)` in its
//! own transaction (see [`crate::store::records::append_event`]), so the
//! notification is delivered exactly when the event becomes visible, and
//! not at all if the transaction (or its savepoint in a group commit) is
//! rolled back. The payload is the 団体コード only: no personal data leaves
//! the transaction this way. Notifications of one transaction with the same
//! payload are folded into one by PostgreSQL.
//!
//! One listening connection per [`super::Store`], on a thread of its own,
//! bumps the store's commit counter ([`super::Store::commits`]) for every
//! notification sent by a backend that is not one of this store's own
//! connections (those commits bumped it already). When the connection
//! drops it reconnects (100 ms doubling to 30 s) and bumps once after
//! `LISTEN` is in place again, for whatever was committed meanwhile. The
//! pollers' fallback poll stays: a lost connection delays, never loses.
//!
//! SQLite has no such channel and needs none: one process per database
//! file (its single writer), whose commits already bump the counter.
//!
//! The same connection listens on [`AUTH_CHANNEL`]: a transaction that
//! takes access away (a token or session ended, an account or client
//! disabled, scopes changed) notifies it (`Tx::mark_auth_changed`), and
//! every process then drops the callers it cached (`Store::auth_epoch`
//! moves on), its own included. While the connection is down nothing may
//! be cached (a notification could be missed), and after it is back
//! everything cached before is dropped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use super::AuthWatch;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

/// The channel outbox inserts notify on.
pub const CHANNEL: &str = "machi_outbox";

/// The channel a transaction that takes access away notifies on (empty
/// payload).
pub const AUTH_CHANNEL: &str = "machi_auth";

/// `application_name` of the listening connection (seen in
/// `pg_stat_activity`; tests end it there to check the reconnect).
pub const APPLICATION_NAME: &str = "machi-outbox-listener";

/// Backend process ids of this store's own connections.
pub(super) type OwnBackends = Arc<Mutex<HashSet<i32>>>;

type Commits = tokio::sync::watch::Sender<u64>;

fn bump(commits: &Weak<Commits>) -> bool {
    match commits.upgrade() {
        Some(c) => {
            c.send_modify(|n| *n = n.wrapping_add(1));
            true
        }
        None => false,
    }
}

/// Starts the listener; it ends once every handle of the store is gone.
pub(super) fn spawn(
    mut config: postgres::Config,
    commits: Weak<Commits>,
    own: OwnBackends,
    auth: Arc<AuthWatch>,
) -> std::io::Result<()> {
    config
        .application_name(APPLICATION_NAME)
        .connect_timeout(Duration::from_secs(10))
        // A half-open connection (the server's host gone) is noticed by
        // keepalives, not only when the next notification never comes.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    std::thread::Builder::new()
        .name("machi-postgres-listener".into())
        .spawn(move || {
            run(&config, &commits, &own, &auth);
            auth.set_listening(false);
        })
        .map(|_| ())
}

fn run(config: &postgres::Config, commits: &Weak<Commits>, own: &OwnBackends, auth: &AuthWatch) {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        if commits.strong_count() == 0 {
            return;
        }
        let mut client = match config.connect(postgres::NoTls).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {AUTH_CHANNEL}"))
                .map(|()| c)
        }) {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                // The first failure and then every 20th: a database that
                // is down for long does not flood the log.
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(error = %e, failures, "outbox listener: cannot listen; other processes' events are found by the poll meanwhile");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "outbox listener: listening again");
        }
        failures = 0;
        backoff = Duration::from_millis(100);
        // What was cached before may have missed a notification.
        auth.bump();
        auth.set_listening(true);
        // Whatever was committed while nobody listened.
        if !bump(commits) {
            return;
        }
        let mut quiet = 0u32;
        loop {
            let asked = std::time::Instant::now();
            let next = client
                .notifications()
                .timeout_iter(Duration::from_secs(1))
                .next();
            match next {
                Ok(Some(n)) if n.channel() == AUTH_CHANNEL => {
                    quiet = 0;
                    auth.bump();
                }
                Ok(Some(n)) => {
                    quiet = 0;
                    let ours = own
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&n.process_id());
                    if !ours && !bump(commits) {
                        return;
                    }
                }
                Ok(None) => {
                    if commits.strong_count() == 0 {
                        return;
                    }
                    quiet += 1;
                    // The driver answers "nothing" at once, not after the
                    // second, when the connection has ended; and a quiet
                    // half-minute is checked too. A round trip tells.
                    let ended = asked.elapsed() < Duration::from_millis(900);
                    if (ended || quiet >= 30)
                        && let Err(e) = client.batch_execute("")
                    {
                        auth.set_listening(false);
                        tracing::warn!(error = %e, "outbox listener: connection lost; reconnecting");
                        break;
                    }
                    if quiet >= 30 {
                        quiet = 0;
                    }
                }
                Err(e) => {
                    auth.set_listening(false);
                    tracing::warn!(error = %e, "outbox listener: connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}
