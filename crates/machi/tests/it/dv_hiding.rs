//! 支援措置 (j380, j410, j440): without a release, nobody can tell where a
//! protected person lives, with whom, or which member of a household is
//! the protected one: not through a search (name, reading, address exact,
//! prefix or contained, birth date, 世帯番号, 宛名番号, past names and
//! addresses, 除票), a list (changes, the linkage feed, the review queue),
//! a count, an error message or a change entry; in the staff UI (a clerk's
//! session) or the JSON API (an API client, and a staff session), on
//! SQLite and PostgreSQL. With a release for that operator and purpose,
//! exactly one request passes.
//!
//! The people: 若松 静 lives alone at 若松町九丁目9番9号; 緑川 花子 lives
//! with her husband and son at 緑町三丁目3番3号 緑ハイツ202 (her brother-in-law
//! 次郎 moved out from there). Both are protected, each by a measure of
//! their own. A neighbour lives in 緑ハイツ101 of the same building, and
//! another resident elsewhere.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use machi::service::Actor;
use machi_domain::access::Role;
use machi_domain::change::ChangeRequest;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::contract::counts;
use crate::support::{FUCHU, TestDb, code};

both_backends!(
    searches_lists_and_refusals_tell_nothing_without_a_release,
    change_entries_cannot_probe_a_protected_household,
    a_release_lets_exactly_one_request_through,
);

const PASSWORD: &str = "dv-Test-Password-2026";
const TENANT_API: &str = "/api/v1/tenants/132063";

const SOLO_ADDRESS: &str = "東京都府中市若松町九丁目9番9号";
const SOLO_OLD_ADDRESS: &str = "東京都府中市本町一丁目1番1号";
const FAMILY_ADDRESS: &str = "東京都府中市緑町三丁目3番3号";
const FAMILY_ANNEX: &str = "緑ハイツ202";
const FAMILY_OLD_ADDRESS: &str = "東京都府中市清水が丘二丁目2番2号";

/// Texts that must never appear in what a clerk without a release sees
/// about the protected persons: their addresses (now and before), their
/// annex. (The street address of the family, 緑町三丁目3番3号, is also the
/// neighbour's, who is not protected.)
const SECRET_TEXTS: [&str; 5] = [
    "若松町",
    "9番9号",
    "緑ハイツ202",
    "清水が丘",
    "本町一丁目1番1号",
];

// ---------------------------------------------------------------- plumbing

async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(String, String)],
    body: Option<(&str, String)>,
) -> (StatusCode, Vec<(String, String)>, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let body = match body {
        Some((content_type, b)) => {
            req = req.header(header::CONTENT_TYPE, content_type);
            Body::from(b)
        }
        None => Body::empty(),
    };
    let res = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn set_cookie(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with(&format!("{name}=")))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

fn field_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let i = html.find(&marker).expect("field") + marker.len();
    html[i..].split('"').next().unwrap().to_string()
}

/// A staff member signed in through the UI's login form.
#[derive(Clone)]
struct Staff {
    router: Router,
    cookie: String,
    csrf: String,
}

impl Staff {
    async fn sign_in(router: &Router, login: &str) -> Staff {
        let (_, h, page) = send(router, "GET", "/login", &[], None).await;
        let login_cookie = set_cookie(&h, "machi_login");
        let form = query(&[
            ("login_csrf", &field_value(&page, "login_csrf")),
            ("tenant", FUCHU),
            ("login", login),
            ("password", PASSWORD),
            ("terminal", "T-DV"),
        ]);
        let (s, h, body) = send(
            router,
            "POST",
            "/login",
            &[("cookie".into(), login_cookie)],
            Some(("application/x-www-form-urlencoded", form)),
        )
        .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
        let cookie = set_cookie(&h, "machi_session");
        let mut staff = Staff {
            router: router.clone(),

            cookie,
            csrf: String::new(),
        };
        let (_, _, home) = staff.get("/ui").await;
        staff.csrf = field_value(&home, "csrf");
        staff
    }

    async fn get(&self, uri: &str) -> (StatusCode, Vec<(String, String)>, String) {
        send(
            &self.router,
            "GET",
            uri,
            &[("cookie".into(), self.cookie.clone())],
            None,
        )
        .await
    }

    async fn post(&self, uri: &str, pairs: &[(&str, &str)]) -> (StatusCode, String) {
        let mut all: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        all.extend_from_slice(pairs);
        let (s, _, body) = send(
            &self.router,
            "POST",
            uri,
            &[("cookie".into(), self.cookie.clone())],
            Some(("application/x-www-form-urlencoded", query(&all))),
        )
        .await;
        (s, body)
    }

    /// The JSON API with this staff member's session.
    fn api(&self) -> Api {
        Api {
            router: self.router.clone(),
            headers: vec![
                ("cookie".into(), self.cookie.clone()),
                ("x-csrf-token".into(), self.csrf.clone()),
            ],
        }
    }
}

/// A caller of the JSON API.
struct Api {
    router: Router,
    headers: Vec<(String, String)>,
}

impl Api {
    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (s, _, body) = send(&self.router, "GET", uri, &self.headers, None).await;
        (
            s,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    async fn post(&self, uri: &str, v: Value) -> (StatusCode, Value) {
        let (s, _, body) = send(
            &self.router,
            "POST",
            uri,
            &self.headers,
            Some(("application/json", v.to_string())),
        )
        .await;
        (
            s,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

// ---------------------------------------------------------------- the world

struct World {
    db: TestDb,
    clerk: Staff,
    clerk2: Staff,
    officer: Staff,
    client: Api,
    client_id: String,
    solo: AddresseeNumber,
    solo_household: HouseholdNumber,
    /// head, wife (protected), son
    family: [AddresseeNumber; 3],
    /// The brother-in-law who moved out of the family's household.
    jiro: AddresseeNumber,
    family_household: HouseholdNumber,
    /// 緑ハイツ101: same building, another unit and household.
    neighbour: AddresseeNumber,
    neighbour_household: HouseholdNumber,
    /// Elsewhere.
    other: AddresseeNumber,
    /// Changes concerning the protected persons and those living with them.
    their_changes: Vec<i64>,
    pending_id: String,
    wife_measure: String,
    solo_measure: String,
}

impl World {
    fn wife(&self) -> &AddresseeNumber {
        &self.family[1]
    }

    /// Everyone a list may show only as restricted.
    fn covered(&self) -> Vec<&AddresseeNumber> {
        let mut v: Vec<&AddresseeNumber> = self.family.iter().collect();
        v.push(&self.jiro);
        v.push(&self.solo);
        v
    }
}

fn person(name: &str, kana: &str, birth: &str, sex: &str, rel: &str) -> Value {
    json!({"name": name, "name_kana": kana, "birth_date": birth, "sex": sex, "relationship": rel})
}

fn move_in(persons: Vec<Value>, address: &str, annex: Option<&str>) -> Value {
    let mut a = json!({"address": address, "postal_code": "183-0000"});
    if let Some(x) = annex {
        a["annex"] = json!(x);
    }
    json!({"effective_date": "2024-04-01", "filed_on": "2024-04-01", "input_place": "市民課窓口",
        "input_terminal": "T-01", "command": {"type": "move_in", "persons": persons,
        "previous_address": "東京都調布市小島町二丁目", "household": {"type": "new", "address": a}}})
}

async fn submit(db: &TestDb, v: Value) -> machi::service::registry::ChangeOutcome {
    let req: ChangeRequest = serde_json::from_value(v).unwrap();
    db.registry
        .submit(&code(FUCHU), &req, &Actor::system("setup"))
        .await
        .unwrap()
}

async fn account(db: &TestDb, login: &str, role: Role) {
    db.registry
        .create_account(
            Some(&code(FUCHU)),
            login,
            &format!("試験 {login}"),
            role,
            PASSWORD,
            &Actor::system("setup"),
        )
        .await
        .unwrap();
}

fn ids(v: &[&AddresseeNumber]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

async fn world(db: TestDb) -> World {
    let db = db.with_tenants().await;
    let mut theirs = vec![];
    // 若松 静: moved in at 本町, then to 若松町 alone.
    let out = submit(
        &db,
        move_in(
            vec![person(
                "若松　静",
                "ワカマツ　シズカ",
                "昭和60年6月6日",
                "female",
                "世帯主",
            )],
            SOLO_OLD_ADDRESS,
            None,
        ),
    )
    .await;
    theirs.push(out.change_id);
    let solo = out.rows[0].record.addressee_number.clone();
    let solo_household = out.rows[0].record.household_number.clone();
    let out = submit(
        &db,
        json!({"effective_date": "2024-07-01", "command": {"type": "move_within",
            "persons": [solo.to_string()], "address": {"address": SOLO_ADDRESS}}}),
    )
    .await;
    theirs.push(out.change_id);
    // The 緑川 family: four at 清水が丘, then to 緑町 緑ハイツ202; 次郎 moves out.
    let out = submit(
        &db,
        move_in(
            vec![
                person(
                    "緑川　一郎",
                    "ミドリカワ　イチロウ",
                    "1980-01-01",
                    "male",
                    "世帯主",
                ),
                person(
                    "緑川　花子",
                    "ミドリカワ　ハナコ",
                    "1982-02-02",
                    "female",
                    "妻",
                ),
                person("緑川　翼", "ミドリカワ　ツバサ", "2015-03-03", "male", "子"),
                person(
                    "緑川　次郎",
                    "ミドリカワ　ジロウ",
                    "1984-04-04",
                    "male",
                    "弟",
                ),
            ],
            FAMILY_OLD_ADDRESS,
            None,
        ),
    )
    .await;
    theirs.push(out.change_id);
    let members: Vec<AddresseeNumber> = out
        .rows
        .iter()
        .map(|r| r.record.addressee_number.clone())
        .collect();
    let family_household = out.rows[0].record.household_number.clone();
    let out = submit(
        &db,
        json!({"effective_date": "2024-07-01", "command": {"type": "move_within",
            "persons": ids(&members.iter().collect::<Vec<_>>()),
            "address": {"address": FAMILY_ADDRESS, "annex": FAMILY_ANNEX}}}),
    )
    .await;
    theirs.push(out.change_id);
    let out = submit(
        &db,
        json!({"effective_date": "2024-08-01", "command": {"type": "move_out",
            "persons": [members[3].to_string()], "destination": {"address": "東京都調布市布田一丁目"}}}),
    )
    .await;
    theirs.push(out.change_id);
    // The neighbour in 101, and someone elsewhere.
    let out = submit(
        &db,
        move_in(
            vec![person(
                "近所　一",
                "キンジョ　ハジメ",
                "1970-07-07",
                "male",
                "世帯主",
            )],
            FAMILY_ADDRESS,
            Some("緑ハイツ101"),
        ),
    )
    .await;
    let neighbour = out.rows[0].record.addressee_number.clone();
    let neighbour_household = out.rows[0].record.household_number.clone();
    let out = submit(
        &db,
        move_in(
            vec![person(
                "遠藤　二郎",
                "エンドウ　ジロウ",
                "1975-05-05",
                "male",
                "世帯主",
            )],
            "東京都府中市栄町一丁目1番1号",
            None,
        ),
    )
    .await;
    let other = out.rows[0].record.addressee_number.clone();

    for (login, role) in [
        ("clerk", Role::Clerk),
        ("clerk2", Role::Clerk),
        ("officer", Role::SupportOfficer),
    ] {
        account(&db, login, role).await;
    }
    db.registry
        .set_issuer(
            &code(FUCHU),
            "府中市長",
            "架空　太一",
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let router = api::app(AppState {
        registry: db.registry.clone(),
    });
    let scopes = "dv:residents:read dv:changes:read dv:changes:write dv:events:read";
    let (client_id, secret) = db
        .registry
        .create_client(&code(FUCHU), "dv", scopes, &Actor::system("setup"))
        .await
        .unwrap();
    let (s, _, body) = send(
        &router,
        "POST",
        "/oauth/token",
        &[],
        Some((
            "application/x-www-form-urlencoded",
            query(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ]),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let client = Api {
        router: router.clone(),
        headers: vec![(
            "authorization".into(),
            format!("Bearer {}", token["access_token"].as_str().unwrap()),
        )],
    };
    let clerk = Staff::sign_in(&router, "clerk").await;
    let clerk2 = Staff::sign_in(&router, "clerk2").await;
    let officer = Staff::sign_in(&router, "officer").await;

    // Before the measure, a clerk entered a correction for the wife, pending.
    let (s, body) = clerk
        .post(
            "/ui/entry",
            &[
                ("type", "ex_officio_correction"),
                ("step", "enter"),
                ("effective_date", "2024-09-01"),
                ("person", members[1].as_str()),
                ("patch_address_annex", "緑ハイツ202号室"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let pending_id = "1".to_string();

    // The measures: the wife's, and 若松 静's.
    let register = |person: AddresseeNumber| {
        let officer = officer.clone();
        async move {
            let (s, _, _) = send(
                &officer.router,
                "POST",
                "/ui/support/new",
                &[("cookie".into(), officer.cookie.clone())],
                Some((
                    "application/x-www-form-urlencoded",
                    query(&[
                        ("csrf", &officer.csrf),
                        ("requester", person.as_str()),
                        ("filed_on", "2026-11-01"),
                        ("affair_copy", "1"),
                    ]),
                )),
            )
            .await;
            assert_eq!(s, StatusCode::SEE_OTHER);
        }
    };
    register(members[1].clone()).await;
    register(solo.clone()).await;

    World {
        db,
        clerk,
        clerk2,
        officer,
        client,
        client_id,
        solo,
        solo_household,
        family: [members[0].clone(), members[1].clone(), members[2].clone()],
        jiro: members[3].clone(),
        family_household,
        neighbour,
        neighbour_household,
        other,
        their_changes: theirs,
        pending_id,
        wife_measure: "1".into(),
        solo_measure: "2".into(),
    }
}

// ---------------------------------------------------------------- probes

/// The search results as the UI shows them: the page from its results
/// heading on (the form above echoes the query).
async fn ui_search(staff: &Staff, pairs: &[(&str, &str)]) -> String {
    let (s, _, page) = staff.get(&format!("/ui/search?{}", query(pairs))).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let i = page
        .find("<h2>")
        .unwrap_or_else(|| panic!("no results: {page}"));
    page[i..].to_string()
}

/// The search results as the API returns them.
async fn api_search(api: &Api, pairs: &[(&str, &str)]) -> Value {
    let (s, v) = api
        .get(&format!("{TENANT_API}/search?{}", query(pairs)))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["results"].clone()
}

fn addressees(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["addressee_number"].as_str().unwrap().to_string())
        .collect()
}

/// The flag combinations of a search (j340: past names and addresses, 除票).
const FLAGS: [&[(&str, &str)]; 4] = [
    &[],
    &[("include_history", "true")],
    &[("include_removed", "true")],
    &[("include_history", "true"), ("include_removed", "true")],
];

/// The UI's checkboxes send `1`; the API takes `true`.
fn ui_flags(flags: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    flags.iter().map(|(k, _)| (*k, "1")).collect()
}

/// Runs one search both ways (UI as the clerk, API as the client and as
/// the clerk's session) for the real and the wrong value of `field`, with
/// `extra` conditions, under every flag combination: the answers must be
/// the same, and name none of the covered persons.
async fn same_for_real_and_wrong(
    w: &World,
    field: &str,
    real: &str,
    wrong: &str,
    extra: &[(&str, &str)],
) {
    for flags in FLAGS {
        let ask = |value: &str, flags: &[(&'static str, &'static str)]| -> Vec<(String, String)> {
            let mut pairs: Vec<(String, String)> = extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            pairs.push((field.to_string(), value.to_string()));
            pairs.extend(flags.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            pairs
        };
        let uf = ui_flags(flags);
        let (r, g) = (ask(real, &uf), ask(wrong, &uf));
        let ui_real = ui_search(&w.clerk, &borrowed(&r)).await;
        let ui_wrong = ui_search(&w.clerk, &borrowed(&g)).await;
        assert_eq!(
            ui_real, ui_wrong,
            "UI: {field}={real} vs {wrong} {extra:?} {flags:?} tells them apart"
        );
        no_secrets("UI search", &ui_real, w);
        let (r, g) = (ask(real, flags), ask(wrong, flags));
        for api in [&w.client, &w.clerk.api()] {
            let a = api_search(api, &borrowed(&r)).await;
            let b = api_search(api, &borrowed(&g)).await;
            assert_eq!(
                a, b,
                "API: {field}={real} vs {wrong} {extra:?} {flags:?} tells them apart"
            );
            for covered in w.covered() {
                assert!(!addressees(&a).contains(&covered.to_string()), "{a}");
            }
        }
    }
}

fn borrowed(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// No address of theirs, and no link to their households, in `text`.
fn no_secrets(what: &str, text: &str, w: &World) {
    for s in SECRET_TEXTS {
        assert!(!text.contains(s), "{what} shows {s:?}: {text}");
    }
    for h in [&w.family_household, &w.solo_household] {
        assert!(
            !text.contains(&format!("/ui/households/{h}")),
            "{what} links household {h}: {text}"
        );
    }
}

/// No field of `v`, at any depth, names one of their households.
fn no_household(what: &str, v: &Value, w: &World) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k.contains("household")
                    && let Some(h) = x.as_str()
                {
                    assert!(
                        h != w.family_household.as_str() && h != w.solo_household.as_str(),
                        "{what}: {k} = {h}"
                    );
                }
                no_household(what, x, w);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| no_household(what, x, w)),
        _ => {}
    }
}

/// The keys of a restricted entry: who they are, and the notice.
const RESTRICTED_KEYS: [&str; 13] = [
    "addressee_number",
    "alphabet_name",
    "birth_date",
    "kind",
    "name",
    "name_kana",
    "notice_en",
    "notice_ja",
    "sex",
    "sex_label_ja",
    "status",
    "status_label_ja",
    "support_measure",
];

/// A restricted entry without the person's own identity: what must be the
/// same for every member of a protected household.
fn shape(entry: &Value) -> Value {
    let mut keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, RESTRICTED_KEYS.to_vec(), "{entry}");
    let mut e = entry.clone();
    for k in [
        "addressee_number",
        "alphabet_name",
        "birth_date",
        "name",
        "name_kana",
        "sex",
        "sex_label_ja",
    ] {
        e.as_object_mut().unwrap().remove(k);
    }
    e
}

/// A UI refusal page without the part naming what was asked for
/// ("宛名番号 …：", "世帯番号 …：", "異動 …："), which the staff member
/// typed or clicked themselves.
fn refusal(page: &str, uri: &str) -> String {
    let mut parts = uri.trim_start_matches("/ui/").split(['/', '?']);
    let (kind, number) = (parts.next().unwrap(), parts.next().unwrap());
    let label = match kind {
        "residents" => "宛名番号",
        "households" => "世帯番号",
        "changes" => "異動",
        _ => return page.to_string(),
    };
    let prefix = format!("{label} {number}：");
    assert!(page.contains(&prefix), "{page}");
    page.replace(&prefix, "")
}

// ---------------------------------------------------------------- tests

async fn searches_lists_and_refusals_tell_nothing_without_a_release(db: TestDb) {
    let w = world(db).await;

    // 1. Address, exact, prefix, contained, with or without the annex, now
    //    and before (include_history), 除票 included: the real address
    //    answers exactly as a wrong guess.
    for (real, wrong) in [
        (SOLO_ADDRESS, "東京都府中市若松町九丁目9番8号"),
        ("若松町九丁目9番9号", "若松町九丁目9番8号"),
        ("九丁目9番9", "九丁目9番8"),
        ("東京都府中市若松町九丁目", "東京都府中市若松町八丁目"),
        ("東京都府中市若松町", "東京都府中市若葉町"),
        (SOLO_OLD_ADDRESS, "東京都府中市本町一丁目1番2号"),
        (
            "緑町三丁目3番3号　緑ハイツ202",
            "緑町三丁目3番3号　緑ハイツ203",
        ),
        ("緑ハイツ202", "緑ハイツ203"),
        ("ハイツ20", "ハイツ30"),
        (FAMILY_OLD_ADDRESS, "東京都府中市清水が丘二丁目2番3号"),
        ("清水が丘", "清水ヶ岡"),
        // One and two characters (the address and history grams,
        // migration 28): only the protected live or lived there.
        ("若松", "若葉"),
        ("松", "葉"),
        ("9番", "8番"),
        ("9", "8"),
        ("清水", "清氷"),
        ("丘", "岡"),
    ] {
        same_for_real_and_wrong(&w, "address", real, wrong, &[]).await;
        same_for_real_and_wrong(&w, "address", real, wrong, &[("name", "若松")]).await;
        same_for_real_and_wrong(&w, "address", real, wrong, &[("name", "緑川")]).await;
        same_for_real_and_wrong(&w, "address", real, wrong, &[("name", "ミドリカワ")]).await;
        same_for_real_and_wrong(&w, "address", real, wrong, &[("birth_date", "1982-02-02")]).await;
        same_for_real_and_wrong(
            &w,
            "address",
            real,
            wrong,
            &[("addressee_number", w.wife().as_str())],
        )
        .await;
    }
    // A shared building: the neighbour in 101 is found, none of the family.
    for flags in FLAGS {
        let mut pairs = vec![("address", FAMILY_ADDRESS)];
        pairs.extend(flags.iter().copied());
        for api in [&w.client, &w.clerk.api()] {
            let found = api_search(api, &pairs).await;
            assert_eq!(addressees(&found), vec![w.neighbour.to_string()], "{found}");
        }
        let mut pairs = vec![("address", FAMILY_ADDRESS)];
        pairs.extend(ui_flags(flags));
        let page = ui_search(&w.clerk, &pairs).await;
        assert!(
            page.contains(w.neighbour.as_str()) && page.contains("(1)"),
            "{page}"
        );
        no_secrets("UI search of the building", &page, &w);
    }

    // 2. 世帯番号: theirs answers as a household that does not exist.
    let nobody = HouseholdNumber::from_serial(9_999).unwrap().to_string();
    for h in [&w.family_household, &w.solo_household] {
        same_for_real_and_wrong(&w, "household_number", h.as_str(), &nobody, &[]).await;
        same_for_real_and_wrong(
            &w,
            "household_number",
            h.as_str(),
            &nobody,
            &[("name", "緑川")],
        )
        .await;
    }
    // The neighbour's household is found as usual (the probe can see).
    let found = api_search(
        &w.client,
        &[("household_number", w.neighbour_household.as_str())],
    )
    .await;
    assert_eq!(addressees(&found), vec![w.neighbour.to_string()]);

    // 3. Who they are (name, reading, birth date, 宛名番号): found, marked,
    //    restricted alike: nothing of where or with whom, nothing that
    //    tells the protected member from the others.
    let probes: Vec<Vec<(&str, &str)>> = vec![
        vec![("name", "緑川")],
        vec![("name", "ミドリカワ")],
        vec![("name", "みどりかわ")],
        vec![("name", "花子")],
        vec![("name", "緑川"), ("birth_date", "1982-02-02")],
        vec![("birth_date", "昭和57年2月2日")],
        vec![("addressee_number", w.wife().as_str())],
        vec![("addressee_number", w.family[0].as_str())],
        vec![("name", "若松")],
        vec![("name", "ワカマツ")],
        vec![("birth_date", "昭和60年6月6日")],
        vec![("addressee_number", w.solo.as_str())],
    ];
    for base in &probes {
        for flags in FLAGS {
            let mut pairs = base.clone();
            pairs.extend(flags.iter().copied());
            for api in [&w.client, &w.clerk.api()] {
                let found = api_search(api, &pairs).await;
                assert!(!addressees(&found).is_empty(), "{pairs:?}: nobody found");
                no_secrets("API search by identity", &found.to_string(), &w);
                no_household("API search by identity", &found, &w);
                let mut shapes = vec![];
                for entry in found.as_array().unwrap() {
                    let a = entry["addressee_number"].as_str().unwrap();
                    if w.covered().iter().any(|c| c.as_str() == a) {
                        assert_eq!(entry["support_measure"], "restricted", "{entry}");
                        if entry["status"] == "resident" {
                            shapes.push(shape(entry));
                        }
                    }
                }
                assert!(!shapes.is_empty(), "{pairs:?}: {found}");
                assert!(
                    shapes.windows(2).all(|p| p[0] == p[1]),
                    "{pairs:?}: the entries differ: {shapes:?}"
                );
            }
            let mut ui = base.clone();
            ui.extend(ui_flags(flags));
            let page = ui_search(&w.clerk, &ui).await;
            no_secrets("UI search by identity", &page, &w);
            assert!(
                page.contains("支援措置対象：閲覧には解除が必要です"),
                "{page}"
            );
        }
    }
    // The whole family by name, 除票 included: four alike, 次郎 too.
    let found = api_search(&w.client, &[("name", "緑川"), ("include_removed", "true")]).await;
    let mut all = addressees(&found);
    all.sort();
    let mut expected = ids(&[&w.family[0], &w.family[1], &w.family[2], &w.jiro]);
    expected.sort();
    assert_eq!(all, expected);
    let rows: Vec<String> = {
        let page = ui_search(&w.clerk, &[("name", "緑川"), ("include_removed", "1")]).await;
        page.split("<tr")
            .filter(|r| r.contains("/ui/residents/"))
            .map(|r| r.to_string())
            .collect()
    };
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r.contains("class=\"restricted\"")),
        "{rows:?}"
    );

    // 4. Their records, histories and households: one refusal, the same
    //    for each of them, naming nobody.
    let mut api_refusals = vec![];
    let mut ui_refusals = vec![];
    let mut asked: Vec<(String, String)> = vec![];
    for a in w.covered() {
        // Before they were recorded too: "not recorded then" would date
        // their arrival.
        for suffix in ["", "/history", "?as_of=2024-05-01", "?as_of=2024-03-01"] {
            asked.push((
                format!("{TENANT_API}/residents/{a}{suffix}"),
                format!(
                    "/ui/residents/{a}{}",
                    if suffix == "/history" { "" } else { suffix }
                ),
            ));
        }
    }
    for h in [&w.family_household, &w.solo_household] {
        for suffix in ["", "?as_of=2024-05-01", "?as_of=2024-03-01"] {
            asked.push((
                format!("{TENANT_API}/households/{h}{suffix}"),
                format!("/ui/households/{h}{suffix}"),
            ));
        }
    }
    for id in &w.their_changes {
        asked.push((
            format!("{TENANT_API}/changes/{id}"),
            format!("/ui/changes/{id}"),
        ));
    }
    asked.push((String::new(), format!("/ui/approvals/{}", w.pending_id)));
    for (api_uri, ui_uri) in &asked {
        if !api_uri.is_empty() {
            for api in [&w.client, &w.clerk.api()] {
                let (s, v) = api.get(api_uri).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{api_uri}: {v}");
                api_refusals.push(v);
            }
        }
        let (s, _, page) = w.clerk.get(ui_uri).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{ui_uri}: {page}");
        no_secrets(ui_uri, &page, &w);
        ui_refusals.push(refusal(&page, ui_uri));
    }
    assert!(
        api_refusals.windows(2).all(|p| p[0] == p[1]),
        "{api_refusals:?}"
    );
    assert_eq!(api_refusals[0]["code"], "support_measure_block");
    let text = api_refusals[0].to_string();
    for a in w.covered() {
        assert!(!text.contains(a.as_str()), "{text}");
    }
    // Records, households, changes and the queue entry: one page, once
    // what was asked for is set aside; never who is protected.
    assert!(
        ui_refusals.windows(2).all(|p| p[0] == p[1]),
        "{ui_refusals:?}"
    );
    for name in ["緑川", "若松", "花子", "静"] {
        assert!(!ui_refusals[0].contains(name), "{}", ui_refusals[0]);
    }
    // Certificates: the same refusal for each member, whoever is protected.
    let mut cert = vec![];
    for a in w.covered() {
        for scope in ["person", "household"] {
            let (s, body) = w
                .clerk
                .post(
                    "/ui/certificates",
                    &[
                        ("person", a.as_str()),
                        ("kind", "resident_copy"),
                        ("scope", scope),
                    ],
                )
                .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
            no_secrets("certificate refusal", &body, &w);
            let i = body.find("class=\"error\"").unwrap();
            cert.push(body[i..].split("</p>").next().unwrap().to_string());
        }
    }
    assert!(cert.windows(2).all(|p| p[0] == p[1]), "{cert:?}");

    // 5. Lists: the changes and the linkage feed withhold theirs alike; the
    //    review queue shows no names.
    for api in [&w.client, &w.clerk.api()] {
        let (s, v) = api.get(&format!("{TENANT_API}/changes?limit=200")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        no_secrets("the change list", &v.to_string(), &w);
        no_household("the change list", &v, &w);
        let mut withheld = vec![];
        for c in v["changes"].as_array().unwrap() {
            if c.get("withheld").is_some() {
                let mut c = c.clone();
                assert!(w.their_changes.contains(&c["change_id"].as_i64().unwrap()));
                c.as_object_mut().unwrap().remove("change_id");
                withheld.push(c);
            } else {
                for p in c["persons"].as_array().unwrap() {
                    assert!(!w.covered().iter().any(|a| a.as_str() == p), "{c}");
                }
            }
        }
        assert_eq!(withheld.len(), w.their_changes.len());
        assert!(withheld.windows(2).all(|p| p[0] == p[1]), "{withheld:?}");

        let (s, v) = api.get(&format!("{TENANT_API}/events?limit=1000")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        no_secrets("the linkage feed", &v.to_string(), &w);
        no_household("the linkage feed", &v, &w);
        let mut withheld = vec![];
        for e in v["events"].as_array().unwrap() {
            for p in e["data"]["persons"].as_array().into_iter().flatten() {
                let a = p["addressee_number"].as_str().unwrap();
                assert!(!w.covered().iter().any(|c| c.as_str() == a), "{e}");
            }
            if e["data"].get("withheld").is_some() {
                let mut p = e["data"].clone();
                p.as_object_mut().unwrap().remove("change_id");
                withheld.push(p);
            }
        }
        assert_eq!(withheld.len(), w.their_changes.len());
        assert!(withheld.windows(2).all(|p| p[0] == p[1]));
    }
    let (s, _, queue) = w.clerk2.get("/ui/approvals").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !queue.contains("緑川") && !queue.contains("ハイツ"),
        "{queue}"
    );

    // 6. The probes can see: once the measures end, the same searches tell
    //    the real address and household from a wrong guess, and show them.
    for (id, action) in [(&w.wife_measure, "cancel"), (&w.solo_measure, "cancel")] {
        let (s, body) = w
            .officer
            .post(&format!("/ui/support/{id}/act"), &[("action", action)])
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    }
    let real = api_search(&w.client, &[("address", "若松町九丁目9番9号")]).await;
    let wrong = api_search(&w.client, &[("address", "若松町九丁目9番8号")]).await;
    assert_ne!(real, wrong);
    assert_eq!(addressees(&real), vec![w.solo.to_string()]);
    let real = api_search(
        &w.client,
        &[("household_number", w.family_household.as_str())],
    )
    .await;
    assert_eq!(real.as_array().unwrap().len(), 3);
    assert!(real.to_string().contains("緑ハイツ202"));
    let (s, _) = w
        .client
        .get(&format!("{TENANT_API}/households/{}", w.family_household))
        .await;
    assert_eq!(s, StatusCode::OK);
    let page = ui_search(&w.clerk, &[("name", "緑川")]).await;
    assert!(page.contains("緑ハイツ202"), "{page}");
    let _ = &w.other;
}

async fn change_entries_cannot_probe_a_protected_household(db: TestDb) {
    let w = world(db).await;
    let before = counts(&w.db.store, FUCHU).await;
    let h = w.family_household.to_string();
    // Would the neighbour (same street address, 101) fit into their
    // household, or the resident elsewhere? Validation would tell (世帯変更
    // needs the same address); it must not run.
    let transfer = |who: &AddresseeNumber| {
        json!({"effective_date": "2024-10-01", "command": {"type": "household_transfer",
            "into_household": h, "relationships": [{"addressee_number": who.to_string(), "relationship": "同居人"}]}})
    };
    let entries = [
        transfer(&w.neighbour),
        transfer(&w.other),
        json!({"effective_date": "2024-10-01", "command": {"type": "head_change",
            "household_number": h, "new_head": w.wife().to_string(),
            "relationships": [{"addressee_number": w.family[0].to_string(), "relationship": "夫"}]}}),
        json!({"effective_date": "2024-10-01", "command": {"type": "head_change",
            "household_number": h, "new_head": w.neighbour.to_string(), "relationships": []}}),
        json!({"effective_date": "2024-10-01", "command": {"type": "birth",
            "household_number": h, "person": person("緑川　空", "ミドリカワ　ソラ", "2024-09-30", "female", "子")}}),
        json!({"effective_date": "2024-10-01", "command": {"type": "move_within",
            "persons": [w.family[0].to_string()], "address": {"address": "東京都府中市栄町一丁目1番1号"}}}),
        json!({"effective_date": "2024-10-01", "command": {"type": "cancel", "change_id": w.their_changes[3]}}),
    ];
    let mut refusals = vec![];
    for e in &entries {
        let (s, v) = w
            .client
            .post(&format!("{TENANT_API}/changes"), e.clone())
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{e}: {v}");
        refusals.push(v);
    }
    assert!(refusals.windows(2).all(|p| p[0] == p[1]), "{refusals:?}");
    // The clerk's entry form, the same.
    let ui_entries: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("type", "household_transfer".into()),
            ("into_household", h.clone()),
            ("relationships", format!("{} 同居人", w.neighbour)),
        ],
        vec![
            ("type", "household_transfer".into()),
            ("into_household", h.clone()),
            ("relationships", format!("{} 同居人", w.other)),
        ],
        vec![
            ("type", "head_change".into()),
            ("household_number", h.clone()),
            ("new_head", w.wife().to_string()),
        ],
        vec![
            ("type", "move_within".into()),
            ("persons", w.family[2].to_string()),
            ("address", "東京都府中市栄町一丁目1番1号".into()),
        ],
    ];
    let mut pages = vec![];
    for e in &ui_entries {
        let mut pairs: Vec<(&str, &str)> = vec![("effective_date", "2024-10-01")];
        pairs.extend(e.iter().map(|(k, v)| (*k, v.as_str())));
        let (s, page) = w.clerk.post("/ui/entry", &pairs).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{pairs:?}: {page}");
        no_secrets("an entry refusal", &page, &w);
        pages.push(page);
    }
    assert!(pages.windows(2).all(|p| p[0] == p[1]));
    // Nothing was written but the refusals' log entries.
    let after = counts(&w.db.store, FUCHU).await;
    assert_eq!((after.0, after.1, after.3), (before.0, before.1, before.3));

    // Without the shield the probe would answer: the neighbour fits, the
    // other does not (shown on the neighbour's own household, unprotected).
    let (s, v) = w
        .client
        .post(
            &format!("{TENANT_API}/changes"),
            json!({"effective_date": "2024-10-01", "command": {"type": "household_transfer",
                "into_household": w.neighbour_household.to_string(),
                "relationships": [{"addressee_number": w.other.to_string(), "relationship": "同居人"}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // With a release of viewing for the clerk: one entry passes, the next not.
    let (s, body) = w
        .officer
        .post(
            &format!("/ui/support/{}/act", w.wife_measure),
            &[
                ("action", "release"),
                ("person", w.wife().as_str()),
                ("purpose", "view"),
                ("for_operator", "clerk"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let pairs = [
        ("type", "ex_officio_correction"),
        ("step", "enter"),
        ("effective_date", "2024-10-01"),
        ("person", w.family[0].as_str()),
        ("patch_address_annex", "緑ハイツ202号室"),
    ];
    let (s, page) = w.clerk.post("/ui/entry", &pairs).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{page}");
    let (s, page) = w.clerk.post("/ui/entry", &pairs).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(page, pages[0], "the same refusal as before");
}

async fn a_release_lets_exactly_one_request_through(db: TestDb) {
    let w = world(db).await;
    let release = |person: &AddresseeNumber, measure: &str, purpose: &str, operator: &str| {
        let (officer, person, measure, purpose, operator) = (
            w.officer.clone(),
            person.to_string(),
            measure.to_string(),
            purpose.to_string(),
            operator.to_string(),
        );
        async move {
            let (s, body) = officer
                .post(
                    &format!("/ui/support/{measure}/act"),
                    &[
                        ("action", "release"),
                        ("person", &person),
                        ("purpose", &purpose),
                        ("for_operator", &operator),
                    ],
                )
                .await;
            assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
        }
    };
    // Releases for someone else, or for issuing, do not open viewing.
    release(w.wife(), &w.wife_measure, "view", "clerk2").await;
    release(w.wife(), &w.wife_measure, "issue", "clerk").await;
    for uri in [
        format!("/ui/residents/{}", w.wife()),
        format!("/ui/households/{}", w.family_household),
    ] {
        let (s, _, _) = w.clerk.get(&uri).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}");
    }
    // One release of the wife for the clerk: exactly one request about her
    // household passes, whichever member or page it is, then none.
    for uri in [
        format!("/ui/households/{}", w.family_household),
        format!("/ui/residents/{}", w.family[0]),
        format!("/ui/residents/{}", w.wife()),
        format!("/ui/residents/{}", w.family[2]),
    ] {
        release(w.wife(), &w.wife_measure, "view", "clerk").await;
        let (s, _, page) = w.clerk.get(&uri).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {page}");
        assert!(page.contains("緑町三丁目3番3号"), "{uri}: {page}");
        let (s, _, page) = w.clerk.get(&uri).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {page}");
        assert!(!page.contains("緑町"), "{page}");
    }
    // The same through the API, for the client.
    let operator = format!("client:{}", w.client_id);
    release(&w.solo, &w.solo_measure, "view", &operator).await;
    let uri = format!("{TENANT_API}/residents/{}", w.solo);
    let (s, v) = w.client.get(&uri).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["record"]["address"], SOLO_ADDRESS);
    assert_eq!(v["record"]["support_measure"], "provisional");
    let (s, v) = w.client.get(&uri).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // A release does not open the lists: searches stay restricted.
    release(&w.solo, &w.solo_measure, "view", &operator).await;
    let found = api_search(&w.client, &[("address", SOLO_ADDRESS)]).await;
    assert_eq!(found, json!([]));
    let (s, v) = w.client.get(&uri).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the release was not used by the search: {v}"
    );
    // The clerk2's release is still unused: it serves clerk2 once.
    let (s, _, _) = w
        .clerk2
        .get(&format!("/ui/residents/{}", w.family[2]))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = w
        .clerk2
        .get(&format!("/ui/residents/{}", w.family[2]))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
