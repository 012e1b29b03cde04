//! File linkage: full and difference extracts with their manifest and
//! checksums, to object storage (object_store's in-memory store stands in
//! for S3: the same trait the S3 client implements; no network) and to a
//! directory; resumable by event sequence (an extract without its manifest
//! is redone); the schedule's choice of full or difference.

use std::sync::Arc;

use machi::linkage::{self, CHECKSUMS_FILE, Kind, LINKAGE_MANIFEST, LinkageManifest};
use machi::service::Actor;
use machi_domain::change::ChangeRequest;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use crate::contract::takahashi_family;
use crate::support::{AKISHIMA, FUCHU, TestDb, code};

both_backends!(
    full_then_difference_extracts_add_up_to_the_next_full_one,
    an_extract_without_its_manifest_is_redone,
    a_difference_without_an_earlier_extract_is_refused,
    the_schedule_writes_full_then_differences_only_when_events_came,
    the_tenant_administrator_makes_an_extract_through_the_api,
    a_tenant_schedule_runs_daily_at_its_time_and_the_default_otherwise,
    the_tenant_administrator_sets_the_schedule_on_the_admin_page,
    several_times_on_chosen_days_each_slot_once_across_restarts,
    the_schedule_picks_up_a_tenant_created_after_it_started,
    two_schedulers_on_one_database_run_each_slot_once,
    a_claim_left_by_a_killed_run_is_taken_over_after_its_lease,
    a_run_whose_claim_was_taken_never_writes_its_manifest,
    an_on_demand_extract_is_refused_while_another_extract_of_the_tenant_runs,
    an_extract_flags_support_measures_and_has_my_number_only_when_asked,
    the_administrator_makes_an_extract_on_the_admin_page_and_sees_the_past_ones,
    no_record_of_the_support_officer_reaches_an_extract,
    the_server_wide_schedule_includes_my_number_only_when_set,
    a_vendor_client_asks_for_an_extract_with_its_own_scopes,
    no_issuing_clerk_or_terminal_reaches_an_extract,
);

async fn change(db: &TestDb) -> i64 {
    let req: ChangeRequest = serde_json::from_value(takahashi_family()).unwrap();
    db.registry
        .submit(&code(FUCHU), &req, &Actor::system("clerk"))
        .await
        .unwrap()
        .event_seq
}

async fn read(store: &dyn ObjectStore, path: &str) -> Vec<u8> {
    store
        .get(&ObjectPath::parse(path).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Every file at the target matches the manifest and SHA256SUMS.
async fn assert_checksums(store: &dyn ObjectStore, m: &LinkageManifest) {
    let sums =
        String::from_utf8(read(store, &format!("{}/{CHECKSUMS_FILE}", m.folder)).await).unwrap();
    assert_eq!(sums.lines().count(), m.files.len());
    for f in &m.files {
        let data = read(store, &format!("{}/{}", m.folder, f.name)).await;
        assert_eq!(data.len() as u64, f.bytes, "{}", f.name);
        let digest = hex::encode(Sha256::digest(&data));
        assert_eq!(digest, f.sha256, "{}", f.name);
        assert!(sums.contains(&format!("{digest}  {}", f.name)), "{sums}");
        if f.name.ends_with(".csv") {
            // Rows: lines after the header.
            let lines = data
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64;
            assert_eq!(lines - 1, f.rows, "{}", f.name);
        }
    }
    // The manifest at the target is the one returned.
    let stored: LinkageManifest =
        serde_json::from_slice(&read(store, &format!("{}/{LINKAGE_MANIFEST}", m.folder)).await)
            .unwrap();
    assert_eq!(&stored, m);
}

fn rows(m: &LinkageManifest, name: &str) -> u64 {
    m.files
        .iter()
        .find(|f| f.name == name)
        .map_or(0, |f| f.rows)
}

async fn full_then_difference_extracts_add_up_to_the_next_full_one(db: TestDb) {
    let db = db.with_tenants().await;
    let store = InMemory::new();
    let prefix = ObjectPath::parse("linkage").unwrap();
    let actor = Actor::system("test");
    let first = change(&db).await;
    let full = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!(
        (full.kind, full.from_seq, full.to_seq),
        (Kind::Full, 0, first)
    );
    assert_eq!(full.tenant, FUCHU);
    assert!(full.folder.starts_with(&format!("linkage/{FUCHU}/")));
    assert!(rows(&full, "residents.csv") > 0);
    assert!(full.files.iter().any(|f| f.name == "households.csv"));
    assert_checksums(&store, &full).await;

    change(&db).await;
    let last = change(&db).await;
    let diff = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Diff,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!(
        (diff.kind, diff.from_seq, diff.to_seq),
        (Kind::Diff, first, last)
    );
    assert!(!diff.files.iter().any(|f| f.name == "households.csv"));
    assert_checksums(&store, &diff).await;
    // Nothing lost, nothing twice: full + difference = a new full extract.
    let full2 = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!(
        rows(&full2, "residents.csv"),
        rows(&full, "residents.csv") + rows(&diff, "residents.csv")
    );
    // A difference with no new event is empty, and says so by its range.
    let empty = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Diff,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!((empty.from_seq, empty.to_seq), (last, last));
    assert_eq!(rows(&empty, "residents.csv"), 0);
}

async fn an_extract_without_its_manifest_is_redone(db: TestDb) {
    let db = db.with_tenants().await;
    let dir = tempfile::tempdir().unwrap();
    let (store, prefix) = linkage::open_target(dir.path().to_str().unwrap()).unwrap();
    let actor = Actor::system("test");
    let first = change(&db).await;
    let full = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        store.as_ref(),
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert!(
        dir.path()
            .join(&full.folder)
            .join(LINKAGE_MANIFEST)
            .is_file()
    );
    let second = change(&db).await;
    // A run that died mid-write: files of a later extract, no manifest.
    let dead = format!("{FUCHU}/{second:012}-diff");
    store
        .put(
            &ObjectPath::parse(format!("{dead}/residents.csv")).unwrap(),
            bytes::Bytes::from_static(b"truncated").into(),
        )
        .await
        .unwrap();
    let base = linkage::last_complete(store.as_ref(), &prefix, &code(FUCHU))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(base.to_seq, first, "the unfinished one is not a base");
    // The next run starts where the last complete one ended and finishes.
    let diff = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Diff,
        store.as_ref(),
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!((diff.from_seq, diff.to_seq), (first, second));
    assert_eq!(diff.folder, dead);
    assert!(rows(&diff, "residents.csv") > 0);
    assert_checksums(store.as_ref(), &diff).await;
    let on_disk = std::fs::read_to_string(dir.path().join(&dead).join("residents.csv")).unwrap();
    assert!(
        on_disk.contains("髙橋"),
        "rewritten, not the truncated file"
    );
}

async fn a_difference_without_an_earlier_extract_is_refused(db: TestDb) {
    let db = db.with_tenants().await;
    let store = InMemory::new();
    change(&db).await;
    let e = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Diff,
        &store,
        &ObjectPath::default(),
        &Actor::system("test"),
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("full extract first"), "{text}");
    assert!(text.contains("全件抽出"), "{text}");
    // Nothing was written.
    let listing = store.list_with_delimiter(None).await.unwrap();
    assert!(listing.objects.is_empty() && listing.common_prefixes.is_empty());
    // A bad kind or target: clear errors.
    let k = "weekly".parse::<Kind>().unwrap_err();
    assert!(k.contains("full") && k.contains("差分"), "{k}");
    let t = linkage::open_target("ftp://example/x")
        .err()
        .unwrap()
        .to_string();
    assert!(t.contains("s3://") && t.contains("出力先"), "{t}");
}

async fn the_schedule_writes_full_then_differences_only_when_events_came(db: TestDb) {
    let db = db.with_tenants().await;
    let store = Arc::new(InMemory::new());
    let prefix = ObjectPath::default();
    let first = change(&db).await;
    let m = linkage::scheduled(&db.registry, &code(FUCHU), store.as_ref(), &prefix)
        .await
        .unwrap()
        .expect("a first run");
    assert_eq!((m.kind, m.to_seq), (Kind::Full, first));
    // No event since: nothing written.
    assert!(
        linkage::scheduled(&db.registry, &code(FUCHU), store.as_ref(), &prefix)
            .await
            .unwrap()
            .is_none()
    );
    let second = change(&db).await;
    let m = linkage::scheduled(&db.registry, &code(FUCHU), store.as_ref(), &prefix)
        .await
        .unwrap()
        .expect("a difference");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, first, second));
    // The other tenant's folder is untouched by all this.
    let listing = store.list_with_delimiter(None).await.unwrap();
    let tops: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(tops, vec![FUCHU.to_string()]);
}

async fn post_extract(
    s: &crate::ui::Session,
    body: &str,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::post(format!("/api/v1/tenants/{FUCHU}/extracts"))
        .header("content-type", "application/json")
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let res = s.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

async fn the_tenant_administrator_makes_an_extract_through_the_api(db: TestDb) {
    use axum::http::StatusCode;
    use machi_domain::access::Role;
    let db = db.with_tenants().await;
    crate::ui::staff(&db, FUCHU, "admin1", Role::TenantAdmin).await;
    crate::ui::staff(&db, FUCHU, "clerk1", Role::Clerk).await;
    let first = change(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let app = |target: Option<String>| {
        machi::api::app(machi::api::AppState {
            registry: db.registry.clone().with_extract_target(target),
        })
    };
    let with = app(Some(dir.path().to_string_lossy().into_owned()));
    // Not configured: a clear refusal.
    let admin = crate::ui::Session::login(&app(None), FUCHU, "admin1").await;
    let (s, v) = post_extract(&admin, r#"{"kind":"full"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "extract_not_configured", "{v}");
    let admin = crate::ui::Session::login(&with, FUCHU, "admin1").await;
    // A difference before any extract: refused, in both languages.
    let (s, v) = post_extract(&admin, r#"{"kind":"diff"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "extract_no_base", "{v}");
    assert!(
        v["message_ja"].as_str().unwrap().contains("全件抽出"),
        "{v}"
    );
    // An unknown kind: the body's shape.
    let (s, v) = post_extract(&admin, r#"{"kind":"weekly"}"#).await;
    assert!(s.is_client_error(), "{s} {v}");
    let (s, v) = post_extract(&admin, r#"{"kind":"full"}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "full");
    assert_eq!(v["to_seq"], first);
    let folder = v["folder"].as_str().unwrap();
    assert!(dir.path().join(folder).join(LINKAGE_MANIFEST).is_file());
    // No personal data in the answer.
    assert!(!v.to_string().contains("髙橋"), "{v}");
    // A clerk may not.
    let clerk = crate::ui::Session::login(&with, FUCHU, "clerk1").await;
    let (s, v) = post_extract(&clerk, r#"{"kind":"diff"}"#).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
}

/// One tick of the schedule for `tenant` at `now` (hourly default).
async fn tick(
    db: &TestDb,
    store: &InMemory,
    tenant: &str,
    now: chrono::DateTime<chrono::Utc>,
    state: &linkage::ScheduleState,
) -> Option<LinkageManifest> {
    linkage::run_due(
        &db.registry,
        &code(tenant),
        store,
        &ObjectPath::default(),
        std::time::Duration::from_secs(3600),
        now,
        state,
    )
    .await
    .unwrap()
}

async fn a_tenant_schedule_runs_daily_at_its_time_and_the_default_otherwise(db: TestDb) {
    use chrono::{Duration, Timelike, Utc};
    use linkage::{ScheduleState, TenantSchedule};
    let db = db.with_tenants().await;
    let store = InMemory::new();
    let state = ScheduleState::default();
    let (fuchu, akishima) = (code(FUCHU), code(AKISHIMA));
    let first = change(&db).await;
    // No schedule of its own: the server-wide interval.
    let t0 = Utc::now();
    let m = tick(&db, &store, FUCHU, t0, &state)
        .await
        .expect("a first run");
    assert_eq!((m.kind, m.to_seq), (Kind::Full, first));
    let second = change(&db).await;
    assert!(
        tick(&db, &store, FUCHU, t0 + Duration::minutes(30), &state)
            .await
            .is_none()
    );
    let m = tick(&db, &store, FUCHU, t0 + Duration::minutes(61), &state)
        .await
        .expect("a difference");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, first, second));

    // Bad settings are refused in both languages.
    for (time, kind) in [
        ("25:00", "full"),
        ("2時", "full"),
        ("02:00", "weekly"),
        ("", "diff"),
    ] {
        let e = TenantSchedule::parse(time, None, kind).unwrap_err();
        let machi::service::ServiceError::Invalid {
            message_ja,
            message_en,
            ..
        } = e
        else {
            panic!("{time} {kind}: {e}")
        };
        assert!(
            message_ja.contains("入力") || message_ja.contains("選んで"),
            "{message_ja}"
        );
        assert!(!message_en.is_empty());
    }
    assert_eq!(
        TenantSchedule::parse("０２：３０", None, "full")
            .unwrap()
            .times_text(","),
        "02:30"
    );
    // Fuchu's administrator: every day, a full extract, at a time two
    // hours ago in Japan (so today's slot passed before the extracts above).
    let jst_now = (t0 + Duration::hours(9) - Duration::hours(2)).time();
    let daily_at = chrono::NaiveTime::from_hms_opt(jst_now.hour(), jst_now.minute(), 0).unwrap();
    let sc = TenantSchedule::daily(daily_at, Kind::Full);
    linkage::set_tenant_schedule(
        &db.registry,
        &fuchu,
        Some(sc.clone()),
        &Actor::system("admin1"),
    )
    .await
    .unwrap();
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &fuchu)
            .await
            .unwrap(),
        Some(sc)
    );
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &akishima)
            .await
            .unwrap(),
        None
    );
    // Today's slot is older than the last extract: nothing now, nor an
    // hour later (the interval no longer applies to Fuchu).
    assert!(
        tick(&db, &store, FUCHU, t0 + Duration::minutes(62), &state)
            .await
            .is_none()
    );
    let third = change(&db).await;
    assert!(
        tick(&db, &store, FUCHU, t0 + Duration::minutes(130), &state)
            .await
            .is_none()
    );
    // Tomorrow's slot: a full extract, once.
    let tomorrow = t0 + Duration::hours(24);
    let m = tick(&db, &store, FUCHU, tomorrow, &state)
        .await
        .expect("the daily run");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Full, 0, third));
    assert!(
        tick(&db, &store, FUCHU, tomorrow + Duration::minutes(5), &state)
            .await
            .is_none()
    );
    // Difference instead: at the next slot, only if events came; an event
    // after the slot waits for the next one.
    let sc = TenantSchedule::daily(daily_at, Kind::Diff);
    linkage::set_tenant_schedule(&db.registry, &fuchu, Some(sc), &Actor::system("admin1"))
        .await
        .unwrap();
    let day2 = t0 + Duration::hours(48);
    assert!(tick(&db, &store, FUCHU, day2, &state).await.is_none());
    let fourth = change(&db).await;
    assert!(
        tick(&db, &store, FUCHU, day2 + Duration::hours(3), &state)
            .await
            .is_none()
    );
    let m = tick(&db, &store, FUCHU, t0 + Duration::hours(72), &state)
        .await
        .expect("a difference");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, third, fourth));
    // Akishima, without a schedule, keeps the server-wide interval.
    let m = tick(&db, &store, AKISHIMA, tomorrow, &state)
        .await
        .expect("Akishima's first run");
    assert_eq!(m.kind, Kind::Full);
    assert!(
        tick(
            &db,
            &store,
            AKISHIMA,
            tomorrow + Duration::minutes(5),
            &state
        )
        .await
        .is_none()
    );
    // Back to the default: Fuchu follows the interval again.
    linkage::set_tenant_schedule(&db.registry, &fuchu, None, &Actor::system("admin1"))
        .await
        .unwrap();
    let fifth = change(&db).await;
    let m = tick(&db, &store, FUCHU, t0 + Duration::hours(73), &state)
        .await
        .expect("the interval");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, fourth, fifth));
}

async fn the_tenant_administrator_sets_the_schedule_on_the_admin_page(db: TestDb) {
    use axum::http::StatusCode;
    use machi_domain::access::Role;
    let db = db.with_tenants().await;
    crate::ui::staff(&db, FUCHU, "admin1", Role::TenantAdmin).await;
    crate::ui::staff(&db, FUCHU, "clerk1", Role::Clerk).await;
    let app = machi::api::app(machi::api::AppState {
        registry: db.registry.clone().with_extract_every(6 * 3600),
    });
    let admin = crate::ui::Session::login(&app, FUCHU, "admin1").await;
    let (status, _, page) = admin.get("/ui/admin/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("サーバーの既定に従っています"), "{page}");
    assert!(page.contains("6時間ごと"), "{page}");
    // A bad time: a clear error, nothing saved.
    let (status, _, page) = admin
        .post(
            "/ui/admin/extract-schedule",
            &[("mode", "daily"), ("times", "25:99"), ("kind", "full")],
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert!(page.contains("時刻は"), "{page}");
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &code(FUCHU))
            .await
            .unwrap(),
        None
    );
    let (status, _, page) = admin
        .post(
            "/ui/admin/extract-schedule",
            &[("mode", "daily"), ("times", "03:30"), ("kind", "full")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "/ui/admin/extract-schedule");
    assert!(page.contains("毎日 03:30 全件"), "{page}");
    let sc = linkage::tenant_schedule(&db.registry, &code(FUCHU))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (sc.times_text(","), sc.weekdays, sc.kind),
        ("03:30".into(), linkage::Weekdays::EVERY_DAY, Kind::Full)
    );
    // Chosen days: none ticked is refused, nothing changes.
    let (status, _, page) = admin
        .post(
            "/ui/admin/extract-schedule",
            &[("mode", "weekdays"), ("times", "02:00"), ("kind", "diff")],
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert!(page.contains("曜日を一つ以上選んでください"), "{page}");
    assert!(page.contains("毎日 03:30 全件"), "{page}");
    let (status, _, page) = admin
        .post(
            "/ui/admin/extract-schedule",
            &[
                ("mode", "weekdays"),
                ("weekday", "mon"),
                ("weekday", "wed"),
                ("times", "14:00、02:00"),
                ("kind", "diff"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "/ui/admin/extract-schedule");
    assert!(
        page.contains("月・水曜日 02:00・14:00 差分（最初は全件）"),
        "{page}"
    );
    assert!(page.contains(r#"value="02:00, 14:00""#), "{page}");
    let sc = linkage::tenant_schedule(&db.registry, &code(FUCHU))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sc.weekdays.days(),
        vec![chrono::Weekday::Mon, chrono::Weekday::Wed]
    );
    // A bad second time: the message names it; the schedule stays.
    let (status, _, page) = admin
        .post(
            "/ui/admin/extract-schedule",
            &[
                ("mode", "daily"),
                ("times", "02:00, 26:00"),
                ("kind", "diff"),
            ],
        )
        .await;
    assert!(status.is_client_error(), "{status}");
    assert!(page.contains("「26:00」"), "{page}");
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &code(FUCHU))
            .await
            .unwrap(),
        Some(sc)
    );
    // Another municipality is not affected.
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &code(AKISHIMA))
            .await
            .unwrap(),
        None
    );
    // A clerk may not.
    let clerk = crate::ui::Session::login(&app, FUCHU, "clerk1").await;
    let (status, _, _) = clerk
        .post("/ui/admin/extract-schedule", &[("mode", "default")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        linkage::tenant_schedule(&db.registry, &code(FUCHU))
            .await
            .unwrap()
            .is_some()
    );
    // Back to the server default.
    let (status, _, page) = admin
        .post("/ui/admin/extract-schedule", &[("mode", "default")])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("サーバーの既定に従っています"), "{page}");
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &code(FUCHU))
            .await
            .unwrap(),
        None
    );
}

/// A moment in Japan time, as UTC.
fn jst(d: chrono::NaiveDate, h: u32, m: u32) -> chrono::DateTime<chrono::Utc> {
    d.and_hms_opt(h, m, 0)
        .unwrap()
        .and_local_timezone(chrono::FixedOffset::east_opt(9 * 3600).unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// 02:00 and 14:00 on Mondays and Wednesdays, differences. Every tick
/// below starts with a fresh in-memory state, as after a restart: the
/// handled slot is in the database, so a slot is never run twice, and a
/// slot passed while nothing ran is made up once, never skipped.
async fn several_times_on_chosen_days_each_slot_once_across_restarts(db: TestDb) {
    use chrono::{Datelike, Days, NaiveTime, Utc, Weekday};
    use linkage::{ScheduleState, TenantSchedule, Weekdays};
    let db = db.with_tenants().await;
    let store = InMemory::new();
    let fuchu = code(FUCHU);
    // A Monday more than a week ahead: every slot used here lies after
    // the real time the extracts are stamped with.
    let mut monday = (Utc::now() + chrono::Duration::days(9)).date_naive();
    while monday.weekday() != Weekday::Mon {
        monday = monday + Days::new(1);
    }
    let day = |n: u64| monday + Days::new(n);
    let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    let sc = TenantSchedule {
        times: vec![at(2), at(14)],
        weekdays: Weekdays::of(&[Weekday::Mon, Weekday::Wed]).unwrap(),
        kind: Kind::Diff,
        include_my_number: false,
    };
    linkage::set_tenant_schedule(
        &db.registry,
        &fuchu,
        Some(sc.clone()),
        &Actor::system("admin1"),
    )
    .await
    .unwrap();
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &fuchu)
            .await
            .unwrap(),
        Some(sc)
    );
    let restart = || ScheduleState::default();
    let first = change(&db).await;
    // Monday 01:00: the last slot (the Wednesday before, 14:00) never ran:
    // the first extract, a full one (nothing at the target yet).
    let m = tick(&db, &store, FUCHU, jst(day(0), 1, 0), &restart())
        .await
        .expect("the first run");
    assert_eq!((m.kind, m.to_seq), (Kind::Full, first));
    assert_eq!(
        linkage::handled_slot(&db.registry, &fuchu).await.unwrap(),
        Some(jst(day(0) - Days::new(5), 14, 0))
    );
    // Restarted half an hour later, with an event: the slot is handled.
    let second = change(&db).await;
    assert!(
        tick(&db, &store, FUCHU, jst(day(0), 1, 30), &restart())
            .await
            .is_none()
    );
    // 02:00: a difference.
    let m = tick(&db, &store, FUCHU, jst(day(0), 2, 0), &restart())
        .await
        .expect("Monday 02:00");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, first, second));
    // Restarted before 14:00: nothing again.
    let third = change(&db).await;
    assert!(
        tick(&db, &store, FUCHU, jst(day(0), 13, 59), &restart())
            .await
            .is_none()
    );
    // Down over Monday's 14:00, up on Tuesday: made up once.
    let m = tick(&db, &store, FUCHU, jst(day(1), 10, 0), &restart())
        .await
        .expect("Monday 14:00, made up");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, second, third));
    // Tuesday is not a chosen day.
    let fourth = change(&db).await;
    assert!(
        tick(&db, &store, FUCHU, jst(day(1), 23, 0), &restart())
            .await
            .is_none()
    );
    let m = tick(&db, &store, FUCHU, jst(day(2), 2, 0), &restart())
        .await
        .expect("Wednesday 02:00");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, third, fourth));
    // A slot with no event: handled with no extract, and not looked at
    // again after a restart.
    assert!(
        tick(&db, &store, FUCHU, jst(day(2), 14, 0), &restart())
            .await
            .is_none()
    );
    assert_eq!(
        linkage::handled_slot(&db.registry, &fuchu).await.unwrap(),
        Some(jst(day(2), 14, 0))
    );
    // Down from Wednesday to the next Monday 03:00: the missed slots
    // (Monday 02:00 last) come as one difference holding every event.
    let fifth = change(&db).await;
    let sixth = change(&db).await;
    let m = tick(&db, &store, FUCHU, jst(day(7), 3, 0), &restart())
        .await
        .expect("the next Monday");
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, fourth, sixth));
    assert!(fifth < sixth);
    assert_eq!(
        linkage::handled_slot(&db.registry, &fuchu).await.unwrap(),
        Some(jst(day(7), 2, 0))
    );
    // The other municipality has no slot of its own.
    assert_eq!(
        linkage::handled_slot(&db.registry, &code(AKISHIMA))
            .await
            .unwrap(),
        None
    );
}

/// The running schedule reads the tenant list at every tick: a
/// municipality added after it started gets its first (full) extract.
async fn the_schedule_picks_up_a_tenant_created_after_it_started(db: TestDb) {
    let db = db.with_tenants().await;
    let store: Arc<InMemory> = Arc::new(InMemory::new());
    let prefix = ObjectPath::parse("linkage").unwrap();
    let task = linkage::spawn_schedule(
        db.registry.clone(),
        store.clone(),
        prefix.clone(),
        std::time::Duration::from_secs(1),
    );
    let wait_for = |tenant: &'static str| {
        let (store, prefix) = (store.clone(), prefix.clone());
        async move {
            let start = std::time::Instant::now();
            loop {
                if let Some(m) = linkage::last_complete(store.as_ref(), &prefix, &code(tenant))
                    .await
                    .unwrap()
                {
                    return Some(m);
                }
                if start.elapsed() > std::time::Duration::from_secs(30) {
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert!(wait_for(FUCHU).await.is_some(), "Fuchu's first extract");
    // 千代田区, created while the schedule runs.
    let chiyoda = "131016";
    db.registry
        .create_tenant(code(chiyoda), "千代田区", "東京都")
        .await
        .unwrap();
    let m = wait_for(chiyoda)
        .await
        .expect("the new municipality's extract");
    assert_eq!((m.kind, m.tenant.as_str()), (Kind::Full, chiyoda));
    task.abort();
}

/// A second server on the same database: its own store handle and
/// registry, as another process would open them.
async fn second_server(db: &TestDb) -> machi::service::Registry {
    let store = machi::store::Store::connect(&db.location().await, crate::support::test_keyring())
        .await
        .unwrap();
    machi::service::Registry::new(
        store,
        machi_domain::dates::EraTable::standard(),
        machi::service::Clock::System,
    )
}

/// Complete extracts of `tenant` at the target.
async fn manifests(store: &InMemory, tenant: &str) -> usize {
    let folders = store
        .list_with_delimiter(Some(&ObjectPath::parse(tenant).unwrap()))
        .await
        .unwrap()
        .common_prefixes;
    let mut n = 0;
    for f in folders {
        if store.head(&f.clone().join(LINKAGE_MANIFEST)).await.is_ok() {
            n += 1;
        }
    }
    n
}

/// Two servers with `--extract-to` on one database tick at the same
/// moments, concurrently: every slot of a tenant's schedule is run by
/// exactly one of them (the other finds the claim or the handled slot),
/// and the server-wide interval runs once per interval on both together,
/// also after both restart (its last run is in the database).
async fn two_schedulers_on_one_database_run_each_slot_once(db: TestDb) {
    use chrono::{Datelike, Days, Duration, NaiveTime, Utc, Weekday};
    use linkage::{ScheduleState, TenantSchedule, Weekdays};
    let db = db.with_tenants().await;
    let other = second_server(&db).await;
    let store = InMemory::new();
    let prefix = ObjectPath::default();
    let fuchu = code(FUCHU);
    let mut monday = (Utc::now() + Duration::days(9)).date_naive();
    while monday.weekday() != Weekday::Mon {
        monday = monday + Days::new(1);
    }
    let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    let sc = TenantSchedule {
        times: vec![at(2), at(14)],
        weekdays: Weekdays::EVERY_DAY,
        kind: Kind::Diff,
        include_my_number: false,
    };
    linkage::set_tenant_schedule(&db.registry, &fuchu, Some(sc), &Actor::system("admin1"))
        .await
        .unwrap();
    let (a, b) = (ScheduleState::default(), ScheduleState::default());
    assert_ne!(a.owner(), b.owner());
    let hour = std::time::Duration::from_secs(3600);
    let both = |tenant: &'static str, now: chrono::DateTime<Utc>| {
        let (a, b, other, store, prefix) = (&a, &b, &other, &store, &prefix);
        let reg = &db.registry;
        async move {
            let t = code(tenant);
            let (x, y) = tokio::join!(
                linkage::run_due(reg, &t, store, prefix, hour, now, a),
                linkage::run_due(other, &t, store, prefix, hour, now, b),
            );
            [x.unwrap(), y.unwrap()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        }
    };
    let mut runs = 0;
    let mut last_seq = 0;
    for (day, hour_of_day) in [(0, 1), (0, 2), (0, 14), (1, 2), (1, 14), (2, 3)] {
        last_seq = change(&db).await;
        let now = jst(monday + Days::new(day), hour_of_day, 0);
        let made = both(FUCHU, now).await;
        assert_eq!(made.len(), 1, "one extract for the slot before {now}");
        assert_eq!(made[0].to_seq, last_seq);
        runs += 1;
        // Again a minute later, and after both restart: nothing.
        assert!(both(FUCHU, now + Duration::minutes(1)).await.is_empty());
        let (a2, b2) = (ScheduleState::default(), ScheduleState::default());
        let (x, y) = tokio::join!(
            linkage::run_due(&db.registry, &fuchu, &store, &prefix, hour, now, &a2),
            linkage::run_due(&other, &fuchu, &store, &prefix, hour, now, &b2),
        );
        assert!(x.unwrap().is_none() && y.unwrap().is_none());
    }
    assert_eq!(manifests(&store, FUCHU).await, runs);
    assert!(last_seq > 0);
    // Akishima on the server-wide interval (hourly): once now, not within
    // the hour even on restarted servers, once after it.
    let t0 = Utc::now();
    assert_eq!(both(AKISHIMA, t0).await.len(), 1);
    for later in [1, 30, 59] {
        let (a2, b2) = (ScheduleState::default(), ScheduleState::default());
        let now = t0 + Duration::minutes(later);
        let akishima = code(AKISHIMA);
        let (x, y) = tokio::join!(
            linkage::run_due(&db.registry, &akishima, &store, &prefix, hour, now, &a2),
            linkage::run_due(&other, &akishima, &store, &prefix, hour, now, &b2),
        );
        assert!(x.unwrap().is_none() && y.unwrap().is_none(), "{later} min");
    }
    // An event for Akishima, then the next interval: one difference.
    let req: ChangeRequest = serde_json::from_value(takahashi_family()).unwrap();
    db.registry
        .submit(&code(AKISHIMA), &req, &Actor::system("clerk"))
        .await
        .unwrap();
    let made = both(AKISHIMA, t0 + Duration::minutes(61)).await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].kind, Kind::Diff);
    assert_eq!(manifests(&store, AKISHIMA).await, 2);
}

/// A server killed while it writes a scheduled extract leaves its claim:
/// no other server runs the slot while the claim's lease holds, and the
/// first tick after it ran out takes the slot over and writes the
/// extract (the killed run left no manifest, so nothing is skipped).
async fn a_claim_left_by_a_killed_run_is_taken_over_after_its_lease(db: TestDb) {
    use chrono::{Duration, Utc};
    use linkage::{CLAIM_LEASE, ScheduleState};
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    let db = db.with_tenants().await;
    let other = second_server(&db).await;
    let store = Arc::new(InMemory::new());
    let prefix = ObjectPath::default();
    let first = change(&db).await;
    // The first server's writes hang (a stalled disk): it is killed there.
    let stalled = ThrottledStore::new(
        store.clone(),
        ThrottleConfig {
            wait_put_per_call: std::time::Duration::from_secs(3600),
            ..ThrottleConfig::default()
        },
    );
    let t0 = Utc::now();
    let registry = db.registry.clone();
    let (p, killed) = (prefix.clone(), ScheduleState::default());
    let run = tokio::spawn(async move {
        linkage::run_due(
            &registry,
            &code(FUCHU),
            &stalled,
            &p,
            std::time::Duration::from_secs(3600),
            t0,
            &killed,
        )
        .await
    });
    // Wait until it holds the claim, then kill it mid-write.
    let start = std::time::Instant::now();
    loop {
        let owner: Option<String> = db
            .store
            .read(Some(&code(FUCHU)), |tx| {
                tx.query_opt(
                    "SELECT owner FROM extract_claims WHERE tenant = $1 AND done_at IS NULL",
                    &[FUCHU.into()],
                )?
                .map(|r| r.text(0))
                .transpose()
            })
            .await
            .unwrap();
        if owner.is_some() {
            break;
        }
        assert!(start.elapsed().as_secs() < 30, "the run never claimed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!run.is_finished());
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    assert_eq!(manifests(&store, FUCHU).await, 0);
    // The other server, while the claim holds: nothing.
    let b = ScheduleState::default();
    let lease = Duration::from_std(CLAIM_LEASE).unwrap();
    for now in [t0, t0 + Duration::minutes(1), t0 + lease] {
        assert!(
            tick_on(&other, &store, now, &b).await.is_none(),
            "claim held at {now}"
        );
    }
    assert_eq!(
        linkage::handled_slot(&other, &code(FUCHU)).await.unwrap(),
        None
    );
    // After the lease: taken over, the whole extract written once.
    let m = tick_on(&other, &store, t0 + lease + Duration::seconds(1), &b)
        .await
        .expect("taken over");
    assert_eq!((m.kind, m.to_seq), (Kind::Full, first));
    assert_checksums(store.as_ref(), &m).await;
    assert_eq!(manifests(&store, FUCHU).await, 1);
    assert!(
        tick_on(&other, &store, t0 + lease + Duration::seconds(2), &b)
            .await
            .is_none()
    );
}

async fn tick_on(
    registry: &machi::service::Registry,
    store: &InMemory,
    now: chrono::DateTime<chrono::Utc>,
    state: &linkage::ScheduleState,
) -> Option<LinkageManifest> {
    linkage::run_due(
        registry,
        &code(FUCHU),
        store,
        &ObjectPath::default(),
        std::time::Duration::from_secs(3600),
        now,
        state,
    )
    .await
    .unwrap()
}

/// The manifest write is fenced: a run whose claim was taken over while it
/// wrote its files (here: between two renewals, which a slow disk makes
/// look like a stall) stops before the manifest, so its extract stays
/// incomplete and the run is reported lost; the slot stays unhandled.
async fn a_run_whose_claim_was_taken_never_writes_its_manifest(db: TestDb) {
    use linkage::ScheduleState;
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    let db = db.with_tenants().await;
    let store = Arc::new(InMemory::new());
    change(&db).await;
    // Each put takes a second; the lease (a minute) is renewed every 20 s,
    // so no renewal falls inside the run.
    let slow = ThrottledStore::new(
        store.clone(),
        ThrottleConfig {
            wait_put_per_call: std::time::Duration::from_secs(1),
            ..ThrottleConfig::default()
        },
    );
    let registry = db.registry.clone();
    let state = ScheduleState::with_lease(std::time::Duration::from_secs(60));
    let run = tokio::spawn(async move {
        linkage::run_due(
            &registry,
            &code(FUCHU),
            &slow,
            &ObjectPath::default(),
            std::time::Duration::from_secs(3600),
            chrono::Utc::now(),
            &state,
        )
        .await
    });
    let claimed = || async {
        db.store
            .read(Some(&code(FUCHU)), |tx| {
                tx.query_opt(
                    "SELECT owner FROM extract_claims WHERE tenant = $1 AND done_at IS NULL",
                    &[FUCHU.into()],
                )?
                .map(|r| r.text(0))
                .transpose()
            })
            .await
            .unwrap()
    };
    let start = std::time::Instant::now();
    while claimed().await.is_none() {
        assert!(start.elapsed().as_secs() < 30, "the run never claimed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Another server takes the claim over while this one writes.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!run.is_finished());
    db.store
        .write(Some(&code(FUCHU)), |tx| {
            tx.execute(
                "UPDATE extract_claims SET owner = 'another-server' WHERE tenant = $1",
                &[FUCHU.into()],
            )
        })
        .await
        .unwrap();
    let r = run.await.unwrap();
    assert!(
        matches!(r, Err(linkage::ExtractError::ClaimLost(_))),
        "{r:?}"
    );
    assert_eq!(manifests(&store, FUCHU).await, 0);
    assert_eq!(
        linkage::handled_slot(&db.registry, &code(FUCHU))
            .await
            .unwrap(),
        None
    );
}

/// Whether anything at all is stored at the target.
async fn anything_at(store: &InMemory) -> bool {
    let top = store.list_with_delimiter(None).await.unwrap();
    !top.objects.is_empty() || !top.common_prefixes.is_empty()
}

/// Who holds a live (not done) claim on FUCHU's extract, if anyone.
async fn live_claim(db: &TestDb) -> Option<(String, i64)> {
    db.store
        .read(Some(&code(FUCHU)), |tx| {
            tx.query_opt(
                "SELECT owner, slot FROM extract_claims WHERE tenant = $1 AND done_at IS NULL",
                &[FUCHU.into()],
            )?
            .map(|r| Ok::<_, machi::store::StoreError>((r.text(0)?, r.int(1)?)))
            .transpose()
        })
        .await
        .unwrap()
}

/// The on-demand extract (API and command line) claims the tenant's
/// extract like a scheduled run: while a scheduled or another on-demand
/// extract of the tenant runs, it is refused in both languages with
/// nothing written (no object at the target, the other run's claim as it
/// was), and the scheduler skips a tenant whose on-demand extract runs.
/// Its claim is renewed while it runs and, once its run is gone, runs out
/// after its lease; then an on-demand extract goes through.
async fn an_on_demand_extract_is_refused_while_another_extract_of_the_tenant_runs(db: TestDb) {
    use axum::http::StatusCode;
    use linkage::{ExtractError, ScheduleState};
    use machi_domain::access::Role;
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    let db = db.with_tenants().await;
    crate::ui::staff(&db, FUCHU, "admin1", Role::TenantAdmin).await;
    let first = change(&db).await;
    let store = Arc::new(InMemory::new());
    let prefix = ObjectPath::default();
    let actor = Actor::system("clerk");
    // 1. A scheduled extract holds the claim (its writes hang).
    let stalled = ThrottledStore::new(
        store.clone(),
        ThrottleConfig {
            wait_put_per_call: std::time::Duration::from_secs(3600),
            ..ThrottleConfig::default()
        },
    );
    let registry = db.registry.clone();
    let p = prefix.clone();
    let scheduled = tokio::spawn(async move {
        linkage::run_due(
            &registry,
            &code(FUCHU),
            &stalled,
            &p,
            std::time::Duration::from_secs(3600),
            chrono::Utc::now(),
            &ScheduleState::default(),
        )
        .await
    });
    let start = std::time::Instant::now();
    let held = loop {
        if let Some(c) = live_claim(&db).await {
            break c;
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "the scheduled run never claimed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let other = InMemory::new();
    for kind in [Kind::Full, Kind::Diff] {
        let r = linkage::extract(&db.registry, &code(FUCHU), kind, &other, &prefix, &actor).await;
        let Err(e @ ExtractError::Running(_)) = r else {
            panic!("not refused: {r:?}");
        };
        let text = e.to_string();
        assert!(
            text.contains("is running") && text.contains("実行中"),
            "{text}"
        );
    }
    assert!(!anything_at(&other).await, "written while refused");
    assert!(!anything_at(&store).await);
    assert_eq!(
        live_claim(&db).await,
        Some(held.clone()),
        "the claim changed"
    );
    // Through the API: 409 extract_running, both languages.
    let dir = tempfile::tempdir().unwrap();
    let app = machi::api::app(machi::api::AppState {
        registry: db
            .registry
            .clone()
            .with_extract_target(Some(dir.path().to_string_lossy().into_owned())),
    });
    let admin = crate::ui::Session::login(&app, FUCHU, "admin1").await;
    let (s, v) = post_extract(&admin, r#"{"kind":"full"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "extract_running", "{v}");
    assert!(v["message_ja"].as_str().unwrap().contains("実行中"), "{v}");
    assert!(
        v["message_en"].as_str().unwrap().contains("is running"),
        "{v}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "written");
    scheduled.abort();
    assert!(scheduled.await.unwrap_err().is_cancelled());
    // Make the killed scheduled run's claim run out (as after its lease).
    db.store
        .write(Some(&code(FUCHU)), |tx| {
            tx.execute(
                "UPDATE extract_claims SET lease_until = 0 WHERE tenant = $1",
                &[FUCHU.into()],
            )
        })
        .await
        .unwrap();

    // 2. An on-demand extract holds the claim (a 2 s lease, renewed while
    // it runs; its writes hang).
    let stalled = ThrottledStore::new(
        store.clone(),
        ThrottleConfig {
            wait_put_per_call: std::time::Duration::from_secs(3600),
            ..ThrottleConfig::default()
        },
    );
    let registry = db.registry.clone();
    let p = prefix.clone();
    let on_demand = tokio::spawn(async move {
        linkage::extract_as(
            &registry,
            &code(FUCHU),
            Kind::Full,
            &stalled,
            &p,
            &Actor::system("clerk"),
            &ScheduleState::with_lease(std::time::Duration::from_secs(2)),
        )
        .await
    });
    let start = std::time::Instant::now();
    let held = loop {
        if let Some(c) = live_claim(&db).await
            && c != held
        {
            break c;
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "the on-demand run never claimed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(held.1 < 0, "an on-demand key: {held:?}");
    // The scheduler skips the tenant; another on-demand extract is
    // refused, also after the first lease would have run out unrenewed.
    assert!(
        tick_on(
            &db.registry,
            &other,
            chrono::Utc::now(),
            &ScheduleState::default()
        )
        .await
        .is_none()
    );
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    let r = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        &other,
        &prefix,
        &actor,
    )
    .await;
    assert!(matches!(r, Err(ExtractError::Running(_))), "{r:?}");
    assert!(
        tick_on(
            &db.registry,
            &other,
            chrono::Utc::now(),
            &ScheduleState::default()
        )
        .await
        .is_none()
    );
    assert!(!anything_at(&other).await, "written while refused");
    assert_eq!(
        linkage::handled_slot(&db.registry, &code(FUCHU))
            .await
            .unwrap(),
        None
    );
    // Its run gone, its claim runs out after the lease; then it goes
    // through, and the next on-demand one too (a key of its own).
    on_demand.abort();
    assert!(on_demand.await.unwrap_err().is_cancelled());
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let m = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        &other,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!((m.kind, m.to_seq), (Kind::Full, first));
    assert_checksums(&other, &m).await;
    assert_eq!(live_claim(&db).await, None, "done");
    let second = change(&db).await;
    let m = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Diff,
        &other,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    assert_eq!((m.kind, m.from_seq, m.to_seq), (Kind::Diff, first, second));
    assert_eq!(manifests(&other, FUCHU).await, 2);
}

/// The residents.csv of an extract as (宛名番号 → (my_number, support_measure))
/// of each person's last row, and its header.
async fn flags(
    store: &dyn ObjectStore,
    m: &LinkageManifest,
) -> (
    Vec<String>,
    std::collections::BTreeMap<String, (String, String)>,
) {
    let text = read(store, &format!("{}/residents.csv", m.folder)).await;
    let mut r = csv::Reader::from_reader(text.as_slice());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (who, number, flag) = (
        at("addressee_number"),
        at("my_number"),
        at("support_measure"),
    );
    let mut out = std::collections::BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        out.insert(
            rec[who].to_string(),
            (rec[number].to_string(), rec[flag].to_string()),
        );
    }
    (header, out)
}

/// 宛名連携 (j1190: 住民記録データ（支援対象者管理データを含む）) and 支援措置
/// (j440, j410): a file extract passes the persons a support measure
/// covers WITH a flag (the receiving system must never disclose their
/// address), the protected persons as `protected` and those in their
/// household as `covered`; 個人番号 is written only when the extract is
/// asked to include it, and the access log says whether it was.
async fn an_extract_flags_support_measures_and_has_my_number_only_when_asked(db: TestDb) {
    let db = db.with_tenants().await;
    let clerk = Actor::system("clerk");
    let mut family = takahashi_family();
    family["command"]["persons"][0]["my_number"] = serde_json::json!("123456789018");
    let neighbour = crate::contract::move_in(
        vec![
            serde_json::json!({"name": "佐藤　花子", "name_kana": "サトウ　ハナコ",
            "birth_date": "1980-05-05", "sex": "female", "relationship": "世帯主"}),
        ],
        "東京都府中市宮西町三丁目1番地",
    );
    for v in [family, neighbour] {
        let req: ChangeRequest = serde_json::from_value(v).unwrap();
        db.registry
            .submit(&code(FUCHU), &req, &clerk)
            .await
            .unwrap();
    }
    let a = |n: u64| {
        machi_domain::ids::AddresseeNumber::from_serial(n)
            .unwrap()
            .to_string()
    };
    // The wife (a2) asks for support, with the child (a3).
    let today = chrono::Utc::now()
        .with_timezone(&machi::service::clock::jst())
        .date_naive();
    db.registry
        .support_register(
            &code(FUCHU),
            &crate::support_measures::request(today),
            &crate::support_measures::officer(),
        )
        .await
        .unwrap();
    let store = InMemory::new();
    let prefix = ObjectPath::parse("linkage").unwrap();
    let m = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        &store,
        &prefix,
        &Actor::system("test"),
    )
    .await
    .unwrap();
    assert!(!m.my_number_included);
    let (header, rows) = flags(&store, &m).await;
    assert_eq!(header.last().map(String::as_str), Some("support_measure"));
    let described: Vec<&str> = m
        .residents_columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        described,
        header.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        m.residents_columns
            .last()
            .unwrap()
            .values
            .as_deref()
            .unwrap()
            .contains("protected")
    );
    assert_eq!(
        rows[&a(1)],
        (String::new(), "covered".to_string()),
        "{rows:?}"
    );
    assert_eq!(rows[&a(2)].1, "protected", "{rows:?}");
    assert_eq!(rows[&a(3)].1, "protected", "{rows:?}");
    assert_eq!(rows[&a(4)].1, "", "{rows:?}");
    assert!(
        rows.values().all(|(n, _)| n.is_empty()),
        "no 個人番号 unless asked: {rows:?}"
    );
    let text =
        String::from_utf8(read(&store, &format!("{}/residents.csv", m.folder)).await).unwrap();
    assert!(!text.contains("123456789018"));
    let (shown, detail) = last_extract_entry(&db).await;
    assert!(!shown);
    assert_eq!(detail["my_number_included"], false, "{detail}");

    // Asked for: the number is there, the manifest and the access log say so.
    let store = InMemory::new();
    let m = linkage::extract_with(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        linkage::ExtractOptions {
            include_my_number: true,
        },
        &store,
        &prefix,
        &Actor::system("test"),
    )
    .await
    .unwrap();
    assert!(m.my_number_included);
    let (_, rows) = flags(&store, &m).await;
    assert_eq!(
        rows[&a(1)],
        ("123456789018".to_string(), "covered".to_string())
    );
    let (shown, detail) = last_extract_entry(&db).await;
    assert!(shown);
    assert_eq!(detail["my_number_included"], true, "{detail}");

    // An extract at a directory is still read by `machi import` (the flag
    // column is accepted and ignored).
    let dir = tempfile::tempdir().unwrap();
    let (fs, root) = linkage::open_target(&dir.path().to_string_lossy()).unwrap();
    let m = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        fs.as_ref(),
        &root,
        &Actor::system("test"),
    )
    .await
    .unwrap();
    let report = machi::migration::import::import(
        &db.registry,
        &code(AKISHIMA),
        &[dir.path().join(&m.folder)],
        &machi::migration::import::ImportOptions::default(),
        &Actor::system("test"),
    )
    .await
    .unwrap();
    assert_eq!(
        report.outcome,
        machi::migration::import::Outcome::Imported,
        "{:?}",
        report.problems
    );
    assert_eq!(report.persons, 4);

    // The tenant's schedule may include 個人番号 (off unless set); its
    // scheduled extracts then carry it.
    let jst_now = (chrono::Utc::now() + chrono::Duration::hours(7)).time();
    let at = chrono::NaiveTime::from_hms_opt(
        chrono::Timelike::hour(&jst_now),
        chrono::Timelike::minute(&jst_now),
        0,
    )
    .unwrap();
    let mut sc = linkage::TenantSchedule::daily(at, Kind::Full);
    sc.include_my_number = true;
    linkage::set_tenant_schedule(
        &db.registry,
        &code(FUCHU),
        Some(sc.clone()),
        &Actor::system("admin1"),
    )
    .await
    .unwrap();
    assert_eq!(
        linkage::tenant_schedule(&db.registry, &code(FUCHU))
            .await
            .unwrap(),
        Some(sc)
    );
    let store = InMemory::new();
    let m = tick(
        &db,
        &store,
        FUCHU,
        chrono::Utc::now() + chrono::Duration::hours(24),
        &linkage::ScheduleState::default(),
    )
    .await
    .expect("the daily run");
    assert!(m.my_number_included);
    let (_, rows) = flags(&store, &m).await;
    assert_eq!(rows[&a(1)].0, "123456789018");
}

/// The last `linkage.extract` access-log entry: (my_number_shown, detail).
async fn last_extract_entry(db: &TestDb) -> (bool, serde_json::Value) {
    let t = code(FUCHU);
    let scope = t.clone();
    let (shown, detail) = db
        .store
        .read(Some(&scope), move |tx| {
            let row = tx.query_one(
                "SELECT my_number_shown, detail FROM audit_log WHERE tenant = $1 AND function = 'linkage.extract' \
                 ORDER BY seq DESC LIMIT 1",
                &[t.as_str().into()],
            )?;
            Ok::<_, machi::store::StoreError>((row.int(0)? != 0, row.text(1)?))
        })
        .await
        .unwrap();
    (shown, serde_json::from_str(&detail).unwrap())
}

/// The administrator's page: an extract made on demand (full, then a
/// difference), listed with the earlier ones, newest first, with the time
/// in 和暦, the kind, the event range and the counts; no raw codes or ISO
/// timestamps. Without a target the page says no extract can be made.
async fn the_administrator_makes_an_extract_on_the_admin_page_and_sees_the_past_ones(db: TestDb) {
    use axum::http::StatusCode;
    use machi_domain::access::Role;
    let db = db.with_tenants().await;
    crate::ui::staff(&db, FUCHU, "admin1", Role::TenantAdmin).await;
    crate::ui::staff(&db, FUCHU, "clerk1", Role::Clerk).await;
    // Without a target: no form, a clear sentence.
    let app = machi::api::app(machi::api::AppState {
        registry: db.registry.clone(),
    });
    let admin = crate::ui::Session::login(&app, FUCHU, "admin1").await;
    let (status, _, page) = admin.get("/ui/admin/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"id="extract-run-off""#), "{page}");
    assert!(!page.contains(r#"action="/ui/admin/extract""#), "{page}");
    let (status, _, page) = admin.post("/ui/admin/extract", &[("kind", "full")]).await;
    assert!(status.is_client_error(), "{status} {page}");
    assert!(page.contains("抽出の出力先が設定されていない"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("extracts").to_string_lossy().into_owned();
    let app = machi::api::app(machi::api::AppState {
        registry: db
            .registry
            .clone()
            .with_extract_target(Some(target.clone())),
    });
    let admin = crate::ui::Session::login(&app, FUCHU, "admin1").await;
    let (status, _, page) = admin.get("/ui/admin/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"action="/ui/admin/extract""#), "{page}");
    assert!(page.contains(r#"id="extract-history-none""#), "{page}");
    let first = change(&db).await;
    // A difference before any full extract: a clear error, nothing written.
    let (status, _, page) = admin.post("/ui/admin/extract", &[("kind", "diff")]).await;
    assert!(status.is_client_error(), "{status} {page}");
    assert!(page.contains("先に全件抽出を行ってください"), "{page}");
    let (status, _, page) = admin.post("/ui/admin/extract", &[("kind", "full")]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("全件抽出を作成しました（住民記録 3 行）"),
        "{page}"
    );
    let last = change(&db).await;
    let (status, _, page) = admin
        .post(
            "/ui/admin/extract",
            &[("kind", "diff"), ("include_my_number", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    crate::readable::assert_readable(&page, "/ui/admin/extract");
    assert!(page.contains("差分抽出を作成しました"), "{page}");
    let table = page
        .split(r#"<table id="extract-history""#)
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no extract history: {page}"));
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 2, "{table}");
    // Newest first: the difference, then the full one.
    assert!(rows[0].contains(">差分</td>"), "{table}");
    assert!(
        rows[0].contains(&format!("第{}号〜第{last}号", first + 1)),
        "{table}"
    );
    assert!(rows[0].contains(">—</td>"), "{table}");
    assert!(rows[0].contains(">含む</td>"), "{table}");
    assert!(rows[1].contains(">全件</td>"), "{table}");
    assert!(rows[1].contains(&format!("第1号〜第{first}号")), "{table}");
    assert!(rows[1].contains(">含まない</td>"), "{table}");
    assert!(rows[1].contains("令和"), "和暦: {table}");
    // Written where the server's target is.
    let (store, prefix) = linkage::open_target(&target).unwrap();
    let made = linkage::recent_extracts(store.as_ref(), &prefix, &code(FUCHU), 10)
        .await
        .unwrap();
    assert_eq!(made.len(), 2);
    assert!(made[0].my_number_included && !made[1].my_number_included);
    // The schedule's option, ticked and shown in words.
    let (status, _, page) = admin
        .post(
            "/ui/admin/extract-schedule",
            &[
                ("mode", "daily"),
                ("times", "02:00"),
                ("kind", "diff"),
                ("include_my_number", "1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("毎日 02:00 差分（最初は全件）（個人番号を含む）"),
        "{page}"
    );
    assert!(page.contains(r#"id="extract-my-number" checked"#), "{page}");
    let sc = linkage::tenant_schedule(&db.registry, &code(FUCHU))
        .await
        .unwrap()
        .unwrap();
    assert!(sc.include_my_number);
    // A full extract with no event since: same last event as the
    // difference, listed first all the same (it is newer).
    let (status, _, page) = admin.post("/ui/admin/extract", &[("kind", "full")]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let table = page
        .split(r#"<table id="extract-history""#)
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap();
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[0].contains(">全件</td>"), "{table}");
    assert!(rows[0].contains(&format!("第1号〜第{last}号")), "{table}");
    assert!(rows[1].contains(">差分</td>"), "{table}");
    // A clerk may not.
    let clerk = crate::ui::Session::login(&app, FUCHU, "clerk1").await;
    let (status, _, _) = clerk.post("/ui/admin/extract", &[("kind", "full")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Every file of these extracts at the target (each file its manifest
/// lists, the checksums and the manifest itself), as (path, text).
async fn everything_of(store: &dyn ObjectStore, ms: &[&LinkageManifest]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in ms {
        let names = m
            .files
            .iter()
            .map(|f| f.name.clone())
            .chain([CHECKSUMS_FILE.to_string(), LINKAGE_MANIFEST.to_string()]);
        for name in names {
            let path = format!("{}/{name}", m.folder);
            let bytes = read(store, &path).await;
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// 宛名連携 of support measures (j1190, j160, j410): an extract (full or
/// difference) carries support_persons.csv, one row per protected person
/// with the measure's state, period and affairs, and nothing the support
/// officer recorded besides: no 記録内容, no contact, no offender, no
/// relationship, no typed address, no officer's login, in any file.
async fn no_record_of_the_support_officer_reaches_an_extract(db: TestDb) {
    let db = db.with_tenants().await;
    change(&db).await;
    let today = chrono::Utc::now()
        .with_timezone(&machi::service::clock::jst())
        .date_naive();
    // What only the support officer writes, each marked to be found.
    let mut req = crate::support_measures::request(today);
    req.requester.contact.other = Some("記録メモ：夜間は連絡不可".into());
    req.requester.contact.email = Some("hidden-contact@example.jp".into());
    req.related_persons[0].relationship = "長男（記録メモ）".into();
    req.offenders[0].other = Some("記録メモ：元配偶者、府中駅周辺で目撃".into());
    req.offenders[0].address = Some("東京都調布市秘密町一丁目".into());
    req.affairs[0].addresses = vec!["東京都府中市抑止住所三丁目".into()];
    let secret_texts = [
        "記録メモ",
        "hidden-contact@example.jp",
        "090-0000-0000",
        "山田",
        "秘密町",
        "抑止住所",
        "officer-1",
    ];
    db.registry
        .support_register(&code(FUCHU), &req, &crate::support_measures::officer())
        .await
        .unwrap();
    let store = InMemory::new();
    let prefix = ObjectPath::parse("linkage").unwrap();
    let actor = Actor::system("test");
    let full = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    // A difference after the measure changed (a new change too).
    change(&db).await;
    let diff = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Diff,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    // And one with 個人番号, for good measure.
    let with_number = linkage::extract_with(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        linkage::ExtractOptions {
            include_my_number: true,
        },
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    let files = everything_of(&store, &[&full, &diff, &with_number]).await;
    assert!(
        files.len() >= 3 * 7,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (path, text) in &files {
        for secret in secret_texts {
            assert!(!text.contains(secret), "{secret:?} in {path}");
        }
        assert!(!path.ends_with("/support_measures.csv"), "{path}");
    }
    for m in [&full, &diff, &with_number] {
        assert!(m.files.iter().any(|f| f.name == "support_persons.csv"));
        assert!(!m.files.iter().any(|f| f.name == "support_measures.csv"));
        let described: Vec<&str> = m.support_columns.iter().map(|c| c.name.as_str()).collect();
        assert!(described.contains(&"affairs") && !described.contains(&"detail"));
        let text =
            String::from_utf8(read(&store, &format!("{}/support_persons.csv", m.folder)).await)
                .unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(
            header,
            [
                "measure_id",
                "addressee_number",
                "role",
                "status",
                "in_effect",
                "provisional_start",
                "start_date",
                "end_date",
                "closed_on",
                "affairs"
            ]
        );
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|x| x.unwrap().iter().map(str::to_string).collect())
            .collect();
        let a = |n: u64| {
            machi_domain::ids::AddresseeNumber::from_serial(n)
                .unwrap()
                .to_string()
        };
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            &rows[0][1..5],
            [a(2), "requester".into(), "provisional".into(), "1".into()]
        );
        assert_eq!(&rows[1][1..3], [a(3), "related".into()]);
        assert_eq!(rows[0][5], today.to_string());
        assert_eq!(rows[0][9], "resident_record_copy");
    }
    // `machi import` of an extract still reads it (support_persons.csv is
    // not in its layout and not in the migration manifest).
    let dir = tempfile::tempdir().unwrap();
    let (fs, root) = linkage::open_target(&dir.path().to_string_lossy()).unwrap();
    let m = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        fs.as_ref(),
        &root,
        &actor,
    )
    .await
    .unwrap();
    let report = machi::migration::import::import(
        &db.registry,
        &code(AKISHIMA),
        &[dir.path().join(&m.folder)],
        &machi::migration::import::ImportOptions::default(),
        &actor,
    )
    .await
    .unwrap();
    assert_eq!(
        report.outcome,
        machi::migration::import::Outcome::Imported,
        "{:?}",
        report.problems
    );
    // A migration export still carries the measure whole (to the next
    // system), 記録内容 included.
    let dir = tempfile::tempdir().unwrap();
    machi::migration::export::export(&db.registry, &code(FUCHU), dir.path(), &actor)
        .await
        .unwrap();
    let whole = std::fs::read_to_string(dir.path().join("support_measures.csv")).unwrap();
    assert!(whole.contains("記録メモ"));
}

/// The server-wide schedule (tenants without one of their own) writes
/// 個人番号 only when the server is set to (`--extract-include-my-number`,
/// off by default), and the access log marks it as for any extract.
async fn the_server_wide_schedule_includes_my_number_only_when_set(db: TestDb) {
    let db = db.with_tenants().await;
    let mut family = takahashi_family();
    family["command"]["persons"][0]["my_number"] = serde_json::json!("123456789018");
    let req: ChangeRequest = serde_json::from_value(family).unwrap();
    db.registry
        .submit(&code(FUCHU), &req, &Actor::system("clerk"))
        .await
        .unwrap();
    let a1 = machi_domain::ids::AddresseeNumber::from_serial(1)
        .unwrap()
        .to_string();
    let prefix = ObjectPath::parse("linkage").unwrap();
    let hour = std::time::Duration::from_secs(3600);
    // Off by default.
    assert!(!db.registry.extract_includes_my_number());
    let store = InMemory::new();
    let m = linkage::run_due(
        &db.registry,
        &code(FUCHU),
        &store,
        &prefix,
        hour,
        chrono::Utc::now(),
        &linkage::ScheduleState::default(),
    )
    .await
    .unwrap()
    .expect("the first run");
    assert!(!m.my_number_included);
    let (_, rows) = flags(&store, &m).await;
    assert_eq!(rows[&a1].0, "");
    let (shown, detail) = last_extract_entry(&db).await;
    assert!(!shown);
    assert_eq!(detail["my_number_included"], false);
    // Set at the server: the next due run carries it, logged as shown.
    let registry = db.registry.clone().with_extract_my_number(true);
    let store = InMemory::new();
    let m = linkage::run_due(
        &registry,
        &code(FUCHU),
        &store,
        &prefix,
        hour,
        chrono::Utc::now() + chrono::Duration::hours(2),
        &linkage::ScheduleState::default(),
    )
    .await
    .unwrap()
    .expect("due again after the interval");
    assert!(m.my_number_included);
    let (_, rows) = flags(&store, &m).await;
    assert_eq!(rows[&a1].0, "123456789018");
    let (shown, detail) = last_extract_entry(&db).await;
    assert!(shown);
    assert_eq!(detail["my_number_included"], true);
    // The administrator's page says what the server-wide schedule does.
    use machi_domain::access::Role;
    crate::ui::staff(&db, FUCHU, "admin1", Role::TenantAdmin).await;
    for (r, says) in [
        (&db.registry, "個人番号を含まない"),
        (&registry, "個人番号を含む"),
    ] {
        let router = machi::api::app(machi::api::AppState {
            registry: r.clone().with_extract_target(Some("/nonexistent".into())),
        });
        let admin = crate::ui::Session::login(&router, FUCHU, "admin1").await;
        let (_, _, page) = admin.get("/ui/admin/accounts").await;
        let text = crate::readable::visible_text(&page);
        assert!(text.contains(says), "{says}: {text}");
    }
}

/// A receiving system's API client asks for an extract with a scope of
/// its own (`{system}:extracts:write`), and for 個人番号 only with
/// `{system}:my_number:read` besides; each refusal is a 403 naming the
/// missing scope, nothing written; the grants page shows the scopes in words.
async fn a_vendor_client_asks_for_an_extract_with_its_own_scopes(db: TestDb) {
    use axum::http::StatusCode;
    let db = db.with_tenants().await;
    let mut family = takahashi_family();
    family["command"]["persons"][0]["my_number"] = serde_json::json!("123456789018");
    let req: ChangeRequest = serde_json::from_value(family).unwrap();
    db.registry
        .submit(&code(FUCHU), &req, &Actor::system("clerk"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let router = machi::api::app(machi::api::AppState {
        registry: db
            .registry
            .clone()
            .with_extract_target(Some(dir.path().to_string_lossy().into_owned())),
    });
    let client = |scopes: &'static str| {
        let (db, router) = (&db, router.clone());
        async move {
            let (id, secret) = crate::duties::approved_client(db, "kokuho", scopes).await;
            let (s, t) = crate::duties::token(&router, &id, &secret).await;
            assert_eq!(s, StatusCode::OK);
            crate::api::Api {
                router,
                headers: vec![("authorization".into(), t.unwrap())],
            }
        }
    };
    let path = format!("/api/v1/tenants/{FUCHU}/extracts");
    let anything = || walk(dir.path());
    // Without the extract scope: 403 naming it.
    let reader = client("kokuho:events:read").await;
    let (s, v) = crate::api::call(
        &reader,
        "POST",
        &path,
        Some(serde_json::json!({"kind": "full"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message_ja"]
            .as_str()
            .unwrap()
            .contains("kokuho:extracts:write"),
        "{v}"
    );
    assert!(
        v["message_en"]
            .as_str()
            .unwrap()
            .contains("kokuho:extracts:write"),
        "{v}"
    );
    assert!(anything().is_empty());
    // With it: an extract without 個人番号; with 個人番号: 403 naming the
    // scope that allows it, nothing written.
    let vendor = client("kokuho:events:read kokuho:extracts:write").await;
    let (s, v) = crate::api::call(
        &vendor,
        "POST",
        &path,
        Some(serde_json::json!({"kind": "full", "include_my_number": true})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message_ja"]
            .as_str()
            .unwrap()
            .contains("kokuho:my_number:read"),
        "{v}"
    );
    assert!(
        v["message_en"]
            .as_str()
            .unwrap()
            .contains("kokuho:my_number:read"),
        "{v}"
    );
    assert!(anything().is_empty());
    let (s, v) = crate::api::call(
        &vendor,
        "POST",
        &path,
        Some(serde_json::json!({"kind": "full"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["my_number_included"], false);
    let (shown, _) = last_extract_entry(&db).await;
    assert!(!shown);
    // Both scopes: 個人番号 written, logged under the client.
    let numbered = client("kokuho:extracts:write kokuho:my_number:read").await;
    let (s, v) = crate::api::call(
        &numbered,
        "POST",
        &path,
        Some(serde_json::json!({"kind": "full", "include_my_number": true})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["my_number_included"], true);
    let residents = std::fs::read_to_string(
        dir.path()
            .join(v["folder"].as_str().unwrap())
            .join("residents.csv"),
    )
    .unwrap();
    assert!(residents.contains("123456789018"));
    let (shown, _) = last_extract_entry(&db).await;
    assert!(shown);
    let t = code(FUCHU);
    let scope = t.clone();
    let operator = db
        .store
        .read(Some(&scope), move |tx| {
            tx.query_one(
                "SELECT operator FROM audit_log WHERE tenant = $1 AND function = 'linkage.extract' \
                 ORDER BY seq DESC LIMIT 1",
                &[t.as_str().into()],
            )?
            .text(0)
        })
        .await
        .unwrap();
    assert!(operator.starts_with("client:"), "{operator}");
    // The scopes in words where people read them.
    assert_eq!(
        machi::service::auth::scopes_in_words("kokuho:extracts:write kokuho:my_number:read", false),
        "ファイル連携の抽出の依頼、抽出への個人番号の記載"
    );
}

/// 交付履歴 in 宛名連携 (j300, j1190): an extract (full, difference, with
/// 個人番号) carries certificate_issues.csv — 発行番号, 種別, 記載者, 記載
/// 事項, 枚数, 交付日時 — and never the issuing clerk's login or terminal
/// (nor the hashes that serve only the registry's own verification), in
/// any file; not the migration's certificates.csv. 住民票コード stays in
/// residents.csv, described in the manifest. `machi export` is unchanged:
/// certificates.csv with the clerk and the terminal.
async fn no_issuing_clerk_or_terminal_reaches_an_extract(db: TestDb) {
    use machi::service::certificates::{CertificateRequest, Subject};
    use machi_domain::certificate::{CertificateKind, CertificateOptions};
    let db = db.with_tenants().await;
    change(&db).await;
    let head = machi_domain::ids::AddresseeNumber::from_serial(1).unwrap();
    let clerk = Actor {
        operator: "kofu-clerk-0427".into(),
        terminal: "KOFU-TERM-93".into(),
    };
    db.registry
        .set_issuer(&code(FUCHU), "市長", "架空　太一", &clerk)
        .await
        .unwrap();
    let issued = db
        .registry
        .issue_certificate(
            &code(FUCHU),
            CertificateRequest {
                kind: CertificateKind::ResidentCopy,
                subject: Subject::HouseholdOf(head.clone()),
                options: CertificateOptions::default(),
                verification_url: "http://localhost/verify".into(),
                may_show_my_number: false,
                counter: None,
            },
            &clerk,
        )
        .await
        .unwrap();
    let store = InMemory::new();
    let prefix = ObjectPath::parse("linkage").unwrap();
    let actor = Actor::system("test");
    let full = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    change(&db).await;
    let diff = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Diff,
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    let with_number = linkage::extract_with(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        linkage::ExtractOptions {
            include_my_number: true,
        },
        &store,
        &prefix,
        &actor,
    )
    .await
    .unwrap();
    let files = everything_of(&store, &[&full, &diff, &with_number]).await;
    // The 発行番号 is the number printed on the certificate (j1040:
    // 発行年月日・市区町村名・発行端末名番号・…), so the terminal's name is
    // part of it; it appears nowhere else.
    assert!(issued.issue_number.contains("KOFU-TERM-93"));
    for (path, text) in &files {
        let text = text.replace(&issued.issue_number, "");
        for secret in [
            "kofu-clerk-0427",
            "KOFU-TERM-93",
            "issued_by",
            "issued_terminal",
        ] {
            assert!(!text.contains(secret), "{secret:?} in {path}");
        }
        assert!(!path.ends_with("/certificates.csv"), "{path}");
    }
    for m in [&full, &diff, &with_number] {
        assert!(!m.files.iter().any(|f| f.name == "certificates.csv"));
        assert_eq!(rows(m, "certificate_issues.csv"), 1);
        let described: Vec<&str> = m
            .certificate_columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            described,
            [
                "issue_number",
                "kind",
                "persons",
                "options",
                "pages",
                "issued_at"
            ]
        );
        let text =
            String::from_utf8(read(&store, &format!("{}/certificate_issues.csv", m.folder)).await)
                .unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(header, described);
        let row: Vec<String> = r
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(row[0], issued.issue_number);
        assert!(row[2].split(' ').any(|p| p == head.as_str()), "{row:?}");
        assert!(row[5].ends_with("+09:00"), "{row:?}");
        // Nothing of the PDF or its 照合番号.
        let pdf = hex::encode(Sha256::digest(&issued.pdf));
        assert!(!text.contains(&pdf));
        // 住民票コード stays, and the manifest says what it is for.
        let code_column = m
            .residents_columns
            .iter()
            .find(|c| c.name == "resident_code")
            .unwrap();
        assert_eq!(
            code_column.values.as_deref(),
            Some(linkage::RESIDENT_CODE_VALUES)
        );
    }
    // `machi import` of an extract folder still reads it.
    let dir = tempfile::tempdir().unwrap();
    let (fs, root) = linkage::open_target(&dir.path().to_string_lossy()).unwrap();
    let m = linkage::extract(
        &db.registry,
        &code(FUCHU),
        Kind::Full,
        fs.as_ref(),
        &root,
        &actor,
    )
    .await
    .unwrap();
    let report = machi::migration::import::import(
        &db.registry,
        &code(AKISHIMA),
        &[dir.path().join(&m.folder)],
        &machi::migration::import::ImportOptions::default(),
        &actor,
    )
    .await
    .unwrap();
    assert_eq!(
        report.outcome,
        machi::migration::import::Outcome::Imported,
        "{:?}",
        report.problems
    );
    // The migration export still carries the whole 交付履歴 to the next
    // system: the clerk and the terminal included.
    let dir = tempfile::tempdir().unwrap();
    machi::migration::export::export(&db.registry, &code(FUCHU), dir.path(), &actor)
        .await
        .unwrap();
    let whole = std::fs::read_to_string(dir.path().join("certificates.csv")).unwrap();
    assert!(whole.starts_with(
        "issue_number,kind,persons,options,pages,pdf_sha256,verify_hash,issued_by,issued_terminal,issued_at"
    ), "{whole}");
    assert!(whole.contains("kofu-clerk-0427") && whole.contains("KOFU-TERM-93"));
    assert!(!dir.path().join("certificate_issues.csv").exists());
}

/// The files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
