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
//! For 宛名連携 (j1190: 住民記録データ（支援対象者管理データを含む）),
//! residents.csv differs from a migration export in two ways: its last
//! column, `support_measure` (支援措置対象), says whom a support measure
//! covers now (`protected`: a 支援対象者; `covered`: someone in their
//! household or at their address; j440, j410 世帯単位), so the receiving
//! system never discloses their address (the rows are passed with the
//! flag, not dropped: those systems keep running their affairs for these
//! persons); and 個人番号 is written only when the extract is asked to
//! include it ([`ExtractOptions`]), which the access log records. The
//! manifest says both (`my_number_included`, `residents_columns`). The
//! support measures themselves go as support_persons.csv, one row per
//! protected person with the measure's state, period and affairs only
//! (j160's core items; never the 記録内容, see
//! [`crate::migration::side::LINKAGE_SUPPORT_FILE`]), not as the
//! migration's support_measures.csv. Issued certificates go as
//! certificate_issues.csv without the issuing clerk's login and terminal
//! ([`crate::migration::side::LINKAGE_CERTIFICATES_FILE`]), not as the
//! migration's certificates.csv. 住民票コード stays in residents.csv
//! ([`RESIDENT_CODE_VALUES`] says why).
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
use chrono::Datelike;
use machi_domain::ids::MunicipalityCode;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

pub use crate::migration::export::LinkageItems as ExtractOptions;
use crate::migration::export::{ExportError, export_with};
use crate::migration::layout::MANIFEST_FILE;
use crate::migration::layout::{
    MY_NUMBER_COLUMN, RESIDENT_COLUMNS, SUPPORT_FLAG_COLUMN, SUPPORT_FLAG_VALUES,
};
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
    /// RFC 3339: when the extract was complete.
    pub created_at: String,
    /// RFC 3339: when it began, before `to_seq` was read. A scheduled slot
    /// is served by an extract that began at or after it (one that began
    /// earlier and ended after the slot does not hold the slot's events).
    /// Absent in manifests written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Where the extract is at the target (its folder).
    pub folder: String,
    pub files: Vec<ExtractFile>,
    /// Whether residents.csv carries 個人番号 (`my_number`): only when the
    /// extract was asked to include it; the column is empty otherwise.
    /// Absent (false) in manifests written before it was added.
    #[serde(default)]
    pub my_number_included: bool,
    /// The columns of residents.csv in order, with their 項目名; the last,
    /// `support_measure` (支援措置対象), says whom a support measure covers
    /// (j440, j1190). Absent in manifests written before it was added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residents_columns: Vec<ExtractColumn>,
    /// The columns of support_persons.csv (支援措置の対象者, j1190/j160:
    /// only what another system needs, never the 記録内容), described.
    /// Absent in manifests written before it was added (those extracts
    /// carried support_measures.csv instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub support_columns: Vec<ExtractColumn>,
    /// The columns of certificate_issues.csv (交付履歴, j300: never the
    /// issuing clerk's login or terminal), described. Absent in manifests
    /// written before it was added (those extracts carried the migration's
    /// certificates.csv instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_columns: Vec<ExtractColumn>,
}

/// One column of residents.csv as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtractColumn {
    pub name: String,
    /// 項目名.
    pub label_ja: String,
    /// What its values mean, where that needs saying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
}

/// What the manifest says of `resident_code` (住民票コード).
///
/// 住民票コード stays in a linkage extract's residents.csv, in clear:
/// 7.2.3 宛名連携 (j1190) passes 住民記録データ to the other systems, and
/// 住民票コード is one of its 住民票記載事項 (1.1.1, j10; 1.1.2, j20) — the
/// systems that match the 住基ネット's 本人確認情報 (and the 住民票コード
/// 通知票 of 4.3.3, j890) key on it; it cannot be masked or hashed and
/// still serve them. Unlike 個人番号 the standard gives it no per-affair
/// exception in linkage; 10.4 (j1390) makes it an item whose display is
/// set per operator on the registry's screens, which is the receiving
/// system's duty for its own screens. The manifest says so to the
/// receiving system (its use is restricted by 住民基本台帳法).
pub const RESIDENT_CODE_VALUES: &str = "住民基本台帳ネットワークシステムの本人確認情報との照合に用いる番号。住民基本台帳法による利用の制限に従い、その事務に必要な範囲でのみ利用し、画面では操作者の権限により表示・非表示を設定すること（標準仕様10.4）。";

/// The columns of a linkage extract's residents.csv, described.
pub fn residents_columns(opts: ExtractOptions) -> Vec<ExtractColumn> {
    RESIDENT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (name, label))| ExtractColumn {
            name: name.to_string(),
            label_ja: label.to_string(),
            values: if i == MY_NUMBER_COLUMN && !opts.include_my_number {
                Some("空欄（この抽出は個人番号を含めていません）".to_string())
            } else if *name == "resident_code" {
                Some(RESIDENT_CODE_VALUES.to_string())
            } else {
                None
            },
        })
        .chain(std::iter::once(ExtractColumn {
            name: SUPPORT_FLAG_COLUMN.0.into(),
            label_ja: SUPPORT_FLAG_COLUMN.1.into(),
            values: Some(SUPPORT_FLAG_VALUES.into()),
        }))
        .collect()
}

/// The columns of a linkage extract's support_persons.csv, described
/// ([`crate::migration::side::LINKAGE_SUPPORT_COLUMNS`]).
pub fn support_columns() -> Vec<ExtractColumn> {
    use crate::migration::side::{LINKAGE_SUPPORT_COLUMNS, LINKAGE_SUPPORT_VALUES};
    LINKAGE_SUPPORT_COLUMNS
        .iter()
        .map(|(name, label)| ExtractColumn {
            name: name.to_string(),
            label_ja: label.to_string(),
            values: LINKAGE_SUPPORT_VALUES
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, v)| v.to_string()),
        })
        .collect()
}

/// The columns of a linkage extract's certificate_issues.csv, described
/// ([`crate::migration::side::LINKAGE_CERTIFICATE_COLUMNS`]).
pub fn certificate_columns() -> Vec<ExtractColumn> {
    use crate::migration::side::{LINKAGE_CERTIFICATE_COLUMNS, LINKAGE_CERTIFICATE_VALUES};
    LINKAGE_CERTIFICATE_COLUMNS
        .iter()
        .map(|(name, label)| ExtractColumn {
            name: name.to_string(),
            label_ja: label.to_string(),
            values: LINKAGE_CERTIFICATE_VALUES
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, v)| v.to_string()),
        })
        .collect()
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
    #[error(
        "the claim on an extract of {0} (scheduled or on demand) ran out and another server took it / {0} の抽出の確保が切れ、他のサーバーが引き継ぎました"
    )]
    ClaimLost(String),
    #[error(
        "an extract of {0} is running (scheduled or on demand; one stopped on the way holds its claim until its lease runs out, at most 5 minutes); nothing was written, try again when it has finished / {0} のファイル連携の抽出が実行中です（定期または随時。途中で止まった抽出は、その確保が切れるまで最長5分）。何も書き込んでいません。終わってからやり直してください"
    )]
    Running(String),
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

/// The latest `n` complete extracts of `tenant` at the target, newest
/// first (for the administrator's page).
pub async fn recent_extracts(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    tenant: &MunicipalityCode,
    n: usize,
) -> Result<Vec<LinkageManifest>, ExtractError> {
    let base = child(prefix, &[tenant.as_str()]);
    let listing = store.list_with_delimiter(Some(&base)).await?;
    let mut folders: Vec<ObjectPath> = listing.common_prefixes;
    folders.sort_by(|a, b| b.as_ref().cmp(a.as_ref()));
    let mut out: Vec<LinkageManifest> = Vec::new();
    for folder in folders {
        // One more than asked: a full and a difference extract may share a
        // to_seq (no event between), and only their times tell the order.
        if out.len() > n {
            break;
        }
        match store.get(&child(&folder, &[LINKAGE_MANIFEST])).await {
            Ok(r) => {
                if let Ok(m) = serde_json::from_slice::<LinkageManifest>(&r.bytes().await?) {
                    out.push(m);
                }
            }
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(|a, b| (b.to_seq, &b.created_at).cmp(&(a.to_seq, &a.created_at)));
    out.truncate(n);
    Ok(out)
}

/// Makes one extract of `tenant` at the target on demand (the API, the
/// command line); returns its manifest. `Kind::Diff` continues from the
/// last complete extract there (an error if there is none). It claims the
/// tenant's extract like a scheduled run ([`extract_as`]): while another
/// extract of the tenant runs, it is refused ([`ExtractError::Running`]),
/// nothing written.
pub async fn extract(
    registry: &Registry,
    tenant: &MunicipalityCode,
    kind: Kind,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    actor: &Actor,
) -> Result<LinkageManifest, ExtractError> {
    extract_with(
        registry,
        tenant,
        kind,
        ExtractOptions::default(),
        store,
        prefix,
        actor,
    )
    .await
}

/// [`extract`] with options: 個人番号 only when `opts` asks for it (its
/// use marked in the access log).
pub async fn extract_with(
    registry: &Registry,
    tenant: &MunicipalityCode,
    kind: Kind,
    opts: ExtractOptions,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    actor: &Actor,
) -> Result<LinkageManifest, ExtractError> {
    extract_claimed(
        registry,
        tenant,
        kind,
        opts,
        store,
        prefix,
        actor,
        &ScheduleState::default(),
    )
    .await
}

/// [`extract`] claiming as `state` (its owner name and lease). The claim
/// is the tenant's one row in `extract_claims`, as a scheduled run takes
/// it, under a key of its own (the negated moment in µs: scheduled slots
/// and interval keys are never negative, so a later scheduled run, or a
/// later on-demand one, finds the row done with another key and takes
/// it). If another run (scheduled or on demand) holds a live claim, this
/// one is refused with [`ExtractError::Running`] before anything is
/// written (the claim attempt changes no row). The claim is renewed while
/// the extract runs and right before its manifest is written, marked done
/// after (no slot is recorded handled: a scheduled run finds the extract
/// made since its slot and adds none), and given back at once if the
/// extract fails.
pub async fn extract_as(
    registry: &Registry,
    tenant: &MunicipalityCode,
    kind: Kind,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    actor: &Actor,
    state: &ScheduleState,
) -> Result<LinkageManifest, ExtractError> {
    extract_claimed(
        registry,
        tenant,
        kind,
        ExtractOptions::default(),
        store,
        prefix,
        actor,
        state,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn extract_claimed(
    registry: &Registry,
    tenant: &MunicipalityCode,
    kind: Kind,
    opts: ExtractOptions,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    actor: &Actor,
    state: &ScheduleState,
) -> Result<LinkageManifest, ExtractError> {
    registry.ensure_tenant(tenant).await?;
    let now = registry.clock().now();
    let key = -now.timestamp_micros().max(1);
    if !claim(registry, tenant, key, Expect::Any, state, now).await? {
        return Err(ExtractError::Running(tenant.to_string()));
    }
    let held = Held::new(registry, tenant, key, state, now);
    let work = extract_fenced(
        registry,
        tenant,
        kind,
        opts,
        store,
        prefix,
        actor,
        Some(&held),
    );
    match while_claimed(&held, work).await {
        Ok(m) => {
            if !finish(registry, tenant, key, &state.owner, None).await? {
                // The manifest was written under the fence; only the
                // done mark came too late (the lease ran out meanwhile).
                tracing::warn!(tenant = %tenant, "linkage: the claim on an on-demand extract ran out before it was marked done");
            }
            Ok(m)
        }
        Err(e) => {
            if !matches!(e, ExtractError::ClaimLost(_))
                && let Err(r) = release(registry, tenant, key, &state.owner).await
            {
                tracing::warn!(tenant = %tenant, error = %r, "linkage: cannot give back the claim of a failed extract; it runs out by itself");
            }
            Err(e)
        }
    }
}

/// [`extract`], with a scheduled run's claim checked (renewed) right
/// before the manifest is written: a run whose claim is gone or past its
/// lease never writes the manifest that makes its extract complete.
#[allow(clippy::too_many_arguments)]
async fn extract_fenced(
    registry: &Registry,
    tenant: &MunicipalityCode,
    kind: Kind,
    opts: ExtractOptions,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    actor: &Actor,
    fence: Option<&Held<'_>>,
) -> Result<LinkageManifest, ExtractError> {
    registry.ensure_tenant(tenant).await?;
    let (from_seq, after_change) = match kind {
        Kind::Full => (0, None),
        Kind::Diff => match last_complete(store, prefix, tenant).await? {
            Some(m) => (m.to_seq, Some(m.last_change_id)),
            None => return Err(ExtractError::NoBase(tenant.to_string())),
        },
    };
    let started_at = registry.clock().now().to_rfc3339();
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
        let summary =
            export_with(registry, tenant, &staging, after_change, actor, Some(opts)).await?;
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
        names.extend(summary.linkage_files.iter().cloned());
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
            started_at: Some(started_at),
            folder: folder.to_string(),
            files,
            my_number_included: opts.include_my_number,
            residents_columns: residents_columns(opts),
            support_columns: support_columns(),
            certificate_columns: certificate_columns(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        // Last: its presence says the extract is complete. Fenced: the
        // claim is renewed just before, so no other server can hold the
        // slot while this one writes it (unless the write itself outlasts
        // a whole lease).
        if let Some(f) = fence {
            f.fence().await?;
        }
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
    scheduled_fenced(
        registry,
        tenant,
        ExtractOptions::default(),
        store,
        prefix,
        None,
    )
    .await
}

async fn scheduled_fenced(
    registry: &Registry,
    tenant: &MunicipalityCode,
    opts: ExtractOptions,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    fence: Option<&Held<'_>>,
) -> Result<Option<LinkageManifest>, ExtractError> {
    let actor = Actor::system("linkage-schedule");
    match last_complete(store, prefix, tenant).await? {
        None => Ok(Some(
            extract_fenced(
                registry,
                tenant,
                Kind::Full,
                opts,
                store,
                prefix,
                &actor,
                fence,
            )
            .await?,
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
                extract_fenced(
                    registry,
                    tenant,
                    Kind::Diff,
                    opts,
                    store,
                    prefix,
                    &actor,
                    fence,
                )
                .await?,
            ))
        }
    }
}

/// Days of the week an extract schedule runs on (Monday = bit 0 …
/// Sunday = bit 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weekdays(u8);

impl Weekdays {
    pub const EVERY_DAY: Weekdays = Weekdays(0x7f);

    /// The days given, or None when there is none.
    pub fn of(days: &[chrono::Weekday]) -> Option<Weekdays> {
        let bits = days
            .iter()
            .fold(0u8, |b, d| b | 1 << d.num_days_from_monday());
        (bits != 0).then_some(Weekdays(bits))
    }

    pub fn from_bits(bits: i64) -> Option<Weekdays> {
        let b = u8::try_from(bits).ok()? & 0x7f;
        (b != 0 && i64::from(b) == bits).then_some(Weekdays(b))
    }

    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    pub fn contains(self, d: chrono::Weekday) -> bool {
        self.0 & 1 << d.num_days_from_monday() != 0
    }

    pub fn is_every_day(self) -> bool {
        self == Weekdays::EVERY_DAY
    }

    /// The days, Monday first.
    pub fn days(self) -> Vec<chrono::Weekday> {
        WEEK.iter()
            .map(|(d, _, _)| *d)
            .filter(|d| self.contains(*d))
            .collect()
    }

    /// 「毎日」 or 「月・水・金曜日」; in English "every day" or "Mon, Wed, Fri".
    pub fn words(self, en: bool) -> String {
        if self.is_every_day() {
            return if en { "every day" } else { "毎日" }.into();
        }
        let names: Vec<&str> = WEEK
            .iter()
            .filter(|(d, _, _)| self.contains(*d))
            .map(|(_, ja, e)| if en { *e } else { *ja })
            .collect();
        if en {
            names.join(", ")
        } else {
            format!("{}曜日", names.join("・"))
        }
    }
}

/// The week as the form shows it: (day, 月, Mon).
pub const WEEK: [(chrono::Weekday, &str, &str); 7] = [
    (chrono::Weekday::Mon, "月", "Mon"),
    (chrono::Weekday::Tue, "火", "Tue"),
    (chrono::Weekday::Wed, "水", "Wed"),
    (chrono::Weekday::Thu, "木", "Thu"),
    (chrono::Weekday::Fri, "金", "Fri"),
    (chrono::Weekday::Sat, "土", "Sat"),
    (chrono::Weekday::Sun, "日", "Sun"),
];

/// Most times a day a schedule may name (one an hour).
pub const MAX_TIMES_A_DAY: usize = 24;

/// A tenant's own extract schedule, set by its administrator: on the
/// chosen days of the week, at each of the chosen times (Japan time), a
/// full extract or a difference extract (a full one when the target holds
/// none). Without one, the server-wide interval (`--extract-every`)
/// applies to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSchedule {
    /// Sorted, no time twice, 1 to [`MAX_TIMES_A_DAY`].
    pub times: Vec<chrono::NaiveTime>,
    pub weekdays: Weekdays,
    pub kind: Kind,
    /// 個人番号 in the scheduled extracts (off unless the administrator
    /// turns it on).
    #[serde(default)]
    pub include_my_number: bool,
}

fn invalid_schedule(field: &str, ja: &str, en: &str) -> ServiceError {
    ServiceError::Invalid {
        field: field.into(),
        code: "invalid_extract_schedule",
        message_ja: ja.into(),
        message_en: en.into(),
    }
}

impl TenantSchedule {
    /// Every day at one time.
    pub fn daily(at: chrono::NaiveTime, kind: Kind) -> TenantSchedule {
        TenantSchedule {
            times: vec![at],
            weekdays: Weekdays::EVERY_DAY,
            kind,
            include_my_number: false,
        }
    }

    /// Reads the administrator's form: times `HH:MM` separated by commas,
    /// 「、」, 「・」 or spaces (full-width digits and `時`/`分` accepted),
    /// the chosen days (None: every day; Some and empty is refused) and
    /// `full` or `diff`. Every error is typed, in Japanese and English.
    pub fn parse(
        times: &str,
        weekdays: Option<&[chrono::Weekday]>,
        kind: &str,
    ) -> Result<TenantSchedule, ServiceError> {
        let normal: String = times
            .trim()
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
                '：' | '時' => ':',
                '分' => ' ',
                '、' | '，' | '・' | ',' | '　' | '\n' | '\r' | '\t' => ' ',
                c => c,
            })
            .collect();
        let bad_time = |t: &str| {
            let shown: String = t.chars().take(20).collect();
            ServiceError::Invalid {
                field: "times".into(),
                code: "invalid_extract_schedule",
                message_ja: format!(
                    "時刻「{shown}」が読めません。時刻は 02:00 のように24時間制の時:分で入力してください（複数はカンマで区切ります）。"
                ),
                message_en: format!(
                    "The time \"{shown}\" cannot be read. Enter times as hours:minutes, 24-hour (e.g. 02:00), several separated by commas."
                ),
            }
        };
        let mut list = Vec::new();
        for t in normal.split_whitespace() {
            let at = chrono::NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| bad_time(t))?;
            list.push(at);
        }
        if list.is_empty() {
            return Err(invalid_schedule(
                "times",
                "時刻を入力してください（例 02:00。複数はカンマで区切ります）。",
                "Enter at least one time (e.g. 02:00; several separated by commas).",
            ));
        }
        list.sort();
        list.dedup();
        if list.len() > MAX_TIMES_A_DAY {
            return Err(invalid_schedule(
                "times",
                "時刻は1日24回までにしてください。",
                "At most 24 times a day.",
            ));
        }
        let weekdays = match weekdays {
            None => Weekdays::EVERY_DAY,
            Some(days) => Weekdays::of(days).ok_or_else(|| {
                invalid_schedule(
                    "weekdays",
                    "抽出する曜日を一つ以上選んでください。",
                    "Choose at least one day of the week.",
                )
            })?,
        };
        let kind = kind.trim().parse::<Kind>().map_err(|_| {
            invalid_schedule(
                "kind",
                "抽出の種類は全件か差分を選んでください。",
                "Choose a full or a difference extract.",
            )
        })?;
        Ok(TenantSchedule {
            times: list,
            weekdays,
            kind,
            include_my_number: false,
        })
    }

    /// The options its extracts are made with.
    pub fn options(&self) -> ExtractOptions {
        ExtractOptions {
            include_my_number: self.include_my_number,
        }
    }

    /// The times as stored and shown: `02:00,14:00`.
    pub fn times_text(&self, sep: &str) -> String {
        self.times
            .iter()
            .map(|t| t.format("%H:%M").to_string())
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// The schedule in words: 「毎日 02:00・14:00 差分（最初は全件）」.
    pub fn words(&self, en: bool) -> String {
        let kind = match (self.kind, en) {
            (Kind::Full, false) => "全件",
            (Kind::Full, true) => "full",
            (Kind::Diff, false) => "差分（最初は全件）",
            (Kind::Diff, true) => "difference (a full one first)",
        };
        let with_number = match (self.include_my_number, en) {
            (false, _) => "",
            (true, false) => "（個人番号を含む）",
            (true, true) => ", with 個人番号",
        };
        if en {
            format!(
                "{} at {}, {kind}{with_number}",
                self.weekdays.words(true),
                self.times_text(", ")
            )
        } else {
            format!(
                "{} {} {kind}{with_number}",
                self.weekdays.words(false),
                self.times_text("・")
            )
        }
    }

    /// The latest slot at or before `now`: a chosen time on a chosen day
    /// in Japan (None only for a schedule without times).
    pub fn last_slot(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let jst = crate::service::clock::jst();
        let today = now.with_timezone(&jst).date_naive();
        for back in 0..=7 {
            let day = today - chrono::Days::new(back);
            if !self.weekdays.contains(day.weekday()) {
                continue;
            }
            for t in self.times.iter().rev() {
                let slot = day
                    .and_time(*t)
                    .and_local_timezone(jst)
                    .single()
                    .map(|d| d.with_timezone(&chrono::Utc))?;
                if slot <= now {
                    return Some(slot);
                }
            }
        }
        None
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
                "SELECT times, weekdays, kind, include_my_number FROM extract_schedules WHERE tenant = $1",
                &[t.as_str().into()],
            )?
            .map(|r| {
                Ok::<_, crate::store::StoreError>((
                    r.text(0)?,
                    r.int(1)?,
                    r.text(2)?,
                    r.int(3)? != 0,
                ))
            })
            .transpose()
        })
        .await?;
    row.map(|(times, weekdays, kind, include_my_number)| {
        let corrupt = |e: String| ServiceError::from(crate::store::StoreError::Corrupt(e));
        let times = times
            .split(',')
            .map(|t| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(format!("extract schedule {times}: {e}")))?;
        Ok(TenantSchedule {
            times,
            weekdays: Weekdays::from_bits(weekdays)
                .ok_or_else(|| corrupt(format!("extract schedule weekdays {weekdays}")))?,
            kind: kind.parse().map_err(corrupt)?,
            include_my_number,
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
            match &schedule {
                Some(sc) => {
                    tx.execute(
                        "INSERT INTO extract_schedules (tenant, times, weekdays, kind, updated_by, updated_at, include_my_number) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (tenant) DO UPDATE SET times = excluded.times, weekdays = excluded.weekdays, kind = excluded.kind, updated_by = excluded.updated_by, updated_at = excluded.updated_at, include_my_number = excluded.include_my_number",
                        &[
                            t.as_str().into(),
                            sc.times_text(",").as_str().into(),
                            sc.weekdays.bits().into(),
                            sc.kind.as_str().into(),
                            (&actor.operator).into(),
                            now.into(),
                            i64::from(sc.include_my_number).into(),
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
                    detail: match &schedule {
                        Some(sc) => serde_json::json!({
                            "times": sc.times_text(","),
                            "weekdays": sc.weekdays.bits(),
                            "kind": sc.kind.as_str(),
                            "include_my_number": sc.include_my_number,
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

/// The last slot of the tenant's schedule that was handled (run, or found
/// already covered at the target), as recorded in the database: a restart
/// neither runs it again nor skips the next one.
pub async fn handled_slot(
    registry: &Registry,
    tenant: &MunicipalityCode,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ServiceError> {
    let t = tenant.clone();
    let v = registry
        .store()
        .read(Some(tenant), move |tx| {
            tx.query_opt(
                "SELECT slot FROM extract_slots WHERE tenant = $1",
                &[t.as_str().into()],
            )?
            .map(|r| r.int(0))
            .transpose()
        })
        .await?;
    Ok(v.and_then(chrono::DateTime::from_timestamp_micros))
}

/// How long a claim on a scheduled run holds without being renewed (five
/// minutes). The owner renews it every third of that while it runs; the
/// claim of a server killed mid-run is taken over by the next tick after
/// it ran out (by another server, or by the restarted one).
pub const CLAIM_LEASE: std::time::Duration = std::time::Duration::from_secs(300);

/// What one scheduler is: who it claims runs as, and for how long a claim
/// holds. Nothing of the schedule itself is kept here: the handled slot
/// and the server-wide interval's last run are in the database
/// (`extract_slots`), the claim on a running slot too (`extract_claims`).
#[derive(Debug, Clone)]
pub struct ScheduleState {
    owner: String,
    lease: std::time::Duration,
}

impl Default for ScheduleState {
    fn default() -> Self {
        ScheduleState::with_lease(CLAIM_LEASE)
    }
}

impl ScheduleState {
    /// A scheduler whose claims hold for `lease` without renewal; its
    /// name is the process id and a random part (a restarted process is
    /// another owner, so its own killed claim is taken over like anyone's).
    pub fn with_lease(lease: std::time::Duration) -> Self {
        let mut r = [0u8; 8];
        // Only names the owner; a failure leaves a name unique to the process.
        let _ = getrandom::fill(&mut r);
        ScheduleState {
            owner: format!("{}-{}", std::process::id(), hex::encode(r)),
            lease,
        }
    }

    /// The name this scheduler's claims carry.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// What a claim expects of the tenant's handled slot.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A scheduled run: the handled slot as read before deciding the run
    /// is due (moved since: another server ran it).
    Handled(Option<i64>),
    /// An on-demand run: no slot of its own.
    Any,
}

/// Why a claim transaction stopped without claiming.
enum ClaimTx {
    Store(crate::store::StoreError),
    /// The handled slot moved since it was read: another server has run it.
    Stale,
}

impl From<crate::store::StoreError> for ClaimTx {
    fn from(e: crate::store::StoreError) -> Self {
        ClaimTx::Store(e)
    }
}

/// Claims the run keyed `key` for `tenant` (the slot, or for the interval
/// the moment it became due), if the tenant's handled slot is still
/// `expected` (as read before deciding the run is due). One claim row per
/// tenant: a claim is taken when the row is done with another key, or
/// not done and its lease ran out before `now`. Inserted or updated first
/// (on PostgreSQL the row's lock makes a second server wait for the
/// first's commit and then see its claim), the handled slot read after it
/// in the same transaction: a server that read the handled slot before
/// another finished finds it moved and takes nothing. So at most one run
/// of a tenant's schedule holds a live claim at a time, on either backend.
async fn claim(
    registry: &Registry,
    tenant: &MunicipalityCode,
    key: i64,
    expected: Expect,
    state: &ScheduleState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, ServiceError> {
    let (t, owner) = (tenant.clone(), state.owner.clone());
    let at = now.timestamp_micros();
    let until = (now + chrono::Duration::from_std(state.lease).unwrap_or(chrono::Duration::MAX))
        .timestamp_micros();
    let r = registry
        .store()
        .write_quiet(Some(tenant), move |tx| {
            let n = tx.execute(
                "INSERT INTO extract_claims (tenant, slot, owner, claimed_at, lease_until, done_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL) \
                 ON CONFLICT (tenant) DO UPDATE SET slot = excluded.slot, owner = excluded.owner, \
                 claimed_at = excluded.claimed_at, lease_until = excluded.lease_until, done_at = NULL \
                 WHERE (extract_claims.done_at IS NOT NULL AND extract_claims.slot <> excluded.slot) \
                 OR (extract_claims.done_at IS NULL AND extract_claims.lease_until < excluded.claimed_at)",
                &[
                    t.as_str().into(),
                    key.into(),
                    owner.as_str().into(),
                    at.into(),
                    until.into(),
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            let Expect::Handled(expected) = expected else {
                return Ok(true);
            };
            let handled = tx
                .query_opt(
                    "SELECT slot FROM extract_slots WHERE tenant = $1",
                    &[t.as_str().into()],
                )?
                .map(|r| r.int(0))
                .transpose()?;
            if handled != expected {
                return Err(ClaimTx::Stale);
            }
            Ok(true)
        })
        .await;
    match r {
        Ok(claimed) => Ok(claimed),
        Err(ClaimTx::Stale) => Ok(false),
        Err(ClaimTx::Store(e)) => Err(e.into()),
    }
}

/// Extends this scheduler's claim on `key` to `until`; false when the
/// claim is no longer its own (it ran out and another server took it).
async fn renew(
    registry: &Registry,
    tenant: &MunicipalityCode,
    key: i64,
    owner: &str,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<bool, ServiceError> {
    let (t, owner, until) = (tenant.clone(), owner.to_string(), until.timestamp_micros());
    registry
        .store()
        .write_quiet(Some(tenant), move |tx| {
            Ok::<_, ServiceError>(
                tx.execute(
                    "UPDATE extract_claims SET lease_until = $4 \
                     WHERE tenant = $1 AND slot = $2 AND owner = $3 AND done_at IS NULL",
                    &[
                        t.as_str().into(),
                        key.into(),
                        owner.as_str().into(),
                        until.into(),
                    ],
                )? == 1,
            )
        })
        .await
}

/// Gives up this scheduler's claim on `key` after a failed run, so the
/// next tick (of any server) retries at once rather than after the lease.
async fn release(
    registry: &Registry,
    tenant: &MunicipalityCode,
    key: i64,
    owner: &str,
) -> Result<(), ServiceError> {
    let (t, owner) = (tenant.clone(), owner.to_string());
    registry
        .store()
        .write_quiet(Some(tenant), move |tx| {
            tx.execute(
                "UPDATE extract_claims SET lease_until = 0 \
                 WHERE tenant = $1 AND slot = $2 AND owner = $3 AND done_at IS NULL",
                &[t.as_str().into(), key.into(), owner.as_str().into()],
            )?;
            Ok::<_, ServiceError>(())
        })
        .await
}

/// Runs `work` under the claim `held` ([`while_claimed`]), then marks it
/// done and `slot` handled; a failed run gives its claim back. A claim
/// found taken over when marking it done is [`ExtractError::ClaimLost`].
async fn run_claimed(
    held: &Held<'_>,
    slot: chrono::DateTime<chrono::Utc>,
    work: impl std::future::Future<Output = Result<Option<LinkageManifest>, ExtractError>>,
) -> Result<Option<LinkageManifest>, ExtractError> {
    let (registry, tenant, key, owner) = (held.registry, held.tenant, held.key, &held.state.owner);
    match while_claimed(held, work).await {
        Ok(out) => {
            if !finish(registry, tenant, key, owner, Some(slot)).await? {
                tracing::warn!(tenant = %tenant, "linkage: the claim on a scheduled extract was taken over before it was marked done");
                return Err(ExtractError::ClaimLost(tenant.to_string()));
            }
            Ok(out)
        }
        Err(e) => {
            if !matches!(e, ExtractError::ClaimLost(_))
                && let Err(r) = release(registry, tenant, key, owner).await
            {
                tracing::warn!(tenant = %tenant, error = %r, "linkage: cannot give back the claim of a failed extract; it runs out by itself");
            }
            Err(e)
        }
    }
}

/// Marks the claimed run done and records `slot` as handled (never moving
/// back; an on-demand run has none), in one transaction; nothing is
/// recorded if the claim is no longer this scheduler's (false).
async fn finish(
    registry: &Registry,
    tenant: &MunicipalityCode,
    key: i64,
    owner: &str,
    slot: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<bool, ServiceError> {
    let (t, owner, slot, at) = (
        tenant.clone(),
        owner.to_string(),
        slot.map(|s| s.timestamp_micros()),
        registry.clock().now().timestamp_micros(),
    );
    // Bookkeeping, no event: nobody waiting on commits needs waking.
    let r = registry
        .store()
        .write_quiet(Some(tenant), move |tx| {
            let n = tx.execute(
                "UPDATE extract_claims SET done_at = $4 \
                 WHERE tenant = $1 AND slot = $2 AND owner = $3 AND done_at IS NULL",
                &[
                    t.as_str().into(),
                    key.into(),
                    owner.as_str().into(),
                    at.into(),
                ],
            )?;
            if n != 1 {
                return Err(ClaimTx::Stale);
            }
            let Some(slot) = slot else {
                return Ok(true);
            };
            tx.execute(
                "INSERT INTO extract_slots (tenant, slot, handled_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant) DO UPDATE SET slot = excluded.slot, handled_at = excluded.handled_at \
                 WHERE extract_slots.slot < excluded.slot",
                &[t.as_str().into(), slot.into(), at.into()],
            )?;
            Ok(true)
        })
        .await;
    match r {
        Ok(done) => Ok(done),
        Err(ClaimTx::Stale) => Ok(false),
        Err(ClaimTx::Store(e)) => Err(e.into()),
    }
}

/// A claim this scheduler holds on a scheduled run (taken by [`claim`]),
/// and the local deadline it holds until: the moment of the last
/// successful renewal (at first, of the claim) plus the lease.
///
/// Clock assumption: the lease in `extract_claims` is a wall-clock time
/// (the tick's `now` plus the lease, then plus the time the run has taken
/// at each renewal) that another server compares with its own clock when
/// it decides the claim ran out. So the servers' clocks must agree to well
/// within the lease (NTP keeps them within milliseconds; the lease is five
/// minutes): a server whose clock runs ahead by more than the margin left
/// could take over a claim that still holds here. The local deadline is
/// counted on this process's monotonic clock and stops the work (and, at
/// the latest, the manifest write, see [`Held::fence`]) once it has passed.
struct Held<'a> {
    registry: &'a Registry,
    tenant: &'a MunicipalityCode,
    key: i64,
    state: &'a ScheduleState,
    /// The tick's `now` the claim was taken at, and when the run started.
    now: chrono::DateTime<chrono::Utc>,
    started: std::time::Instant,
    deadline: std::sync::Mutex<std::time::Instant>,
}

impl<'a> Held<'a> {
    fn new(
        registry: &'a Registry,
        tenant: &'a MunicipalityCode,
        key: i64,
        state: &'a ScheduleState,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let started = std::time::Instant::now();
        Held {
            registry,
            tenant,
            key,
            state,
            now,
            started,
            deadline: std::sync::Mutex::new(started + state.lease),
        }
    }

    fn deadline(&self) -> std::time::Instant {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lost(&self) -> ExtractError {
        ExtractError::ClaimLost(self.tenant.to_string())
    }

    /// Extends the claim by a lease from now. Ok(false): the claim is no
    /// longer this scheduler's, or its local deadline passed before the
    /// renewal came back.
    async fn renew(&self) -> Result<bool, ServiceError> {
        let asked = std::time::Instant::now();
        if asked >= self.deadline() {
            return Ok(false);
        }
        let until = self.now
            + chrono::Duration::from_std(self.started.elapsed() + self.state.lease)
                .unwrap_or(chrono::Duration::MAX);
        let left = self.deadline().saturating_duration_since(asked);
        let r = tokio::time::timeout(
            left,
            renew(
                self.registry,
                self.tenant,
                self.key,
                &self.state.owner,
                until,
            ),
        )
        .await;
        match r {
            Err(_) => Ok(false),
            Ok(Ok(true)) => {
                // Counted from before the renewal was asked: never later
                // than the lease the database now holds.
                *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = asked + self.state.lease;
                Ok(true)
            }
            Ok(Ok(false)) => Ok(false),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Right before the manifest is written: the claim renewed, so it is
    /// this scheduler's and holds a whole lease more. Any doubt (the
    /// database away, the deadline passed) stops the run without the
    /// manifest; the slot stays unhandled and is run again.
    async fn fence(&self) -> Result<(), ExtractError> {
        match self.renew().await {
            Ok(true) if std::time::Instant::now() < self.deadline() => Ok(()),
            Ok(_) => Err(self.lost()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs `work` while renewing the claim `held` every third of the lease.
/// If the claim is lost (another server took it after it ran out), or its
/// local deadline passes without a successful renewal (the database away
/// or this server stalled), the work is dropped unfinished: it never
/// writes its manifest, and the other server's run stands. A renewal that
/// fails while the deadline is still ahead is tried again at the next
/// beat.
async fn while_claimed<T>(
    held: &Held<'_>,
    work: impl std::future::Future<Output = Result<T, ExtractError>>,
) -> Result<T, ExtractError> {
    let every = (held.state.lease / 3).max(std::time::Duration::from_millis(10));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        let deadline = tokio::time::Instant::from_std(held.deadline());
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep_until(deadline) => {
                if std::time::Instant::now() >= held.deadline() {
                    tracing::warn!(tenant = %held.tenant, "linkage: the claim on a scheduled extract ran out unrenewed; the run stops");
                    return Err(held.lost());
                }
            }
            _ = beat.tick() => {
                match held.renew().await {
                    Ok(true) => {}
                    Ok(false) => return Err(held.lost()),
                    // The database is away: the lease may still hold; try
                    // again at the next beat (the deadline stops the run).
                    Err(e) => tracing::warn!(tenant = %held.tenant, error = %e, "linkage: cannot renew the claim on a scheduled extract"),
                }
            }
        }
    }
}

/// One tick of the schedule for `tenant` at `now`: with the tenant's own
/// schedule, once per slot (slots missed while the server was down are
/// made up by one run at start, unless the target already holds an
/// extract made since the last of them; a difference covers every event
/// since the previous extract, so nothing is lost by folding them);
/// otherwise the server-wide interval `every` after its last run (kept in
/// the database, so a restart does not run it early; a difference extract
/// when events came, a full one first), with 個人番号 only if the server
/// is set to include it ([`Registry::with_extract_my_number`]).
///
/// Several servers may tick for one database: a run is claimed first
/// ([`claim`]), so each slot is run by one of them; the others see the
/// claim, or the handled slot, and return None. A claim left by a killed
/// run is taken over once its lease ([`ScheduleState::with_lease`]) ran
/// out after `now` of the tick that took it.
///
/// The handled slot is recorded after the extract is complete: a crash in
/// between leaves an extract at the target made after the slot, which the
/// next run finds (no second extract); a crash during the extract leaves
/// no manifest and the slot unhandled, so it is run again (nothing skipped).
pub async fn run_due(
    registry: &Registry,
    tenant: &MunicipalityCode,
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
    every: std::time::Duration,
    now: chrono::DateTime<chrono::Utc>,
    state: &ScheduleState,
) -> Result<Option<LinkageManifest>, ExtractError> {
    let handled = handled_slot(registry, tenant).await?;
    let expected = handled.map(|h| h.timestamp_micros());
    match tenant_schedule(registry, tenant).await? {
        Some(sc) => {
            let Some(slot) = sc.last_slot(now) else {
                return Ok(None);
            };
            if handled.is_some_and(|h| h >= slot) {
                return Ok(None);
            }
            let key = slot.timestamp_micros();
            if !claim(registry, tenant, key, Expect::Handled(expected), state, now).await? {
                return Ok(None);
            }
            let held = Held::new(registry, tenant, key, state, now);
            let work = async {
                let last = last_complete(store, prefix, tenant).await?;
                let made_since_slot = last.as_ref().is_some_and(|m| {
                    chrono::DateTime::parse_from_rfc3339(
                        m.started_at.as_deref().unwrap_or(&m.created_at),
                    )
                    .is_ok_and(|c| c.with_timezone(&chrono::Utc) >= slot)
                });
                if made_since_slot {
                    return Ok(None);
                }
                match sc.kind {
                    Kind::Full => Ok(Some(
                        extract_fenced(
                            registry,
                            tenant,
                            Kind::Full,
                            sc.options(),
                            store,
                            prefix,
                            &Actor::system("linkage-schedule"),
                            Some(&held),
                        )
                        .await?,
                    )),
                    Kind::Diff => {
                        scheduled_fenced(registry, tenant, sc.options(), store, prefix, Some(&held))
                            .await
                    }
                }
            };
            run_claimed(&held, slot, work).await
        }
        None => {
            let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::hours(1));
            // Due at the last run plus the interval; the first run at once.
            let due = handled.map(|h| h + every);
            if due.is_some_and(|d| now < d) {
                return Ok(None);
            }
            let key = due.map_or(0, |d| d.timestamp_micros());
            if !claim(registry, tenant, key, Expect::Handled(expected), state, now).await? {
                return Ok(None);
            }
            let held = Held::new(registry, tenant, key, state, now);
            // The server-wide option (off unless the server sets it).
            let opts = ExtractOptions {
                include_my_number: registry.extract_includes_my_number(),
            };
            let work = scheduled_fenced(registry, tenant, opts, store, prefix, Some(&held));
            run_claimed(&held, now, work).await
        }
    }
}

/// Runs the schedule for every tenant until the task is dropped: each
/// tenant's own schedule if its administrator set one, else every `every`
/// (the server-wide default). The tenant list is read at every tick, so a
/// tenant created after start is scheduled from its first minute. Checked
/// every minute (or `every`, if shorter); failures are logged and retried
/// at the next tick (a failed run leaves no manifest and its slot
/// unhandled, so nothing is skipped).
pub fn spawn_schedule(
    registry: Registry,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.min(std::time::Duration::from_secs(60)));
        let state = ScheduleState::default();
        loop {
            tick.tick().await;
            let tenants = match registry.tenants().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "linkage: cannot read the tenant list; retried at the next run");
                    continue;
                }
            };
            for t in tenants.iter().map(|t| &t.municipality_code) {
                // Read per tenant: a claim's lease counts from it, and a
                // tenant after a long extract must not start with a lease
                // already partly spent.
                let now = registry.clock().now();
                if let Err(e) =
                    run_due(&registry, t, store.as_ref(), &prefix, every, now, &state).await
                {
                    tracing::warn!(tenant = %t, error = %e, "linkage: scheduled extract failed; retried at the next run");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeZone, Utc, Weekday};

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    /// A moment in Japan time, as UTC.
    fn jst(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> chrono::DateTime<Utc> {
        crate::service::clock::jst()
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn invalid_field(e: ServiceError) -> (String, String, String) {
        match e {
            ServiceError::Invalid {
                field,
                message_ja,
                message_en,
                ..
            } => (field, message_ja, message_en),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn several_times_a_day_are_read_sorted_without_repeats() {
        let sc = TenantSchedule::parse("14:00、０２：００, 02:00 ・23:59", None, "diff").unwrap();
        assert_eq!(sc.times, vec![t(2, 0), t(14, 0), t(23, 59)]);
        assert_eq!(sc.weekdays, Weekdays::EVERY_DAY);
        assert_eq!(
            sc.words(false),
            "毎日 02:00・14:00・23:59 差分（最初は全件）"
        );
        assert_eq!(
            sc.words(true),
            "every day at 02:00, 14:00, 23:59, difference (a full one first)"
        );
        let days = [Weekday::Mon, Weekday::Wed, Weekday::Fri];
        let sc = TenantSchedule::parse("3時30分", Some(&days), "full").unwrap();
        assert_eq!(sc.times, vec![t(3, 30)]);
        assert_eq!(sc.weekdays.days(), days.to_vec());
        assert_eq!(sc.words(false), "月・水・金曜日 03:30 全件");
        assert_eq!(sc.words(true), "Mon, Wed, Fri at 03:30, full");
    }

    #[test]
    fn bad_schedules_are_refused_in_both_languages() {
        let every: Vec<String> = (0..25).map(|h| format!("{:02}:{:02}", h % 24, h)).collect();
        for (times, days, kind, field) in [
            ("", None, "diff", "times"),
            ("02:00, 25:00", None, "diff", "times"),
            ("2時", None, "diff", "times"),
            ("02:00", Some(&[][..]), "diff", "weekdays"),
            ("02:00", None, "weekly", "kind"),
            (&every.join(","), None, "diff", "times"),
        ] {
            let (f, ja, en) = invalid_field(TenantSchedule::parse(times, days, kind).unwrap_err());
            assert_eq!(f, field, "{times}");
            assert!(
                ja.contains("入力") || ja.contains("選んで") || ja.contains("まで"),
                "{ja}"
            );
            assert!(!en.is_empty() && !en.contains('。'), "{en}");
        }
        // The unreadable time is named in the message.
        let (_, ja, en) =
            invalid_field(TenantSchedule::parse("02:00, 25:00", None, "diff").unwrap_err());
        assert!(
            ja.contains("「25:00」") && en.contains("\"25:00\""),
            "{ja} {en}"
        );
    }

    #[test]
    fn weekdays_round_trip_through_their_bits() {
        assert_eq!(Weekdays::from_bits(127), Some(Weekdays::EVERY_DAY));
        assert_eq!(Weekdays::from_bits(0), None);
        assert_eq!(Weekdays::from_bits(128), None);
        assert_eq!(Weekdays::from_bits(-1), None);
        let w = Weekdays::of(&[Weekday::Sun, Weekday::Mon]).unwrap();
        assert_eq!(w.bits(), 1 | 64);
        assert_eq!(Weekdays::from_bits(w.bits()), Some(w));
        assert_eq!(w.words(false), "月・日曜日");
    }

    #[test]
    fn the_last_slot_is_the_latest_chosen_time_on_a_chosen_day_in_japan() {
        // 2026-12-07 is a Monday.
        let sc = TenantSchedule {
            times: vec![t(2, 0), t(14, 0)],
            weekdays: Weekdays::of(&[Weekday::Mon, Weekday::Wed]).unwrap(),
            kind: Kind::Diff,
            include_my_number: false,
        };
        // Monday 01:00 in Japan: the previous Wednesday's 14:00.
        assert_eq!(
            sc.last_slot(jst(2026, 12, 7, 1, 0)),
            Some(jst(2026, 12, 2, 14, 0))
        );
        // Exactly at a slot: that slot.
        assert_eq!(
            sc.last_slot(jst(2026, 12, 7, 2, 0)),
            Some(jst(2026, 12, 7, 2, 0))
        );
        assert_eq!(
            sc.last_slot(jst(2026, 12, 7, 13, 59)),
            Some(jst(2026, 12, 7, 2, 0))
        );
        // Tuesday is not chosen: still Monday's 14:00 late on Tuesday.
        assert_eq!(
            sc.last_slot(jst(2026, 12, 8, 23, 59)),
            Some(jst(2026, 12, 7, 14, 0))
        );
        // Japan's day, not UTC's: Wednesday 02:00 in Japan is Tuesday 17:00 UTC.
        assert_eq!(
            sc.last_slot(Utc.with_ymd_and_hms(2026, 12, 8, 17, 0, 0).unwrap()),
            Some(jst(2026, 12, 9, 2, 0))
        );
        // One day a week, one time: a week back at most.
        let weekly = TenantSchedule {
            times: vec![t(23, 0)],
            weekdays: Weekdays::of(&[Weekday::Sun]).unwrap(),
            kind: Kind::Full,
            include_my_number: false,
        };
        assert_eq!(
            weekly.last_slot(jst(2026, 12, 13, 22, 59)),
            Some(jst(2026, 12, 6, 23, 0))
        );
        assert_eq!(
            TenantSchedule::daily(t(2, 0), Kind::Full).last_slot(jst(2026, 12, 7, 1, 0)),
            Some(jst(2026, 12, 6, 2, 0))
        );
    }
}
