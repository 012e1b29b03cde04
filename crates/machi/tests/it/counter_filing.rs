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
    the_identity_check_is_required_and_checked,
    a_representative_files_and_approval_needs_the_identity_record,
    a_tenants_own_accepted_procedure_is_offered_at_the_counter_prefilled,
    a_move_out_inside_the_municipality_is_refused_at_the_counter_api_and_approval,
    a_confirmation_sent_twice_files_once_with_its_members_matched,
    the_visit_date_is_counted_from_the_moving_date_at_the_counter,
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
    // The identity check is asked for first.
    assert!(again.contains("href=\"#id-document\""), "{again}");
    assert!(
        again.contains("確認した本人確認書類を選んでください"),
        "{again}"
    );
    assert!(again.contains("href=\"#id-appeared\""), "{again}");
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
    set(&mut pairs, "id.document", "drivers_licence");
    set(&mut pairs, "id.appeared", "self");
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
    assert!(
        shown.contains("運転免許証"),
        "the applicant sees the check: {shown}"
    );
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
    // The identity check, with the filing and in the log in words.
    assert_eq!(
        f.filing["counter"]["identity"],
        serde_json::json!({ "document": "drivers_licence", "note": "", "appeared": "self" })
    );
    let detail: serde_json::Value = serde_json::from_str(&filed[0].2).unwrap();
    assert_eq!(
        detail["identity_document"],
        "運転免許証（運転経歴証明書を含む）"
    );
    assert_eq!(detail["appeared_as"], "本人");

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
    // The filing page says how identity was checked.
    let (s, _, page) = boss.get(&format!("/ui/inbox/{}", f.filing_id)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "counter filing in the inbox");
    let section = page
        .split("id=\"counter-identity\"")
        .nth(1)
        .and_then(|s| s.split("</table>").next())
        .unwrap_or_else(|| panic!("{page}"));
    for words in ["窓口（書かない窓口）", "運転免許証", "本人"] {
        assert!(section.contains(words), "{words}: {section}");
    }
    assert!(page.contains("署名に代えて本人確認書類を確認"), "{page}");
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
    let answers = [
        ("a.age_group", "a70"),
        ("a.uses_internet", "no"),
        ("a.want_class", "yes"),
    ];
    // Filed only from the confirmation (its one-time token): a bare
    // `step=file` shows the confirmation.
    let mut bare = vec![("step", "file")];
    bare.extend(answers);
    let (s, _, confirm) = clerk
        .post(
            &format!("/ui/residents/{me}/counter/survey_internet"),
            &bare,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{confirm}");
    assert!(confirm.contains("id=\"confirm-file\""), "{confirm}");
    assert!(stored(&db).await.is_empty());
    let hidden = file_step(&confirm);
    let refs: Vec<(&str, &str)> = hidden
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (s, _, done) = clerk
        .post(
            &format!("/ui/residents/{me}/counter/survey_internet"),
            &refs,
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

/// The 転出届's answers the clerk asks at the counter (the child stays),
/// on top of the prefilled form `form`.
fn tenshutsu_pairs(db: &TestDb, form: &str) -> Vec<(String, String)> {
    let today = db.registry.today();
    let mut pairs = inputs(form);
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
    pairs
}

async fn post(
    s: &Session,
    me: &str,
    pairs: &[(String, String)],
    step: &str,
) -> (StatusCode, String) {
    let mut pairs = pairs.to_vec();
    pairs.push(("step".into(), step.into()));
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (st, _, page) = s
        .post(&format!("/ui/residents/{me}/counter/tenshutsu"), &refs)
        .await;
    (st, page)
}

/// The error summary's messages.
fn summary(page: &str) -> String {
    page.split("id=\"error-summary\"")
        .nth(1)
        .and_then(|s| s.split("</div>").next())
        .unwrap_or_default()
        .to_owned()
}

async fn the_identity_check_is_required_and_checked(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = persons[0].to_string();
    let (_, _, form) = clerk
        .get(&format!("/ui/residents/{me}/counter/tenshutsu"))
        .await;
    assert!(form.contains("id=\"identity-check\""), "{form}");
    let base = tenshutsu_pairs(&db, &form);
    let (_, h, _) = crate::ui::send(&router, "GET", "/lang?to=en", Some(&clerk.cookie), None).await;
    let lang = h
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("machi_lang="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .unwrap();
    let english = Session {
        router: router.clone(),
        cookie: format!("{}; {lang}", clerk.cookie),
        csrf: clerk.csrf.clone(),
    };
    // Each bad entry: the summary names the input, in Japanese and in
    // English, the input kept, nothing filed (neither at the check nor
    // when filing directly).
    let long_note = "年金手帳".repeat(20);
    // (inputs, the input linked, Japanese words, English words)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("id.appeared", "self")],
            "#id-document",
            "本人確認書類を選んでください",
            "choose the identity document",
        ),
        (
            vec![("id.document", "library_card"), ("id.appeared", "self")],
            "#id-document",
            "本人確認書類を選んでください",
            "choose the identity document",
        ),
        (
            vec![("id.document", "passport")],
            "#id-appeared",
            "本人か代理人か",
            "came themself or a representative",
        ),
        (
            vec![("id.document", "other"), ("id.appeared", "self")],
            "#id-note",
            "書類の名前を書いてください",
            "name the document",
        ),
        (
            vec![
                ("id.document", "two_without_photo"),
                ("id.note", long_note.as_str()),
                ("id.appeared", "self"),
            ],
            "#id-note",
            "60文字以内",
            "60 characters",
        ),
        (
            vec![
                ("id.document", "passport"),
                ("id.appeared", "representative"),
            ],
            "#id-rep-name",
            "代理人の氏名",
            "give the representative",
        ),
        (
            vec![
                ("id.document", "passport"),
                ("id.appeared", "representative"),
                ("id.rep_name", "架空　次郎"),
            ],
            "#id-rep-relationship",
            "本人との関係",
            "relationship",
        ),
        (
            vec![
                ("id.document", "passport"),
                ("id.appeared", "representative"),
                ("id.rep_name", "架空　次郎"),
                ("id.rep_relationship", "知人"),
            ],
            "#id-poa",
            "委任状を確認したかどうか",
            "power of attorney",
        ),
        (
            vec![
                ("id.document", "passport"),
                ("id.appeared", "representative"),
                ("id.rep_name", "架空　次郎"),
                ("id.rep_relationship", "知人"),
                ("id.poa", "no"),
            ],
            "#id-poa",
            "同じ世帯の方に限ります",
            "must belong to the applicant",
        ),
        (
            vec![
                ("id.document", "passport"),
                ("id.appeared", "representative"),
                ("id.rep_name", "髙橋 一郎"),
                ("id.rep_relationship", "本人"),
                ("id.poa", "no"),
            ],
            "#id-appeared",
            "代理人の氏名が申請する方と同じです",
            "if they came themself",
        ),
    ];
    for (extra, link, ja, en) in cases {
        let mut pairs = base.clone();
        for (k, v) in &extra {
            set(&mut pairs, k, v);
        }
        for step in ["check", "file"] {
            let (st, page) = post(&clerk, &me, &pairs, step).await;
            assert_eq!(st, StatusCode::OK, "{page}");
            let sum = summary(&page);
            assert!(
                sum.contains(&format!("href=\"{link}\"")) && sum.contains(ja),
                "{extra:?} {step}: {sum}"
            );
            assert!(!page.contains("id=\"confirm-form\""), "{extra:?}");
            assert!(page.contains("value=\"髙橋　一郎\""), "input kept");
        }
        let (_, page) = post(&english, &me, &pairs, "check").await;
        assert!(summary(&page).contains(en), "{extra:?}: {}", summary(&page));
    }
    crate::readable::assert_readable(
        &post(&clerk, &me, &base, "check").await.1,
        "counter identity problems",
    );
    assert!(stored(&db).await.is_empty());
    assert!(
        !log(&db)
            .await
            .iter()
            .any(|(f, _, _)| f == "counter_filing.file")
    );
    // The service refuses it too, whatever calls it.
    let t: MunicipalityCode = FUCHU.parse().unwrap();
    let e = db
        .registry
        .file_at_counter(
            &t,
            machi::service::counter_filing::CounterFiling {
                applicant: persons[0].parse().unwrap(),
                procedure: "tenshutsu".into(),
                version: 1,
                answers: serde_json::json!({}),
                documents_seen: vec![],
                clerk_name: "試験".into(),
                anonymous: false,
                identity: None,
                applicant_name: "髙橋　一郎".into(),
                household: vec![],
                once: machi::service::counter_filing::new_confirmation_token().unwrap(),
                matches: Default::default(),
            },
            &machi::service::Actor::system("t"),
        )
        .await
        .unwrap_err();
    match e {
        machi::service::ServiceError::Invalid {
            code, message_ja, ..
        } => {
            assert_eq!(code, "identity_document_required");
            assert!(message_ja.contains("本人確認書類"));
        }
        other => panic!("{other:?}"),
    }
    assert!(stored(&db).await.is_empty());
}

async fn a_representative_files_and_approval_needs_the_identity_record(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = persons[0].to_string();
    let (_, _, form) = clerk
        .get(&format!("/ui/residents/{me}/counter/tenshutsu"))
        .await;
    // His wife files for him without a 委任状 (same household), with two
    // documents without a photo.
    let mut pairs = tenshutsu_pairs(&db, &form);
    for (k, v) in [
        ("id.document", "two_without_photo"),
        ("id.note", "資格確認書、年金手帳"),
        ("id.appeared", "representative"),
        ("id.rep_name", "髙橋 京子"),
        ("id.rep_relationship", "妻"),
        ("id.poa", "no"),
    ] {
        set(&mut pairs, k, v);
    }
    let (st, confirm) = post(&clerk, &me, &pairs, "check").await;
    assert_eq!(st, StatusCode::OK, "{confirm}");
    assert!(
        confirm.contains("id=\"confirm-form\""),
        "{}",
        summary(&confirm)
    );
    assert!(
        confirm.contains("代理人") && confirm.contains("妻"),
        "{confirm}"
    );
    let hidden = hidden_fields(&confirm);
    let (st, done) = post(&clerk, &me, &hidden, "file").await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert!(done.contains("id=\"receipt\""), "{done}");
    let f = stored(&db).await.remove(0);
    assert_eq!(
        f.filing["counter"]["identity"],
        serde_json::json!({
            "document": "two_without_photo",
            "note": "資格確認書、年金手帳",
            "appeared": "representative",
            "representative": { "name": "髙橋 京子", "relationship": "妻", "power_of_attorney": false },
        })
    );
    let entries = log(&db).await;
    let (_, _, detail) = entries
        .iter()
        .find(|(f, _, _)| f == "counter_filing.file")
        .unwrap();
    let detail: serde_json::Value = serde_json::from_str(detail).unwrap();
    assert_eq!(detail["appeared_as"], "代理人");
    assert_eq!(detail["representative_name"], "髙橋 京子");
    assert_eq!(detail["representative_relationship"], "妻");
    assert_eq!(detail["power_of_attorney"], false);
    assert_eq!(
        detail["identity_document"],
        "写真のない書類2点（資格確認書、年金手帳）"
    );
    // The access log page says it in words.
    let boss = Session::login(&router, FUCHU, "boss").await;
    let (_, _, audit) = boss.get("/ui/audit").await;
    crate::readable::assert_readable(&audit, "access log with a counter filing");
    for words in [
        "本人確認書類",
        "写真のない書類2点",
        "窓口に来た方",
        "代理人の氏名",
        "委任状",
    ] {
        assert!(audit.contains(words), "{words}");
    }

    // A counter filing stored without the identity record (as before it
    // was asked for): the 転出届 is not approved unsigned, in either
    // language, and nothing changes.
    let t: MunicipalityCode = FUCHU.parse().unwrap();
    let mut old = f.filing.clone();
    old["counter"].as_object_mut().unwrap().remove("identity");
    old["receipt"] = "OLD-0000-0000".into();
    let bytes = serde_json::to_vec(&old).unwrap();
    let t2 = t.clone();
    let received = f.received_at.clone();
    db.store
        .write(Some(&t), move |tx| {
            machi::store::portal_filings::insert_if_new(
                tx,
                &t2,
                &machi::store::portal_filings::NewPortalFiling {
                    portal_id: "counter:OLD-0000-0000",
                    receipt: "OLD-0000-0000",
                    procedure: "tenshutsu",
                    version: 1,
                    received_at: &received,
                    imported_at: 1,
                    filing: &bytes,
                    signed: false,
                },
            )
        })
        .await
        .unwrap();
    let old_id = stored(&db)
        .await
        .into_iter()
        .find(|x| x.receipt == "OLD-0000-0000")
        .unwrap()
        .filing_id;
    for (id, ok) in [(old_id, false), (f.filing_id, true)] {
        let url = format!("/api/v1/tenants/{FUCHU}/filings/{id}");
        let (_, cands) = crate::inbox::call(&boss, "GET", &format!("{url}/candidates"), None).await;
        for p in cands.as_array().unwrap() {
            let a = p["candidates"][0]["addressee_number"]
                .as_str()
                .unwrap()
                .to_string();
            let (s, body) = crate::inbox::call(
                &boss,
                "POST",
                &format!("{url}/match"),
                Some(serde_json::json!({ "party": p["key"], "addressee_number": a })),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }
        let (s, _, page) = boss.get(&format!("/ui/inbox/{id}")).await;
        assert_eq!(s, StatusCode::OK);
        crate::readable::assert_readable(&page, "counter filing page");
        // The API's filing detail carries the identity check as a record.
        let (s, d) = crate::inbox::call(&boss, "GET", &url, None).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert_eq!(d["definition_status"], "shipped", "{d}");
        assert_eq!(d["counter"]["clerk_name"], "試験 clerk", "{d}");
        if ok {
            assert_eq!(
                d["counter"]["identity"],
                serde_json::json!({
                    "document": "two_without_photo",
                    "document_label_ja": "写真のない書類2点（資格確認書・年金手帳など）",
                    "document_label_en": "two documents without a photo (e.g. health insurance eligibility certificate, pension book)",
                    "appeared": "representative",
                    "representative_name": "髙橋 京子",
                    "representative_relationship": "妻",
                    "power_of_attorney_seen": false,
                    "note": "資格確認書、年金手帳",
                }),
                "{d}"
            );
        } else {
            assert!(d["counter"]["identity"].is_null(), "{d}");
        }
        let (s, a) = crate::inbox::call(
            &boss,
            "POST",
            &format!("{url}/approve"),
            Some(serde_json::json!({})),
        )
        .await;
        if ok {
            assert!(
                page.contains("髙橋 京子") && page.contains("なし（同じ世帯の方）"),
                "{page}"
            );
            assert_eq!(s, StatusCode::OK, "{a}");
            assert_eq!(a["status"], "approved", "{a}");
        } else {
            assert!(page.contains("本人確認の記録なし"), "{page}");
            assert_eq!(s, StatusCode::BAD_REQUEST, "{a}");
            assert_eq!(a["code"], "counter_identity_missing");
            assert!(a["message_ja"].as_str().unwrap().contains("本人確認書類"));
            assert!(
                a["message_en"]
                    .as_str()
                    .unwrap()
                    .contains("identity document")
            );
            let again = stored(&db)
                .await
                .into_iter()
                .find(|x| x.filing_id == id)
                .unwrap();
            assert!(
                again.outcome.is_null() || again.outcome == serde_json::json!({}),
                "{:?}",
                again.outcome
            );
            assert!(again.decided_by.is_none());
            assert!(!log(&db).await.iter().any(
                |(f, _, d)| f == "filing.approve" && d.contains(&format!("\"filing_id\":{id}"))
            ));
        }
    }
}

/// 府中市's own procedure, published on the portal and delivered with a
/// pull, is offered at the counter once the tenant administrator accepted
/// it (not before: its filing could not be approved), prefilled from the
/// registry where its fields name the applicant's items.
async fn a_tenants_own_accepted_procedure_is_offered_at_the_counter_prefilled(db: TestDb) {
    use machi::store::procedure_definitions as defs;
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = persons[0].to_string();
    // Stored as a pull stores a delivered definition.
    let t: MunicipalityCode = FUCHU.parse().unwrap();
    let t2 = t.clone();
    let stored_def = db
        .store
        .write(Some(&t), move |tx| {
            let src = crate::procdefs::SODAIGOMI_V1;
            let def = defs::parsed(src).unwrap();
            defs::store(tx, &t2, &def, src, 1)
        })
        .await
        .unwrap();
    assert_eq!(stored_def, defs::Stored::New);
    let url = format!("/ui/residents/{me}/counter/sodaigomi");

    // Awaiting acceptance: not offered, not filed.
    let (_, _, list) = clerk.get(&format!("/ui/residents/{me}/counter")).await;
    assert!(!list.contains("粗大ごみ収集の申込み"), "{list}");
    let (s, _, _) = clerk.get(&url).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = clerk
        .post(&url, &[("step", "file"), ("a.item", "sofa")])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(stored(&db).await.is_empty());

    db.registry
        .decide_definition(
            &t,
            "sodaigomi",
            1,
            machi::service::definitions::DefinitionDecision::Accept,
            &machi::service::Actor::system("admin"),
        )
        .await
        .unwrap();
    let (s, _, list) = clerk.get(&format!("/ui/residents/{me}/counter")).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    crate::readable::assert_readable(&list, "counter procedures with the tenant's own");
    assert!(
        list.contains("粗大ごみ収集の申込み") && list.contains("転出届"),
        "{list}"
    );
    assert!(
        list.contains(&format!("href=\"/ui/residents/{me}/counter/sodaigomi\"")),
        "{list}"
    );
    // Prefilled: the applicant's name from the registry.
    let (s, _, form) = clerk.get(&url).await;
    assert_eq!(s, StatusCode::OK, "{form}");
    crate::readable::assert_readable(&form, "the tenant's own procedure at the counter");
    assert!(form.contains("value=\"髙橋　一郎\""), "{form}");
    assert!(form.contains("出す品目"), "{form}");
    // Filed at the counter, on the accepted version.
    let mut pairs = inputs(&form);
    set(&mut pairs, "a.item", "bicycle");
    set(&mut pairs, "id.document", "my_number_card");
    set(&mut pairs, "id.appeared", "self");
    pairs.push(("step".into(), "check".into()));
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (s, _, confirm) = clerk.post(&url, &refs).await;
    assert_eq!(s, StatusCode::OK, "{confirm}");
    assert!(
        confirm.contains("id=\"confirm-form\""),
        "{}",
        summary(&confirm)
    );
    assert!(confirm.contains("自転車"), "{confirm}");
    let mut hidden = hidden_fields(&confirm);
    hidden.push(("step".into(), "file".into()));
    let refs: Vec<(&str, &str)> = hidden
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (s, _, done) = clerk.post(&url, &refs).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert!(done.contains("id=\"receipt\""), "{done}");
    let f = stored(&db).await.remove(0);
    assert_eq!((f.procedure.as_str(), f.version), ("sodaigomi", 1));
    assert_eq!(f.trust, defs::Trust::Accepted);
    let answers = &f.filing["signed_content"]["answers"];
    assert_eq!(answers["applicant_name"], "髙橋　一郎", "{answers}");
    assert_eq!(answers["item"], "bicycle", "{answers}");
}

/// j650 with j560/j630 (issue 11, B5): a 転出 to an address in the
/// municipality is a 転居. The counter's change form, the API and a
/// 転出届 filed at the counter each refuse it in words, changing nothing.
async fn a_move_out_inside_the_municipality_is_refused_at_the_counter_api_and_approval(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = &persons[0];
    let inside = "東京都府中市寿町一丁目5番地";
    let fuchu: MunicipalityCode = FUCHU.parse().unwrap();
    let changes = |db: &TestDb| {
        let t = fuchu.clone();
        let store = db.store.clone();
        async move {
            store
                .read(Some(&t), |tx| {
                    tx.query_one(
                        "SELECT COUNT(*) FROM changes WHERE tenant = $1",
                        &[FUCHU.into()],
                    )?
                    .int(0)
                })
                .await
                .unwrap()
        }
    };
    let changes_before = changes(&db).await;

    // The API.
    let req: machi_domain::change::ChangeRequest = serde_json::from_value(serde_json::json!({
        "effective_date": db.registry.today().to_string(),
        "command": {"type": "move_out", "persons": [me],
            "destination": {"address": inside}}
    }))
    .unwrap();
    let e = db
        .registry
        .submit(&fuchu, &req, &machi::service::Actor::system("t"))
        .await
        .unwrap_err();
    let e = machi::ui::UiError::from(e);
    assert!(e.ja.contains("転居"), "{}", e.ja);
    assert!(e.en.contains("move within"), "{}", e.en);

    // The counter's change form, at both steps.
    for step in ["confirm", "enter"] {
        let f = [
            ("type", "move_out"),
            ("effective_date", "令和6年10月1日"),
            ("address", inside),
            ("persons", me.as_str()),
            ("step", step),
        ];
        let (s, _, page) = clerk.post("/ui/entry", &f).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
        assert!(
            page.contains(&format!("「{inside}」は東京都府中市内の住所です")),
            "{page}"
        );
        assert!(!page.contains("inside_municipality"), "{page}");
    }

    // A 転出届 filed at the counter to an address in 府中市 is refused when
    // it is filed, in words: no filing is made that could never be
    // approved (the approval of such a filing from the portal goes
    // through the same registry path as the API above).
    let (_, _, form) = clerk
        .get(&format!("/ui/residents/{me}/counter/tenshutsu"))
        .await;
    let mut pairs = tenshutsu_pairs(&db, &form);
    set(&mut pairs, "a.destination.postal", "183-0056");
    set(&mut pairs, "a.destination.address", inside);
    set(&mut pairs, "id.document", "drivers_licence");
    set(&mut pairs, "id.appeared", "self");
    let filings_before = stored(&db).await.len();
    let (s, confirm) = post(&clerk, me, &pairs, "check").await;
    assert_eq!(s, StatusCode::OK, "{confirm}");
    let (s, page) = post_raw(&clerk, me, &file_step(&confirm)).await;
    assert_ne!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains(&format!("「{inside}」は東京都府中市内の住所です")),
        "{page}"
    );
    assert!(page.contains("転居で処理してください"), "{page}");
    assert!(!page.contains("inside_municipality"), "{page}");
    assert_eq!(stored(&db).await.len(), filings_before, "no filing made");
    assert_eq!(changes(&db).await, changes_before, "nothing recorded");
}

/// The confirmation's hidden fields with `step=file`.
fn file_step(confirm: &str) -> Vec<(String, String)> {
    let mut hidden = hidden_fields(confirm);
    hidden.push(("step".into(), "file".into()));
    hidden
}

async fn post_raw(s: &Session, me: &str, pairs: &[(String, String)]) -> (StatusCode, String) {
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (st, _, page) = s
        .post(&format!("/ui/residents/{me}/counter/tenshutsu"), &refs)
        .await;
    (st, page)
}

/// Issue 11, B7, B9 and P7: the applicant's 「この内容で申請する」 sent
/// twice (a double click, a browser's resend) makes one filing, and the
/// second answer shows the first; the members filed for from the registry
/// are matched already (the clerk may still change them); the inbox offers
/// no correction request for a counter filing (the portal never shows it)
/// and marks and filters counter filings.
async fn a_confirmation_sent_twice_files_once_with_its_members_matched(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let boss = Session::login(&router, FUCHU, "boss").await;
    let me = &persons[0];
    let (_, _, form) = clerk
        .get(&format!("/ui/residents/{me}/counter/tenshutsu"))
        .await;
    let mut pairs = tenshutsu_pairs(&db, &form);
    set(&mut pairs, "id.document", "drivers_licence");
    set(&mut pairs, "id.appeared", "self");
    let (s, confirm) = post(&clerk, me, &pairs, "check").await;
    assert_eq!(s, StatusCode::OK, "{confirm}");
    let once = file_step(&confirm)
        .into_iter()
        .find(|(k, _)| k == "once")
        .map(|(_, v)| v)
        .expect("the confirmation carries a one-time token");

    // Sent twice: one filing, both answers show it.
    let (s, first) = post_raw(&clerk, me, &file_step(&confirm)).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (s, second) = post_raw(&clerk, me, &file_step(&confirm)).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    crate::readable::assert_readable(&second, "counter filing sent twice");
    let receipt = |p: &str| {
        p.split("id=\"receipt\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap()
            .to_owned()
    };
    assert_eq!(receipt(&first), receipt(&second));
    assert!(!first.contains("id=\"already-filed\""), "{first}");
    assert!(second.contains("id=\"already-filed\""), "{second}");
    assert!(
        second.contains("最初に受け付けた申請を表示しています"),
        "{second}"
    );
    let filings = stored(&db).await;
    assert_eq!(filings.len(), 1, "one filing");
    let f = &filings[0];
    assert!(second.contains(&format!("href=\"/ui/inbox/{}\"", f.filing_id)));
    let filed: Vec<_> = log(&db)
        .await
        .into_iter()
        .filter(|(f, _, _)| f == "counter_filing.file")
        .collect();
    assert_eq!(filed.len(), 1, "{filed:?}");

    // The same token for another applicant is no second filing either.
    let mut other = file_step(&confirm);
    set(&mut other, "once", &once);
    let (_, _) = post_raw(&clerk, &persons[1], &other).await;
    assert_eq!(stored(&db).await.len(), 1);
    // Without a token (an old page): the confirmation again, not a filing.
    let no_token: Vec<(String, String)> = file_step(&confirm)
        .into_iter()
        .filter(|(k, _)| k != "once")
        .collect();
    let (s, again) = post_raw(&clerk, me, &no_token).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert!(again.contains("class=\"applicant-view\""), "{again}");
    assert_eq!(stored(&db).await.len(), 1);

    // The members filed for are matched from the registry (the child,
    // not moving, is not in the filing).
    let expected: std::collections::BTreeMap<String, String> = [
        ("members.0".to_string(), persons[0].clone()),
        ("members.1".to_string(), persons[1].clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(f.matches, expected);
    let (s, _, page) = boss.get(&format!("/ui/inbox/{}", f.filing_id)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "counter filing, matched");
    for (i, p) in persons[..2].iter().enumerate() {
        assert!(
            page.contains(&format!("id=\"matched-{}\">照合済み：宛名番号 {p}", i + 1)),
            "{page}"
        );
    }
    // No correction request; what the counter does instead.
    assert!(!page.contains("id=\"correction-form\""), "{page}");
    assert!(
        !page.contains("補正の依頼（申請者に表示されます）"),
        "{page}"
    );
    assert!(page.contains("id=\"counter-correction\""), "{page}");
    assert!(
        page.contains(&format!("href=\"/ui/residents/{me}/counter/tenshutsu\"")),
        "{page}"
    );
    assert!(
        !page.contains("却下の理由（申請者に表示されます）"),
        "{page}"
    );
    let inbox = format!("/api/v1/tenants/{FUCHU}/filings/{}", f.filing_id);
    let (s, e) = crate::inbox::call(
        &boss,
        "POST",
        &format!("{inbox}/correction"),
        Some(serde_json::json!({ "message": "電話番号を確認してください" })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "counter_filing_no_correction", "{e}");
    assert!(
        e["message_ja"]
            .as_str()
            .unwrap()
            .contains("窓口申請をやり直して")
    );

    // The inbox marks it and filters by how it was filed.
    let (_, _, list) = boss.get("/ui/inbox").await;
    assert!(list.contains("class=\"badge counter-mark\""), "{list}");
    assert!(list.contains("id=\"f-filed\""), "{list}");
    let (_, _, only) = boss.get("/ui/inbox?filed=counter").await;
    assert!(
        only.contains(&format!("id=\"filing-{}\"", f.filing_id)),
        "{only}"
    );
    assert!(only.contains("value=\"counter\" selected"), "{only}");
    let (_, _, none) = boss.get("/ui/inbox?filed=portal").await;
    assert!(none.contains("id=\"no-filings\""), "{none}");
    let (_, _, bad) = boss.get("/ui/inbox?filed=fax").await;
    assert!(bad.contains("id=\"inbox-error\""), "{bad}");
    assert!(!bad.contains("invalid_filed"), "{bad}");
    let api = format!("/api/v1/tenants/{FUCHU}/filings");
    let (s, l) = crate::inbox::call(&boss, "GET", &format!("{api}?filed=counter"), None).await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["filings"][0]["at_counter"], true, "{l}");
    let (_, l) = crate::inbox::call(&boss, "GET", &format!("{api}?filed=portal"), None).await;
    assert_eq!(l["filings"].as_array().map(Vec::len), Some(0), "{l}");
    let (s, e) = crate::inbox::call(&boss, "GET", &format!("{api}?filed=fax"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "invalid_filed");

    // Approved as matched: nobody had to match again.
    let (s, a) = crate::inbox::call(
        &boss,
        "POST",
        &format!("{inbox}/approve"),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "approved", "{a}");
}

/// Issue 11, B6: the 来庁予定日 is counted from the moving date (on or
/// after it, at most 14 days after it), at the counter as on the portal.
async fn the_visit_date_is_counted_from_the_moving_date_at_the_counter(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let me = &persons[0];
    let (_, _, form) = clerk
        .get(&format!("/ui/residents/{me}/counter/tenshutsu"))
        .await;
    let today = db.registry.today();
    let moving = today + chrono::Duration::days(10);
    let mut pairs = tenshutsu_pairs(&db, &form);
    set(&mut pairs, "id.document", "drivers_licence");
    set(&mut pairs, "id.appeared", "self");
    let eras = db.registry.eras();
    for bad in [
        moving - chrono::Duration::days(1),
        moving + chrono::Duration::days(15),
    ] {
        date(&mut pairs, "visit_date", bad);
        let (s, page) = post(&clerk, me, &pairs, "check").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let sum = summary(&page);
        assert!(sum.contains("href=\"#f-visit-date-year\""), "{sum}");
        assert!(
            sum.contains(&format!(
                "引っ越しの日（転出予定日）（{}）をもとに{}から{}までの日にしてください",
                eras.format_wareki(moving),
                eras.format_wareki(moving),
                eras.format_wareki(moving + chrono::Duration::days(14))
            )),
            "{sum}"
        );
    }
    date(
        &mut pairs,
        "visit_date",
        moving + chrono::Duration::days(14),
    );
    let (s, page) = post(&clerk, me, &pairs, "check").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("class=\"applicant-view\""), "{page}");
    assert!(stored(&db).await.is_empty());
}
