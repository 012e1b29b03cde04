//! Pages are for people: no raw JSON, internal code (`move_in`,
//! `deceased`, `read.resident`), section number of the standard (j490) or
//! ISO timestamp in the text a person reads. [`assert_readable`] checks a
//! page's visible text; the UI tests call it on every page they fetch
//! (`ui::Session::get`), the browser tests on every screenshot, and
//! [`every_page_a_person_reads_is_in_words`] walks every page type each
//! demo role reaches, error pages included.

use axum::http::StatusCode;
use machi::service::Actor;
use regex::Regex;
use std::sync::OnceLock;

use crate::support::TestDb;
use crate::ui::{form, location, send};

both_backends!(
    every_page_a_person_reads_is_in_words,
    the_admin_page_is_safe_to_use,
);

/// The text a person sees: tags, attributes, scripts and styles removed,
/// character references decoded.
pub fn visible_text(html: &str) -> String {
    static STRIP: OnceLock<(Regex, Regex, Regex)> = OnceLock::new();
    let (blocks, tags, refs) = STRIP.get_or_init(|| {
        (
            Regex::new(r"(?is)<(script|style)\b.*?</(script|style)\s*>").unwrap(),
            Regex::new(r"(?s)<[^>]*>").unwrap(),
            Regex::new(r"&#(x?)([0-9A-Fa-f]+);").unwrap(),
        )
    });
    let text = blocks.replace_all(html, " ");
    let text = tags.replace_all(&text, " ");
    let text = refs.replace_all(&text, |c: &regex::Captures<'_>| {
        let radix = if c[1].is_empty() { 10 } else { 16 };
        u32::from_str_radix(&c[2], radix)
            .ok()
            .and_then(char::from_u32)
            .map(String::from)
            .unwrap_or_default()
    });
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Codes of the API and the database that a person never reads: 異動事由,
/// 住民状態, 性別, 住民種別, 仮登録の状態, 支援措置 codes, roles, and the
/// access log's function names.
fn code_words() -> Vec<String> {
    let mut words: Vec<String> = machi_domain::change::ChangeReason::ALL
        .iter()
        .map(|r| r.code().to_string())
        .collect();
    words.extend(
        [
            "moved_out",
            "deceased",
            "entry_cancelled",
            "male",
            "female",
            "japanese",
            "foreign",
            "pending",
            "approved",
            "returned",
            "withdrawn",
            "in_effect",
            "registry_viewing",
            "resident_record_copy",
            "family_register_annex_copy",
            "support_officer",
            "tenant_admin",
            "platform_operator",
            "move_out_certificate",
            "resident_record",
        ]
        .map(String::from),
    );
    words
}

/// Fails when the page's visible text holds raw JSON, an internal code, a
/// section number of the standard or an ISO date or timestamp. Single-word
/// codes (`deceased`, `pending` …) are looked for on Japanese pages only:
/// an English sentence may say "pending".
pub fn assert_readable(html: &str, page: &str) {
    static RULES: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        vec![
            (
                "raw JSON",
                Regex::new(r#"\{\s*"[^"]*"\s*:|"[a-z_]+"\s*:\s*[\[{"0-9tfn]|\[\s*\{"#).unwrap(),
            ),
            (
                "a section number of the standard",
                Regex::new(r"(?:^|[^A-Za-z0-9_./-])j\d{3,4}(?:[^0-9]|$)").unwrap(),
            ),
            (
                "an ISO date or timestamp",
                Regex::new(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}|\b)").unwrap(),
            ),
            (
                "a linkage event type's code",
                Regex::new(r"\bjp\.machi\.[a-z_.*]+").unwrap(),
            ),
            (
                "an access-log function code",
                Regex::new(
                    r"\b(?:read|change|login|support|account|client|grant|certificate|audit|webhook)\.[a-z_]+",
                )
                .unwrap(),
            ),
        ]
    });
    let text = visible_text(html);
    let japanese = html.contains("<html lang=\"ja\"");
    let context = |i: usize| {
        let start = text[..i].char_indices().rev().nth(40).map_or(0, |(j, _)| j);
        let end = text[i..]
            .char_indices()
            .nth(60)
            .map_or(text.len(), |(j, _)| i + j);
        text[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (what, re) in rules {
        if let Some(m) = re.find(&text) {
            panic!(
                "page {page} shows {what} ({:?}) to a person: …{}…",
                m.as_str(),
                context(m.start())
            );
        }
    }
    static WORD: OnceLock<Regex> = OnceLock::new();
    let word = WORD.get_or_init(|| Regex::new(r"[A-Za-z_]+").unwrap());
    let codes = code_words();
    for m in word.find_iter(&text) {
        let w = m.as_str();
        let is_code = codes.iter().any(|c| c == w);
        if is_code && (japanese || w.contains('_')) {
            panic!(
                "page {page} shows the internal code {w:?} to a person: …{}…",
                context(m.start())
            );
        }
    }
}

#[test]
fn the_check_catches_what_it_is_for() {
    let page = |body: &str| format!("<html lang=\"ja\"><body>{body}</body></html>");
    for bad in [
        "<pre>{\n  \"command\": {\"type\": \"move_in\"}}</pre>",
        "異動事由 国内転入 (move_in)",
        "状態: deceased",
        "世帯主変更依頼（j490）",
        "記録日時 2026-12-06T13:05:00+09:00",
        "日時 2026-12-06 13:05:00",
        "機能 read.resident",
        "詳細 <code>{&quot;pending_id&quot;:3}</code>",
    ] {
        let r = std::panic::catch_unwind(|| assert_readable(&page(bad), "sample"));
        assert!(r.is_err(), "not caught: {bad}");
    }
    for good in [
        "異動事由 国内転入",
        "記録日時 令和8年12月6日 13時05分",
        "<a href=\"/ui/approvals?status=pending\">審査待ち</a>",
        "<input placeholder=\"2026-11-01\" value=\"move_in\">",
        "宛名番号 000000000019",
    ] {
        assert_readable(&page(good), good);
    }
}

/// Signs in as `login` with `password`; the session cookie.
async fn sign_in(router: &axum::Router, tenant: &str, login: &str, password: &str) -> String {
    let (status, headers, body) = crate::ui::login_post(
        router,
        &[
            ("tenant", tenant),
            ("login", login),
            ("password", password),
            ("terminal", "T-TEST"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{login}: {body}");
    headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("machi_session="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("session cookie")
}

async fn every_page_a_person_reads_is_in_words(db: TestDb) {
    machi::demo::seed(&db.registry, 12).await.expect("demo");
    machi::demo::seed_accounts(&db.registry)
        .await
        .expect("demo accounts");
    let fuchu: machi_domain::ids::MunicipalityCode = "132063".parse().unwrap();
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(crate::contract::takahashi_family()).unwrap();
    let family = db
        .registry
        .submit(&fuchu, &req, &Actor::system("setup"))
        .await
        .expect("family");
    let head = family.rows[0].record.addressee_number.to_string();
    let household = family.rows[0].record.household_number.to_string();
    let router = crate::ui::app(&db).await;
    let login = |l: &'static str| {
        let p = machi::demo::DEMO_LOGINS
            .iter()
            .find(|d| d.1 == l)
            .map(|d| (d.0, d.4))
            .unwrap();
        let router = router.clone();
        async move { sign_in(&router, p.0, l, p.1).await }
    };
    // Provisional entries made as the clerk (through the service: the
    // entry form is not what this test is about): a 転居 of the whole
    // family awaiting review, a death sent back, a 転居 approved.
    let clerk = Actor {
        operator: "clerk".into(),
        terminal: "T-TEST".into(),
    };
    let boss = Actor {
        operator: "supervisor".into(),
        terminal: "T-TEST".into(),
    };
    let members: Vec<String> = family
        .rows
        .iter()
        .map(|r| r.record.addressee_number.to_string())
        .collect();
    let enter = |v: serde_json::Value| {
        let db = db.registry.clone();
        let (fuchu, clerk) = (fuchu.clone(), clerk.clone());
        async move {
            let req: machi_domain::change::ChangeRequest = serde_json::from_value(v).unwrap();
            db.enter_provisional(&fuchu, &req, &clerk)
                .await
                .expect("entered")
                .0
        }
    };
    let move_within = |to: &str| {
        serde_json::json!({"effective_date": "令和8年11月1日", "input_place": "市民課窓口",
            "command": {"type": "move_within", "persons": members,
                "address": {"address": to, "postal_code": "183-0055"}}})
    };
    let approved = enter(move_within("東京都府中市寿町一丁目5番地")).await;
    db.registry
        .approve(&fuchu, approved, &boss)
        .await
        .expect("approved");
    let returned = enter(serde_json::json!({"effective_date": "令和8年11月2日",
        "input_place": "市民課窓口",
        "command": {"type": "death", "person": members[2]}}))
    .await;
    db.registry
        .close_pending(
            &fuchu,
            returned,
            machi::store::pending::PendingStatus::Returned,
            "届出書を確認してください",
            &boss,
        )
        .await
        .expect("returned");
    // Out of town by 転居, into a new household: warned, and the new
    // household's number is given on approval.
    // (Should the rules refuse such an entry outright, a 転居 within the
    // city stands in: the old date is still warned of.)
    let out_of_town = |to: &str| {
        serde_json::json!({"effective_date": "令和元年5月1日",
        "input_place": "市民課窓口",
        "command": {"type": "move_within", "persons": [members[2]],
            "address": {"address": to},
            "household": {"type": "new", "relationships": [{"addressee_number": members[2], "relationship": "世帯主"}]}}})
    };
    let (pending, left_town) = match db
        .registry
        .enter_provisional(
            &fuchu,
            &serde_json::from_value(out_of_town("東京都調布市小島町一丁目1番地")).unwrap(),
            &clerk,
        )
        .await
    {
        Ok((id, _)) => (id, true),
        Err(_) => (
            enter(out_of_town("東京都府中市寿町二丁目2番地")).await,
            false,
        ),
    };
    let newcomer = enter(crate::contract::move_in(
        vec![crate::contract::person(
            "架空　次郎",
            "カクウ　ジロウ",
            "平成2年2月2日",
            "male",
            "世帯主",
        )],
        "東京都府中市宮西町一丁目1番地",
    ))
    .await;
    let last_change = db
        .registry
        .changes(&fuchu, None, 1, &Actor::system("t"))
        .await
        .unwrap()
        .0[0]
        .change_id();
    // A support measure for a demo resident: their pages are blocked.
    let protected = machi_domain::ids::AddresseeNumber::from_serial(1)
        .unwrap()
        .to_string();
    let support = login("support").await;
    let (_, _, home) = send(&router, "GET", "/ui", Some(&support), None).await;
    let support_csrf = crate::ui::csrf_of(&home);
    let (s, h, body) = send(
        &router,
        "POST",
        "/ui/support/new",
        Some(&support),
        Some(&form(&[
            ("csrf", &support_csrf),
            ("requester", &protected),
            ("filed_on", "令和8年11月1日"),
            ("affair_copy", "1"),
        ])),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let measure = location(&h).trim_start_matches("/ui/support/").to_string();

    // Every GET page of the staff UI, with its placeholders filled in.
    let mut pages: Vec<String> = vec![];
    for r in machi::ui::routes() {
        if r.public || !r.methods.contains(&"GET") {
            continue;
        }
        let p = r
            .path
            .replace("{addressee_number}", &head)
            .replace("{household_number}", &household)
            .replace("{change_id}", &last_change.to_string())
            .replace("{pending_id}", &pending.to_string())
            .replace("{measure_id}", &measure);
        pages.push(p);
    }
    pages.extend(
        [
            format!("/ui/approvals/{approved}"),
            format!("/ui/approvals/{returned}"),
            format!("/ui/approvals/{newcomer}"),
            format!("/ui/residents/{protected}"),
            "/ui/approvals?status=approved".into(),
            "/ui/approvals?status=returned".into(),
            "/ui/changes/1".into(),
            format!("/ui/residents/{head}?as_of=昭和20年1月1日"),
            format!("/ui/residents/{head}?recorded_as_of=yesterday"),
            format!(
                "/ui/residents/{head}?as_of=令和8年11月1日&recorded_as_of=令和8年12月1日 9時00分"
            ),
            format!("/ui/households/{household}?as_of=昭和20年1月1日"),
            "/ui/changes/x".into(),
            "/ui/approvals/999999".into(),
            "/ui/entry?type=move_within".into(),
            "/ui/entry?type=move_in".into(),
            "/ui/entry?type=death".into(),
            format!("/ui/certificates/new?person={head}"),
            "/ui/audit?function=change.".into(),
        ]
        .into_iter()
        .map(|p: String| p.replace(' ', "%20")),
    );
    // The review warns, and never names a number given only on approval.
    let boss_cookie = login("supervisor").await;
    let (_, _, review) = send(
        &router,
        "GET",
        &format!("/ui/approvals/{pending}"),
        Some(&boss_cookie),
        None,
    )
    .await;
    assert!(
        review.contains("review-warnings") && review.contains("年以上前"),
        "{review}"
    );
    assert!(
        !left_town || review.contains("この市区町村の外"),
        "{review}"
    );
    assert!(review.contains("新しい世帯（承認時に付番）"), "{review}");
    let (_, _, review) = send(
        &router,
        "GET",
        &format!("/ui/approvals/{newcomer}"),
        Some(&boss_cookie),
        None,
    )
    .await;
    assert!(review.contains("宛名番号は承認時に付番"), "{review}");
    assert!(
        !review.contains("/ui/residents/"),
        "a predicted number is never shown: {review}"
    );
    // The committed 転居: the family's address before and after.
    let (_, _, review) = send(
        &router,
        "GET",
        &format!("/ui/approvals/{approved}"),
        Some(&boss_cookie),
        None,
    )
    .await;
    assert!(
        review.contains("→ 東京都府中市寿町一丁目5番地") && review.contains("class=\"changed\""),
        "{review}"
    );
    // An "as of" date before the person was recorded: a full page with
    // the way back to the current record.
    let (s, _, page) = send(
        &router,
        "GET",
        &format!("/ui/residents/{head}?as_of=%E6%98%AD%E5%92%8C20%E5%B9%B41%E6%9C%881%E6%97%A5"),
        Some(&boss_cookie),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{page}");
    assert!(
        page.contains(&format!("href=\"/ui/residents/{head}\" id=\"error-back\"")),
        "{page}"
    );
    // 記録時点 as people type it.
    let jst = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    };
    for (typed, want) in [
        ("令和8年12月1日 9時00分", jst("2026-12-01T09:00:00+09:00")),
        (
            "令和８年１２月１日　９時５分",
            jst("2026-12-01T09:05:00+09:00"),
        ),
        ("2026-12-01 13:05", jst("2026-12-01T13:05:00+09:00")),
        ("2026/12/1 13:05:30", jst("2026-12-01T13:05:30+09:00")),
        ("令和8年12月1日13時", jst("2026-12-01T13:00:00+09:00")),
        (
            "2026-12-01T13:05:00+09:00",
            jst("2026-12-01T13:05:00+09:00"),
        ),
        ("令和8年12月1日", jst("2026-12-02T00:00:00+09:00") - 1),
    ] {
        assert_eq!(db.registry.parse_recorded_at(typed), Some(want), "{typed}");
    }
    for bad in [
        "yesterday",
        "令和8年12月1日 25時",
        "2026-13-01 10:00",
        "令和8年12月1日 9:00:00:00",
    ] {
        assert_eq!(db.registry.parse_recorded_at(bad), None, "{bad}");
    }
    let mut seen = 0;
    for (tenant, l, _, _, password) in machi::demo::DEMO_LOGINS {
        let cookie = sign_in(&router, tenant, l, password).await;
        for lang in ["ja", "en"] {
            let cookie = format!("{cookie}; machi_lang={lang}");
            for p in &pages {
                let (status, headers, body) = send(&router, "GET", p, Some(&cookie), None).await;
                let html = headers
                    .iter()
                    .any(|(k, v)| k == "content-type" && v.starts_with("text/html"));
                if status.is_redirection() || !html {
                    continue;
                }
                assert_readable(&body, &format!("{p} as {l} ({lang}, {status})"));
                if status.is_client_error() {
                    // An error page is a full page: the menu and sign-out.
                    assert!(
                        body.contains("<nav") && body.contains("action=\"/logout\""),
                        "{p} as {l}: an error page without the menu: {body}"
                    );
                }
                seen += 1;
            }
        }
    }
    assert!(seen > 200, "only {seen} pages walked");
}

/// Admin safety (issue 13.8): no offer to disable one's own account and a
/// clear refusal if asked anyway; the certifying officer's fields show what
/// is set; scopes chosen from the resources and operations the server
/// knows, validated by the server all the same.
async fn the_admin_page_is_safe_to_use(db: TestDb) {
    let db = db.with_tenants().await;
    let fuchu = crate::support::FUCHU;
    crate::ui::staff(&db, fuchu, "admin", machi_domain::access::Role::TenantAdmin).await;
    crate::ui::staff(
        &db,
        fuchu,
        "admin2",
        machi_domain::access::Role::TenantAdmin,
    )
    .await;
    db.registry
        .set_issuer(
            &fuchu.parse().unwrap(),
            "府中市長",
            "架空　太一",
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let router = crate::ui::app(&db).await;
    let admin = crate::ui::Session::login(&router, fuchu, "admin").await;
    let (s, _, page) = admin.get("/ui/admin/accounts").await;
    assert_eq!(s, StatusCode::OK);
    // Own row: no disable button, a note instead; the other admin's row has one.
    let own = page
        .split("<td>admin</td>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(
        own.contains("own-account") && !own.contains("accounts/state"),
        "{own}"
    );
    let other = page
        .split("<td>admin2</td>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(other.contains("accounts/state"), "{other}");
    // Asked anyway: refused in words, nothing changed.
    let (s, _, refused) = admin
        .post(
            "/ui/admin/accounts/state",
            &[("login", "admin"), ("action", "disable")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.contains("自分のアカウントは停止できません"),
        "{refused}"
    );
    let (s, _, _) = admin.get("/ui").await;
    assert_eq!(s, StatusCode::OK, "still signed in");
    // The certifying officer's fields hold what is set: saving keeps it.
    assert!(
        page.contains("id=\"issuer_title\" name=\"issuer_title\" value=\"府中市長\"")
            && page.contains("value=\"架空　太一\""),
        "{page}"
    );
    // Scopes are checkboxes built from the server's list.
    for (r, ops) in machi_domain::access::SCOPE_RESOURCES {
        for o in ops {
            assert!(
                page.contains(&format!("name=\"scope\" value=\"{r}:{o}\"")),
                "no choice for {r}:{o}"
            );
        }
    }
    assert!(!page.contains("name=\"scopes\""), "no free-text scopes");
    let (s, _, proposed) = admin
        .post(
            "/ui/admin/clients",
            &[
                ("system", "kokuho"),
                ("scope", "residents:read"),
                ("scope", "events:read"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{proposed}");
    assert!(proposed.contains("を受け付けました"), "{proposed}");
    let grants = db
        .registry
        .grants(&fuchu.parse().unwrap(), true, 10)
        .await
        .unwrap();
    let scopes = serde_json::to_string(&grants[0].proposal).unwrap();
    assert!(
        scopes.contains("kokuho:events:read") && scopes.contains("kokuho:residents:read"),
        "{scopes}"
    );
    // A forged choice is refused by the server, in words.
    let (s, _, bad) = admin
        .post(
            "/ui/admin/clients",
            &[("system", "kokuho"), ("scope", "residents:delete")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(bad.contains("class=\"error\""), "{bad}");
    assert_readable(&bad, "refused scope");
}
