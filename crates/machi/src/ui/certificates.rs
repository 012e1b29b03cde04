//! Issuing certificates at the counter (j1000–j1070, j660) and the public
//! verification page (j300).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use machi_domain::access::Permission;
use machi_domain::certificate::counter::{
    CounterRequest, IdentityDocument, Requester, ThirdPartyGround,
};
use machi_domain::certificate::{CertificateKind, CertificateOptions, PersonSelection};
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};

use super::forms::FormData;
use super::{Chrome, Ctx, Lang, UiError, html, when};
use crate::api::AppState;
use crate::api::source::ClientAddr;
use crate::service::certificates::{CertificateRequest, Subject};

const KINDS: [CertificateKind; 5] = [
    CertificateKind::ResidentCopy,
    CertificateKind::RecordItemsCertificate,
    CertificateKind::RemovedCopy,
    CertificateKind::RemovedRecordItemsCertificate,
    CertificateKind::MoveOutCertificate,
];

#[derive(Template)]
#[template(path = "certificate_new.html")]
struct NewPage {
    c: Chrome,
    f: FormData,
    kinds: Vec<(&'static str, &'static str)>,
    requesters: Vec<(&'static str, &'static str)>,
    identities: Vec<(&'static str, &'static str)>,
    grounds: Vec<(&'static str, &'static str)>,
    /// 手数料 per copy (yen) as set for the tenant.
    fee: i64,
    error: Option<String>,
    can_show_my_number: bool,
}

pub async fn new_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ctx = match Ctx::load(&s, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require(Permission::IssueCertificate) {
        return r;
    }
    let f = FormData(q.ok().map(|Query(q)| q).unwrap_or_default());
    let fee = fee_of(&s, &ctx).await;
    html(&page(&ctx, f, None, fee))
}

async fn fee_of(s: &AppState, ctx: &Ctx) -> i64 {
    match &ctx.tenant {
        Some(t) => s
            .registry
            .certificate_fee(t)
            .await
            .ok()
            .flatten()
            .unwrap_or(0),
        None => 0,
    }
}

fn page(ctx: &Ctx, f: FormData, error: Option<String>, fee: i64) -> NewPage {
    let l = ctx.lang;
    NewPage {
        c: Chrome::new(ctx, "証明書の発行", "Issue a certificate"),
        f,
        kinds: KINDS.iter().map(|k| (k.code(), k.title_ja())).collect(),
        requesters: Requester::ALL
            .iter()
            .map(|r| (r.code(), l.t(r.label_ja(), r.label_en())))
            .collect(),
        identities: IdentityDocument::ALL
            .iter()
            .map(|d| (d.code(), l.t(d.label_ja(), d.label_en())))
            .collect(),
        grounds: ThirdPartyGround::ALL
            .iter()
            .map(|g| (g.code(), l.t(g.label_ja(), g.label_en())))
            .collect(),
        fee,
        error,
        can_show_my_number: ctx.can(Permission::RevealMyNumber),
    }
}

/// The counter's part of the form: who asks, identity, purpose, copies.
/// Left-blank fields stay blank; the service says what is missing after
/// the support-measure guard.
fn counter_request(f: &FormData) -> Result<CounterRequest, UiError> {
    let copies_text = machi_domain::input::compact_number(&f.text("copies"));
    let copies = if copies_text.is_empty() {
        1
    } else {
        copies_text.parse::<u32>().map_err(|_| UiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            ja: "通数は数字で入力してください。".into(),
            en: "copies is a number".into(),
        })?
    };
    Ok(CounterRequest {
        requester: Requester::from_code(&f.text("requester")),
        requester_name: f.text("requester_name").trim().to_string(),
        relationship: f.text("relationship").trim().to_string(),
        identity: IdentityDocument::from_code(&f.text("identity")),
        power_of_attorney: f.checked("power_of_attorney"),
        ground: ThirdPartyGround::from_code(&f.text("ground")),
        purpose: f.text("purpose").trim().to_string(),
        copies,
    })
}

fn verification_url(headers: &HeaderMap, tenant: &MunicipalityCode) -> String {
    format!("{}/verify?tenant={tenant}", super::public_url(headers))
}

/// Issues the certificate and sends the PDF.
pub async fn issue(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let f = FormData(form);
    let (ctx, tenant) = match Ctx::for_form(&s, &headers, &f, Permission::IssueCertificate).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let fee = fee_of(&s, &ctx).await;
    let again = |e: UiError| {
        let msg = ctx.lang.t(&e.ja, &e.en).to_string();
        (e.status, html(&page(&ctx, f.clone(), Some(msg), fee))).into_response()
    };
    let bad_id = |e: machi_domain::ids::IdError| {
        let e: &dyn machi_domain::error::Localized = &e;
        UiError::from(e)
    };
    let Some(kind) = CertificateKind::from_code(&f.text("kind")) else {
        return again(UiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            ja: "証明書の種類を選んでください。".into(),
            en: "choose the kind of certificate".into(),
        });
    };
    let counter = match counter_request(&f) {
        Ok(c) => c,
        Err(e) => return again(e),
    };
    let person: Option<AddresseeNumber> = match f
        .get("person")
        .filter(|v| !v.trim().is_empty())
        .map(|v| machi_domain::input::compact_number(v).parse())
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return again(bad_id(e)),
    };
    let household: Option<HouseholdNumber> = match f
        .get("household")
        .filter(|v| !v.trim().is_empty())
        .map(|v| machi_domain::input::compact_number(v).parse())
        .transpose()
    {
        Ok(h) => h,
        Err(e) => return again(bad_id(e)),
    };
    let subject = match (&person, household) {
        (Some(p), _) => Subject::HouseholdOf(p.clone()),
        (None, Some(h)) => Subject::Household(h),
        (None, None) => {
            return again(UiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                ja: "宛名番号または世帯番号を指定してください。".into(),
                en: "give an addressee number or a household number".into(),
            });
        }
    };
    let options = CertificateOptions {
        persons: match (&person, f.text("scope").as_str()) {
            (Some(p), "person") => PersonSelection::Persons(vec![p.clone()]),
            _ => PersonSelection::WholeHousehold,
        },
        with_history: f.checked("with_history"),
        head_and_relationship: f.checked("head_and_relationship"),
        registered_domicile: f.checked("registered_domicile"),
        resident_code: f.checked("resident_code"),
        my_number: f.checked("my_number"),
        foreign_status: f.checked("foreign_status"),
        furigana: f.checked("furigana"),
        official_use: f.checked("official_use"),
        ..Default::default()
    };
    match s
        .registry
        .issue_certificates(
            &tenant,
            CertificateRequest {
                kind,
                subject,
                options,
                verification_url: verification_url(&headers, &tenant),
                may_show_my_number: ctx.can(Permission::RevealMyNumber),
                counter: Some(counter),
            },
            &ctx.caller.actor(),
        )
        .await
    {
        // The confirmation page (what was issued, numbers, fee, the PDFs):
        // a GET, so that reloading it issues nothing again.
        Ok(batch) => {
            let mut res =
                Redirect::to(&format!("/ui/certificates/issued/{}", batch.batch)).into_response();
            // For a program driving the counter: each copy's number (hex
            // of its UTF-8) and 照合番号, comma-separated, as printed.
            let numbers: Vec<String> = batch
                .copies
                .iter()
                .map(|c| hex::encode(c.issue_number.as_bytes()))
                .collect();
            let codes: Vec<&str> = batch
                .copies
                .iter()
                .map(|c| c.verification_code.as_str())
                .collect();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&numbers.join(",")) {
                h.insert("x-machi-issue-number", v);
            }
            if let Ok(v) = HeaderValue::from_str(&codes.join(",")) {
                h.insert("x-machi-verification-code", v);
            }
            res
        }
        Err(e) => again(e.into()),
    }
}

#[derive(Template)]
#[template(path = "certificate_issued.html")]
struct IssuedPage {
    c: Chrome,
    batch: String,
    kind: String,
    persons: Vec<String>,
    issued_at: String,
    requester: String,
    requester_name: String,
    relationship: String,
    identity: String,
    power_of_attorney: bool,
    ground: String,
    purpose: String,
    /// (発行番号, copy no., pages, fee)
    copies: Vec<(String, i64, i64, i64)>,
    total_fee: i64,
}

/// Yen with thousands separators: 1,200.
pub fn yen<N: std::borrow::Borrow<i64>>(n: N) -> String {
    let n = *n.borrow();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn not_found(ctx: &Ctx) -> Response {
    ctx.error(&UiError {
        status: StatusCode::NOT_FOUND,
        ja: "この発行記録はありません。".into(),
        en: "no such issue".into(),
    })
}

/// The on-screen issue confirmation.
pub async fn issued(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::IssueCertificate).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(batch) = path.ok().map(|Path(b)| b) else {
        return not_found(&ctx);
    };
    let r = match s
        .registry
        .issued_batch(&tenant, &batch, &ctx.caller.actor())
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(&ctx),
        Err(e) => return ctx.error(&e.into()),
    };
    let l = ctx.lang;
    let q = &r.request;
    html(&IssuedPage {
        c: Chrome::new(&ctx, "証明書を発行しました", "Certificate issued"),
        batch: r.batch.clone(),
        kind: l.t(r.kind.title_ja(), r.kind.title_ja()).to_string(),
        persons: r.persons.iter().map(|p| p.to_string()).collect(),
        issued_at: when(r.issued_at),
        requester: q
            .requester
            .map(|x| l.t(x.label_ja(), x.label_en()).to_string())
            .unwrap_or_default(),
        requester_name: q.requester_name.clone(),
        relationship: q.relationship.clone(),
        identity: q
            .identity
            .map(|x| l.t(x.label_ja(), x.label_en()).to_string())
            .unwrap_or_default(),
        power_of_attorney: q.power_of_attorney,
        ground: q
            .ground
            .map(|x| l.t(x.label_ja(), x.label_en()).to_string())
            .unwrap_or_default(),
        purpose: q.purpose.clone(),
        copies: r.copies.clone(),
        total_fee: r.total_fee,
    })
}

/// One copy's PDF as issued (no new number); only for the issuing clerk.
pub async fn issued_pdf(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Response {
    let (ctx, tenant) = match Ctx::for_page(&s, &headers, Permission::IssueCertificate).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some((batch, copy)) = path.ok().map(|Path(p)| p) else {
        return not_found(&ctx);
    };
    let Some(copy_no) = copy
        .strip_suffix(".pdf")
        .and_then(|c| c.parse::<i64>().ok())
    else {
        return not_found(&ctx);
    };
    match s
        .registry
        .issued_pdf(&tenant, &batch, copy_no, &ctx.caller.actor())
        .await
    {
        Ok(Some((number, pdf))) => {
            let mut res = (StatusCode::OK, pdf).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let name = format!(
                "inline; filename=\"certificate-{}-{}.pdf\"",
                tenant,
                number.split_whitespace().last().unwrap_or("0")
            );
            if let Ok(v) = HeaderValue::from_str(&name) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            // For a program driving the counter: the number (hex of its
            // UTF-8), also printed on the PDF.
            if let Ok(v) = HeaderValue::from_str(&hex::encode(number.as_bytes())) {
                h.insert("x-machi-issue-number", v);
            }
            res
        }
        Ok(None) => not_found(&ctx),
        Err(e) => ctx.error(&e.into()),
    }
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage {
    l: Lang,
    tenant: String,
    number: String,
    checked: bool,
    genuine: bool,
    kind: String,
    issued_at: String,
    pages: i64,
    persons: usize,
    error: Option<String>,
}

fn verify_page(l: Lang, tenant: String, number: String) -> VerifyPage {
    VerifyPage {
        l,
        tenant,
        number,
        checked: false,
        genuine: false,
        kind: String::new(),
        issued_at: String::new(),
        pages: 0,
        persons: 0,
        error: None,
    }
}

pub async fn verify_form(
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = FormData(q.ok().map(|Query(q)| q).unwrap_or_default());
    html(&verify_page(
        Lang::of(&headers),
        f.text("tenant"),
        f.text("number"),
    ))
}

/// The public check: genuine or not, and nothing about the persons.
/// Every check counts against the client's address and the global budget
/// (each one writes an access-log entry); beyond them, a 429 with
/// `Retry-After`.
pub async fn verify(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let l = Lang::of(&headers);
    let f = FormData(form);
    let mut p = verify_page(l, f.text("tenant"), f.text("number"));

    let tenant: MunicipalityCode =
        match machi_domain::input::compact_number(&f.text("tenant")).parse() {
            Ok(t) => t,
            Err(e) => {
                let e: &dyn machi_domain::error::Localized = &e;
                p.error = Some(l.t(&e.message_ja(), &e.message_en()).to_string());
                return (StatusCode::BAD_REQUEST, html(&p)).into_response();
            }
        };
    match s
        .registry
        .verify_certificate_from(source, &tenant, &f.text("number"), &f.text("code"))
        .await
    {
        Ok(found) => {
            p.checked = true;
            if let Some(v) = found {
                p.genuine = true;
                p.kind = v.kind.title_ja().to_string();
                p.issued_at = when(v.issued_at);
                p.pages = v.pages;
                p.persons = v.persons;
            }
            html(&p)
        }
        Err(e) => {
            let retry_after = match &e {
                crate::service::ServiceError::TooManyAttempts { retry_after } => Some(*retry_after),
                _ => None,
            };
            let e = UiError::from(e);
            p.error = Some(l.t(&e.ja, &e.en).to_string());
            let mut res = (e.status, html(&p)).into_response();
            if let Some(secs) = retry_after {
                res.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            res
        }
    }
}
