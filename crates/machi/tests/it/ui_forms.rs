//! The counter's forms (issue 13.2, 13.3): prefilled from the registry,
//! confirmed before 仮登録, 転居 kept within the municipality (j560, j630),
//! and entries sent back edited and entered again from the clerk's home.

use axum::http::StatusCode;
use machi::service::Actor;
use machi_domain::access::Role;
use machi_domain::change::ChangeRequest;
use machi_domain::ids::MunicipalityCode;
use serde_json::json;

use crate::support::{FUCHU, TestDb};
use crate::ui::{Session, app, location, staff};

both_backends!(
    a_household_move_is_prefilled_and_confirmed,
    a_move_within_to_another_city_or_the_same_address_is_refused,
    a_sent_back_entry_is_edited_and_entered_again_from_home,
    a_move_out_keeps_the_destination_postal_code_entered_on_the_form,
);

pub const OTHER_ADDRESS: &str = "東京都府中市緑町三丁目5番地";
pub const OTHER_POSTAL: &str = "1830006";
/// [`OTHER_POSTAL`] as the registry shows it.
pub const OTHER_POSTAL_SHOWN: &str = "183-0006";

/// The 髙橋 family (three persons) and a neighbour household at
/// [`OTHER_ADDRESS`] with a postal code; the family's addressee numbers
/// and household number.
pub async fn families(db: &TestDb) -> (Vec<String>, String) {
    let fuchu: MunicipalityCode = FUCHU.parse().unwrap();
    let req: ChangeRequest = serde_json::from_value(crate::contract::takahashi_family()).unwrap();
    let out = db
        .registry
        .submit(&fuchu, &req, &Actor::system("setup"))
        .await
        .unwrap();
    let persons: Vec<String> = out
        .rows
        .iter()
        .map(|r| r.record.addressee_number.to_string())
        .collect();
    let household = out.rows[0].record.household_number.to_string();
    let neighbour: ChangeRequest = serde_json::from_value(json!({
        "effective_date": "2024-04-01",
        "command": {"type": "move_in", "previous_address": "東京都調布市小島町一丁目1番地",
            "persons": [{"name": "架空　次郎", "name_kana": "カクウ　ジロウ", "birth_date": "昭和50年1月1日",
                "sex": "male", "relationship": "世帯主"}],
            "household": {"type": "new", "address": {"address": OTHER_ADDRESS, "postal_code": OTHER_POSTAL}}}
    }))
    .unwrap();
    db.registry
        .submit(&fuchu, &neighbour, &Actor::system("setup"))
        .await
        .unwrap();
    (persons, household)
}

/// The hidden fields of the confirmation form, unescaped.
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    let start = page.find("id=\"confirm-form\"").expect("confirmation form");
    let form = &page[start..page[start..].find("</form>").unwrap() + start];
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    form.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|s| {
            let (name, rest) = s.split_once("\" value=\"")?;
            let value = rest.split('"').next()?;
            Some((unescape(name), unescape(value)))
        })
        .filter(|(n, _)| n != "csrf")
        .collect()
}

/// What no page a person reads may show: section numbers, the old example
/// with a nine-digit 宛名番号, raw JSON.
fn no_internals(what: &str, page: &str) {
    for bad in ["（j490）", "(j490)", "「000000019", "{\"", "\"command\""] {
        assert!(!page.contains(bad), "{what} shows {bad:?}: {page}");
    }
}

async fn a_household_move_is_prefilled_and_confirmed(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (persons, household) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    // From the household page's link: every member listed, ticked, by name.
    let (_, _, hpage) = clerk.get(&format!("/ui/households/{household}")).await;
    let link = format!("/ui/entry?type=move_within&amp;household_number={household}");
    assert!(hpage.contains(&link), "{hpage}");
    let (s, _, form) = clerk
        .get(&format!(
            "/ui/entry?type=move_within&household_number={household}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{form}");
    no_internals("the move form", &form);
    for (p, name) in persons.iter().zip(["髙橋　一郎", "髙橋　京子", "髙橋　翔"]) {
        assert!(
            form.contains(&format!(
                "name=\"persons\" value=\"{p}\" checked><label for=\"person-{p}\">{name}"
            )),
            "{p} {name}: {form}"
        );
    }
    // The tenant's addresses are offered with their postal codes.
    assert!(form.contains("<datalist id=\"address-book\">"), "{form}");
    assert!(
        form.contains(&format!(
            "<option value=\"{OTHER_ADDRESS}\">〒{OTHER_POSTAL_SHOWN}"
        )),
        "{form}"
    );
    // Sent: a confirmation, nothing entered yet; the postal code comes
    // from the address book.
    let mut fields: Vec<(&str, &str)> = vec![
        ("type", "move_within"),
        ("effective_date", "令和6年10月1日"),
        ("address", OTHER_ADDRESS),
        ("annex", "緑ハイツ101号室"),
    ];
    for p in &persons {
        fields.push(("persons", p.as_str()));
    }
    let (s, _, confirm) = clerk.post("/ui/entry", &fields).await;
    assert_eq!(s, StatusCode::OK, "{confirm}");
    no_internals("the confirmation", &confirm);
    assert!(confirm.contains("id=\"confirm-enter\""), "{confirm}");
    for name in ["髙橋　一郎", "髙橋　京子", "髙橋　翔"] {
        assert!(confirm.contains(name), "{name}: {confirm}");
    }
    assert!(
        confirm.contains("東京都府中市宮西町二丁目24番地"),
        "the address before: {confirm}"
    );
    assert!(
        confirm.contains(&format!(
            "{OTHER_ADDRESS}　緑ハイツ101号室（〒{OTHER_POSTAL_SHOWN}）"
        )),
        "the address after, with its postal code: {confirm}"
    );
    assert!(confirm.contains("class=\"changed\""), "{confirm}");
    assert!(confirm.contains("令和6年10月1日"), "{confirm}");
    let (_, _, queue) = clerk.get("/ui/approvals").await;
    assert!(!queue.contains("髙橋"), "nothing entered yet: {queue}");
    // The confirmation's button enters exactly what was confirmed.
    let hidden = hidden_fields(&confirm);
    assert!(
        hidden.contains(&("postal_code".to_string(), OTHER_POSTAL_SHOWN.to_string())),
        "{hidden:?}"
    );
    let mut pairs: Vec<(&str, &str)> = hidden
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("step", "enter"));
    let (s, h, body) = clerk.post("/ui/entry", &pairs).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location(&h), "/ui/approvals/1?done=entered");
    let p = db
        .registry
        .pending(&FUCHU.parse().unwrap(), 1)
        .await
        .unwrap();
    let req: ChangeRequest = serde_json::from_value(p.request).unwrap();
    let machi_domain::change::ChangeCommand::MoveWithin {
        persons: moved,
        address,
        household,
    } = req.command
    else {
        panic!("not a move within: {:?}", req.command);
    };
    assert_eq!(moved, persons);
    assert_eq!(address.postal_code.as_deref(), Some(OTHER_POSTAL_SHOWN));
    assert_eq!(address.annex.as_deref(), Some("緑ハイツ101号室"));
    assert!(household.is_none(), "the whole household moves");
    // "Back to the form" keeps what was typed.
    let mut edit = fields.clone();
    edit.push(("step", "edit"));
    let (s, _, again) = clerk.post("/ui/entry", &edit).await;
    assert_eq!(s, StatusCode::OK);
    assert!(again.contains("value=\"緑ハイツ101号室\""), "{again}");
    // A death opened from the resident page names the person.
    let (_, _, death) = clerk
        .get(&format!("/ui/entry?type=death&person={}", persons[2]))
        .await;
    assert!(
        death.contains(&format!("髙橋　翔（{}）", persons[2])),
        "{death}"
    );
    // A correction opens with the current values; only what changed is sent.
    let (_, _, corr) = clerk
        .get(&format!(
            "/ui/entry?type=clerical_correction&person={}",
            persons[1]
        ))
        .await;
    assert!(
        corr.contains("id=\"patch_name\" name=\"patch_name\" value=\"髙橋　京子\""),
        "{corr}"
    );
    no_internals("the correction form", &corr);
}

async fn a_move_within_to_another_city_or_the_same_address_is_refused(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let refused = |address: &'static str| {
        let mut f: Vec<(&str, &str)> = vec![
            ("type", "move_within"),
            ("effective_date", "令和6年10月1日"),
            ("address", address),
            ("annex", "府中ハイツ101"),
        ];
        for p in &persons {
            f.push(("persons", p.as_str()));
        }
        f
    };
    for step in ["confirm", "enter"] {
        let mut f = refused("東京都調布市小島町一丁目1番地");
        f.push(("step", step));
        let (s, _, page) = clerk.post("/ui/entry", &f).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
        assert!(page.contains("form-error"), "{page}");
        assert!(
            page.contains("「東京都調布市小島町一丁目1番地」は東京都府中市の住所ではありません"),
            "{page}"
        );
        assert!(page.contains("転出"), "names the right procedure: {page}");
        let mut f = refused("東京都府中市宮西町二丁目24番地");
        f.push(("step", step));
        let (s, _, page) = clerk.post("/ui/entry", &f).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
        assert!(page.contains("同じ住所"), "{page}");
    }
    // In English too.
    let mut f = refused("広島県府中市府川町1番地");
    f.push(("step", "enter"));
    let mut en = crate::ui::form(&[("csrf", clerk.csrf.as_str())]);
    for (k, v) in &f {
        en.push('&');
        en.push_str(&crate::ui::form(&[(k, v)]));
    }
    let (s, _, page) = crate::ui::send(
        &router,
        "POST",
        "/ui/entry",
        Some(&format!("{}; machi_lang=en", clerk.cookie)),
        Some(&en),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("move-out"), "{page}");
    // Nothing was entered, and the API refuses it the same way.
    let (_, _, queue) = clerk.get("/ui/approvals").await;
    assert!(!queue.contains("髙橋"), "{queue}");
    let fuchu: MunicipalityCode = FUCHU.parse().unwrap();
    let req: ChangeRequest = serde_json::from_value(json!({
        "effective_date": "2024-10-01",
        "command": {"type": "move_within", "persons": persons,
            "address": {"address": "東京都調布市小島町一丁目1番地"}}
    }))
    .unwrap();
    let e = db
        .registry
        .submit(&fuchu, &req, &Actor::system("t"))
        .await
        .unwrap_err();
    let api = machi::api::error::ApiError::from(e);
    assert_eq!(api.body.code, "outside_municipality");
}

async fn a_sent_back_entry_is_edited_and_entered_again_from_home(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let boss = Session::login(&router, FUCHU, "boss").await;
    let mut f: Vec<(&str, &str)> = vec![
        ("type", "move_within"),
        ("step", "enter"),
        ("effective_date", "令和6年10月1日"),
        ("address", OTHER_ADDRESS),
    ];
    for p in &persons {
        f.push(("persons", p.as_str()));
    }
    let (s, _, body) = clerk.post("/ui/entry", &f).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    // The supervisor's home: the queue with the entry's age, and the count
    // in the menu.
    let (_, _, home) = boss.get("/ui").await;
    assert!(home.contains("id=\"queue\""), "{home}");
    assert!(home.contains("/ui/approvals/1"), "{home}");
    assert!(home.contains("class=\"age\">0分<"), "{home}");
    assert!(
        home.contains("審査・決裁 (A) <span class=\"count\">(1)</span>"),
        "{home}"
    );
    let (s, _, _) = boss
        .post(
            "/ui/approvals/1/decide",
            &[("action", "return"), ("comment", "方書が抜けています")],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // The clerk's home: the entry sent back, the reason, a way to redo it.
    let (_, _, home) = clerk.get("/ui").await;
    assert!(home.contains("id=\"returned-list\""), "{home}");
    assert!(home.contains("方書が抜けています"), "{home}");
    assert!(home.contains("href=\"/ui/entry?resubmit=1\""), "{home}");
    assert!(home.contains("id=\"menu-returned\""), "{home}");
    // Opened: the form as entered, the reason shown.
    let (s, _, form) = clerk.get("/ui/entry?resubmit=1").await;
    assert_eq!(s, StatusCode::OK, "{form}");
    assert!(
        form.contains("id=\"returned-reason\">方書が抜けています"),
        "{form}"
    );
    assert!(
        form.contains(&format!("value=\"{OTHER_ADDRESS}\"")),
        "{form}"
    );
    assert!(form.contains("name=\"resubmits\" value=\"1\""), "{form}");
    for p in &persons {
        assert!(
            form.contains(&format!("name=\"persons\" value=\"{p}\" checked")),
            "{p}: {form}"
        );
    }
    // Another clerk cannot take it over.
    staff(&db, FUCHU, "clerk2", Role::Clerk).await;
    let clerk2 = Session::login(&router, FUCHU, "clerk2").await;
    let (s, _, _) = clerk2.get("/ui/entry?resubmit=1").await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Edited and entered again: a new entry naming the returned one.
    let mut again = f.clone();
    again.push(("annex", "緑ハイツ101号室"));
    again.push(("resubmits", "1"));
    let (s, h, body) = clerk.post("/ui/entry", &again).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location(&h), "/ui/approvals/2?done=entered");
    let fuchu: MunicipalityCode = FUCHU.parse().unwrap();
    let p2 = db.registry.pending(&fuchu, 2).await.unwrap();
    assert_eq!(p2.resubmits, Some(1));
    let p1 = db.registry.pending(&fuchu, 1).await.unwrap();
    assert_eq!(p1.comment.as_deref(), Some("方書が抜けています"));
    // Once only; the home no longer lists it.
    let (s, _, body) = clerk.post("/ui/entry", &again).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(db.registry.pending(&fuchu, 3).await.is_err());
    let (_, _, home) = clerk.get("/ui").await;
    assert!(!home.contains("returned-list"), "{home}");
    // The supervisor approves the corrected entry.
    let (s, _, _) = boss
        .post("/ui/approvals/2/decide", &[("action", "approve")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, _, r) = clerk.get(&format!("/ui/residents/{}", persons[0])).await;
    assert!(r.contains("緑ハイツ101号室"), "{r}");
}

/// 国内転出 entered on the staff form (confirmation, then 仮登録, then the
/// supervisor's approval): the 郵便番号 typed with the destination is
/// kept in the move-out's destination, as the API keeps it, and shown
/// where the destination is shown (the confirmation, the person's page,
/// the API's record).
async fn a_move_out_keeps_the_destination_postal_code_entered_on_the_form(db: TestDb) {
    let db = db.with_tenants().await;
    staff(&db, FUCHU, "clerk", Role::Clerk).await;
    staff(&db, FUCHU, "boss", Role::Supervisor).await;
    let (persons, _) = families(&db).await;
    let router = app(&db).await;
    let clerk = Session::login(&router, FUCHU, "clerk").await;
    let boss = Session::login(&router, FUCHU, "boss").await;
    let destination = "東京都昭島市昭和町二丁目1番地";
    let fields: Vec<(&str, &str)> = vec![
        ("type", "move_out"),
        ("effective_date", "令和6年10月1日"),
        ("persons", persons[2].as_str()),
        ("address", destination),
        ("annex", "昭和荘202号室"),
        ("postal_code", "1960015"),
    ];
    let (s, _, confirm) = clerk.post("/ui/entry", &fields).await;
    assert_eq!(s, StatusCode::OK, "{confirm}");
    no_internals("the confirmation", &confirm);
    assert!(
        confirm.contains(&format!("{destination}　昭和荘202号室（〒196-0015）")),
        "the destination with its postal code: {confirm}"
    );
    let hidden = hidden_fields(&confirm);
    let mut pairs: Vec<(&str, &str)> = hidden
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("step", "enter"));
    let (s, h, body) = clerk.post("/ui/entry", &pairs).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location(&h), "/ui/approvals/1?done=entered");
    let (s, _, body) = boss
        .post("/ui/approvals/1/decide", &[("action", "approve")])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    // Stored in the move-out's destination.
    let fuchu: MunicipalityCode = FUCHU.parse().unwrap();
    let (row, _) = db
        .registry
        .resident(
            &fuchu,
            &persons[2].parse().unwrap(),
            machi_domain::change::AsOf::default(),
            &Actor::system("check"),
        )
        .await
        .unwrap();
    let removal = row.record.removal.expect("moved out");
    let dest = removal.destination.expect("a destination");
    assert_eq!(dest.address, destination);
    assert_eq!(dest.annex.as_deref(), Some("昭和荘202号室"));
    assert_eq!(
        dest.postal_code.map(|p| p.to_string()).as_deref(),
        Some("196-0015")
    );
    // Shown with the destination on the person's page.
    let (_, _, page) = clerk.get(&format!("/ui/residents/{}", persons[2])).await;
    assert!(
        page.contains(&format!(
            "<span id=\"destination-postal\">〒196-0015</span> {destination}"
        )),
        "{page}"
    );
    // And in the API's record, beside the destination.
    let v = serde_json::to_value(machi::api::views::ResidentView::new(
        &db.registry
            .resident(
                &fuchu,
                &persons[2].parse().unwrap(),
                machi_domain::change::AsOf::default(),
                &Actor::system("check"),
            )
            .await
            .unwrap()
            .0,
        db.registry.eras(),
    ))
    .unwrap();
    assert_eq!(v["removal"]["destination_postal_code"], "196-0015", "{v}");
}
