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

/// What the worker reads before each chunk of a subscription it leases.
#[derive(Debug, Clone)]
pub struct LeasedChunk {
    /// The row as it is now (its secrets: a rotation while the lease is
    /// held signs the next chunk with both).
    pub subscription: Subscription,
    /// The tenant's last event number: `tenant_heads.event_seq`, moved on
    /// in the very transaction that inserts each outbox row (the only way
    /// one is inserted, `records::advance` then `records::append_event`),
    /// so it is the outbox's head as committed, read by key instead of a
    /// `MAX(seq)` over the outbox; read in the same snapshot as the events.
    pub head: i64,
    /// Someone is protected by a support measure in effect
    /// ([`super::support::any_protected_sql`]): the events must pass the
    /// shield before they are sent. False: nobody is, no shield to load.
    pub protected: bool,
    /// Up to `limit` events after the position, of the subscription's
    /// types, in sequence order.
    pub events: Vec<super::records::OutboxEvent>,
}

/// The next chunk of a subscription `owner` leases, or None if `owner`
/// no longer holds its lease or it is not active (paused, replayed,
/// resumed, deleted or taken over meanwhile: not ours to send). On
/// PostgreSQL one statement (the row, the head, the shield flag and the
/// events through a `LEFT JOIN LATERAL`): one round trip; on SQLite two.
/// Call it in one snapshot (a read transaction): the head and the events
/// agree.
pub fn leased_chunk(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    owner: &str,
    after: i64,
    types: &[String],
    limit: i64,
) -> Result<Option<LeasedChunk>, StoreError> {
    let columns: Vec<String> = COLUMNS
        .split(',')
        .map(|c| format!("s.{}", c.trim()))
        .collect();
    let head_and_flag = format!(
        "(SELECT h.event_seq FROM tenant_heads h WHERE h.tenant = s.tenant), {}",
        super::support::any_protected_sql()
    );
    let (kinds, values) = super::records::kind_filter(types, 6);
    let mut params: Vec<super::Param<'_>> = vec![
        tenant.as_str().into(),
        id.into(),
        owner.into(),
        after.into(),
        limit.into(),
    ];
    params.extend(values.into_iter().map(super::Param::from));
    let subscription_where =
        "s.tenant = $1 AND s.subscription_id = $2 AND s.status = 'active' AND s.lease_owner = $3";
    if tx.backend() == super::Backend::Postgres {
        let rows = tx.query(
            &format!(
                "SELECT {}, {head_and_flag}, e.seq, e.event_id, e.kind, e.change_id, e.payload, e.created_at \
                 FROM webhook_subscriptions s LEFT JOIN LATERAL (\
                 SELECT seq, event_id, kind, change_id, payload, created_at FROM outbox \
                 WHERE tenant = $1 AND seq > $4{kinds} ORDER BY seq LIMIT $5) e ON true \
                 WHERE {subscription_where} ORDER BY e.seq",
                columns.join(", ")
            ),
            &params,
        )?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut out = LeasedChunk {
            subscription: subscription(first)?,
            head: first.opt_int(15)?.unwrap_or(0),
            protected: first.int(16)? != 0,
            events: Vec::with_capacity(rows.len()),
        };
        for r in &rows {
            if r.opt_int(17)?.is_some() {
                out.events.push(event_at(r, 17)?);
            }
        }
        return Ok(Some(out));
    }
    let Some(r) = tx.query_opt(
        &format!(
            "SELECT {}, {head_and_flag} FROM webhook_subscriptions s WHERE {subscription_where}",
            columns.join(", ")
        ),
        &params[..3],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(LeasedChunk {
        subscription: subscription(&r)?,
        head: r.opt_int(15)?.unwrap_or(0),
        protected: r.int(16)? != 0,
        events: super::records::events_after_of(tx, tenant, after, types, limit)?,
    }))
}

/// The leases `owner` still holds among subscriptions `ids` of `tenant`
/// (each row as it is now: a rotation signs the next chunk with both
/// secrets), with the tenant's head and whether anyone is protected, in
/// one snapshot (two statements): [`leased_chunk`] without events, for
/// many subscriptions at once (the worker's grouped rounds). A subscription missing from the
/// answer is not ours any more (paused, replayed, deleted, taken over).
pub fn leased_many(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    owner: &str,
    ids: &[i64],
) -> Result<(Vec<Subscription>, i64, bool), StoreError> {
    let r = tx.query_one(
        &format!(
            "SELECT (SELECT h.event_seq FROM tenant_heads h WHERE h.tenant = $1), {}",
            super::support::any_protected_sql()
        ),
        &[tenant.as_str().into()],
    )?;
    let (head, protected) = (r.opt_int(0)?.unwrap_or(0), r.int(1)? != 0);
    if ids.is_empty() {
        return Ok((Vec::new(), head, protected));
    }
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
    let mut params: Vec<super::Param<'_>> = vec![tenant.as_str().into(), owner.into()];
    params.extend(ids.iter().map(|i| super::Param::from(*i)));
    let rows = tx.query(
        &format!(
            "SELECT {COLUMNS} FROM webhook_subscriptions WHERE tenant = $1 AND lease_owner = $2 \
             AND status = 'active' AND subscription_id IN ({})",
            marks.join(", ")
        ),
        &params,
    )?;
    let subs = rows.iter().map(subscription).collect::<Result<_, _>>()?;
    Ok((subs, head, protected))
}

/// Events of `tenant` after `after` up to and including `upto` (a head
/// read before: every event up to it is committed, and none changes),
/// whose kind passes `types`, in order, at most `limit`: the same answer
/// whenever it is read, so the worker reads it once for every
/// subscription at the same position ([`crate::service::hooks`]'s shared
/// reads).
pub fn events_between(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    after: i64,
    upto: i64,
    types: &[String],
    limit: i64,
) -> Result<Vec<super::records::OutboxEvent>, StoreError> {
    let (kinds, values) = super::records::kind_filter(types, 5);
    let mut params: Vec<super::Param<'_>> = vec![
        tenant.as_str().into(),
        after.into(),
        upto.into(),
        limit.into(),
    ];
    params.extend(values.into_iter().map(super::Param::from));
    let rows = tx.query(
        &format!(
            "SELECT seq, event_id, kind, change_id, payload, created_at FROM outbox \
             WHERE tenant = $1 AND seq > $2 AND seq <= $3{kinds} ORDER BY seq LIMIT $4"
        ),
        &params,
    )?;
    rows.iter().map(|r| event_at(r, 0)).collect()
}

/// An outbox event from columns `k..k + 6` of a row (seq, event_id,
/// kind, change_id, payload, created_at).
fn event_at(r: &Row, k: usize) -> Result<super::records::OutboxEvent, StoreError> {
    Ok(super::records::OutboxEvent {
        seq: r.int(k)?,
        event_id: r.text(k + 1)?,
        kind: r.text(k + 2)?,
        change_id: r.opt_int(k + 3)?,
        payload: serde_json::from_str(&r.text(k + 4)?).map_err(corrupt)?,
        created_at: r.int(k + 5)?,
    })
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
    // Sent with the COMMIT (one round trip), not a statement of its own.
    tx.relax_commit();
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

/// A chunk's end in one write: the worker's decision ([`settle`]) and
/// its attempts ([`insert_attempts`]), the attempt ids taken from the
/// subscription's counter by the same UPDATE that settles it. With
/// `park_unless_after`, a park (no owner) becomes a release due at once
/// when the tenant's head (`tenant_heads.event_seq`, see [`leased`]) is
/// past that sequence: an event committed between the chunk's read and
/// this write never waits for the poll. On PostgreSQL it is one
/// statement (the UPDATE and the INSERT in one `WITH`), so one round
/// trip; on SQLite two. If `owner` no longer holds the lease, nothing is
/// settled and the attempts are still recorded (counter moved on by an
/// UPDATE of its own). Returns whether the decision was written.
pub fn settle_recorded(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    id: i64,
    owner: &str,
    s: &Settle,
    attempts: &[Attempt],
    park_unless_after: Option<i64>,
) -> Result<bool, StoreError> {
    let n = attempts.len() as i64;
    let rows = attempt_rows(attempts)?;
    let pg = tx.backend() == super::Backend::Postgres;
    // A head past `seen` turns a park into a release due now; i64::MAX:
    // no such check.
    let seen = park_unless_after.unwrap_or(i64::MAX);
    let update = "UPDATE webhook_subscriptions SET position = $4, attempt = $5, next_attempt_at = $6, failing_since = $7, \
         status = $8, paused_at = $9, lease_owner = $10, \
         lease_until = CASE WHEN (SELECT h.event_seq FROM tenant_heads h WHERE h.tenant = webhook_subscriptions.tenant) > $12 \
         THEN CAST(0 AS BIGINT) ELSE CAST($11 AS BIGINT) END, \
         last_attempt_id = last_attempt_id + $13 \
         WHERE tenant = $1 AND subscription_id = $2 AND lease_owner = $3 AND status = 'active' \
         RETURNING last_attempt_id";
    let params: Vec<super::Param<'_>> = vec![
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
        seen.into(),
        n.into(),
        (&rows).into(),
    ];
    if pg {
        // The INSERT takes its first id from the UPDATE's row: nothing is
        // inserted when the UPDATE found the lease gone (then below).
        let sql = format!(
            "WITH settled AS ({update}), recorded AS ({} FROM settled, {}) \
             SELECT last_attempt_id FROM settled",
            attempts_select("settled.last_attempt_id - $13"),
            pg_attempt_source("$14")
        );
        if tx.query_opt(&sql, &params)?.is_some() {
            return Ok(true);
        }
    } else {
        let settled = tx.query_opt(update, &params[..13])?;
        if let Some(r) = settled {
            if n > 0 {
                let last = r.int(0)?;
                insert_attempt_rows(tx, tenant, id, last - n, &rows)?;
            }
            return Ok(true);
        }
    }
    insert_attempts(tx, tenant, id, attempts)?;
    Ok(false)
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
/// this transaction: no look-up of the attempts table, and a second worker
/// recording attempts of the same subscription waits on the row lock
/// instead of computing the same numbers. The rows go in ONE statement
/// whatever their number: an INSERT … SELECT over a JSON array of them
/// (PostgreSQL `jsonb_to_recordset`, SQLite `json_each`), one text to
/// prepare. The worker's usual path is [`settle_recorded`]; this one
/// records attempts of a subscription whose lease was taken meanwhile.
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
    insert_attempt_rows(
        tx,
        tenant,
        subscription_id,
        last - n,
        &attempt_rows(attempts)?,
    )
}

/// The attempts as the JSON array the one-statement INSERT reads: `i` is
/// the attempt's place (1, 2, …), added to the id before the first.
fn attempt_rows(attempts: &[Attempt]) -> Result<String, StoreError> {
    let rows: Vec<serde_json::Value> = attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::json!({
                "i": i as i64 + 1,
                "seq": a.seq,
                "webhook_id": a.webhook_id,
                "at": a.at,
                "status": a.status,
                "latency_ms": a.latency_ms,
                "error": a.error,
            })
        })
        .collect();
    serde_json::to_string(&rows).map_err(corrupt)
}

/// PostgreSQL: the attempt rows of parameter `param` (see
/// [`attempt_rows`]) as the recordset `x`.
fn pg_attempt_source(param: &str) -> String {
    format!(
        "jsonb_to_recordset(CAST({param} AS TEXT)::jsonb) \
         AS x(i BIGINT, seq BIGINT, webhook_id TEXT, at BIGINT, status BIGINT, latency_ms BIGINT, error TEXT)"
    )
}

/// The INSERT … SELECT of attempt rows over PostgreSQL's recordset `x`,
/// ids `base + i`.
fn attempts_select(base: &str) -> String {
    format!(
        "INSERT INTO webhook_attempts (tenant, subscription_id, attempt_id, seq, webhook_id, at, status, latency_ms, error) \
         SELECT $1, $2, {base} + x.i, x.seq, x.webhook_id, x.at, x.status, x.latency_ms, x.error"
    )
}

/// Inserts the attempt rows of `rows` (see [`attempt_rows`]) with ids
/// `before + 1 …` in one statement.
fn insert_attempt_rows(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    subscription_id: i64,
    before: i64,
    rows: &str,
) -> Result<(), StoreError> {
    if tx.backend() == super::Backend::Postgres {
        let sql = format!("{} FROM {}", attempts_select("$3"), pg_attempt_source("$4"));
        tx.execute(
            &sql,
            &[
                tenant.as_str().into(),
                subscription_id.into(),
                before.into(),
                rows.into(),
            ],
        )?;
    } else {
        tx.execute(
            "INSERT INTO webhook_attempts (tenant, subscription_id, attempt_id, seq, webhook_id, at, status, latency_ms, error) \
             SELECT $1, $2, $3 + json_extract(value, '$.i'), json_extract(value, '$.seq'), json_extract(value, '$.webhook_id'), \
             json_extract(value, '$.at'), json_extract(value, '$.status'), json_extract(value, '$.latency_ms'), \
             json_extract(value, '$.error') FROM json_each($4)",
            &[
                tenant.as_str().into(),
                subscription_id.into(),
                before.into(),
                rows.into(),
            ],
        )?;
    }
    Ok(())
}

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
