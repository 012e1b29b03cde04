//! Counter-assisted filing (書かない窓口, issue 11 item 7): a clerk opens a
//! published procedure from a resident's page, the registry's data is
//! prefilled, the applicant checks a read-only view, and the filing joins
//! `portal_filings` marked as filed at the counter, the clerk recorded and
//! the step in the access log. Bad input changes nothing.

use axum::http::StatusCode;
use chrono::Datelike;
use machi_domain::access::Role;
use machi_domain::ids::MunicipalityCode;

use crate::support::{FUCHU, TestDb};
use crate::ui::{Session, app, staff};
use crate::ui_forms::{families, hidden_fields};

both_backends!(
    a_clerk_files_a_move_out_at_the_counter_for_the_applicant,
    counter_filing_refuses_bad_input_and_stores_nothing,
    a_survey_filed_at_the_counter_stays_anonymous,
);

async fn stored(db: &TestDb) -> Vec<machi::store::portal_filings::StoredPortalFiling> {
    let t: MunicipalityCode = FUCHU.parse().unwrap();
    let t2 = t.clone();
    db.store
        .read(Some(&t), move |tx| {
            machi::store::portal_filings::list(tx, &t2, 100)
        })
        .await
        .unwrap()
}

async fn log(db: &TestDb) -> Vec<(String, String, String)> {
    let t: MunicipalityCode = FUCHU.parse().unwrap();
    let t2 = t.clone();
    db.store
        .read(Some(&t), move |tx| {
            machi::store::records::audit_entries(tx, &t2, 0, 10_000)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.entry.function, e.entry.operator, e.entry.detail))
        .collect()
}

/// A date as the form's four inputs (西暦).
pub fn date(pairs: &mut Vec<(String, String)>, key: &str, d: chrono::NaiveDate) {
    set(pairs, &format!("a.{key}.era"), "seireki");
    set(pairs, &format!("a.{key}.year"), &d.year().to_string());
    set(pairs, &format!("a.{key}.month"), &d.month().to_string());
    set(pairs, &format!("a.{key}.day"), &d.day().to_string());
}

/// The values of the form's text inputs and selects, by name (unescaped
/// enough for the names these tests use).
fn inputs(page: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for part in page.split("<input ").skip(1) {
        let tag = &part[..part.find('>').unwrap_or(part.len())];
        let attr = |a: &str| {
            tag.split(&format!(" {a}=\""))
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(str::to_owned)
        };
        let (Some(name), Some(value)) = (attr("name"), attr("value")) else {
            continue;
        };
        let kind = attr("type").unwrap_or_default();
        if (kind == "checkbox" || kind == "radio") && !tag.contains(" checked") {
            continue;
        }
        if name.starts_with("a.") {
            out.push((name, value));
        }
    }
    for part in page.split("<select ").skip(1) {
        let name = part
            .split(" name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let end = part.find("</select>").unwrap_or(part.len());
        if let Some(sel) = part[..end].split("<option value=\"").find(|o| {
            o.split('>')
                .next()
                .is_some_and(|head| head.contains(" selected"))
        }) {
            out.push((name, sel.split('"').next().unwrap_or_default().to_owned()));
        }
    }
    out
}

fn set(pairs: &mut Vec<(String, String)>, name: &str, value: &str) {
    pairs.retain(|(n, _)| n != name);
    pairs.push((name.to_owned(), value.to_owned()));
}

async fn a_clerk_files_a_move_out_at_the_counter_for_the_applicant(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = &persons[0];

    // From the resident's page to the list of procedures.
    let (_, _, page) = clerk.get(&format!("/ui/residents/{me}")).await;
    assert!(
        page.contains(&format!("href=\"/ui/residents/{me}/counter\"")),
        "{page}"
    );
    let (s, _, list) = clerk.get(&format!("/ui/residents/{me}/counter")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    for title in [
        "転出届",
        "住民票の写しの交付請求",
        "学童クラブ入会申請",
        "児童手当認定請求",
    ] {
        assert!(list.contains(title), "{title}: {list}");
    }

    // The 転出届, prefilled: the applicant and every household member.
    let (s, _, form) = clerk
        .get(&format!("/ui/residents/{me}/counter/tenshutsu"))
        .await;
    assert_eq!(s, StatusCode::OK, "{form}");
    assert!(form.contains("value=\"髙橋　一郎\""), "{form}");
    assert!(form.contains("value=\"タカハシ　イチロウ\""), "{form}");
    for name in ["髙橋　京子", "髙橋　翔"] {
        assert!(form.contains(&format!("value=\"{name}\"")), "{name}");
    }
    // 昭和64年1月7日 as the era inputs show it.
    let state = inputs(&form);
    assert!(
        state.contains(&("a.members.0.birth_date.era".into(), "昭和".into()))
            && state.contains(&("a.members.0.birth_date.year".into(), "64".into())),
        "{state:?}"
    );
    assert!(state.contains(&("a.members.count".into(), "3".into())));

    // Sent without the rest: the problems, each linked, nothing lost.
    let mut pairs = state.clone();
    pairs.push(("step".into(), "check".into()));
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (s, _, again) = clerk
        .post(&format!("/ui/residents/{me}/counter/tenshutsu"), &refs)
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    crate::readable::assert_readable(&again, "counter form with problems");
    assert!(again.contains("id=\"error-summary\""), "{again}");
    assert!(again.contains("href=\"#f-phone\""), "{again}");
    assert!(again.contains("<title>エラー："), "{again}");
    assert!(again.contains("value=\"髙橋　一郎\""), "input kept");
    assert!(stored(&db).await.is_empty());

    // The clerk asks the rest; the child does not move.
    let today = db.registry.today();
    let mut pairs = state.clone();
    set(&mut pairs, "a.phone", "042-111-2222");
    date(
        &mut pairs,
        "moving_date",
        today + chrono::Duration::days(10),
    );
    date(&mut pairs, "visit_date", today + chrono::Duration::days(15));
    set(&mut pairs, "a.destination.postal", "196-0015");
    set(
        &mut pairs,
        "a.destination.address",
        "東京都昭島市昭和町二丁目1番地",
    );
    pairs.retain(|(n, _)| n != "a.members.2._include");
    pairs.push(("step".into(), "check".into()));
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (s, _, confirm) = clerk
        .post(&format!("/ui/residents/{me}/counter/tenshutsu"), &refs)
        .await;
    assert_eq!(s, StatusCode::OK, "{confirm}");
    crate::readable::assert_readable(&confirm, "the applicant's confirmation");
    // The applicant's view: large text, the answers in words, nothing
    // staff-only (no menu, no staff name, no 宛名番号).
    assert!(confirm.contains("class=\"applicant-view\""), "{confirm}");
    assert!(confirm.contains("申請内容の確認"));
    assert!(confirm.contains("東京都昭島市昭和町二丁目1番地"));
    assert!(confirm.contains("髙橋　京子"));
    let shown = confirm
        .split("id=\"applicant-answers\"")
        .nth(1)
        .and_then(|s| s.split("</dl>").next())
        .unwrap();
    assert!(shown.contains("髙橋　京子"));
    assert!(
        !shown.contains("髙橋　翔"),
        "the child is not moving: {shown}"
    );
    assert!(confirm.contains("昭和64年1月7日"), "{confirm}");
    for staff_only in ["宛名番号", "ログアウト", "試験 clerk", "世帯番号"] {
        assert!(
            !confirm.contains(staff_only),
            "{staff_only} shown to the applicant"
        );
    }
    assert!(
        stored(&db).await.is_empty(),
        "nothing filed before the applicant agrees"
    );

    // The applicant agrees: filed.
    let mut hidden = hidden_fields(&confirm);
    hidden.push(("step".into(), "file".into()));
    let refs: Vec<(&str, &str)> = hidden
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (s, _, done) = clerk
        .post(&format!("/ui/residents/{me}/counter/tenshutsu"), &refs)
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    crate::readable::assert_readable(&done, "counter filing done");
    let receipt = done
        .split("id=\"receipt\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_owned();
    let filings = stored(&db).await;
    assert_eq!(filings.len(), 1);
    let f = &filings[0];
    assert_eq!(f.receipt, receipt);
    assert!(machi::store::portal_filings::filed_at_counter(&f.portal_id));
    assert_eq!(f.procedure, "tenshutsu");
    assert_eq!(f.status, "received");
    assert_eq!(f.filing["counter"]["clerk"], "clerk");
    assert_eq!(f.filing["counter"]["applicant"], me.as_str());
    let members = f.filing["signed_content"]["answers"]["members"]
        .as_array()
        .unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    assert_eq!(members[1]["name"], "髙橋　京子");
    assert_eq!(
        f.filing["signed_content"]["answers"]["destination"]["address"],
        "東京都昭島市昭和町二丁目1番地"
    );
    let entries = log(&db).await;
    let filed: Vec<_> = entries
        .iter()
        .filter(|(f, _, _)| f == "counter_filing.file")
        .collect();
    assert_eq!(filed.len(), 1, "{entries:?}");
    assert_eq!(filed[0].1, "clerk");
    assert!(filed[0].2.contains(&receipt));

    // A supervisor approves it in the inbox. No signature is asked for
    // (the clerk saw the applicant's identity document); the 転出 is
    // recorded once, for the two members who move.
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let boss = Session::login(&router, FUCHU, "boss").await;
    let inbox = format!("/api/v1/tenants/{FUCHU}/filings/{}", f.filing_id);
    let (s, cands) = crate::inbox::call(&boss, "GET", &format!("{inbox}/candidates"), None).await;
    assert_eq!(s, StatusCode::OK, "{cands}");
    for p in cands.as_array().unwrap() {
        let a = p["candidates"][0]["addressee_number"]
            .as_str()
            .unwrap_or_else(|| panic!("no candidate for {p}"))
            .to_string();
        let (s, body) = crate::inbox::call(
            &boss,
            "POST",
            &format!("{inbox}/match"),
            Some(serde_json::json!({ "party": p["key"], "addressee_number": a })),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (s, a) = crate::inbox::call(
        &boss,
        "POST",
        &format!("{inbox}/approve"),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "approved", "{a}");
    assert!(a["outcome"]["change_id"].as_i64().is_some(), "{a}");
    let (s, again) = crate::inbox::call(
        &boss,
        "POST",
        &format!("{inbox}/approve"),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["already"], true);
}

async fn counter_filing_refuses_bad_input_and_stores_nothing(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "cio", Role::Cio).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = &persons[0];
    // No such procedure; no such person; a malformed number.
    let (s, _, page) = clerk
        .get(&format!("/ui/residents/{me}/counter/nonesuch"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{page}");
    assert!(page.contains("その手続は公開されていません"), "{page}");
    let nobody = machi_domain::ids::AddresseeNumber::from_serial(999).unwrap();
    let (s, _, _) = clerk
        .get(&format!("/ui/residents/{nobody}/counter/tenshutsu"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = clerk.get("/ui/residents/12%3Cx/counter").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A post without the form's token, and one filing answers that do
    // not check: refused, nothing stored.
    let (s, _, _) = crate::ui::send(
        &router,
        "POST",
        &format!("/ui/residents/{me}/counter/survey_internet"),
        Some(&clerk.cookie),
        Some("step=file&a.age_group=a70"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, page) = clerk
        .post(
            &format!("/ui/residents/{me}/counter/survey_internet"),
            &[("step", "file"), ("a.age_group", "a99")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("id=\"error-summary\""), "{page}");
    // A role that does not enter changes cannot file at the counter.
    let cio = Session::login(&router, FUCHU, "cio").await;
    let (s, _, _) = cio.get(&format!("/ui/residents/{me}/counter")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(stored(&db).await.is_empty());
    assert!(
        !log(&db)
            .await
            .iter()
            .any(|(f, _, _)| f == "counter_filing.file")
    );
}

async fn a_survey_filed_at_the_counter_stays_anonymous(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = &persons[0];
    let (s, _, done) = clerk
        .post(
            &format!("/ui/residents/{me}/counter/survey_internet"),
            &[
                ("step", "file"),
                ("a.age_group", "a70"),
                ("a.uses_internet", "no"),
                ("a.want_class", "yes"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert!(done.contains("id=\"receipt\""), "{done}");
    let filings = stored(&db).await;
    assert_eq!(filings.len(), 1);
    assert!(filings[0].filing["counter"]["applicant"].is_null());
    assert_eq!(
        filings[0].filing["signed_content"]["answers"]["age_group"],
        "a70"
    );
    // The access log names the clerk and the survey, not the person.
    let t: MunicipalityCode = FUCHU.parse().unwrap();
    let t2 = t.clone();
    let entries = db
        .store
        .read(Some(&t), move |tx| {
            machi::store::records::audit_entries(tx, &t2, 0, 10_000)
        })
        .await
        .unwrap();
    let filed: Vec<_> = entries
        .iter()
        .filter(|e| e.entry.function == "counter_filing.file")
        .collect();
    assert_eq!(filed.len(), 1);
    assert_eq!(filed[0].entry.target, "procedure:survey_internet");
    assert_eq!(filed[0].entry.operator, "clerk");
}
