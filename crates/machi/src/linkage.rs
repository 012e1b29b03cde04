//! File linkage (ファイル連携): full and difference extracts of the
//! standard data items as CSV in the migration layout (j1410; see
//! [`crate::migration::export`]), with a linkage manifest, to a directory
//! or S3-compatible object storage (`object_store`).
//!
//! Layout at the target, one folder per extract:
//!
//! ```text
//! {団体コード}/{to_seq:012}-{kind}/residents.csv …
//! {団体コード}/{to_seq:012}-{kind}/SHA256SUMS
//! {団体コード}/{to_seq:012}-{kind}/linkage-manifest.json   (written last)
//! ```
//!
//! Resumable by event sequence: an extract is complete exactly when its
//! manifest exists. A difference extract covers the events after the last
//! complete extract's `to_seq` up to the tenant's current sequence (its
//! history rows are those of changes after that extract's
//! `last_change_id`); a run that died mid-write left no manifest, so the
//! next run starts from the same point and writes it again. The content is
//! never less than the range claims: `to_seq` is read before the rows, so a
//! change committed during the read may appear in this extract and again in
//! the next (a reader keys rows by 宛名番号 and 履歴番号), and none is lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use machi_domain::ids::MunicipalityCode;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::migration::export::{ExportError, export_since};
use crate::migration::layout::MANIFEST_FILE;
use crate::service::{Actor, Registry, ServiceError};
use crate::store::records;

/// The manifest's name at the target (the migration manifest.json is also
/// there, for `machi import`).
pub const LINKAGE_MANIFEST: &str = "linkage-manifest.json";
/// `sha256sum -c` compatible checksums of the files.
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";

/// Full (every history row, households) or difference (rows of changes
/// since the last extract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Full,
    Diff,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Diff => "diff",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Kind::Full),
            "diff" => Ok(Kind::Diff),
            _ => Err(format!(
                "extract kind must be full or diff, not {s:?} / 抽出の種類は full（全件）か diff（差分）です"
            )),
        }
    }
}

/// One file of an extract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtractFile {
    pub name: String,
    /// Data rows, header excluded (0 for non-CSV files).
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// `linkage-manifest.json`: what one extract holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkageManifest {
    /// 団体コード.
    pub tenant: String,
    pub kind: Kind,
    /// Events after this sequence number are covered (0 for a full extract).
    pub from_seq: i64,
    /// … up to and including this one.
    pub to_seq: i64,
    /// History rows of changes up to this change id are in this extract or
    /// an earlier one; the next difference extract starts after it.
    pub last_change_id: i64,
    /// RFC 3339.
    pub created_at: String,
    /// Where the extract is at the target (its folder).
    pub folder: String,
    pub files: Vec<ExtractFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "no earlier complete extract of {0} at this target: make a full extract first / この出力先に {0} の完了した抽出がありません。先に全件抽出を行ってください"
    )]
    NoBase(String),
    #[error("the target store: {0} / 出力先に書き込めません: {0}")]
    Store(#[from] object_store::Error),
    #[error("target {target:?}: {message} / 出力先の指定が正しくありません")]
    Target { target: String, message: String },
    #[error("local staging {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<crate::store::StoreError> for ExtractError {
    fn from(e: crate::store::StoreError) -> Self {
        ExtractError::Service(e.into())
    }
}

/// Opens a target: `s3://bucket/prefix` (credentials, region and endpoint
/// from the usual `AWS_*` variables, e.g. `AWS_ENDPOINT` for an
/// S3-compatible store inside the LGWAN), or a directory (created).
/// Returns the store and the prefix inside it.
pub fn open_target(target: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), ExtractError> {
    let bad = |message: String| ExtractError::Target {
        target: target.to_string(),
        message,
    };
    if let Some(rest) = target.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket in s3://BUCKET/PREFIX".into()));
        }
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let prefix = ObjectPath::parse(prefix.trim_matches('/')).map_err(|e| bad(e.to_string()))?;
        return Ok((Arc::new(s3), prefix));
    }
    if target.contains("://") {
        return Err(bad("give a directory or s3://BUCKET/PREFIX".into()));
    }
    let dir = Path::new(target);
    std::fs::create_dir_all(dir).map_err(|source| ExtractError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| bad(e.to_string()))?;
    Ok((Arc::new(fs), ObjectPath::default()))
}

fn child(base: &ObjectPath, parts: &[&str]) -> ObjectPath {
    let mut p = base.clone();
    for part in parts {
        p = p.clone().join(*part);
    }
    p
}

/// The last complete extract of `tenant` at the target: the highest
/// `to_seq` folder that has a manifest (folders without one are runs that
/// did not finish).
pub async fn last_complete(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    tenant: &MunicipalityCode,
) -> Result<Option<LinkageManifest>, ExtractError> {
    let base = child(prefix, &[tenant.as_str()]);
    let listing = store.list_with_delimiter(Some(&base)).await?;
    let mut folders: Vec<ObjectPath> = listing.common_prefixes;
    // Names start with the zero-padded to_seq: newest last.
    folders.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    for folder in folders.iter().rev() {
        match store.get(&child(folder, &[LINKAGE_MANIFEST])).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                match serde_json::from_slice::<LinkageManifest>(&bytes) {
                    Ok(m) => return Ok(Some(m)),
                    Err(e) => {
                        tracing::warn!(folder = %folder, error = %e, "linkage: unreadable manifest skipped");
                    }
                }
            }
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Makes one extract of `tenant` at the target; returns its manifest.
/// `Kind::Diff` continues from the last complete extract there (an error
/// if there is none).
pub async fn extract(
    registry: &Registry,
    tenant: &MunicipalityCode,
    kind: Kind,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    actor: &Actor,
) -> Result<LinkageManifest, ExtractError> {
    registry.ensure_tenant(tenant).await?;
    let (from_seq, after_change) = match kind {
        Kind::Full => (0, None),
        Kind::Diff => match last_complete(store, prefix, tenant).await? {
            Some(m) => (m.to_seq, Some(m.last_change_id)),
            None => return Err(ExtractError::NoBase(tenant.to_string())),
        },
    };
    // Read before the rows: everything up to it is in the rows.
    let t = tenant.clone();
    let to_seq = registry
        .store()
        .read(Some(tenant), move |tx| records::last_event_seq(tx, &t))
        .await?;
    let staging = std::env::temp_dir().join(format!(
        "machi-extract-{}-{}-{}",
        tenant,
        std::process::id(),
        fastrand::u64(..)
    ));
    let result = async {
        let summary = export_since(registry, tenant, &staging, after_change, actor).await?;
        let folder_name = format!("{to_seq:012}-{}", kind.as_str());
        let folder = child(prefix, &[tenant.as_str(), &folder_name]);
        let mut files = Vec::new();
        let mut sums = String::new();
        let mut names: Vec<(String, u64)> = summary
            .manifest
            .files
            .iter()
            .map(|f| (f.name.clone(), f.rows))
            .collect();
        names.push((MANIFEST_FILE.to_string(), 0));
        for (name, rows) in names {
            let path = staging.join(&name);
            let data = std::fs::read(&path).map_err(|source| ExtractError::Io {
                path: path.clone(),
                source,
            })?;
            let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
            sums.push_str(&format!("{sha256}  {name}\n"));
            files.push(ExtractFile {
                name: name.clone(),
                rows,
                bytes: data.len() as u64,
                sha256,
            });
            store
                .put(&child(&folder, &[&name]), Bytes::from(data).into())
                .await?;
        }
        store
            .put(
                &child(&folder, &[CHECKSUMS_FILE]),
                Bytes::from(sums.into_bytes()).into(),
            )
            .await?;
        let manifest = LinkageManifest {
            tenant: tenant.to_string(),
            kind,
            from_seq,
            to_seq: to_seq.max(from_seq),
            last_change_id: summary.last_change_id.max(after_change.unwrap_or(0)),
            created_at: registry.clock().now().to_rfc3339(),
            folder: folder.to_string(),
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        // Last: its presence says the extract is complete.
        store
            .put(
                &child(&folder, &[LINKAGE_MANIFEST]),
                Bytes::from(json).into(),
            )
            .await?;
        Ok::<_, ExtractError>(manifest)
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    let manifest = result?;
    tracing::info!(tenant = %tenant, kind = kind.as_str(), from_seq = manifest.from_seq, to_seq = manifest.to_seq, folder = %manifest.folder, "linkage: extract written");
    Ok(manifest)
}

/// The scheduled run: a difference extract if the target holds a complete
/// one, else a full one; nothing when no event came since the last.
pub async fn scheduled(
    registry: &Registry,
    tenant: &MunicipalityCode,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
) -> Result<Option<LinkageManifest>, ExtractError> {
    let actor = Actor::system("linkage-schedule");
    match last_complete(store, prefix, tenant).await? {
        None => Ok(Some(
            extract(registry, tenant, Kind::Full, store, prefix, &actor).await?,
        )),
        Some(m) => {
            let t = tenant.clone();
            let now = registry
                .store()
                .read(Some(tenant), move |tx| records::last_event_seq(tx, &t))
                .await?;
            if now <= m.to_seq {
                return Ok(None);
            }
            Ok(Some(
                extract(registry, tenant, Kind::Diff, store, prefix, &actor).await?,
            ))
        }
    }
}

/// A tenant's own extract schedule, set by its administrator: every day at
/// `daily_at` (Japan time), a full extract or a difference extract (a full
/// one when the target holds none). Without one, the server-wide interval
/// (`--extract-every`) applies to the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSchedule {
    pub daily_at: chrono::NaiveTime,
    pub kind: Kind,
}

impl TenantSchedule {
    /// Reads the administrator's form: a time `HH:MM` (full-width digits
    /// and `時`/`分` accepted) and `full` or `diff`.
    pub fn parse(time: &str, kind: &str) -> Result<TenantSchedule, ServiceError> {
        let bad = |field: &str, ja: &str, en: &str| ServiceError::Invalid {
            field: field.into(),
            code: "invalid_extract_schedule",
            message_ja: ja.into(),
            message_en: en.into(),
        };
        let t: String = time
            .trim()
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
                '：' | '時' => ':',
                '分' => ' ',
                c => c,
            })
            .collect();
        let daily_at = chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| {
            bad(
                "daily_at",
                "時刻は 02:00 のように24時間制の時:分で入力してください。",
                "Enter the time as hours:minutes, 24-hour (e.g. 02:00).",
            )
        })?;
        let kind = kind.trim().parse::<Kind>().map_err(|_| {
            bad(
                "kind",
                "抽出の種類は全件か差分を選んでください。",
                "Choose a full or a difference extract.",
            )
        })?;
        Ok(TenantSchedule { daily_at, kind })
    }
}

/// The tenant's own schedule, or None (the server-wide interval).
pub async fn tenant_schedule(
    registry: &Registry,
    tenant: &MunicipalityCode,
) -> Result<Option<TenantSchedule>, ServiceError> {
    let t = tenant.clone();
    let row = registry
        .store()
        .read(Some(tenant), move |tx| {
            tx.query_opt(
                "SELECT daily_at, kind FROM extract_schedules WHERE tenant = $1",
                &[t.as_str().into()],
            )?
            .map(|r| Ok::<_, crate::store::StoreError>((r.text(0)?, r.text(1)?)))
            .transpose()
        })
        .await?;
    row.map(|(at, kind)| {
        let corrupt = |e: String| ServiceError::from(crate::store::StoreError::Corrupt(e));
        Ok(TenantSchedule {
            daily_at: chrono::NaiveTime::parse_from_str(&at, "%H:%M")
                .map_err(|e| corrupt(format!("extract schedule {at}: {e}")))?,
            kind: kind.parse().map_err(corrupt)?,
        })
    })
    .transpose()
}

/// Sets (Some) or removes (None: back to the server-wide interval) the
/// tenant's schedule; written to the tenant's access log (j1370).
pub async fn set_tenant_schedule(
    registry: &Registry,
    tenant: &MunicipalityCode,
    schedule: Option<TenantSchedule>,
    actor: &Actor,
) -> Result<(), ServiceError> {
    registry.ensure_tenant(tenant).await?;
    let now = registry.clock().now().timestamp_micros();
    let (t, actor) = (tenant.clone(), actor.clone());
    registry
        .store()
        .write(Some(tenant), move |tx| {
            match schedule {
                Some(sc) => {
                    tx.execute(
                        "INSERT INTO extract_schedules (tenant, daily_at, kind, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (tenant) DO UPDATE SET daily_at = excluded.daily_at, kind = excluded.kind, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                        &[
                            t.as_str().into(),
                            sc.daily_at.format("%H:%M").to_string().as_str().into(),
                            sc.kind.as_str().into(),
                            (&actor.operator).into(),
                            now.into(),
                        ],
                    )?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM extract_schedules WHERE tenant = $1",
                        &[t.as_str().into()],
                    )?;
                }
            }
            records::append_next_audit(
                tx,
                &t,
                now,
                &records::AuditEntry {
                    operator: actor.operator.clone(),
                    terminal: actor.terminal.clone(),
                    function: "settings.extract_schedule".into(),
                    target: String::new(),
                    detail: match schedule {
                        Some(sc) => serde_json::json!({
                            "daily_at": sc.daily_at.format("%H:%M").to_string(),
                            "kind": sc.kind.as_str(),
                        }),
                        None => serde_json::json!({ "server_default": true }),
                    }
                    .to_string(),
                    my_number_shown: false,
                },
            )?;
            Ok::<_, ServiceError>(())
        })
        .await
}

/// The latest time at or before `now` that is `daily_at` in Japan.
pub fn last_slot(
    daily_at: chrono::NaiveTime,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    let jst = crate::service::clock::jst();
    let local = now.with_timezone(&jst);
    let today = local
        .date_naive()
        .and_time(daily_at)
        .and_local_timezone(jst)
        .single()
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or(now);
    if today <= now {
        today
    } else {
        today - chrono::Duration::days(1)
    }
}

/// What the schedule remembers between ticks (in this process).
#[derive(Debug, Default)]
pub struct ScheduleState {
    /// Per tenant with its own schedule: the last daily slot handled.
    handled: std::collections::HashMap<MunicipalityCode, chrono::DateTime<chrono::Utc>>,
    /// Per tenant on the server-wide interval: when it last ran.
    last_default: std::collections::HashMap<MunicipalityCode, chrono::DateTime<chrono::Utc>>,
}

/// One tick of the schedule for `tenant` at `now`: with the tenant's own
/// schedule, once per daily slot (a slot missed while the server was down
/// is made up once at start, unless the target already holds an extract
/// made since that slot); otherwise the server-wide interval `every` (a
/// difference extract when events came, a full one first).
pub async fn run_due(
    registry: &Registry,
    tenant: &MunicipalityCode,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    every: std::time::Duration,
    now: chrono::DateTime<chrono::Utc>,
    state: &mut ScheduleState,
) -> Result<Option<LinkageManifest>, ExtractError> {
    match tenant_schedule(registry, tenant).await? {
        Some(sc) => {
            state.last_default.remove(tenant);
            let slot = last_slot(sc.daily_at, now);
            if state.handled.get(tenant).is_some_and(|h| *h >= slot) {
                return Ok(None);
            }
            let last = last_complete(store, prefix, tenant).await?;
            let made_since_slot = last.as_ref().is_some_and(|m| {
                chrono::DateTime::parse_from_rfc3339(&m.created_at)
                    .is_ok_and(|c| c.with_timezone(&chrono::Utc) >= slot)
            });
            let out = if made_since_slot {
                None
            } else {
                match sc.kind {
                    Kind::Full => Some(
                        extract(
                            registry,
                            tenant,
                            Kind::Full,
                            store,
                            prefix,
                            &Actor::system("linkage-schedule"),
                        )
                        .await?,
                    ),
                    Kind::Diff => scheduled(registry, tenant, store, prefix).await?,
                }
            };
            state.handled.insert(tenant.clone(), slot);
            Ok(out)
        }
        None => {
            state.handled.remove(tenant);
            let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::hours(1));
            if state
                .last_default
                .get(tenant)
                .is_some_and(|t| now < *t + every)
            {
                return Ok(None);
            }
            let out = scheduled(registry, tenant, store, prefix).await?;
            state.last_default.insert(tenant.clone(), now);
            Ok(out)
        }
    }
}

/// Runs the schedule for `tenants` until the task is dropped: each
/// tenant's own daily schedule if its administrator set one, else every
/// `every` (the server-wide default). Checked every minute (or `every`,
/// if shorter); failures are logged and retried at the next tick (a failed
/// run leaves no manifest, so nothing is skipped).
pub fn spawn_schedule(
    registry: Registry,
    tenants: Vec<MunicipalityCode>,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.min(std::time::Duration::from_secs(60)));
        let mut state = ScheduleState::default();
        loop {
            tick.tick().await;
            let now = registry.clock().now();
            for t in &tenants {
                if let Err(e) = run_due(
                    &registry,
                    t,
                    store.as_ref(),
                    &prefix,
                    every,
                    now,
                    &mut state,
                )
                .await
                {
                    tracing::warn!(tenant = %t, error = %e, "linkage: scheduled extract failed; retried at the next run");
                }
            }
        }
    })
}
