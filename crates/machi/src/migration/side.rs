//! The side files of the migration layout: support measures (支援措置,
//! j160) and issued certificates (交付履歴, j300). Small next to the
//! residents, so they are read whole, validated row by row, and loaded in
//! the import's one transaction.

use std::io::Write;

use machi_domain::ids::{AddresseeNumber, MunicipalityCode};
use machi_domain::support::SupportMeasure;

use super::import::{ImportError, Problem};
use super::layout::{CERTIFICATES_FILE, SUPPORT_MEASURES_FILE};
use crate::store::{StoreError, Tx};

/// support_measures.csv: one row per measure; `detail` is the whole
/// measure as JSON (the same document the registry keeps), the other
/// columns repeat what a reader of the file wants at a glance.
pub const SUPPORT_MEASURE_COLUMNS: &[(&str, &str)] = &[
    ("measure_id", "支援措置番号"),
    ("requester", "申出者宛名番号"),
    ("persons", "支援対象者宛名番号"),
    ("status", "状態"),
    ("filed_on", "申出年月日"),
    ("start_date", "支援措置開始年月日"),
    ("end_date", "支援措置終了年月日"),
    ("detail", "記録内容"),
    ("created_by", "登録者"),
    ("created_at", "登録日時"),
    ("updated_by", "更新者"),
    ("updated_at", "更新日時"),
];

/// support_persons.csv of a file-linkage extract (宛名連携, j1190), in
/// place of support_measures.csv: one row per person a support measure
/// protects, with only the data items another business system needs to
/// keep that person's address undisclosed.
///
/// j1190 passes 住民記録データ（支援対象者管理データを含む）to the other
/// systems. Of the 支援対象者管理 database (j160), its last paragraph
/// names what the registry itself must hold: 支援対象者（申出者）and
/// 併せて支援措置を求める者 by 宛名番号 (their names are in residents.csv),
/// 支援を求められている事務, 抑止対象の住所等 and 支援措置の期間; the rest
/// (連絡先, 加害者, 転送情報, free text) may even live outside it, and
/// nothing in j1190, j410 or j440 needs it elsewhere. j440 adds 仮支援措置
/// (blocking from the request on) and j410 that a 一時解除 is NOT passed
/// (other systems would take it for the end), so releases are absent.
/// Hence: the measure's number (to key updates), 宛名番号, whether the
/// person is the 申出者 or asked with them, the state (仮支援措置, 支援措置,
/// 延長, 終了, 取消し) and whether it blocks now, the provisional start, the
/// period, the day it was ended or cancelled, and the affairs as codes.
/// Never 記録内容 (the measure as the support officer recorded it:
/// contacts, offenders, relationships, typed addresses and notes), nor who
/// recorded it; the 抑止対象の住所等 are typed text naming the very
/// addresses to hide, and the person's flag in residents.csv already says
/// not to disclose them.
pub const LINKAGE_SUPPORT_FILE: &str = "support_persons.csv";

/// The columns of [`LINKAGE_SUPPORT_FILE`], with their 項目名.
pub const LINKAGE_SUPPORT_COLUMNS: &[(&str, &str)] = &[
    ("measure_id", "支援措置番号"),
    ("addressee_number", "宛名番号"),
    ("role", "支援対象者の区分"),
    ("status", "支援措置の状態"),
    ("in_effect", "抑止中"),
    ("provisional_start", "仮支援措置の開始年月日"),
    ("start_date", "支援措置の開始年月日"),
    ("end_date", "支援措置の終了年月日"),
    ("closed_on", "終了・取消しの年月日"),
    ("affairs", "支援を求められている事務"),
];

/// What the coded values of [`LINKAGE_SUPPORT_COLUMNS`] mean, for the
/// extract's manifest: (column, values).
pub const LINKAGE_SUPPORT_VALUES: &[(&str, &str)] = &[
    (
        "role",
        "requester: 申出者 / related: 併せて支援措置を求める者",
    ),
    (
        "status",
        "provisional: 仮支援措置 / confirmed: 支援措置 / extended: 支援措置（延長） / ended: 終了 / cancelled: 取消し",
    ),
    (
        "in_effect",
        "1: 抑止中（仮支援措置・支援措置・延長） / 0: 抑止していない",
    ),
    (
        "affairs",
        "空白区切り。registry_viewing: 住民基本台帳の閲覧 / resident_record_copy: 住民票の写し等の交付 / family_register_annex_copy: 戸籍の附票の写し等の交付",
    ),
];

fn affair_code(a: machi_domain::support::Affair) -> &'static str {
    use machi_domain::support::Affair;
    match a {
        Affair::RegistryViewing => "registry_viewing",
        Affair::ResidentRecordCopy => "resident_record_copy",
        Affair::FamilyRegisterAnnexCopy => "family_register_annex_copy",
    }
}

/// Writes [`LINKAGE_SUPPORT_FILE`] records (after its header): one per
/// person a measure protects who has a 宛名番号 here; returns how many.
pub fn write_linkage_support<W: Write>(
    w: &mut csv::Writer<W>,
    rows: &[MeasureRow],
) -> Result<u64, csv::Error> {
    use machi_domain::support::Closing;
    let mut n = 0u64;
    for m in rows {
        let s = &m.measure;
        let persons = std::iter::once(("requester", Some(&s.requester.addressee_number))).chain(
            s.related_persons
                .iter()
                .map(|p| ("related", p.addressee_number.as_ref())),
        );
        let closed_on = match s.closing {
            Some(Closing::Ended { on, .. }) | Some(Closing::Cancelled { on, .. }) => on.to_string(),
            None => String::new(),
        };
        let mut affairs: Vec<&str> = s.affairs.iter().map(|a| affair_code(a.affair)).collect();
        affairs.sort_unstable();
        affairs.dedup();
        for (role, who) in persons {
            let Some(who) = who else { continue };
            w.write_record([
                m.measure_id.to_string(),
                who.to_string(),
                role.to_string(),
                s.status.code().to_string(),
                if s.status.in_effect() { "1" } else { "0" }.to_string(),
                s.provisional_start.to_string(),
                s.period.map(|p| p.start.to_string()).unwrap_or_default(),
                s.period.map(|p| p.end.to_string()).unwrap_or_default(),
                closed_on.clone(),
                affairs.join(" "),
            ])?;
            n += 1;
        }
    }
    Ok(n)
}

/// certificates.csv: one row per issued certificate (j300). The PDF itself
/// is not kept; its SHA-256 and the hash of its 照合番号 are, so the
/// public verification still answers after a migration.
pub const CERTIFICATE_COLUMNS: &[(&str, &str)] = &[
    ("issue_number", "発行番号"),
    ("kind", "証明書種別"),
    ("persons", "記載者宛名番号"),
    ("options", "記載事項の指定"),
    ("pages", "枚数"),
    ("pdf_sha256", "PDFハッシュ"),
    ("verify_hash", "照合番号ハッシュ"),
    ("issued_by", "交付者"),
    ("issued_terminal", "交付端末"),
    ("issued_at", "交付日時"),
];

/// The 交付履歴 (j300) a file-linkage extract (宛名連携, j1190) carries
/// instead of [`CERTIFICATES_FILE`]: only what another business system
/// needs to know of a certificate issued — which, of what kind, about
/// whom, with which items, how many pages, when. Never who issued it
/// (`issued_by`, the clerk's login) nor where (`issued_terminal`): j300
/// keeps 端末名・ユーザID in the registry's own 交付履歴 for its access
/// control and inquiries (j360, j1370), not for other systems, which
/// would otherwise learn which clerk served which resident. (The 発行番号
/// itself is the number printed on the certificate, j1040: 発行年月日・
/// 市区町村名・発行端末名番号・発行プリンタ番号・連番; it is passed whole,
/// as the paper shows it, so that a certificate can be matched.) Nor the
/// PDF's hash or the hash of its 照合番号: they serve only the registry's
/// own verification of a certificate. A migration export (`machi export`)
/// still carries the whole row to the next system.
pub const LINKAGE_CERTIFICATES_FILE: &str = "certificate_issues.csv";

/// The columns of [`LINKAGE_CERTIFICATES_FILE`], with their 項目名.
pub const LINKAGE_CERTIFICATE_COLUMNS: &[(&str, &str)] = &[
    ("issue_number", "発行番号"),
    ("kind", "証明書種別"),
    ("persons", "記載者宛名番号"),
    ("options", "記載事項の指定"),
    ("pages", "枚数"),
    ("issued_at", "交付日時"),
];

/// What the values of [`LINKAGE_CERTIFICATE_COLUMNS`] mean, for the
/// extract's manifest: (column, values).
pub const LINKAGE_CERTIFICATE_VALUES: &[(&str, &str)] = &[
    ("persons", "空白区切りの宛名番号"),
    ("issued_at", "日本時間（RFC 3339）"),
];

/// Writes [`LINKAGE_CERTIFICATES_FILE`] records (after its header);
/// returns how many.
pub fn write_linkage_certificates<W: Write>(
    w: &mut csv::Writer<W>,
    rows: &[CertificateRow],
) -> Result<u64, csv::Error> {
    let mut n = 0u64;
    for c in rows {
        let at = chrono::DateTime::from_timestamp_micros(c.issued_at)
            .map(|t| {
                t.with_timezone(&crate::service::clock::jst())
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            })
            .unwrap_or_default();
        w.write_record([
            c.issue_number.clone(),
            c.kind.clone(),
            persons_text(&c.persons),
            c.options.clone(),
            c.pages.to_string(),
            at,
        ])?;
        n += 1;
    }
    Ok(n)
}

/// A support measure as the file carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureRow {
    pub measure_id: i64,
    pub measure: SupportMeasure,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

/// An issued certificate as the file carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    pub issue_number: String,
    pub kind: String,
    pub persons: Vec<AddresseeNumber>,
    pub options: String,
    pub pages: i64,
    pub pdf_sha256: String,
    pub verify_hash: String,
    pub issued_by: String,
    pub issued_terminal: String,
    pub issued_at: i64,
}

/// A problem in one cell: (column, code, ja, en).
pub type CellProblem = (&'static str, &'static str, String, String);

fn persons_text(persons: &[AddresseeNumber]) -> String {
    persons
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_persons(s: &str, column: &'static str) -> Result<Vec<AddresseeNumber>, CellProblem> {
    s.split_whitespace()
        .map(|p| {
            p.parse().map_err(|_| {
                (
                    column,
                    "invalid_addressee_number",
                    format!("宛名番号「{p}」が正しくありません。"),
                    format!("addressee number {p:?} is not valid"),
                )
            })
        })
        .collect()
}

fn parse_int(s: &str, column: &'static str) -> Result<i64, CellProblem> {
    s.trim().parse().map_err(|_| {
        (
            column,
            "invalid_number",
            format!("「{s}」は整数ではありません。"),
            format!("{s:?} is not an integer"),
        )
    })
}

fn text(s: &str, column: &'static str, max: usize) -> Result<String, CellProblem> {
    if s.chars().count() > max || s.chars().any(|c| c.is_control()) {
        return Err((
            column,
            "invalid_text",
            format!("{max}文字以内で、制御文字を含めないでください。"),
            format!("at most {max} characters, no control characters"),
        ));
    }
    Ok(s.to_string())
}

/// One support_measures.csv record (fields in column order).
pub fn measure_of(fields: &[&str]) -> Result<MeasureRow, CellProblem> {
    if fields.len() != SUPPORT_MEASURE_COLUMNS.len() {
        return Err((
            "",
            "field_count",
            format!("項目数が{}ではありません。", SUPPORT_MEASURE_COLUMNS.len()),
            format!(
                "the row does not have {} fields",
                SUPPORT_MEASURE_COLUMNS.len()
            ),
        ));
    }
    let measure_id = parse_int(fields[0], "measure_id")?;
    if !(1..=crate::migration::layout::MAX_CHANGE_ID).contains(&measure_id) {
        return Err((
            "measure_id",
            "out_of_range",
            "支援措置番号が範囲外です。".into(),
            "measure id out of range".into(),
        ));
    }
    let measure: SupportMeasure = serde_json::from_str(fields[7]).map_err(|e| {
        (
            "detail",
            "invalid_detail",
            format!("記録内容（JSON）が正しくありません: {e}"),
            format!("the detail (JSON) is not valid: {e}"),
        )
    })?;
    // The repeated columns must agree with the detail they repeat.
    let persons = parse_persons(fields[2], "persons")?;
    let agree = fields[1] == measure.requester.addressee_number.as_str()
        && persons == measure.protected_persons()
        && fields[3] == measure.status.code()
        && fields[4] == measure.filed_on.to_string()
        && fields[5]
            == measure
                .period
                .map(|p| p.start.to_string())
                .unwrap_or_default()
        && fields[6]
            == measure
                .period
                .map(|p| p.end.to_string())
                .unwrap_or_default();
    if !agree {
        return Err((
            "detail",
            "detail_mismatch",
            "申出者・対象者・状態・日付の列が記録内容と一致しません。".into(),
            "the requester, persons, status or date columns disagree with the detail".into(),
        ));
    }
    Ok(MeasureRow {
        measure_id,
        measure,
        created_by: text(fields[8], "created_by", 80)?,
        created_at: parse_int(fields[9], "created_at")?,
        updated_by: text(fields[10], "updated_by", 80)?,
        updated_at: parse_int(fields[11], "updated_at")?,
    })
}

/// One certificates.csv record (fields in column order).
pub fn certificate_of(fields: &[&str]) -> Result<CertificateRow, CellProblem> {
    if fields.len() != CERTIFICATE_COLUMNS.len() {
        return Err((
            "",
            "field_count",
            format!("項目数が{}ではありません。", CERTIFICATE_COLUMNS.len()),
            format!("the row does not have {} fields", CERTIFICATE_COLUMNS.len()),
        ));
    }
    let issue_number = text(fields[0], "issue_number", 120)?;
    if issue_number.trim().is_empty() {
        return Err((
            "issue_number",
            "missing",
            "発行番号がありません。".into(),
            "the issue number is missing".into(),
        ));
    }
    if machi_domain::certificate::CertificateKind::from_code(fields[1]).is_none() {
        return Err((
            "kind",
            "invalid_code",
            format!("証明書種別「{}」はありません。", fields[1]),
            format!("no certificate kind {:?}", fields[1]),
        ));
    }
    let hex64 = |s: &str, column: &'static str| {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(s.to_string())
        } else {
            Err((
                column,
                "invalid_hash",
                "SHA-256（16進64桁）ではありません。".to_string(),
                "not a SHA-256 (64 hexadecimal digits)".to_string(),
            ))
        }
    };
    if serde_json::from_str::<machi_domain::certificate::CertificateOptions>(fields[3]).is_err() {
        return Err((
            "options",
            "invalid_options",
            "記載事項の指定（JSON）が正しくありません。".into(),
            "the options (JSON) are not valid".into(),
        ));
    }
    Ok(CertificateRow {
        issue_number,
        kind: fields[1].to_string(),
        persons: parse_persons(fields[2], "persons")?,
        options: fields[3].to_string(),
        pages: parse_int(fields[4], "pages")?,
        pdf_sha256: hex64(fields[5], "pdf_sha256")?,
        verify_hash: hex64(fields[6], "verify_hash")?,
        issued_by: text(fields[7], "issued_by", 80)?,
        issued_terminal: text(fields[8], "issued_terminal", 80)?,
        issued_at: parse_int(fields[9], "issued_at")?,
    })
}

/// Every support measure of the tenant, by id.
pub fn measures(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<Vec<MeasureRow>, StoreError> {
    tx.query(
        "SELECT measure_id, detail, created_by, created_at, updated_by, updated_at \
         FROM support_measures WHERE tenant = $1 ORDER BY measure_id",
        &[tenant.as_str().into()],
    )?
    .iter()
    .map(|r| {
        Ok(MeasureRow {
            measure_id: r.int(0)?,
            measure: serde_json::from_str(&r.text(1)?)
                .map_err(|e| StoreError::Corrupt(format!("support measure: {e}")))?,
            created_by: r.text(2)?,
            created_at: r.int(3)?,
            updated_by: r.text(4)?,
            updated_at: r.int(5)?,
        })
    })
    .collect()
}

/// Every issued certificate of the tenant, by time of issue.
pub fn certificates(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
) -> Result<Vec<CertificateRow>, StoreError> {
    tx.query(
        "SELECT issue_number, kind, persons, options, pages, pdf_sha256, verify_hash, issued_by, issued_terminal, issued_at \
         FROM certificates WHERE tenant = $1 ORDER BY issued_at, issue_number",
        &[tenant.as_str().into()],
    )?
    .iter()
    .map(|r| {
        let persons: Vec<String> = serde_json::from_str(&r.text(2)?)
            .map_err(|e| StoreError::Corrupt(format!("certificate persons: {e}")))?;
        Ok(CertificateRow {
            issue_number: r.text(0)?,
            kind: r.text(1)?,
            persons: persons
                .iter()
                .map(|p| {
                    p.parse()
                        .map_err(|_| StoreError::Corrupt(format!("certificate person {p:?}")))
                })
                .collect::<Result<_, _>>()?,
            options: r.text(3)?,
            pages: r.int(4)?,
            pdf_sha256: r.text(5)?,
            verify_hash: r.text(6)?,
            issued_by: r.text(7)?,
            issued_terminal: r.text(8)?,
            issued_at: r.int(9)?,
        })
    })
    .collect()
}

/// Writes support_measures.csv records (after its header).
pub fn write_measures<W: Write>(
    w: &mut csv::Writer<W>,
    rows: &[MeasureRow],
) -> Result<(), csv::Error> {
    for m in rows {
        let detail = serde_json::to_string(&m.measure).unwrap_or_default();
        w.write_record([
            m.measure_id.to_string(),
            m.measure.requester.addressee_number.to_string(),
            persons_text(&m.measure.protected_persons()),
            m.measure.status.code().to_string(),
            m.measure.filed_on.to_string(),
            m.measure
                .period
                .map(|p| p.start.to_string())
                .unwrap_or_default(),
            m.measure
                .period
                .map(|p| p.end.to_string())
                .unwrap_or_default(),
            detail,
            m.created_by.clone(),
            m.created_at.to_string(),
            m.updated_by.clone(),
            m.updated_at.to_string(),
        ])?;
    }
    Ok(())
}

/// Writes certificates.csv records (after its header).
pub fn write_certificates<W: Write>(
    w: &mut csv::Writer<W>,
    rows: &[CertificateRow],
) -> Result<(), csv::Error> {
    for c in rows {
        w.write_record([
            c.issue_number.clone(),
            c.kind.clone(),
            persons_text(&c.persons),
            c.options.clone(),
            c.pages.to_string(),
            c.pdf_sha256.clone(),
            c.verify_hash.clone(),
            c.issued_by.clone(),
            c.issued_terminal.clone(),
            c.issued_at.to_string(),
        ])?;
    }
    Ok(())
}

/// A side row's conflict with the tenant: the import is undone.
fn conflict(file: &str, row: u64, column: &str, code: &str, ja: String, en: String) -> ImportError {
    ImportError::Conflict(Box::new(Problem {
        file: file.into(),
        row,
        column: column.into(),
        code: code.into(),
        message_ja: ja,
        message_en: en,
    }))
}

/// The first person a side row names (a measure's offenders included, as
/// the service requires when a measure is registered) who is neither in
/// the tenant nor `in_file`. Rows are validated already, so row `i` of a
/// file is its line `i + 2`.
pub fn first_unknown_person(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    measures_in: &[MeasureRow],
    certificates_in: &[CertificateRow],
    in_file: impl Fn(&AddresseeNumber) -> bool,
) -> Result<Option<Problem>, StoreError> {
    let mut named: Vec<(&str, u64, AddresseeNumber)> = Vec::new();
    for (i, m) in measures_in.iter().enumerate() {
        for (_, a) in m.measure.named_persons() {
            named.push((SUPPORT_MEASURES_FILE, i as u64 + 2, a));
        }
    }
    for (i, c) in certificates_in.iter().enumerate() {
        for a in &c.persons {
            named.push((CERTIFICATES_FILE, i as u64 + 2, a.clone()));
        }
    }
    named.retain(|(_, _, a)| !in_file(a));
    if named.is_empty() {
        return Ok(None);
    }
    let numbers: Vec<AddresseeNumber> = named.iter().map(|(_, _, a)| a.clone()).collect();
    let found = crate::store::support::existing_persons(tx, tenant, &numbers)?;
    Ok(named
        .into_iter()
        .find(|(_, _, a)| !found.contains(a))
        .map(|(file, row, a)| Problem {
            file: file.into(),
            row,
            column: "persons".into(),
            code: "unknown_person".into(),
            message_ja: format!(
                "宛名番号 {a} の住民はこの団体にも residents.csv にもいません。何も取り込んでいません。"
            ),
            message_en: format!("{a} is neither in the tenant nor in residents.csv; nothing was imported"),
        }))
}

/// Loads the side files inside the import's transaction, after the
/// residents' rows (whose persons they name). Rows are validated already,
/// so row `i` of a file is its line `i + 2`.
///
/// - A row already present and identical is skipped (a re-run changes
///   nothing).
/// - A support measure present with other content is replaced when the
///   row was updated later than the stored one (`updated_at`): a measure
///   extended or ended in the old system since the last extract reaches
///   the new one. Stored later than the row, or naming other persons, it
///   is a conflict.
/// - A certificate present with other content is a conflict (an issued
///   certificate does not change).
/// - Every person a row names must be in the tenant
///   ([`first_unknown_person`]).
///
/// A conflict undoes the whole import. Returns the rows (measures,
/// certificates) written.
pub fn load(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    measures_in: &[MeasureRow],
    certificates_in: &[CertificateRow],
) -> Result<(u64, u64), ImportError> {
    use std::collections::HashMap;
    if let Some(p) = first_unknown_person(tx, tenant, measures_in, certificates_in, |_| false)? {
        return Err(ImportError::Conflict(Box::new(p)));
    }
    let existing: HashMap<i64, MeasureRow> = measures(tx, tenant)?
        .into_iter()
        .map(|m| (m.measure_id, m))
        .collect();
    let mut loaded = (0, 0);
    for (i, m) in measures_in.iter().enumerate() {
        let line = i as u64 + 2;
        match existing.get(&m.measure_id) {
            Some(e) if e == m => continue,
            Some(e)
                if m.updated_at > e.updated_at
                    && e.measure.protected_persons() == m.measure.protected_persons() =>
            {
                crate::store::support::update_measure(
                    tx,
                    tenant,
                    m.measure_id,
                    &m.measure,
                    &m.updated_by,
                    m.updated_at,
                )?;
                loaded.0 += 1;
                continue;
            }
            Some(_) => {
                return Err(conflict(
                    SUPPORT_MEASURES_FILE,
                    line,
                    "measure_id",
                    "conflicts_with_stored",
                    format!(
                        "支援措置 {} は登録済みの内容と異なり、登録済みのほうが新しいか対象者が違います。何も取り込んでいません。",
                        m.measure_id
                    ),
                    format!(
                        "support measure {} differs from the stored one, which is newer or names other persons; nothing was imported",
                        m.measure_id
                    ),
                ));
            }
            None => {}
        }
        crate::store::support::insert_measure(
            tx,
            tenant,
            m.measure_id,
            &m.measure,
            &m.created_by,
            m.created_at,
        )?;
        tx.execute(
            "UPDATE support_measures SET updated_by = $3, updated_at = $4 WHERE tenant = $1 AND measure_id = $2",
            &[
                tenant.as_str().into(),
                m.measure_id.into(),
                m.updated_by.as_str().into(),
                m.updated_at.into(),
            ],
        )?;
        loaded.0 += 1;
    }
    let existing: HashMap<String, CertificateRow> = certificates(tx, tenant)?
        .into_iter()
        .map(|c| (c.issue_number.clone(), c))
        .collect();
    for (i, c) in certificates_in.iter().enumerate() {
        let line = i as u64 + 2;
        match existing.get(&c.issue_number) {
            Some(e) if e == c => continue,
            Some(_) => {
                return Err(conflict(
                    CERTIFICATES_FILE,
                    line,
                    "issue_number",
                    "conflicts_with_stored",
                    format!(
                        "発行番号 {} の証明書は登録済みの内容と異なります。何も取り込んでいません。",
                        c.issue_number
                    ),
                    format!(
                        "certificate {} differs from the stored one; nothing was imported",
                        c.issue_number
                    ),
                ));
            }
            None => {}
        }
        let persons: Vec<&str> = c.persons.iter().map(|p| p.as_str()).collect();
        let persons =
            serde_json::to_string(&persons).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO certificates (tenant, issue_number, kind, persons, options, verify_hash, pdf_sha256, pages, issued_by, issued_terminal, issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                tenant.as_str().into(),
                c.issue_number.as_str().into(),
                c.kind.as_str().into(),
                persons.as_str().into(),
                c.options.as_str().into(),
                c.verify_hash.as_str().into(),
                c.pdf_sha256.as_str().into(),
                c.pages.into(),
                c.issued_by.as_str().into(),
                c.issued_terminal.as_str().into(),
                c.issued_at.into(),
            ],
        )?;
        loaded.1 += 1;
    }
    Ok(loaded)
}
