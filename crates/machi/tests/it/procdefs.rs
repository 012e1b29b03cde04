//! Procedure definitions published by a tenant reach the back office
//! (issue 11, item 1): a tenant's own procedure and a new version of a
//! shipped one, published on the real portal, filed by a citizen, pulled
//! with their definitions, validated and stored per tenant and version;
//! the inbox lists, filters and shows them with their labels. A different
//! text for a version already known is refused, naming it. Survey answers
//! are counted from the stored filings (imported twice, counted once) on a
//! staff page and through the API.

use axum::http::StatusCode;
use machi::portal::{PulledDefinition, PulledFiling, import_with_definitions, pull_once};
use machi_domain::access::Role;
use serde_json::{Value, json};

use crate::inbox::{Part, Running, TOKEN, app, call, client, file, portal, signing};
use crate::support::{AKISHIMA, FUCHU, TestDb, code};
use crate::ui::{Session, send, staff};

both_backends!(
    a_definition_from_the_portal_waits_for_the_administrators_acceptance,
    a_tenants_own_procedure_and_new_version_show_with_their_labels,
    a_different_text_for_a_known_version_is_refused_and_names_it,
    survey_answers_imported_twice_are_counted_once,
    a_tenants_text_under_a_number_machi_ships_later_still_needs_a_decision,
    an_acceptance_can_be_withdrawn_and_given_again,
);

/// 府中市's own procedure (not shipped with machi): a bulky-waste
/// collection request, handed off to the waste system.
pub const SODAIGOMI_V1: &str = r#"
[procedure]
id = "sodaigomi"
version = 1
title = { ja = "粗大ごみ収集の申込み", easy = "おおきな ごみを とりに きて もらう もうしこみ", en = "Bulky waste collection" }
identity = "none"
retention_days = 365
department = { ja = "ごみ減量推進課", en = "Waste Reduction Division" }

[[page]]
id = "who"
title = { ja = "申込者", en = "You" }

[[page.field]]
id = "applicant_name"
kind = "name"
label = { ja = "申込者の氏名", easy = "なまえ", en = "Your name" }

[[page.field]]
id = "item"
kind = "choice"
label = { ja = "出す品目", easy = "だす もの", en = "Item to collect" }

[[page.field.option]]
value = "sofa"
label = { ja = "ソファー", en = "Sofa" }

[[page.field.option]]
value = "bicycle"
label = { ja = "自転車", en = "Bicycle" }

[action]
kind = "handoff"
system = "waste"
event = "collection_requested"
"#;

fn t<'a>(k: &'a str, v: &str) -> Part<'a> {
    Part::Text(k, v.to_owned())
}

/// The shipped survey as version 2, with a changed title (a published
/// version never changes: a change is a new version).
pub fn survey_v2() -> String {
    let v1 = machi_procedures::SHIPPED
        .iter()
        .find(|(n, _)| *n == "survey_internet.toml")
        .unwrap()
        .1;
    v1.replacen("version = 1", "version = 2", 1).replacen(
        "インターネットの利用についてのアンケート（65歳以上の方）",
        "インターネットの利用についてのアンケート（令和8年度）",
        1,
    )
}

async fn pull(db: &TestDb, p: &Running) -> machi::portal::ImportOutcome {
    pull_once(
        &client(),
        &p.base,
        TOKEN,
        &db.store,
        &p.key,
        Some(&signing()),
        100,
        chrono::Utc::now().timestamp(),
    )
    .await
    .unwrap()
}

/// What the portal lists for the back office now (before a pull takes it).
async fn listing(p: &Running) -> (Vec<PulledFiling>, Vec<PulledDefinition>) {
    let body = client()
        .get(format!("{}/backoffice/filings?limit=100", p.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let filings = v["filings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PulledFiling {
            id: f["id"].as_str().unwrap().into(),
            tenant: f["tenant"].as_str().unwrap().into(),
            procedure: f["procedure"].as_str().unwrap().into(),
            version: f["version"].as_i64().unwrap(),
            received_at: f["received_at"].as_str().unwrap().into(),
            sealed: f["sealed"].as_str().unwrap().into(),
        })
        .collect();
    let defs = v["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PulledDefinition {
            tenant: d["tenant"].as_str().unwrap().into(),
            procedure: d["procedure"].as_str().unwrap().into(),
            version: d["version"].as_i64().unwrap(),
            source: d["source"].as_str().unwrap().into(),
        })
        .collect();
    (filings, defs)
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let fuchu = code(FUCHU);
    let sql = sql.to_string();
    db.store
        .read(Some(&fuchu), move |tx| {
            tx.query_one(&sql, &[FUCHU.into()])?.int(0)
        })
        .await
        .unwrap()
}

const F: &str = "/api/v1/tenants/132063/filings";

async fn english(s: &Session, uri: &str) -> String {
    let (st, h, _) = send(&s.router, "GET", "/lang?to=en", Some(&s.cookie), None).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let lang = h
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("machi_lang="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .unwrap();
    let (st, _, page) = send(
        &s.router,
        "GET",
        uri,
        Some(&format!("{}; {lang}", s.cookie)),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, uri);
    page
}

async fn a_tenants_own_procedure_and_new_version_show_with_their_labels(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let p = portal().await;
    assert!(p.portal.publish(FUCHU, SODAIGOMI_V1).unwrap());
    assert!(p.portal.publish(FUCHU, &survey_v2()).unwrap());
    file(
        &p.base,
        "sodaigomi",
        vec![(
            "who",
            vec![t("applicant_name", "架空　花子"), t("item", "bicycle")],
        )],
    )
    .await;
    file(
        &p.base,
        "survey_internet",
        vec![
            ("age", vec![t("age_group", "a75")]),
            ("use", vec![t("uses_internet", "no")]),
            ("learning", vec![t("want_class", "yes")]),
        ],
    )
    .await;
    let out = pull(&db, &p).await;
    assert!(out.refused.is_empty(), "{out:?}");
    assert!(out.definitions_refused.is_empty(), "{out:?}");
    assert_eq!((out.imported, out.definitions_imported), (2, 2), "{out:?}");
    // Stored per tenant and version, exactly as published.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM procedure_definitions WHERE tenant = $1 \
             AND ((procedure = 'sodaigomi' AND version = 1) OR (procedure = 'survey_internet' AND version = 2))"
        )
        .await,
        2
    );
    // Pulling again brings nothing new and stores no definition twice.
    let again = pull(&db, &p).await;
    assert_eq!((again.imported, again.definitions_imported), (0, 0));

    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    // The API lists both with their titles, never 不明な手続.
    let (st, list) = call(&clerk, "GET", F, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let titles: Vec<&str> = list["filings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["procedure_title_ja"].as_str().unwrap())
        .collect();
    assert!(titles.contains(&"粗大ごみ収集の申込み"), "{titles:?}");
    assert!(
        titles.contains(&"インターネットの利用についてのアンケート（令和8年度）"),
        "{titles:?}"
    );
    assert!(!titles.contains(&"不明な手続"));
    // Filtered by the tenant's own procedure.
    let (st, own) = call(&clerk, "GET", &format!("{F}?procedure=sodaigomi"), None).await;
    assert_eq!(st, StatusCode::OK, "{own}");
    let own = own["filings"].as_array().unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["applicant_name"], "架空　花子");
    let id = own[0]["filing_id"].as_i64().unwrap();
    // A well-formed id with no filing matches nothing; a malformed one is
    // refused.
    let (st, none) = call(&clerk, "GET", &format!("{F}?procedure=kaigo"), None).await;
    assert_eq!(st, StatusCode::OK, "{none}");
    assert!(none["filings"].as_array().unwrap().is_empty());
    // (A tab around a well-formed id is not the documented pattern
    // either: it was trimmed and answered 200.)
    for bad in ["Kaigo!", "%09sodaigomi", "sodaigomi%20"] {
        let (st, e) = call(&clerk, "GET", &format!("{F}?procedure={bad}"), None).await;
        assert_eq!(
            (st, e["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_procedure")),
            "{bad}"
        );
    }
    // The filing with the definition's labels.
    let (st, d) = call(&clerk, "GET", &format!("{F}/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let answers = d["answers"].as_array().unwrap();
    assert!(
        answers
            .iter()
            .any(|a| a["label"] == "出す品目" && a["values"][0] == "自転車"),
        "{d}"
    );
    assert!(answers.iter().any(|a| a["label"] == "申込者の氏名"), "{d}");
    // The staff pages: list (with the filter option), filing, in words.
    let (st, _, page) = clerk.get("/ui/inbox").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        page.contains("粗大ごみ収集の申込み")
            && page.contains("<option value=\"sodaigomi\"")
            && !page.contains("不明な手続"),
        "{page}"
    );
    let (_, _, page) = clerk.get("/ui/inbox?procedure=sodaigomi").await;
    assert!(
        page.contains("架空　花子") && page.matches("\" id=\"filing-").count() == 1,
        "{page}"
    );
    let (st, _, page) = clerk.get(&format!("/ui/inbox/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        page.contains("粗大ごみ収集の申込み")
            && page.contains("出す品目")
            && page.contains("自転車")
            && page.contains("申込者の氏名"),
        "{page}"
    );
    // In English where the definition has it.
    let en = english(&clerk, &format!("/ui/inbox/{id}")).await;
    assert!(
        en.contains("Bulky waste collection")
            && en.contains("Item to collect")
            && en.contains("Bicycle"),
        "{en}"
    );
    // The tenant's definition drives the steps: its applicant is a person
    // to match (from its name field), and approval — once the tenant
    // administrator accepted the definition — waits for the match.
    db.registry
        .decide_definition(
            &code(FUCHU),
            "sodaigomi",
            1,
            machi::service::definitions::DefinitionDecision::Accept,
            &machi::service::Actor::system("admin"),
        )
        .await
        .unwrap();
    let (st, c) = call(&clerk, "GET", &format!("{F}/{id}/candidates"), None).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c[0]["key"], "applicant");
    assert_eq!(c[0]["name"], "架空　花子");
    let (st, a) = call(
        &clerk,
        "POST",
        &format!("{F}/{id}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, a["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("filing_not_matched")),
        "{a}"
    );
}

async fn a_different_text_for_a_known_version_is_refused_and_names_it(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let p = portal().await;
    p.portal.publish(FUCHU, SODAIGOMI_V1).unwrap();
    let pages = || {
        vec![(
            "who",
            vec![t("applicant_name", "架空　一郎"), t("item", "sofa")],
        )]
    };
    file(&p.base, "sodaigomi", pages()).await;
    let out = pull(&db, &p).await;
    assert_eq!((out.imported, out.definitions_imported), (1, 1), "{out:?}");
    // Another portal database publishes a different text as version 1
    // (e.g. restored from an old copy): the back office keeps its own.
    let p2 = portal().await;
    let changed = SODAIGOMI_V1.replace("自転車", "自転車・三輪車");
    p2.portal.publish(FUCHU, &changed).unwrap();
    file(&p2.base, "sodaigomi", pages()).await;
    let out = pull(&db, &p2).await;
    assert_eq!(out.imported, 0, "{out:?}");
    assert_eq!(out.definitions_refused.len(), 1, "{out:?}");
    let r = &out.definitions_refused[0];
    assert_eq!(r.code, "definition_conflict");
    assert!(
        r.ja.contains("粗大ごみ収集の申込み")
            && !r.ja.contains("sodaigomi")
            && r.ja.contains("第1版")
            && r.ja.contains("公開済みの版は変えられない"),
        "{}",
        r.ja
    );
    assert!(
        r.en.contains("sodaigomi version 1") && r.en.contains("never changes"),
        "{}",
        r.en
    );
    assert_eq!(out.refused.len(), 1, "{out:?}");
    assert_eq!(out.refused[0].code, "definition_refused");
    assert!(out.acknowledge.is_empty());
    // Nothing lost: the refusal is recorded here once with the sealed
    // filing, and the portal was told (it dropped its copy: never pulled
    // again; the citizen reads that the form could not be confirmed).
    assert_eq!(out.quarantine.len(), 1, "{out:?}");
    assert_eq!(out.quarantine[0].reason, "procedure");
    assert!(p2.portal.store.pending(10).unwrap().is_empty());
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM portal_refusals WHERE tenant = $1"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM portal_filings WHERE tenant = $1").await,
        1
    );
    let digest = machi::store::procedure_definitions::digest(SODAIGOMI_V1);
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM procedure_definitions WHERE tenant = $1 \
                 AND procedure = 'sodaigomi' AND sha256 = '{digest}'"
            )
        )
        .await,
        1
    );
    // A shipped version is the same everywhere: another text under
    // tenshutsu version 1 (superseded by version 2, still machi's) is
    // refused too; a text that does not validate, or names another version
    // than the listing, likewise.
    let shipped = machi_procedures::SUPERSEDED[0].1;
    let key = machi_portal::seal::OpeningKey::generate().unwrap();
    let defs = vec![
        PulledDefinition {
            tenant: FUCHU.into(),
            procedure: "tenshutsu".into(),
            version: 1,
            source: shipped.replacen("転出届", "転出の届出", 1),
        },
        PulledDefinition {
            tenant: FUCHU.into(),
            procedure: "broken".into(),
            version: 1,
            source: "[procedure]\nid = \"broken\"\n".into(),
        },
        PulledDefinition {
            tenant: FUCHU.into(),
            procedure: "sodaigomi".into(),
            version: 3,
            source: SODAIGOMI_V1.into(),
        },
    ];
    let out = import_with_definitions(&db.store, &key, None, &[], &defs, 0)
        .await
        .unwrap();
    let codes: Vec<(&str, &str)> = out
        .definitions_refused
        .iter()
        .map(|r| (r.procedure.as_str(), r.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("broken", "definition_invalid"),
            ("sodaigomi", "definition_mismatch"),
            ("tenshutsu", "definition_conflict"),
        ]
    );
    assert_eq!(out.definitions_imported, 0);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM procedure_definitions WHERE tenant = $1"
        )
        .await,
        1,
        "nothing written"
    );
}

async fn file_survey(p: &Running, age: &str, devices: &[&str], class: &str) -> String {
    let mut pages = vec![("age", vec![t("age_group", age)])];
    if devices.is_empty() {
        pages.push(("use", vec![t("uses_internet", "no")]));
    } else {
        pages.push(("use", vec![t("uses_internet", "yes")]));
        pages.push(("devices", devices.iter().map(|d| t("devices", d)).collect()));
    }
    pages.push(("learning", vec![t("want_class", class)]));
    file(&p.base, "survey_internet", pages).await
}

fn option<'a>(q: &'a Value, value: &str) -> &'a Value {
    q["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["value"] == value)
        .unwrap()
}

fn question<'a>(c: &'a Value, field: &str) -> &'a Value {
    c["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["field"] == field)
        .unwrap()
}

async fn survey_answers_imported_twice_are_counted_once(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let p = portal().await;
    let first = file_survey(&p, "a70", &[], "maybe").await;
    file_survey(&p, "a70", &[], "yes").await;
    file_survey(&p, "a80", &["smartphone"], "no").await;
    // The portal's listing as the first pull gets it, kept to import again.
    let (filings, defs) = listing(&p).await;
    assert_eq!(filings.len(), 3);
    assert_eq!(defs.len(), 1, "one definition for the three: {defs:?}");
    let out = pull(&db, &p).await;
    assert_eq!(out.imported, 3, "{out:?}");
    // Version 2 published; one answer on it.
    p.portal.publish(FUCHU, &survey_v2()).unwrap();
    file_survey(&p, "a65", &["tablet", "smartphone"], "no").await;
    assert_eq!(pull(&db, &p).await.imported, 1);
    // The same three sealed filings imported again: stored once.
    let again = import_with_definitions(
        &db.store,
        &p.key,
        Some(&signing()),
        &filings,
        &defs,
        chrono::Utc::now().timestamp(),
    )
    .await
    .unwrap();
    assert_eq!((again.imported, again.already), (0, 3), "{again:?}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM portal_filings WHERE tenant = $1").await,
        4
    );

    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let results = "/api/v1/tenants/132063/surveys/survey_internet/results";
    // Version 2 is the tenant's own text, not accepted yet: its answer is
    // not counted, only reported.
    let (st, r) = call(&clerk, "GET", results, None).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["total"]["respondents"].as_u64(),
            r["not_accepted"].as_u64(),
            r["versions"].as_array().map(Vec::len)
        ),
        (Some(3), Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        option(question(&r["total"], "age_group"), "a65")["count"],
        0
    );
    let (_, _, page) = clerk.get("/ui/surveys/survey_internet").await;
    assert!(
        page.contains("集計した回答：3件") && page.contains("id=\"not-accepted\""),
        "{page}"
    );
    let decide = |version, d| {
        let registry = db.registry.clone();
        async move {
            registry
                .decide_definition(
                    &code(FUCHU),
                    "survey_internet",
                    version,
                    d,
                    &machi::service::Actor::system("admin"),
                )
                .await
                .unwrap();
        }
    };
    use machi::service::definitions::DefinitionDecision;
    // Accepted, then the acceptance withdrawn: not counted again.
    decide(2, DefinitionDecision::Accept).await;
    decide(2, DefinitionDecision::Withdraw).await;
    let (_, r) = call(&clerk, "GET", results, None).await;
    assert_eq!(
        (
            r["total"]["respondents"].as_u64(),
            r["not_accepted"].as_u64()
        ),
        (Some(3), Some(1)),
        "{r}"
    );
    // Accepted again: counted.
    decide(2, DefinitionDecision::Accept).await;
    let (st, r) = call(&clerk, "GET", results, None).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["not_accepted"].as_u64(), Some(0), "{r}");
    assert_eq!(
        r["title_ja"],
        "インターネットの利用についてのアンケート（令和8年度）"
    );
    let total = &r["total"];
    assert_eq!(
        (total["respondents"].as_u64(), total["rejected"].as_u64()),
        (Some(4), Some(0))
    );
    let age = question(total, "age_group");
    assert_eq!(option(age, "a70")["count"], 2);
    assert_eq!(option(age, "a70")["percent"], 50.0);
    assert_eq!(option(age, "a65")["percent"], 25.0);
    let devices = question(total, "devices");
    assert_eq!(devices["multiple"], true);
    assert_eq!(option(devices, "smartphone")["count"], 2);
    assert_eq!(option(devices, "tablet")["count"], 1);
    assert_eq!(devices["unanswered"], 2);
    let uses = question(total, "uses_internet");
    assert_eq!(option(uses, "true")["count"], 2);
    assert_eq!(option(uses, "false")["count"], 2);
    // Per version, newest first.
    let versions = r["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (
            versions[0]["version"].as_i64(),
            versions[0]["respondents"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        (
            versions[1]["version"].as_i64(),
            versions[1]["respondents"].as_u64()
        ),
        (Some(1), Some(3))
    );
    assert_eq!(
        option(question(&versions[1], "age_group"), "a70")["percent"],
        66.7
    );

    // A rejected answer leaves the counts (no approval is needed to count).
    let (_, list) = call(
        &clerk,
        "GET",
        &format!("{F}?procedure=survey_internet"),
        None,
    )
    .await;
    let id = list["filings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["receipt"] == first.as_str())
        .unwrap()["filing_id"]
        .as_i64()
        .unwrap();
    let (st, _) = call(
        &clerk,
        "POST",
        &format!("{F}/{id}/reject"),
        Some(json!({ "message": "試験用の回答です。" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, r) = call(&clerk, "GET", results, None).await;
    let total = &r["total"];
    assert_eq!(
        (total["respondents"].as_u64(), total["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(option(question(total, "age_group"), "a70")["percent"], 33.3);
    assert_eq!(option(question(total, "want_class"), "maybe")["count"], 0);

    // The staff page: from the inbox, a readable table.
    let (_, _, inbox) = clerk.get("/ui/inbox").await;
    assert!(inbox.contains("href=\"/ui/surveys\""), "{inbox}");
    let (st, _, list) = clerk.get("/ui/surveys").await;
    assert_eq!(st, StatusCode::OK);
    assert!(list.contains("/ui/surveys/survey_internet"), "{list}");
    let (st, _, page) = clerk.get("/ui/surveys/survey_internet").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    for want in [
        "集計した回答：3件",
        "却下して集計に含めない回答：1件",
        "33.3%",
        "66.7%",
        "65〜69歳",
        "スマートフォン",
        "複数回答",
        "第2版",
        "第1版",
        "無回答",
    ] {
        assert!(page.contains(want), "{want}: {page}");
    }
    // Anonymous: no receipt number, no free text, no name on the page.
    assert!(!page.contains(&first), "{page}");
    let en = english(&clerk, "/ui/surveys/survey_internet").await;
    assert!(
        en.contains("Answers counted") && en.contains("Smartphone"),
        "{en}"
    );
    // Unknown or not a survey: 404 on both edges.
    let (st, _, _) = clerk.get("/ui/surveys/tenshutsu").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, e) = call(
        &clerk,
        "GET",
        "/api/v1/tenants/132063/surveys/tenshutsu/results",
        None,
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("survey_not_found"))
    );
    let (st, e) = call(
        &clerk,
        "GET",
        "/api/v1/tenants/132063/surveys/%00x/results",
        None,
    )
    .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("survey"))
    );
    // Another tenant's results are not this clerk's.
    let (st, _) = call(
        &clerk,
        "GET",
        &format!("/api/v1/tenants/{AKISHIMA}/surveys/survey_internet/results"),
        None,
    )
    .await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "{st}"
    );
    // A version 3 the administrator refuses: its answer is never counted.
    p.portal
        .publish(
            FUCHU,
            &survey_v2().replacen("version = 2", "version = 3", 1),
        )
        .unwrap();
    file_survey(&p, "a80", &[], "yes").await;
    assert_eq!(pull(&db, &p).await.imported, 1);
    decide(3, DefinitionDecision::Refuse).await;
    let (_, r) = call(&clerk, "GET", results, None).await;
    assert_eq!(
        (
            r["total"]["respondents"].as_u64(),
            r["total"]["rejected"].as_u64(),
            r["not_accepted"].as_u64()
        ),
        (Some(3), Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        option(question(&r["total"], "age_group"), "a80")["count"],
        1,
        "{r}"
    );
}

/// A filing's number by its procedure, from the inbox API.
async fn filing_of(clerk: &Session, procedure: &str) -> i64 {
    let (st, l) = call(clerk, "GET", &format!("{F}?procedure={procedure}"), None).await;
    assert_eq!(st, StatusCode::OK, "{l}");
    l["filings"][0]["filing_id"].as_i64().unwrap()
}

/// The back office does not trust a definition because the portal sent
/// it: a new version (the tenant's own procedure, a new version of a
/// shipped one) waits for the tenant administrator; approval is refused
/// until then, with a notice on the inbox; accepting lets approval run its
/// action, refusing leaves only rejection; each decision is in the
/// hash-chained access log, which names the procedure by its title.
async fn a_definition_from_the_portal_waits_for_the_administrators_acceptance(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    staff(&db, FUCHU, "admin", Role::TenantAdmin).await;
    let p = portal().await;
    assert!(p.portal.publish(FUCHU, SODAIGOMI_V1).unwrap());
    assert!(p.portal.publish(FUCHU, &survey_v2()).unwrap());
    file(
        &p.base,
        "sodaigomi",
        vec![(
            "who",
            vec![t("applicant_name", "架空　花子"), t("item", "sofa")],
        )],
    )
    .await;
    file_survey(&p, "a75", &[], "yes").await;
    let out = pull(&db, &p).await;
    assert_eq!((out.imported, out.definitions_imported), (2, 2), "{out:?}");

    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let admin = Session::login(&router, FUCHU, "admin").await;
    let boss = Session::login(&router, FUCHU, "boss").await;
    let gomi = filing_of(&clerk, "sodaigomi").await;
    let survey = filing_of(&clerk, "survey_internet").await;

    // Pending: the detail says so; approval is refused with a typed error
    // in both languages, and nothing changes.
    let (_, d) = call(&clerk, "GET", &format!("{F}/{survey}"), None).await;
    assert_eq!(d["definition_status"], "pending", "{d}");
    assert!(d["counter"].is_null(), "a portal filing: {d}");
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/{survey}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("definition_not_accepted")),
        "{e}"
    );
    assert!(
        e["message_ja"]
            .as_str()
            .unwrap()
            .contains("団体管理者がまだ受け入れていません"),
        "{e}"
    );
    assert!(
        e["message_en"]
            .as_str()
            .unwrap()
            .contains("has not accepted"),
        "{e}"
    );
    let (_, d) = call(&clerk, "GET", &format!("{F}/{survey}"), None).await;
    assert_eq!(d["filing"]["status"], "received", "{d}");
    // The inbox shows the filing with a clear notice and no approval button.
    let (_, _, list) = clerk.get("/ui/inbox").await;
    assert!(list.contains("手続定義の受入れ待ち"), "{list}");
    let (st, _, page) = clerk.get(&format!("/ui/inbox/{survey}")).await;
    assert_eq!(st, StatusCode::OK);
    crate::readable::assert_readable(&page, "a filing on a pending definition");
    assert!(page.contains("id=\"definition-notice\""), "{page}");
    assert!(!page.contains("id=\"approve\""), "{page}");
    assert!(page.contains("id=\"reject\""), "{page}");

    // The administrator's page: title, version, pages and fields, and
    // what approval does, in words; in English too. Clerks may not see it.
    let (st, _, _) = clerk.get("/ui/admin/procedures").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, page) = admin.get("/ui/admin/procedures").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "procedure definitions");
    for words in [
        "粗大ごみ収集の申込み",
        "第1版",
        "申込者の氏名",
        "出す品目",
        "業務システム「waste」",
        "インターネットの利用についてのアンケート（令和8年度）",
        "第2版",
        "id=\"accept-sodaigomi-1\"",
        "id=\"refuse-survey_internet-2\"",
    ] {
        assert!(page.contains(words), "{words}: {page}");
    }
    // When each arrived, in 和暦 (the pull's time, not the epoch).
    let arrived = page
        .split("届いた日時</th><td>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap();
    assert!(arrived.starts_with("令和"), "{arrived}");
    let en = english(&admin, "/ui/admin/procedures").await;
    assert!(
        en.contains("Bulky waste collection")
            && en.contains("Item to collect")
            && en.contains("tells the business system"),
        "{en}"
    );
    // The API equivalents, for the tenant administrator only.
    const D: &str = "/api/v1/tenants/132063/procedure-definitions";
    let (st, e) = call(&clerk, "GET", D, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (st, list) = call(&admin, "GET", D, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|d| d["status"] == "pending"), "{list:?}");
    let gomi_def = list.iter().find(|d| d["procedure"] == "sodaigomi").unwrap();
    assert_eq!(gomi_def["version"], 1);
    assert_eq!(gomi_def["action_kind"], "handoff");
    assert_eq!(gomi_def["filings"], 1);
    assert_eq!(gomi_def["pages"][0]["fields_ja"][1], "出す品目");
    // When it arrived: the pull's time (not the epoch).
    let arrived =
        chrono::DateTime::parse_from_rfc3339(gomi_def["imported_at"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - arrived.with_timezone(&chrono::Utc))
            .num_minutes()
            .abs()
            < 60,
        "{gomi_def}"
    );
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{D}/decision"),
        Some(json!({"procedure": "survey_internet", "version": 2, "decision": "accept"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (st, e) = call(
        &admin,
        "POST",
        &format!("{D}/decision"),
        Some(json!({"procedure": "survey_internet", "version": 2, "decision": "maybe"})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_decision"))
    );

    // Accepted through the API: the survey's filing is approved now.
    let (st, a) = call(
        &admin,
        "POST",
        &format!("{D}/decision"),
        Some(json!({"procedure": "survey_internet", "version": 2, "decision": "accept"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "accepted");
    assert_eq!(a["decided_by"], "admin");
    let (st, a) = call(
        &clerk,
        "POST",
        &format!("{F}/{survey}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "approved", "{a}");
    // A decision is final; a shipped version needs none; an unknown one
    // is not found.
    for (body, status, code) in [
        (
            json!({"procedure": "survey_internet", "version": 2, "decision": "refuse"}),
            StatusCode::CONFLICT,
            "definition_decided",
        ),
        (
            json!({"procedure": "tenshutsu", "version": 1, "decision": "accept"}),
            StatusCode::CONFLICT,
            "definition_shipped",
        ),
        (
            json!({"procedure": "kaigo", "version": 3, "decision": "accept"}),
            StatusCode::NOT_FOUND,
            "definition_not_found",
        ),
    ] {
        let (st, e) = call(&admin, "POST", &format!("{D}/decision"), Some(body)).await;
        assert_eq!((st, e["code"].as_str()), (status, Some(code)), "{e}");
    }

    // Refused on the page: its filing can only be rejected.
    let (st, _, page) = admin
        .post(
            "/ui/admin/procedures",
            &[
                ("procedure", "sodaigomi"),
                ("version", "1"),
                ("decision", "refuse"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "procedure definitions after a refusal");
    assert!(page.contains("受入れを拒否しました"), "{page}");
    assert!(page.contains("id=\"no-pending\""), "{page}");
    assert!(page.contains("id=\"decided-sodaigomi-1\""), "{page}");
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/{gomi}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("definition_refused")),
        "{e}"
    );
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/{gomi}/correction"),
        Some(json!({"message": "品目を書き直してください。"})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("definition_refused")),
        "{e}"
    );
    let (_, _, page) = clerk.get(&format!("/ui/inbox/{gomi}")).await;
    assert!(
        page.contains("受入れを拒否しました。この申請は却下だけができます")
            && !page.contains("id=\"approve\"")
            && !page.contains("id=\"request-correction\"")
            && page.contains("id=\"reject\""),
        "{page}"
    );
    let (st, r) = call(
        &clerk,
        "POST",
        &format!("{F}/{gomi}/reject"),
        Some(json!({"message": "この手続は受け付けていません。"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["filing"]["status"], "rejected", "{r}");

    // Both decisions are in the access log, whose chain verifies.
    let fuchu = code(FUCHU);
    let f2 = fuchu.clone();
    let entries = db
        .store
        .read(Some(&fuchu), move |tx| {
            machi::store::records::audit_entries(tx, &f2, 0, 10_000)
        })
        .await
        .unwrap();
    let decided: Vec<_> = entries
        .iter()
        .filter(|e| e.entry.function.starts_with("procedure_definition."))
        .map(|e| {
            (
                e.entry.function.as_str(),
                e.entry.target.as_str(),
                e.entry.operator.as_str(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        vec![
            (
                "procedure_definition.accept",
                "procedure:survey_internet:2",
                "admin"
            ),
            (
                "procedure_definition.refuse",
                "procedure:sodaigomi:1",
                "admin"
            ),
        ]
    );
    let v = db.registry.verify_audit(&fuchu).await.unwrap();
    assert!(v.first_bad.is_none(), "{v:?}");
    // The access-log page names the tenant's own procedure by its title.
    let (st, _, audit) = boss.get("/ui/audit").await;
    assert_eq!(st, StatusCode::OK);
    crate::readable::assert_readable(&audit, "access log with definition decisions");
    assert!(
        audit.contains("ポータルから届いた手続定義の受入れ拒否")
            && audit.contains("手続 粗大ごみ収集の申込み 第1版")
            && audit.contains("手続 粗大ごみ収集の申込み・"),
        "{audit}"
    );
    assert!(!audit.contains("sodaigomi"), "{audit}");
}

/// A tenant's own text stored under (procedure, version) before a later
/// machi shipped a version of that number with another text: it stays the
/// tenant's own (pending until the administrator decides), the acceptance
/// page lists it, and the counter offers the stored text, the one approval
/// uses — a release never makes an unreviewed text trusted.
async fn a_tenants_text_under_a_number_machi_ships_later_still_needs_a_decision(db: TestDb) {
    use machi::store::procedure_definitions as defs;
    let db = db.with_tenants().await;
    let shipped = defs::shipped_source("juminhyo", 1).expect("shipped juminhyo 1");
    let own = shipped.replacen(
        r#"ja = "住民票の写しの交付請求""#,
        r#"ja = "住民票の写しの交付請求（府中市版）""#,
        1,
    );
    assert_ne!(own, shipped);
    let digest = defs::digest(&own);
    let fuchu = code(FUCHU);
    let t = fuchu.clone();
    db.store
        .write(Some(&fuchu), move |tx| {
            // As an earlier machi stored it (before this number shipped):
            // straight into the table, past `store`'s check against the
            // shipped text.
            tx.execute(
                "INSERT INTO procedure_definitions (tenant, procedure, version, source, sha256, action_kind, imported_at) \
                 VALUES ($1, 'juminhyo', 1, $2, $3, 'certificate', 0)",
                &[t.as_str().into(), own.as_str().into(), digest.as_str().into()],
            )?;
            Ok::<_, machi::store::StoreError>(())
        })
        .await
        .expect("stored");
    let t = fuchu.clone();
    let (trust, listed, offered_title) = db
        .store
        .read(Some(&fuchu), move |tx| {
            let trust = defs::trust(tx, &t, "juminhyo", 1)?;
            let listed: Vec<String> = defs::own(tx, &t)?
                .iter()
                .map(|o| format!("{} {}", o.definition.id(), o.definition.version()))
                .collect();
            let title = defs::all(tx, &t)?
                .iter()
                .find(|d| d.id() == "juminhyo" && d.version() == 1)
                .map(|d| d.procedure.title.ja.clone());
            Ok::<_, machi::store::StoreError>((trust, listed, title))
        })
        .await
        .expect("read");
    assert_eq!(trust, defs::Trust::Pending);
    assert!(listed.contains(&"juminhyo 1".to_string()), "{listed:?}");
    assert_eq!(
        offered_title.as_deref(),
        Some("住民票の写しの交付請求（府中市版）")
    );
    // Another tenant without a stored text keeps the shipped one, trusted.
    let akishima = code(AKISHIMA);
    let t = akishima.clone();
    let other = db
        .store
        .read(Some(&akishima), move |tx| {
            defs::trust(tx, &t, "juminhyo", 1)
        })
        .await
        .expect("read");
    assert_eq!(other, defs::Trust::Shipped);
}

/// The tenant administrator withdraws an acceptance (issue 11): the
/// version's filings cannot be approved (`definition_withdrawn`, a clear
/// notice on the filing page) until it is accepted again; only an
/// acceptance can be withdrawn; each step is in the hash-chained access
/// log, on the page and through the API.
async fn an_acceptance_can_be_withdrawn_and_given_again(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "admin", Role::TenantAdmin).await;
    let p = portal().await;
    // A survey's new version: approving one needs no matching.
    assert!(p.portal.publish(FUCHU, &survey_v2()).unwrap());
    file_survey(&p, "a75", &[], "yes").await;
    file_survey(&p, "a70", &[], "no").await;
    let out = pull(&db, &p).await;
    assert_eq!(out.imported, 2, "{out:?}");
    let router = app(&db, &p.base);
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let admin = Session::login(&router, FUCHU, "admin").await;
    let (_, l) = call(
        &clerk,
        "GET",
        &format!("{F}?procedure=survey_internet"),
        None,
    )
    .await;
    let ids: Vec<i64> = l["filings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filing_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    const D: &str = "/api/v1/tenants/132063/procedure-definitions";
    let decide =
        |who: &'static str| json!({"procedure": "survey_internet", "version": 2, "decision": who});
    // Nothing to withdraw before an acceptance.
    let (st, e) = call(
        &admin,
        "POST",
        &format!("{D}/decision"),
        Some(decide("withdraw")),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("definition_not_accepted")),
        "{e}"
    );
    assert!(
        e["message_ja"]
            .as_str()
            .unwrap()
            .contains("取り消す受入れがありません"),
        "{e}"
    );
    // Accepted on the page: the decided table offers the withdrawal.
    let (st, _, page) = admin
        .post(
            "/ui/admin/procedures",
            &[
                ("procedure", "survey_internet"),
                ("version", "2"),
                ("decision", "accept"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"withdraw-survey_internet-2\""), "{page}");
    let (st, a) = call(
        &clerk,
        "POST",
        &format!("{F}/{}/approve", ids[0]),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    // Accepting again is refused: withdraw first.
    let (st, e) = call(
        &admin,
        "POST",
        &format!("{D}/decision"),
        Some(decide("accept")),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("definition_decided")),
        "{e}"
    );
    assert!(
        e["message_ja"]
            .as_str()
            .unwrap()
            .contains("先に受入れを取り消して"),
        "{e}"
    );

    // Withdrawn on the page.
    let (st, _, page) = admin
        .post(
            "/ui/admin/procedures",
            &[
                ("procedure", "survey_internet"),
                ("version", "2"),
                ("decision", "withdraw"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "procedure definitions after a withdrawal");
    assert!(page.contains("受入れを取り消しました"), "{page}");
    assert!(page.contains("受入れ取消し（再判断待ち）"), "{page}");
    assert!(
        page.contains("id=\"accept-survey_internet-2\""),
        "awaits a decision again: {page}"
    );
    let en = english(&admin, "/ui/admin/procedures").await;
    assert!(en.contains("acceptance withdrawn"), "{en}");
    // Its other filing cannot be approved now, with a clear message; the
    // one approved before stays approved.
    let (st, e) = call(
        &clerk,
        "POST",
        &format!("{F}/{}/approve", ids[1]),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("definition_withdrawn")),
        "{e}"
    );
    assert!(
        e["message_ja"]
            .as_str()
            .unwrap()
            .contains("受入れを取り消した"),
        "{e}"
    );
    assert!(
        e["message_en"].as_str().unwrap().contains("withdrew"),
        "{e}"
    );
    let (_, d) = call(&clerk, "GET", &format!("{F}/{}", ids[1]), None).await;
    assert_eq!(d["definition_status"], "withdrawn", "{d}");
    assert_eq!(d["filing"]["status"], "received", "nothing changed: {d}");
    let (_, d) = call(&clerk, "GET", &format!("{F}/{}", ids[0]), None).await;
    assert_eq!(d["filing"]["status"], "approved", "{d}");
    let (_, _, fp) = clerk.get(&format!("/ui/inbox/{}", ids[1])).await;
    assert!(
        fp.contains("受入れを取り消しました") && !fp.contains("id=\"approve\""),
        "{fp}"
    );
    let (_, _, list) = clerk.get("/ui/inbox").await;
    assert!(list.contains("手続定義の受入れ取消し"), "{list}");
    // Withdrawing twice: nothing to withdraw.
    let (st, e) = call(
        &admin,
        "POST",
        &format!("{D}/decision"),
        Some(decide("withdraw")),
    )
    .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("definition_not_accepted")),
        "{e}"
    );
    let (_, list) = call(&admin, "GET", D, None).await;
    assert_eq!(list[0]["status"], "withdrawn", "{list}");

    // Accepted again through the API: approval runs.
    let (st, a) = call(
        &admin,
        "POST",
        &format!("{D}/decision"),
        Some(decide("accept")),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "accepted");
    let (st, a) = call(
        &clerk,
        "POST",
        &format!("{F}/{}/approve", ids[1]),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{a}");

    // Every decision in the access log, in order; the chain verifies.
    let fuchu = code(FUCHU);
    let f2 = fuchu.clone();
    let entries = db
        .store
        .read(Some(&fuchu), move |tx| {
            machi::store::records::audit_entries(tx, &f2, 0, 10_000)
        })
        .await
        .unwrap();
    let decided: Vec<&str> = entries
        .iter()
        .filter(|e| e.entry.function.starts_with("procedure_definition."))
        .map(|e| e.entry.function.as_str())
        .collect();
    assert_eq!(
        decided,
        vec![
            "procedure_definition.accept",
            "procedure_definition.withdraw",
            "procedure_definition.accept"
        ]
    );
    let v = db.registry.verify_audit(&fuchu).await.unwrap();
    assert!(v.first_bad.is_none(), "{v:?}");
}
