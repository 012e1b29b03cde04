//! Certificates as at a real counter (issue 13, item 5): who asks and how
//! they were identified, the purpose, copies and fee, the refusals for
//! third parties and proxies, the on-screen confirmation with the PDFs;
//! and numbers typed as people type them (item 4): full-width copies and
//! addressee numbers, `/verify` whatever the spacing or width.

use axum::http::StatusCode;
use machi::service::Actor;
use machi_domain::access::Role;
use machi_domain::ids::MunicipalityCode;

use crate::support::{FUCHU, TestDb};
use crate::ui::{Session, app, form, location, send, staff};

both_backends!(
    a_third_party_states_a_purpose_and_never_gets_the_numbers,
    copies_get_their_own_numbers_and_the_fee_is_shown,
    verify_finds_a_number_however_it_is_typed,
    forms_accept_what_people_type,
);

struct World {
    db: TestDb,
    router: axum::Router,
    clerk: Session,
    person: String,
}

async fn world(db: TestDb) -> World {
    let db = db.with_tenants().await;
    let fuchu: MunicipalityCode = FUCHU.parse().unwrap();
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    db.registry
        .set_issuer(&fuchu, "府中市長", "架空　太一", &Actor::system("setup"))
        .await
        .unwrap();
    let req: machi_domain::change::ChangeRequest =
        serde_json::from_value(crate::contract::takahashi_family()).unwrap();
    let out = db
        .registry
        .submit(&fuchu, &req, &Actor::system("setup"))
        .await
        .unwrap();
    let person = out.rows[0].record.addressee_number.to_string();
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    World {
        db,
        router,
        clerk,
        person,
    }
}

impl World {
    async fn issued_count(&self) -> usize {
        let t: MunicipalityCode = FUCHU.parse().unwrap();
        let t2 = t.clone();
        self.db
            .store
            .read(Some(&t), move |tx| {
                machi::store::records::audit_entries(tx, &t2, 0, 10_000)
            })
            .await
            .unwrap()
            .iter()
            .filter(|e| e.entry.function == "certificate.issue")
            .count()
    }

    async fn log(&self) -> Vec<(String, String)> {
        let t: MunicipalityCode = FUCHU.parse().unwrap();
        let t2 = t.clone();
        self.db
            .store
            .read(Some(&t), move |tx| {
                machi::store::records::audit_entries(tx, &t2, 0, 10_000)
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.entry.function, e.entry.detail))
            .collect()
    }
}

fn error_of(body: &str) -> String {
    let i = body.find("class=\"error\"").expect("an error message");
    body[i..].split("</p>").next().unwrap().to_string()
}

async fn a_third_party_states_a_purpose_and_never_gets_the_numbers(db: TestDb) {
    let w = world(db).await;
    let p = w.person.as_str();
    let base = [
        ("person", p),
        ("scope", "person"),
        ("kind", "resident_copy"),
        ("requester", "third_party"),
        ("requester_name", "架空 債権"),
        ("relationship", "債権者"),
        ("identity", "drivers_licence"),
    ];
    // Each refusal says why, in the page's language, and issues nothing.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "請求事由"),
        (
            vec![("ground", "own_right"), ("purpose", "相続")],
            "請求事由",
        ),
        (
            vec![
                ("ground", "own_right"),
                ("purpose", "貸金返還請求訴訟の提起のため"),
                ("resident_code", "1"),
            ],
            "住民票コード",
        ),
        (
            vec![
                ("ground", "own_right"),
                ("purpose", "貸金返還請求訴訟の提起のため"),
                ("my_number", "1"),
            ],
            "個人番号",
        ),
    ];
    for (extra, says) in cases {
        let mut pairs = base.to_vec();
        pairs.extend(extra.iter().cloned());
        let (s, _, body) = w.clerk.post("/ui/certificates", &pairs).await;
        assert!(s == StatusCode::BAD_REQUEST, "{s} {pairs:?}");
        let e = error_of(&body);
        assert!(e.contains(says), "{pairs:?}: {e}");
        // What was typed stays (a person never types it twice).
        assert!(body.contains("架空 債権"), "{body}");
    }
    // No identity check, no issue; a proxy without a power of attorney
    // neither.
    let (s, _, body) = w
        .clerk
        .post(
            "/ui/certificates",
            &[
                ("person", p),
                ("kind", "resident_copy"),
                ("requester", "self"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("本人確認"), "{body}");
    let (s, _, body) = w
        .clerk
        .post(
            "/ui/certificates",
            &[
                ("person", p),
                ("kind", "resident_copy"),
                ("requester", "proxy"),
                ("requester_name", "架空 代理"),
                ("relationship", "知人"),
                ("identity", "passport"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("委任状"), "{body}");
    assert_eq!(w.issued_count().await, 0, "a refusal issues nothing");

    // Stated and justified: issued, and the confirmation says to whom.
    let mut pairs = base.to_vec();
    pairs.extend([
        ("ground", "own_right"),
        ("purpose", "貸金返還請求訴訟の提起のため"),
    ]);
    let (s, h, body) = w.clerk.post("/ui/certificates", &pairs).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let (s, _, page) = w.clerk.get(&location(&h)).await;
    assert_eq!(s, StatusCode::OK);
    for text in [
        "証明書を発行しました",
        "第三者",
        "架空 債権",
        "債権者",
        "運転免許証",
        "貸金返還請求訴訟の提起のため",
        "自己の権利行使・義務履行に必要",
    ] {
        assert!(page.contains(text), "{text}: {page}");
    }
    // Recorded in the access log with the request.
    let log = w.log().await;
    let issue = log
        .iter()
        .find(|(f, _)| f == "certificate.issue")
        .expect("issued");
    let detail: serde_json::Value = serde_json::from_str(&issue.1).unwrap();
    assert_eq!(detail["request"]["requester"], "third_party");
    assert_eq!(detail["request"]["identity"], "drivers_licence");
    assert_eq!(detail["request"]["purpose"], "貸金返還請求訴訟の提起のため");
    assert_eq!(detail["request"]["relationship"], "債権者");
}

async fn copies_get_their_own_numbers_and_the_fee_is_shown(db: TestDb) {
    let w = world(db).await;
    let fuchu: MunicipalityCode = FUCHU.parse().unwrap();
    w.db.registry
        .set_certificate_fee(&fuchu, 350, &Actor::system("admin"))
        .await
        .unwrap();
    let (_, _, new) = w
        .clerk
        .get(&format!("/ui/certificates/new?person={}", w.person))
        .await;
    assert!(new.contains("350"), "the form shows the fee: {new}");
    // Full-width as typed: the person's number and the copies.
    let wide: String = w
        .person
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
        .collect();
    let (s, h, body) = w
        .clerk
        .post(
            "/ui/certificates",
            &[
                ("person", wide.as_str()),
                ("kind", "resident_copy"),
                ("requester", "household"),
                ("requester_name", "架空 花子"),
                ("relationship", "妻"),
                ("identity", "my_number_card"),
                ("copies", "３"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let page_uri = location(&h);
    let (s, _, page) = w.clerk.get(&page_uri).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("1,050"), "3 × 350 yen: {page}");
    assert!(page.contains("同一世帯の者"), "{page}");
    let numbers: Vec<String> = page
        .split("class=\"issue-number\">")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_string())
        .collect();
    assert_eq!(numbers.len(), 3, "{page}");
    let mut distinct = numbers.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "each copy its own number (j1040): {numbers:?}"
    );
    // Each PDF, as issued; another clerk of the counter may reprint it too,
    // and every hand-out is logged.
    for copy in 1..=3 {
        let (s, h, pdf) = w.clerk.get(&format!("{page_uri}/{copy}.pdf")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(pdf.starts_with("%PDF"));
        assert!(
            h.iter()
                .any(|(k, v)| k == "content-type" && v == "application/pdf")
        );
    }
    let boss = Session::login(&w.router, FUCHU, "boss").await;
    let (s, _, pdf) = boss.get(&format!("{page_uri}/2.pdf")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(pdf.starts_with("%PDF"));
    let (s, _, _) = w.clerk.get(&format!("{page_uri}/4.pdf")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = w
        .clerk
        .get("/ui/certificates/issued/00ff00ff00ff00ff")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let log = w.log().await;
    assert_eq!(w.issued_count().await, 3);
    assert_eq!(
        log.iter().filter(|(f, _)| f == "certificate.pdf").count(),
        4,
        "{log:?}"
    );
    // A 転出証明書 and an official request cost nothing; copies beyond ten
    // are refused.
    let (s, _, body) = w
        .clerk
        .post(
            "/ui/certificates",
            &[
                ("person", w.person.as_str()),
                ("kind", "resident_copy"),
                ("requester", "self"),
                ("identity", "my_number_card"),
                ("copies", "11"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("通数"), "{body}");
    let (s, h, _) = w
        .clerk
        .post(
            "/ui/certificates",
            &[
                ("person", w.person.as_str()),
                ("kind", "resident_copy"),
                ("requester", "third_party"),
                ("requester_name", "府中税務署"),
                ("relationship", "官公署"),
                ("identity", "official_id"),
                ("ground", "submission"),
                ("purpose", "国税の滞納処分の調査のため"),
                ("official_use", "1"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, _, page) = w.clerk.get(&location(&h)).await;
    assert!(page.contains("id=\"total-fee\">0<"), "{page}");
}

async fn verify_finds_a_number_however_it_is_typed(db: TestDb) {
    let w = world(db).await;
    let (s, h, body) = w
        .clerk
        .post(
            "/ui/certificates",
            &[
                ("person", w.person.as_str()),
                ("kind", "resident_copy"),
                ("requester", "self"),
                ("identity", "my_number_card"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let hex_number = h
        .iter()
        .find(|(k, _)| k == "x-machi-issue-number")
        .unwrap()
        .1
        .clone();
    let number = String::from_utf8(hex::decode(hex_number).unwrap()).unwrap();
    let code = h
        .iter()
        .find(|(k, _)| k == "x-machi-verification-code")
        .unwrap()
        .1
        .clone();
    assert!(number.contains(' '), "{number}");
    let wide = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
                ' ' => '\u{3000}',
                c => c,
            })
            .collect()
    };
    let typed = [
        number.clone(),
        number.replace(' ', ""),
        wide(&number),
        format!("  {}  ", number.replace(' ', "  ")),
    ];
    for (n, c) in typed
        .iter()
        .zip([code.clone(), code.to_lowercase(), wide(&code), code.clone()])
    {
        let (s, _, page) = send(
            &w.router,
            "POST",
            "/verify",
            None,
            Some(&form(&[
                ("tenant", "１３２０６３"),
                ("number", n),
                ("code", &c),
            ])),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{n}: {page}");
        assert!(page.contains("一致します"), "{n} / {c}: {page}");
    }
    // A wrong code or another number still matches nothing.
    for (n, c) in [
        (number.clone(), "WRONGCODE1".to_string()),
        (number.replace(' ', "") + "9", code.clone()),
    ] {
        let (_, _, page) = send(
            &w.router,
            "POST",
            "/verify",
            None,
            Some(&form(&[("tenant", FUCHU), ("number", &n), ("code", &c)])),
        )
        .await;
        assert!(page.contains("一致する発行記録がありません"), "{n}: {page}");
    }
}

/// Search, the record's 記録時点 and the household page take numbers and
/// dates as people type them (full-width, with or without separators,
/// 和暦 by name or letter), through one normalisation
/// (`machi_domain::input`).
async fn forms_accept_what_people_type(db: TestDb) {
    let w = world(db).await;
    let wide: String = w
        .person
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
        .collect();
    let grouped = format!("{}-{}", &w.person[..5], &w.person[5..]);
    for typed in [wide.as_str(), grouped.as_str(), &format!(" {} ", w.person)] {
        let (s, _, page) = w
            .clerk
            .get(&format!(
                "/ui/search?addressee_number={}",
                crate::ui::enc(typed)
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{typed}: {page}");
        assert!(page.contains("髙橋　一郎"), "{typed}: {page}");
    }
    // The head was born on 昭和64年1月7日 (1989-01-07).
    for typed in [
        "19890107",
        "1989/1/7",
        "S64.1.7",
        "昭和64年1月7日",
        "１９８９－０１－０７",
    ] {
        let (s, _, page) = w
            .clerk
            .get(&format!("/ui/search?birth_date={}", crate::ui::enc(typed)))
            .await;
        assert_eq!(s, StatusCode::OK, "{typed}: {page}");
        assert!(page.contains("髙橋　一郎"), "{typed}: {page}");
    }
    // 記録時点 as a date and time in any common form.
    // (After the family was recorded: the record as it stood then.)
    for typed in ["令和20年12月31日 10時00分", "2038/12/31 10:00", "R20.12.31"] {
        let (s, _, page) = w
            .clerk
            .get(&format!(
                "/ui/residents/{}?recorded_as_of={}",
                w.person,
                crate::ui::enc(typed)
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{typed}: {page}");
        assert!(page.contains("髙橋　一郎"), "{typed}: {page}");
    }
    let (s, _, page) = w
        .clerk
        .get(&format!(
            "/ui/residents/{}?recorded_as_of=tomorrow",
            w.person
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("記録時点"), "{page}");
}
