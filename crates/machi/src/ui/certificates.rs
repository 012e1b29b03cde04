//! Issuing certificates at the counter (j1000–j1070, j660) and the public
//! verification page (j300).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use machi_domain::access::Permission;
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
    html(&page(&ctx, f, None))
}

fn page(ctx: &Ctx, f: FormData, error: Option<String>) -> NewPage {
    NewPage {
        c: Chrome::new(ctx, "証明書の発行", "Issue a certificate"),
        f,
        kinds: KINDS.iter().map(|k| (k.code(), k.title_ja())).collect(),
        error,
        can_show_my_number: ctx.can(Permission::RevealMyNumber),
    }
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
    let again = |e: UiError| {
        let msg = ctx.lang.t(&e.ja, &e.en).to_string();
        (e.status, html(&page(&ctx, f.clone(), Some(msg)))).into_response()
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
    let person: Option<AddresseeNumber> = match f.get("person").map(str::parse).transpose() {
        Ok(p) => p,
        Err(e) => return again(bad_id(e)),
    };
    let household: Option<HouseholdNumber> = match f.get("household").map(str::parse).transpose() {
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
        .issue_certificate(
            &tenant,
            CertificateRequest {
                kind,
                subject,
                options,
                verification_url: verification_url(&headers, &tenant),
                may_show_my_number: ctx.can(Permission::RevealMyNumber),
            },
            &ctx.caller.actor(),
        )
        .await
    {
        Ok(issued) => {
            let mut res = (StatusCode::OK, issued.pdf).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let name = format!(
                "attachment; filename=\"certificate-{}-{}.pdf\"",
                tenant,
                issued.issue_number.split_whitespace().last().unwrap_or("0")
            );
            if let Ok(v) = HeaderValue::from_str(&name) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            // For a program driving the counter: the number (hex of its
            // UTF-8) and the code, both printed on the PDF too.
            if let Ok(v) = HeaderValue::from_str(&hex::encode(issued.issue_number.as_bytes())) {
                h.insert("x-machi-issue-number", v);
            }
            if let Ok(v) = HeaderValue::from_str(&issued.verification_code) {
                h.insert("x-machi-verification-code", v);
            }
            res
        }
        Err(e) => again(e.into()),
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

    let tenant: MunicipalityCode = match f.text("tenant").parse() {
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
