//! Webhook subscriptions and delivery attempts (the linkage hub's push
//! side). A subscription's position (the last event sequence it has
//! handled), its retry schedule and its lease are rows here, so delivery
//! survives restarts and several workers share the work: a worker leases a
//! subscription (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the one
//! writer), delivers in order, and records every attempt.

use machi_domain::ids::MunicipalityCode;

use super::StoreError;
use super::db::{Row, Tx};

/// A subscription as stored; `secret` and `previous_secret` are sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub tenant: MunicipalityCode,
    pub subscription_id: i64,
    pub client_id: String,
    pub url: String,
    /// Event types (empty: all).
    pub types: Vec<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    /// Until when (µs, on the registry's clock) the previous secret also signs.
    pub previous_until: Option<i64>,
    /// `active`, `paused`, `disabled` (the receiver answered 410) or `deleted`.
    pub status: String,
    /// The last event sequence handled (delivered or filtered out).
    pub position: i64,
    /// Failed attempts of the event at `position + 1` so far.
    pub attempt: i64,
    pub next_attempt_at: i64,
    pub failing_since: Option<i64>,
    pub paused_at: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "tenant, subscription_id, client_id, url, types, secret, previous_secret, previous_until, \
    status, position, attempt, next_attempt_at, failing_since, paused_at, created_at";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn subscription(r: &Row) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        tenant: r.text(0)?.parse().map_err(corrupt)?,
        subscription_id: r.int(1)?,
        client_id: r.text(2)?,
        url: r.text(3)?,
        types: serde_json::from_str(&r.text(4)?).map_err(corrupt)?,
        secret: r.text(5)?,
        previous_secret: r.opt_text(6)?,
        previous_until: r.opt_int(7)?,
        status: r.text(8)?,
        position: r.int(9)?,
        attempt: r.int(10)?,
        next_attempt_at: r.int(11)?,
        failing_since: r.opt_int(12)?,
        paused_at: r.opt_int(13)?,
        created_at: r.int(14)?,
    })
}

pub fn next_subscription_id(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT COALESCE(MAX(subscription_id), 0) + 1 FROM webhook_subscriptions WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?
    .int(0)
}

pub fn insert(tx: &mut Tx<'_>, s: &Subscription) -> Result<(), StoreError> {
    let types = serde_json::to_string(&s.types).map_err(corrupt)?;
    tx.execute(
        &format!(
            "INSERT INTO webhook_subscriptions ({COLUMNS}, lease_owner, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, NULL, 0)"
        ),
        &[
            s.tenant.as_str().into(),
            s.subscription_id.into(),
            (&s.client_id).into(),
            (&s.url).into(),
            (&types).into(),
            (&s.secret).into(),
            s.previous_secret.as_deref().into(),
            s.previous_until.into(),
            (&s.status).into(),
            s.position.into(),
            s.attempt.into(),
            s.next_attempt_at.into(),
            s.failing_since.into(),
            s.paused_at.into(),
            s.created_at.into(),
        ],
    )?;
    Ok(())
}

/// The tenant's subscriptions (of one client when `client_id` is given),
/// deleted ones left out.
pub fn list(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    client_id: Option<&str>,
) -> Result<Vec<Subscription>, StoreError> {
    tx.query(
        &format!(
            "SELECT {COLUMNS} FROM webhook_subscriptions WHERE tenant = $1 AND status <> 'deleted' \
             AND ($2 = '' OR client_id = $2) ORDER BY subscription_id"
        ),
        &[tenant.as_str().into(), client_id.unwrap_or("").into()],
    )?
    .iter()
    .map(subscription)
    .collect()
}

pub fn get(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
) -> Result<Option<Subscription>, StoreError> {
    tx.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM webhook_subscriptions WHERE tenant = $1 AND subscription_id = $2 AND status <> 'deleted'"
        ),
        &[tenant.as_str().into(), id.into()],
    )?
    .as_ref()
    .map(subscription)
    .transpose()
}

/// Marks a subscription deleted (its attempts stay on record).
pub fn delete(tx: &mut Tx<'_>, tenant: &MunicipalityCode, id: i64) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE webhook_subscriptions SET status = 'deleted', lease_owner = NULL, lease_until = 0 \
         WHERE tenant = $1 AND subscription_id = $2 AND status <> 'deleted'",
        &[tenant.as_str().into(), id.into()],
    )? == 1)
}

/// Restarts delivery from `position + 1`, active, due now: replay, and
/// resuming a paused or disabled subscription.
pub fn restart_at(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    position: i64,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE webhook_subscriptions SET status = 'active', position = $3, attempt = 0, next_attempt_at = $4, \
         failing_since = NULL, paused_at = NULL, lease_until = 0, lease_owner = NULL \
         WHERE tenant = $1 AND subscription_id = $2 AND status <> 'deleted'",
        &[tenant.as_str().into(), id.into(), position.into(), now.into()],
    )? == 1)
}

/// Pauses an active subscription by hand: `paused`, its position kept, its
/// failure count and `failing_since` cleared (so a paused row without
/// `failing_since` is one a person paused; the worker's pause after 72 hours
/// of failures keeps `failing_since`), any lease taken back (a worker's
/// delivery in flight settles nothing: `settle` wants `active`).
pub fn pause(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE webhook_subscriptions SET status = 'paused', paused_at = $3, attempt = 0, failing_since = NULL, \
         lease_until = 0, lease_owner = NULL \
         WHERE tenant = $1 AND subscription_id = $2 AND status = 'active'",
        &[tenant.as_str().into(), id.into(), now.into()],
    )? == 1)
}

/// The latest accepted (2xx) attempt of a subscription: (sequence, time).
pub fn last_delivered(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    subscription_id: i64,
) -> Result<Option<(i64, i64)>, StoreError> {
    tx.query_opt(
        "SELECT seq, at FROM webhook_attempts WHERE tenant = $1 AND subscription_id = $2 \
         AND status >= 200 AND status < 300 ORDER BY attempt_id DESC LIMIT 1",
        &[tenant.as_str().into(), subscription_id.into()],
    )?
    .map(|r| Ok((r.int(0)?, r.int(1)?)))
    .transpose()
}

/// Sets a new secret; the old one keeps signing until `previous_until`.
pub fn rotate_secret(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    secret: &str,
    previous_until: i64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE webhook_subscriptions SET previous_secret = secret, previous_until = $4, secret = $3 \
         WHERE tenant = $1 AND subscription_id = $2 AND status <> 'deleted'",
        &[
            tenant.as_str().into(),
            id.into(),
            secret.into(),
            previous_until.into(),
        ],
    )? == 1)
}

/// Leases up to `limit` due subscriptions of any tenant to `owner` until
/// `lease_until` (real time, µs): active, due on the registry's clock
/// (`now`), and not leased (`real_now`). On PostgreSQL the rows are taken
/// `FOR UPDATE SKIP LOCKED`, so concurrent workers lease disjoint rows;
/// SQLite has one writer. Runs in a write transaction with no tenant.
// The scan's inputs are all plain values of one statement.
#[allow(clippy::too_many_arguments)]
pub fn lease_due(
    tx: &mut Tx<'_>,
    owner: &str,
    now: i64,
    real_now: i64,
    lease_until: i64,
    limit: i64,
    serving: &std::collections::HashSet<(String, i64)>,
    woken: bool,
) -> Result<Vec<Subscription>, StoreError> {
    let lock = if tx.backend() == super::Backend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    // Woken by a commit: parked (caught-up, ownerless) rows count as free
    // too, without a write to unpark them first.
    let free = if woken {
        "(lease_until < $2 OR lease_owner IS NULL)"
    } else {
        "lease_until < $2"
    };
    let rows = tx.query(
        &format!(
            "SELECT {COLUMNS} FROM webhook_subscriptions WHERE status = 'active' AND next_attempt_at <= $1 \
             AND {free} ORDER BY next_attempt_at LIMIT $3{lock}"
        ),
        &[now.into(), real_now.into(), limit.into()],
    )?;
    let subs: Vec<Subscription> = rows
        .iter()
        .map(subscription)
        .filter(|s| {
            // One this worker is still serving stays as it is: its task
            // settles it (or finds it taken back by a replay and stops).
            s.as_ref().map_or(true, |s| {
                !serving.contains(&(s.tenant.to_string(), s.subscription_id))
            })
        })
        .collect::<Result<_, _>>()?;
    for s in &subs {
        tx.execute(
            "UPDATE webhook_subscriptions SET lease_owner = $3, lease_until = $4 WHERE tenant = $1 AND subscription_id = $2",
            &[
                s.tenant.as_str().into(),
                s.subscription_id.into(),
                owner.into(),
                lease_until.into(),
            ],
        )?;
    }
    Ok(subs)
}

/// Who holds a subscription's lease now (None: nobody, or no such
/// active subscription). A worker serving a subscription checks it at
/// every read: a pause, replay or resume takes the lease back, and the
/// worker must not send on.
pub fn lease_holder(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
) -> Result<Option<String>, StoreError> {
    tx.query_opt(
        "SELECT lease_owner FROM webhook_subscriptions WHERE tenant = $1 AND subscription_id = $2 AND status = 'active'",
        &[tenant.as_str().into(), id.into()],
    )?
    .map(|r| r.opt_text(0))
    .transpose()
    .map(Option::flatten)
}

/// The worker's own bookkeeping (leases, positions, attempt records) on
/// PostgreSQL commits without waiting for the disk (`synchronous_commit =
/// off` for this transaction only): a crash of the database server may
/// lose its last fraction of a second (at most 3 × `wal_writer_delay`),
/// which puts positions back, so those events are sent again with the same
/// webhook-id (at-least-once holds); the registry's own changes keep
/// waiting for the disk. It shortens the worker's settle (a chunk's
/// attempts and position) by a WAL flush and takes the worker's flushes
/// off the disk the registry's commits wait for. SQLite's writer commits
/// in groups already.
pub fn relaxed_commit(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    if tx.backend() == super::Backend::Postgres {
        tx.execute_batch("SET LOCAL synchronous_commit = off")?;
    }
    Ok(())
}

/// Wakes parked (caught-up) subscriptions: their short lease with no owner
/// ends now. Called when this process committed something.
pub fn unpark_all(tx: &mut Tx<'_>) -> Result<u64, StoreError> {
    tx.execute(
        "UPDATE webhook_subscriptions SET lease_until = 0 WHERE lease_owner IS NULL AND lease_until > 0 AND status = 'active'",
        &[],
    )
}

/// What the worker decided after handling a leased subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub position: i64,
    pub attempt: i64,
    pub next_attempt_at: i64,
    pub failing_since: Option<i64>,
    pub status: String,
    pub paused_at: Option<i64>,
    /// None: release; Some((owner, until)): keep (owner) or park (None owner).
    pub lease_owner: Option<String>,
    pub lease_until: i64,
}

/// Writes the worker's decision, if `owner` still holds the lease (a
/// subscription deleted, replayed or resumed meanwhile is left as it is).
pub fn settle(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    owner: &str,
    s: &Settle,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE webhook_subscriptions SET position = $4, attempt = $5, next_attempt_at = $6, failing_since = $7, \
         status = $8, paused_at = $9, lease_owner = $10, lease_until = $11 \
         WHERE tenant = $1 AND subscription_id = $2 AND lease_owner = $3 AND status = 'active'",
        &[
            tenant.as_str().into(),
            id.into(),
            owner.into(),
            s.position.into(),
            s.attempt.into(),
            s.next_attempt_at.into(),
            s.failing_since.into(),
            (&s.status).into(),
            s.paused_at.into(),
            s.lease_owner.as_deref().into(),
            s.lease_until.into(),
        ],
    )? == 1)
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    pub attempt_id: i64,
    pub seq: i64,
    pub webhook_id: String,
    /// µs on the registry's clock.
    pub at: i64,
    /// The HTTP status; none when no answer came.
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// Records attempts (in the order made), numbered on from the
/// subscription's last. The numbers come from the subscription's own
/// counter (`last_attempt_id`, migration 31), moved on by one UPDATE in
/// this transaction: no look-up of the attempts table (its `MAX` was the
/// busiest statement under delivery on PostgreSQL), and a second worker
/// recording attempts of the same subscription waits on the row lock
/// instead of computing the same numbers. The rows go in statements of
/// 16, 8, 4, 2 and 1 rows (a chunk of 50 in at most 6 statements, only 5
/// distinct texts to prepare).
pub fn insert_attempts(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    subscription_id: i64,
    attempts: &[Attempt],
) -> Result<(), StoreError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let n = attempts.len() as i64;
    let last = tx
        .query_one(
            "UPDATE webhook_subscriptions SET last_attempt_id = last_attempt_id + $3 \
             WHERE tenant = $1 AND subscription_id = $2 RETURNING last_attempt_id",
            &[tenant.as_str().into(), subscription_id.into(), n.into()],
        )?
        .int(0)?;
    let mut id = last - n;
    let mut rest = attempts;
    while !rest.is_empty() {
        let size = ATTEMPT_ROWS
            .iter()
            .copied()
            .find(|k| *k <= rest.len())
            .unwrap_or(1);
        let (group, tail) = rest.split_at(size);
        rest = tail;
        let mut values = Vec::with_capacity(group.len());
        let mut params: Vec<super::Param<'_>> = Vec::with_capacity(group.len() * 7 + 2);
        params.push(tenant.as_str().into());
        params.push(subscription_id.into());
        for a in group {
            id += 1;
            let k = params.len();
            values.push(format!(
                "($1, $2, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                k + 1,
                k + 2,
                k + 3,
                k + 4,
                k + 5,
                k + 6,
                k + 7
            ));
            params.push(id.into());
            params.push(a.seq.into());
            params.push((&a.webhook_id).into());
            params.push(a.at.into());
            params.push(a.status.into());
            params.push(a.latency_ms.into());
            params.push(a.error.as_deref().into());
        }
        tx.execute(
            &format!(
                "INSERT INTO webhook_attempts (tenant, subscription_id, attempt_id, seq, webhook_id, at, status, latency_ms, error) \
                 VALUES {}",
                values.join(", ")
            ),
            &params,
        )?;
    }
    Ok(())
}

/// Rows per multi-row insert of attempts, largest first.
const ATTEMPT_ROWS: [usize; 5] = [16, 8, 4, 2, 1];

/// Gives a subscription's lease back (due at once, nothing else changed)
/// if `owner` still holds it: after a delivery step failed on this side.
pub fn release(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    owner: &str,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE webhook_subscriptions SET lease_owner = NULL, lease_until = 0 \
         WHERE tenant = $1 AND subscription_id = $2 AND lease_owner = $3",
        &[tenant.as_str().into(), id.into(), owner.into()],
    )? == 1)
}

/// A subscription's attempts, newest first.
pub fn attempts(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    subscription_id: i64,
    limit: i64,
) -> Result<Vec<Attempt>, StoreError> {
    tx.query(
        "SELECT attempt_id, seq, webhook_id, at, status, latency_ms, error FROM webhook_attempts \
         WHERE tenant = $1 AND subscription_id = $2 ORDER BY attempt_id DESC LIMIT $3",
        &[tenant.as_str().into(), subscription_id.into(), limit.into()],
    )?
    .iter()
    .map(|r| {
        Ok(Attempt {
            attempt_id: r.int(0)?,
            seq: r.int(1)?,
            webhook_id: r.text(2)?,
            at: r.int(3)?,
            status: r.opt_int(4)?,
            latency_ms: r.int(5)?,
            error: r.opt_text(6)?,
        })
    })
    .collect()
}

/// Subscriptions of every tenant by status (`active`, `paused`,
/// `disabled`), for `/metrics`.
pub fn count_by_status(tx: &mut Tx<'_>) -> Result<Vec<(String, i64)>, StoreError> {
    tx.query(
        "SELECT status, COUNT(*) FROM webhook_subscriptions WHERE status <> 'deleted' GROUP BY status",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.text(0)?, r.int(1)?)))
    .collect()
}
