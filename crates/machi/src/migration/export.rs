//! `machi export`: a whole tenant in the migration layout (j1410), from one
//! consistent read, streamed (memory stays flat).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use machi_domain::change::HistoryRow;
use machi_domain::ids::MunicipalityCode;

use super::layout::{self, *};
use super::manifest::{Manifest, write_manifest};
use super::side;
use crate::service::{Actor, Registry, ServiceError};
use crate::store::StoreError;
use crate::store::records;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for ExportError {
    fn from(e: StoreError) -> Self {
        ExportError::Service(e.into())
    }
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportSummary {
    pub history_rows: u64,
    pub households: u64,
    /// The highest change id in the export: pass it as `after_change` for
    /// the next difference extract.
    pub last_change_id: i64,
    pub manifest: Manifest,
    /// Files of a linkage extract beside those the migration manifest
    /// lists (name, data rows): [`side::LINKAGE_SUPPORT_FILE`].
    pub linkage_files: Vec<(String, u64)>,
}

fn writer(
    dir: &Path,
    name: &str,
    columns: &[(&str, &str)],
) -> Result<csv::Writer<BufWriter<File>>, ExportError> {
    let path = dir.join(name);
    let f = File::create(&path).map_err(|source| ExportError::Io { path, source })?;
    let mut w = csv::WriterBuilder::new().from_writer(BufWriter::with_capacity(1 << 20, f));
    w.write_record(columns.iter().map(|(c, _)| *c))?;
    Ok(w)
}

fn finish(mut w: csv::Writer<BufWriter<File>>, dir: &Path, name: &str) -> Result<(), ExportError> {
    w.flush().map_err(|source| ExportError::Io {
        path: dir.join(name),
        source,
    })?;
    Ok(())
}

/// Writes the tenant's residents (every history row), households, support
/// measures, issued certificates, the code tables and a manifest into
/// `dir`; records the export in the access log.
pub async fn export(
    registry: &Registry,
    tenant: &MunicipalityCode,
    dir: &Path,
    actor: &Actor,
) -> Result<ExportSummary, ExportError> {
    export_since(registry, tenant, dir, None, actor).await
}

/// What a file-linkage extract (宛名連携, j1190) writes differently from a
/// migration export, which carries everything to the next system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkageItems {
    /// 個人番号 in residents.csv only when asked for (番号法: only for the
    /// affairs that use it); the column is empty otherwise. Its use is
    /// marked in the access log entry of the export.
    pub include_my_number: bool,
}

/// With `after_change`, a difference extract: only the history rows
/// appended by later changes, and no households.csv (the households of a
/// partial file would not add up). Importing it into a tenant that holds
/// the earlier extract is a difference load.
pub async fn export_since(
    registry: &Registry,
    tenant: &MunicipalityCode,
    dir: &Path,
    after_change: Option<i64>,
    actor: &Actor,
) -> Result<ExportSummary, ExportError> {
    export_with(registry, tenant, dir, after_change, actor, None).await
}

/// [`export_since`] for file linkage (`Some`): residents.csv gets the
/// [`SUPPORT_FLAG_COLUMN`] (支援措置, j440/j1190: the receiving system
/// must know whom a support measure covers, so that it never discloses
/// their address; the data is passed with the flag, not dropped, as the
/// other systems keep running their affairs for these persons), and
/// 個人番号 only as `linkage` asks.
pub async fn export_with(
    registry: &Registry,
    tenant: &MunicipalityCode,
    dir: &Path,
    after_change: Option<i64>,
    actor: &Actor,
    linkage: Option<LinkageItems>,
) -> Result<ExportSummary, ExportError> {
    registry.ensure_tenant(tenant).await?;
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (t, d) = (tenant.clone(), dir.to_path_buf());
    type Side = (Vec<side::MeasureRow>, Vec<side::CertificateRow>);
    let (history_rows, households, last_change_id, (measures, certificates)) = registry
        .store()
        .read(
            Some(tenant),
            move |tx| -> Result<(u64, u64, i64, Side), ExportError> {
                let last = records::last_change_id(tx, &t)?;
                // Support measures and issued certificates: whole, in a
                // difference extract too (they are few, and a measure
                // extended or ended since the last extract must reach the
                // new system), read in the same transaction as the rows.
                let side_data = (side::measures(tx, &t)?, side::certificates(tx, &t)?);
                // Whom a support measure covers now, read in the same
                // transaction as the rows (linkage only).
                let shielded = match linkage {
                    Some(_) => crate::store::support::shielded_persons(tx, &t)?,
                    None => Default::default(),
                };
                let mut columns: Vec<(&str, &str)> = RESIDENT_COLUMNS.to_vec();
                if linkage.is_some() {
                    columns.push(SUPPORT_FLAG_COLUMN);
                }
                let mut w = writer(&d, RESIDENTS_FILE, &columns)?;
                let mut n = 0u64;
                let mut csv_error = None;
                records::each_history_row(tx, &t, after_change, |row| {
                    let mut fields = layout::resident_fields(&row);
                    if let Some(l) = linkage {
                        if !l.include_my_number {
                            fields[MY_NUMBER_COLUMN].clear();
                        }
                        fields.push(
                            match shielded.get(&row.record.addressee_number) {
                                Some(true) => SUPPORT_FLAG_PROTECTED,
                                Some(false) => SUPPORT_FLAG_COVERED,
                                None => "",
                            }
                            .to_string(),
                        );
                    }
                    if let Err(e) = w.write_record(fields) {
                        csv_error = Some(e);
                        return Err(StoreError::Task("CSV write failed".into()));
                    }
                    n += 1;
                    Ok(())
                })
                .map_err(|e| match csv_error.take() {
                    Some(c) => ExportError::Csv(c),
                    None => e.into(),
                })?;
                finish(w, &d, RESIDENTS_FILE)?;
                if after_change.is_some() {
                    return Ok((n, 0, last, side_data));
                }

                let mut w = writer(&d, HOUSEHOLDS_FILE, HOUSEHOLD_COLUMNS)?;
                let mut households = 0u64;
                let mut current: Vec<HistoryRow> = Vec::new();
                let mut failed = None;
                let mut flush = |members: &mut Vec<HistoryRow>,
                                 w: &mut csv::Writer<BufWriter<File>>|
                 -> Result<(), csv::Error> {
                    if let Some(first) = members.first() {
                        let head = members.iter().find(|m| m.record.relationship.is_head());
                        w.write_record([
                            first.record.household_number.to_string(),
                            head.map(|h| h.record.addressee_number.to_string())
                                .unwrap_or_default(),
                            first.record.address.address.clone(),
                            first.record.address.annex.clone().unwrap_or_default(),
                            members.len().to_string(),
                        ])?;
                        households += 1;
                    }
                    members.clear();
                    Ok(())
                };
                records::each_current_by_household(tx, &t, |row| {
                    if current
                        .first()
                        .is_some_and(|f| f.record.household_number != row.record.household_number)
                        && let Err(e) = flush(&mut current, &mut w)
                    {
                        failed = Some(e);
                        return Err(StoreError::Task("CSV write failed".into()));
                    }
                    current.push(row);
                    Ok(())
                })
                .map_err(|e| match failed.take() {
                    Some(c) => ExportError::Csv(c),
                    None => e.into(),
                })?;
                flush(&mut current, &mut w)?;
                finish(w, &d, HOUSEHOLDS_FILE)?;
                Ok((n, households, last, side_data))
            },
        )
        .await?;
    // A migration export carries the measures whole (記録内容 included) to
    // the next system; a linkage extract only the items another business
    // system needs ([`side::LINKAGE_SUPPORT_FILE`], j1190/j160), in a file
    // of its own that the migration manifest does not list.
    let mut linkage_files = Vec::new();
    if linkage.is_some() {
        let name = side::LINKAGE_SUPPORT_FILE;
        let mut w = writer(dir, name, side::LINKAGE_SUPPORT_COLUMNS)?;
        let n = side::write_linkage_support(&mut w, &measures)?;
        finish(w, dir, name)?;
        linkage_files.push((name.to_string(), n));
    } else {
        let mut w = writer(dir, SUPPORT_MEASURES_FILE, SUPPORT_MEASURE_COLUMNS)?;
        side::write_measures(&mut w, &measures)?;
        finish(w, dir, SUPPORT_MEASURES_FILE)?;
    }
    // The same for issued certificates: a migration export carries the
    // whole 交付履歴 (who issued each, on which terminal); a linkage
    // extract only [`side::LINKAGE_CERTIFICATES_FILE`] (never the clerk's
    // login or terminal, j300/j1190).
    if linkage.is_some() {
        let name = side::LINKAGE_CERTIFICATES_FILE;
        let mut w = writer(dir, name, side::LINKAGE_CERTIFICATE_COLUMNS)?;
        let n = side::write_linkage_certificates(&mut w, &certificates)?;
        finish(w, dir, name)?;
        linkage_files.push((name.to_string(), n));
    } else {
        let mut w = writer(dir, CERTIFICATES_FILE, CERTIFICATE_COLUMNS)?;
        side::write_certificates(&mut w, &certificates)?;
        finish(w, dir, CERTIFICATES_FILE)?;
    }
    let mut codes = writer(dir, CODES_FILE, CODE_COLUMNS)?;
    for (table, code, label) in layout::code_tables() {
        codes.write_record([table, code.as_str(), label.as_str()])?;
    }
    finish(codes, dir, CODES_FILE)?;
    let households_written = after_change.is_none();
    let files: Vec<(&str, u64)> = [
        (RESIDENTS_FILE, history_rows),
        (HOUSEHOLDS_FILE, households),
        (SUPPORT_MEASURES_FILE, measures.len() as u64),
        (CERTIFICATES_FILE, certificates.len() as u64),
        (CODES_FILE, layout::code_tables().len() as u64),
    ]
    .into_iter()
    .filter(|(name, _)| *name != HOUSEHOLDS_FILE || households_written)
    .filter(|(name, _)| {
        (*name != SUPPORT_MEASURES_FILE && *name != CERTIFICATES_FILE) || linkage.is_none()
    })
    .collect();
    let manifest = write_manifest(
        dir,
        tenant.as_str(),
        registry.clock().now().to_rfc3339(),
        &files,
    )
    .map_err(|(path, source)| ExportError::Io { path, source })?;
    // A migration export carries 個人番号 as well; a linkage extract only
    // when asked. Either way the entry says so (j1370).
    let my_number_included = linkage.is_none_or(|l| l.include_my_number);
    registry
        .record_access_marked(
            tenant,
            actor,
            if linkage.is_some() { "linkage.extract" } else { "export" },
            &dir.display().to_string(),
            serde_json::json!({"history_rows": history_rows, "households": households,
                "support_measures": measures.len(), "certificates": certificates.len(), "after_change": after_change,
                "my_number_included": my_number_included}),
            my_number_included,
        )
        .await?;
    Ok(ExportSummary {
        history_rows,
        households,
        last_change_id,
        manifest,
        linkage_files,
    })
}
