//! Issuing certificates (j1000–j1070, j660) and checking them (j300): one
//! transaction reads the records, applies the support-measure block
//! (j380, j440), numbers the certificate (j1040), renders the PDF, records
//! the issue with a hashed 照合番号 and writes the access-log entry.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use machi_domain::certificate::counter::{self, CounterRequest};
use machi_domain::certificate::{
    self, CertificateInput, CertificateKind, CertificateOptions, IssueNumber, Issuer,
    PersonSelection,
};
use machi_domain::change::HistoryRow;
use machi_domain::error::Localized;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
use machi_domain::support::SupportPurpose;
use sha2::{Digest, Sha256};

use super::auth::random_hex;
use super::registry::{Actor, Registry, ServiceError};
use crate::certificate::{Fonts, IssueStamp};
use crate::store::records::{self, AuditEntry};
use crate::store::{StoreError, Tx};

/// Whose records a certificate shows.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The household of this person (whole or part per the options).
    HouseholdOf(AddresseeNumber),
    Household(HouseholdNumber),
}

/// What a certificate request asks for.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    pub kind: CertificateKind,
    pub subject: Subject,
    pub options: CertificateOptions,
    /// The verification page printed on the certificate.
    pub verification_url: String,
    /// Whether the caller may see a 個人番号 (required for `options.my_number`).
    pub may_show_my_number: bool,
    /// The counter's record of who asks, how identified, why, how many
    /// copies (j1220, j300); checked after the support-measure guard.
    /// `None` for one copy issued without a counter (programs, tests).
    pub counter: Option<CounterRequest>,
}

/// An issued certificate (one copy).
#[derive(Debug, Clone)]
pub struct Issued {
    pub issue_number: String,
    pub verification_code: String,
    pub pdf: Vec<u8>,
    pub pages: i64,
    pub persons: Vec<AddresseeNumber>,
    /// The request this copy belongs to and its place in it (1, 2, …).
    pub batch: String,
    pub copy_no: i64,
    /// This copy's 手数料 in yen.
    pub fee: i64,
}

/// The copies of one request, each with its own 発行番号 (j1040).
#[derive(Debug, Clone)]
pub struct IssuedBatch {
    pub batch: String,
    pub kind: CertificateKind,
    pub copies: Vec<Issued>,
    pub fee_per_copy: i64,
    pub total_fee: i64,
}

/// One request as the confirmation page shows it again.
#[derive(Debug, Clone)]
pub struct IssuedRecord {
    pub batch: String,
    pub kind: CertificateKind,
    pub persons: Vec<AddresseeNumber>,
    pub issued_at: i64,
    pub issued_by: String,
    pub request: CounterRequest,
    /// (発行番号, copy no., pages, fee) per copy.
    pub copies: Vec<(String, i64, i64, i64)>,
    pub total_fee: i64,
}

/// What the public verification page may say: nothing about the persons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub kind: CertificateKind,
    pub issued_at: i64,
    pub pages: i64,
    pub persons: usize,
    pub pdf_sha256: String,
}

fn fonts() -> Result<&'static Fonts, ServiceError> {
    static FONTS: OnceLock<Result<Fonts, (String, String)>> = OnceLock::new();
    FONTS
        .get_or_init(|| Fonts::discover().map_err(|e| (e.message_ja(), e.message_en())))
        .as_ref()
        .map_err(|(ja, en)| ServiceError::Invalid {
            field: "font".into(),
            code: "font_not_found",
            message_ja: ja.clone(),
            message_en: en.clone(),
        })
}

fn cert_error(e: certificate::CertificateError) -> ServiceError {
    ServiceError::invalid("certificate", &e)
}

/// 照合番号: 10 characters without look-alikes (no 0/O, 1/I/L).
fn verification_code() -> Result<String, ServiceError> {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let raw = random_hex(10)?;
    let bytes = hex::decode(raw).map_err(|e| StoreError::Task(e.to_string()))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

fn verify_hash(issue_number: &str, code: &str) -> String {
    let mut h = Sha256::new();
    h.update(issue_number.as_bytes());
    h.update([0]);
    h.update(machi_domain::input::code_key(code).as_bytes());
    hex::encode(h.finalize())
}

/// The certifying officer set for the tenant (j310).
pub fn issuer_of(tx: &mut Tx<'_>, tenant: &MunicipalityCode) -> Result<Option<Issuer>, StoreError> {
    tx.query_opt(
        "SELECT issuer_title, issuer_name FROM tenant_settings WHERE tenant = $1",
        &[tenant.as_str().into()],
    )?
    .map(|r| -> Result<Issuer, StoreError> {
        Ok(Issuer {
            title: r.text(0)?,
            name: r.text(1)?,
            seal_text: None,
            seal_note: None,
        })
    })
    .transpose()
}

impl Registry {
    /// Sets the certifying officer printed on the tenant's certificates.
    pub async fn set_issuer(
        &self,
        tenant: &MunicipalityCode,
        title: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        for (field, v) in [("issuer_title", title), ("issuer_name", name)] {
            if v.trim().is_empty() || v.chars().count() > 40 || v.chars().any(char::is_control) {
                return Err(ServiceError::Invalid {
                    field: field.into(),
                    code: "invalid_issuer",
                    message_ja: "認証者の職名・氏名は1〜40文字で入力してください。".into(),
                    message_en: "the issuer's title and name are 1 to 40 characters".into(),
                });
            }
        }
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, title, name, actor) = (
            tenant.clone(),
            title.trim().to_string(),
            name.trim().to_string(),
            actor.clone(),
        );
        self.store()
            .write(Some(tenant), move |tx| {
                tx.execute(
                    "INSERT INTO tenant_settings (tenant, issuer_title, issuer_name, updated_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant) DO UPDATE SET issuer_title = excluded.issuer_title, \
                     issuer_name = excluded.issuer_name, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                    &[t.as_str().into(), (&title).into(), (&name).into(), (&actor.operator).into(), now.into()],
                )?;
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &AuditEntry {
                        operator: actor.operator.clone(),
                        terminal: actor.terminal.clone(),
                        function: "settings.issuer".into(),
                        target: String::new(),
                        detail: serde_json::json!({ "title": title, "name": name }).to_string(),
                        my_number_shown: false,
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await
    }

    /// Issues a certificate: the PDF and its record, or why not (a blocked
    /// protected person, a kind that does not fit the record, no font).
    /// With a counter request of several copies, the first copy.
    pub async fn issue_certificate(
        &self,
        tenant: &MunicipalityCode,
        request: CertificateRequest,
        actor: &Actor,
    ) -> Result<Issued, ServiceError> {
        let batch = self.issue_certificates(tenant, request, actor).await?;
        batch.copies.into_iter().next().ok_or_else(|| {
            ServiceError::Store(StoreError::Corrupt("an issue without a copy".into()))
        })
    }

    /// Makes `request` ready for [`issue_in`]: fonts, the tenant's name,
    /// the 照合番号 of each copy, the batch id, the time.
    pub(crate) async fn prepare_issue(
        &self,
        tenant: &MunicipalityCode,
        request: CertificateRequest,
    ) -> Result<IssueJob, ServiceError> {
        let CertificateRequest {
            kind,
            subject,
            options,
            verification_url,
            may_show_my_number,
            counter,
        } = request;
        let fonts = fonts()?;
        let municipality = self.tenant(tenant).await?.name;
        let copies = counter.as_ref().map_or(1, |c| c.copies.max(1));
        let codes = (0..copies.min(counter::MAX_COPIES))
            .map(|_| verification_code())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IssueJob {
            kind,
            subject,
            options,
            url: verification_url,
            may_show_my_number,
            counter,
            codes,
            batch: random_hex(8)?,
            municipality,
            at: self.clock().now().timestamp_micros(),
            today: self.clock().today(),
            eras: self.eras().clone(),
            fonts,
        })
    }

    /// Issues the copies a counter request asks for, in one transaction:
    /// the support-measure guard first, then the request's checks (the
    /// refusals for third parties and proxies, [`CounterRequest::check`]),
    /// then one 発行番号, PDF and record per copy, the fee from the
    /// tenant's settings, one access-log entry with the request.
    pub async fn issue_certificates(
        &self,
        tenant: &MunicipalityCode,
        request: CertificateRequest,
        actor: &Actor,
    ) -> Result<IssuedBatch, ServiceError> {
        let job = self.prepare_issue(tenant, request).await?;
        let (t, a) = (tenant.clone(), actor.clone());
        let r = self
            .store()
            .write(Some(tenant), move |tx| issue_in(tx, &t, &a, &job))
            .await;
        if let Err(ServiceError::SupportBlocked { persons, purpose }) = &r {
            self.support_record_block(tenant, persons, *purpose, actor)
                .await?;
        }
        r
    }

    /// 手数料 per copy of a certificate for this tenant (yen, 0 to 10,000).
    pub async fn set_certificate_fee(
        &self,
        tenant: &MunicipalityCode,
        yen: i64,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        if !(0..=10_000).contains(&yen) {
            return Err(ServiceError::Invalid {
                field: "certificate_fee".into(),
                code: "invalid_fee",
                message_ja: "手数料は0〜10,000円で入力してください。".into(),
                message_en: "the fee is 0 to 10,000 yen".into(),
            });
        }
        self.ensure_tenant(tenant).await?;
        let now = self.clock().now().timestamp_micros();
        let (t, actor) = (tenant.clone(), actor.clone());
        self.store()
            .write(Some(tenant), move |tx| {
                let n = tx.execute(
                    "UPDATE tenant_settings SET certificate_fee = $2, updated_by = $3, updated_at = $4 WHERE tenant = $1",
                    &[t.as_str().into(), yen.into(), (&actor.operator).into(), now.into()],
                )?;
                if n == 0 {
                    return Err(cert_error(certificate::CertificateError::MissingIssuer));
                }
                records::append_next_audit(
                    tx,
                    &t,
                    now,
                    &AuditEntry {
                        operator: actor.operator.clone(),
                        terminal: actor.terminal.clone(),
                        function: "settings.certificate_fee".into(),
                        target: String::new(),
                        detail: serde_json::json!({ "fee": yen }).to_string(),
                        my_number_shown: false,
                    },
                )?;
                Ok::<_, ServiceError>(())
            })
            .await
    }

    /// The fee per copy set for the tenant (None before an issuer is set).
    pub async fn certificate_fee(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<Option<i64>, ServiceError> {
        let t = tenant.clone();
        Ok(self
            .store()
            .read(Some(tenant), move |tx| {
                tx.query_opt(
                    "SELECT certificate_fee FROM tenant_settings WHERE tenant = $1",
                    &[t.as_str().into()],
                )?
                .map(|r| r.int(0))
                .transpose()
            })
            .await?)
    }

    /// One issued request as its confirmation page shows it (the record of
    /// j300/j1220, no content); the read is logged.
    pub async fn issued_batch(
        &self,
        tenant: &MunicipalityCode,
        batch: &str,
        actor: &Actor,
    ) -> Result<Option<IssuedRecord>, ServiceError> {
        if batch.is_empty() || batch.len() > 32 || !batch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let (t, b) = (tenant.clone(), batch.to_string());
        let found = self
            .store()
            .read(Some(tenant), move |tx| {
                let rows = tx.query(
                    "SELECT issue_number, kind, persons, issued_at, issued_by, request, copy_no, pages, fee \
                     FROM certificates WHERE tenant = $1 AND batch = $2 ORDER BY copy_no",
                    &[t.as_str().into(), b.as_str().into()],
                )?;
                let Some(first) = rows.first() else {
                    return Ok::<_, ServiceError>(None);
                };
                let kind = first.text(1)?;
                let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
                let mut copies = vec![];
                for r in &rows {
                    copies.push((r.text(0)?, r.int(6)?, r.int(7)?, r.int(8)?));
                }
                Ok(Some(IssuedRecord {
                    batch: b.clone(),
                    kind: CertificateKind::from_code(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("kind {kind}")))?,
                    persons: serde_json::from_str(&first.text(2)?).map_err(corrupt)?,
                    issued_at: first.int(3)?,
                    issued_by: first.text(4)?,
                    request: serde_json::from_str(&first.text(5)?).map_err(corrupt)?,
                    total_fee: copies.iter().map(|c| c.3).sum(),
                    copies,
                }))
            })
            .await?;
        if let Some(r) = &found {
            self.record_access(
                tenant,
                actor,
                "certificate.view",
                &r.persons
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                serde_json::json!({ "batch": r.batch, "copies": r.copies.len() }),
            )
            .await?;
        }
        Ok(found)
    }

    /// The PDF of one copy as issued (no new issue, no new number); the
    /// hand-out is logged.
    pub async fn issued_pdf(
        &self,
        tenant: &MunicipalityCode,
        batch: &str,
        copy_no: i64,
        actor: &Actor,
    ) -> Result<Option<(String, Vec<u8>)>, ServiceError> {
        if batch.is_empty() || batch.len() > 32 || !batch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let (t, b) = (tenant.clone(), batch.to_string());
        let found = self
            .store()
            .read(Some(tenant), move |tx| {
                let Some(r) = tx.query_opt(
                    "SELECT issue_number, pdf, persons, options, kind, issued_by FROM certificates \
                     WHERE tenant = $1 AND batch = $2 AND copy_no = $3",
                    &[t.as_str().into(), b.as_str().into(), copy_no.into()],
                )?
                else {
                    return Ok::<_, ServiceError>(None);
                };
                let Some(pdf) = r.opt_text(1)? else {
                    return Ok(None);
                };
                let bytes = BASE64
                    .decode(pdf.as_bytes())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let options: CertificateOptions = serde_json::from_str(&r.text(3)?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let shown =
                    options.my_number || r.text(4)? == CertificateKind::MoveOutCertificate.code();
                Ok(Some((r.text(0)?, bytes, r.text(2)?, shown, r.text(5)?)))
            })
            .await?;
        let Some((number, pdf, persons, shown, issuer)) = found else {
            return Ok(None);
        };
        let persons: Vec<AddresseeNumber> =
            serde_json::from_str(&persons).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let entry = super::registry::access_entry(
            actor,
            "certificate.pdf",
            persons
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(","),
            serde_json::json!({ "issue_number": number }),
            shown,
        );
        // The clerk who issued it prints it (a release for the issue is
        // spent by then); anyone else reads personal data: the
        // support-measure guard applies (j380, j440).
        let guard = (issuer != actor.operator).then(|| super::registry::Guarded {
            persons,
            households: vec![],
            purpose: SupportPurpose::View,
        });
        self.commit_access(tenant, entry, actor, guard).await?;
        Ok(Some((number, pdf)))
    }

    /// The public check (j300) as the verification page makes it: counted
    /// against `source`'s and the global budget of
    /// [`super::throttle::Door::Verify`] (every check, genuine or not: each
    /// one writes an access-log entry), then [`Registry::verify_certificate`].
    pub async fn verify_certificate_from(
        &self,
        source: Option<std::net::IpAddr>,
        tenant: &MunicipalityCode,
        issue_number: &str,
        code: &str,
    ) -> Result<Option<Verified>, ServiceError> {
        let now = self.clock().now().timestamp_micros();
        let _counted = self
            .throttle()
            .admit(
                super::throttle::Door::Verify,
                super::throttle::Source::of(source),
                now,
            )
            .map_err(|r| ServiceError::TooManyAttempts {
                retry_after: r.retry_after,
            })?;
        self.verify_certificate(tenant, issue_number, code).await
    }

    /// The public check of a certificate by its 発行番号 and 照合番号
    /// (j300). Says only whether it is genuine, its kind, date and pages;
    /// each check is logged.
    pub async fn verify_certificate(
        &self,
        tenant: &MunicipalityCode,
        issue_number: &str,
        code: &str,
    ) -> Result<Option<Verified>, ServiceError> {
        self.ensure_tenant(tenant).await?;
        let number: String = issue_number.trim().chars().take(120).collect();
        // As the reader copies it from paper: with or without the spaces,
        // full-width or not (j1040 numbers begin with the issue date).
        let key = machi_domain::input::issue_number_key(&number);
        let day: String = key.chars().take(8).collect();
        let (t, code) = (tenant.clone(), code.to_string());
        let found = self
            .store()
            .read(Some(tenant), move |tx| {
                if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
                    return Ok::<_, ServiceError>(None);
                }
                let rows = tx.query(
                    "SELECT kind, issued_at, pages, persons, pdf_sha256, verify_hash, issue_number FROM certificates \
                     WHERE tenant = $1 AND issue_number LIKE $2",
                    &[t.as_str().into(), format!("{day}%").as_str().into()],
                )?;
                let mut hit = None;
                for r in rows {
                    if machi_domain::input::issue_number_key(&r.text(6)?) == key {
                        hit = Some(r);
                        break;
                    }
                }
                let Some(r) = hit else {
                    return Ok(None);
                };
                let hash = verify_hash(&r.text(6)?, &code);
                if !crate::api::auth::constant_time_eq(r.text(5)?.as_bytes(), hash.as_bytes()) {
                    return Ok(None);
                }
                let kind = r.text(0)?;
                let persons: Vec<String> = serde_json::from_str(&r.text(3)?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(Some(Verified {
                    kind: CertificateKind::from_code(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("kind {kind}")))?,
                    issued_at: r.int(1)?,
                    pages: r.int(2)?,
                    persons: persons.len(),
                    pdf_sha256: r.text(4)?,
                }))
            })
            .await?;
        self.record_access(
            tenant,
            &Actor::system("public"),
            "certificate.verify",
            &number,
            serde_json::json!({ "genuine": found.is_some() }),
        )
        .await?;
        Ok(found)
    }
}

/// A certificate request made ready to issue: what [`issue_in`] needs
/// besides the transaction.
pub(crate) struct IssueJob {
    kind: CertificateKind,
    subject: Subject,
    options: CertificateOptions,
    url: String,
    may_show_my_number: bool,
    counter: Option<CounterRequest>,
    codes: Vec<String>,
    batch: String,
    municipality: String,
    at: i64,
    today: chrono::NaiveDate,
    eras: machi_domain::dates::EraTable,
    fonts: &'static Fonts,
}

/// Issues the copies of `job` inside the caller's transaction: the
/// support-measure guard first, then the request's checks, then one
/// 発行番号, PDF and record per copy, one access-log entry and one linkage
/// event per copy (see [`Registry::issue_certificates`]).
pub(crate) fn issue_in(
    tx: &mut Tx<'_>,
    t: &MunicipalityCode,
    a: &Actor,
    job: &IssueJob,
) -> Result<IssuedBatch, ServiceError> {
    let IssueJob {
        kind,
        subject,
        options,
        url,
        may_show_my_number,
        counter,
        codes,
        batch,
        municipality,
        at,
        today,
        eras,
        fonts,
    } = job;
    let (kind, may_show_my_number, at, today, fonts) =
        (*kind, *may_show_my_number, *at, *today, *fonts);
    // j380/j440: a protected person, or anyone living with one,
    // blocks the issue unless released; checked before the
    // records are read, so that no answer about them (not in
    // this household, moved out, …) comes before the refusal.
    let (mut named, households) = match &subject {
        Subject::HouseholdOf(p) => (vec![p.clone()], vec![]),
        Subject::Household(h) => (vec![], vec![h.clone()]),
    };
    if let PersonSelection::Persons(list) = &options.persons {
        named.extend(list.iter().cloned());
    }
    super::support::guard_concerning(tx, t, &named, &households, a, SupportPurpose::Issue, at)?;
    if let Some(c) = &counter {
        c.check(options)
            .map_err(|e| ServiceError::invalid("request", &e))?;
    }
    // Printing a 個人番号 on request is a reveal: only roles
    // allowed to see it (a 転出証明書 carries it by law and is
    // issued by the counter).
    if options.my_number && !may_show_my_number {
        return Err(ServiceError::Forbidden);
    }
    let histories: Vec<Vec<HistoryRow>> = {
        let household = match &subject {
            Subject::Household(h) => h.clone(),
            Subject::HouseholdOf(p) => {
                let rows = records::history(tx, t, p)?;
                rows.last()
                    .map(|r| r.record.household_number.clone())
                    .ok_or_else(|| ServiceError::PersonNotFound(p.to_string()))?
            }
        };
        let mut all = records::household_histories(tx, t, &household)?;
        if let Subject::HouseholdOf(p) = &subject
            && !all.contains_key(p)
        {
            all.insert(p.clone(), records::history(tx, t, p)?);
        }
        all.into_values().collect()
    };
    let issuer = issuer_of(tx, t)?
        .ok_or_else(|| cert_error(certificate::CertificateError::MissingIssuer))?;
    let cert = certificate::build(&CertificateInput {
        kind,
        persons: &histories,
        municipality,
        issuer: &issuer,
        issue_date: today,
        eras,
        options,
    })
    .map_err(cert_error)?;
    let persons: Vec<AddresseeNumber> = cert
        .persons
        .iter()
        .map(|p| p.addressee_number.clone())
        .collect();
    records::lock_tenant(tx, t)?;
    let fee_per_copy = tx
        .query_opt(
            "SELECT certificate_fee FROM tenant_settings WHERE tenant = $1",
            &[t.as_str().into()],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    let fee_each = counter::fee(fee_per_copy, 1, kind, options.official_use);
    let day = today.format("%Y%m%d").to_string();
    let first = tx
        .query_one(
            "SELECT COUNT(*) + 1 FROM certificates WHERE tenant = $1 AND issue_number LIKE $2",
            &[t.as_str().into(), format!("{day} %").as_str().into()],
        )?
        .int(0)?;
    let record = cert.issue_record();
    let shown = kind == CertificateKind::MoveOutCertificate || options.my_number;
    let request_json = serde_json::to_string(&counter.clone().unwrap_or_default())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let persons_json =
        serde_json::to_string(&persons).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let options_json =
        serde_json::to_string(&options).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut issued = Vec::with_capacity(codes.len());
    for (i, code) in codes.iter().enumerate() {
        let copy_no = i as i64 + 1;
        let number = IssueNumber {
            issued_on: today,
            municipality: municipality.clone(),
            terminal: a.terminal.clone(),
            printer: "P1".into(),
            sequence: (first + i as i64) as u32,
        }
        .to_string();
        let stamp = IssueStamp {
            issue_number: number.clone(),
            verification_code: code.clone(),
            verification_url: url.clone(),
        };
        let rendered = crate::certificate::render_report(&cert, &stamp, fonts).map_err(|e| {
            ServiceError::Invalid {
                field: "certificate".into(),
                code: "pdf_failed",
                message_ja: format!("証明書の PDF を作成できませんでした: {e}"),
                message_en: format!("the certificate PDF could not be made: {e}"),
            }
        })?;
        let pdf_sha = hex::encode(Sha256::digest(&rendered.pdf));
        tx.execute(
            "INSERT INTO certificates (tenant, issue_number, kind, persons, options, verify_hash, pdf_sha256, pages, issued_by, issued_terminal, issued_at, request, batch, copy_no, fee, pdf) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                t.as_str().into(),
                (&number).into(),
                kind.code().into(),
                persons_json.as_str().into(),
                options_json.as_str().into(),
                verify_hash(&number, code).as_str().into(),
                (&pdf_sha).into(),
                (rendered.pages as i64).into(),
                (&a.operator).into(),
                (&a.terminal).into(),
                at.into(),
                request_json.as_str().into(),
                batch.as_str().into(),
                copy_no.into(),
                fee_each.into(),
                BASE64.encode(&rendered.pdf).as_str().into(),
            ],
        )?;
        records::append_next_audit(
            tx,
            t,
            at,
            &AuditEntry {
                operator: a.operator.clone(),
                terminal: a.terminal.clone(),
                function: "certificate.issue".into(),
                target: persons
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                detail: serde_json::json!({
                    "issue_number": number, "kind": kind.code(), "pages": rendered.pages,
                    "items": record.items, "with_history": record.with_history,
                    "pdf_sha256": pdf_sha, "missing_chars": rendered.missing_chars,
                    "copy": copy_no, "copies": codes.len(), "fee": fee_each,
                    "request": counter.as_ref().map(|c| serde_json::json!({
                        "requester": c.requester.map(|r| r.code()),
                        "requester_name": c.requester_name,
                        "relationship": c.relationship,
                        "identity": c.identity.map(|d| d.code()),
                        "power_of_attorney": c.power_of_attorney,
                        "ground": c.ground.map(|g| g.code()),
                        "purpose": c.purpose,
                    })),
                })
                .to_string(),
                my_number_shown: shown,
            },
        )?;
        // Linkage: which certificate of which persons; no content.
        records::append_next_event(
            tx,
            t,
            super::events::CERTIFICATE_ISSUED,
            &serde_json::json!({
                "issue_number": number,
                "kind": kind.code(),
                "persons": persons.iter().map(|p| serde_json::json!({ "addressee_number": p.as_str() })).collect::<Vec<_>>(),
                "pages": rendered.pages,
            }),
            at,
        )?;
        issued.push(Issued {
            issue_number: number,
            verification_code: code.clone(),
            pdf: rendered.pdf,
            pages: rendered.pages as i64,
            persons: persons.clone(),
            batch: batch.clone(),
            copy_no,
            fee: fee_each,
        });
    }
    let total_fee = fee_each * issued.len() as i64;
    Ok(IssuedBatch {
        batch: batch.clone(),
        kind,
        copies: issued,
        fee_per_copy: fee_each,
        total_fee,
    })
}
