//! Migration: export → import → export gives identical files; re-running an
//! import changes nothing; bad input is reported and nothing is written;
//! a difference load appends only what is new. On SQLite and PostgreSQL.

use std::path::Path;

use machi::migration::export::export;
use machi::migration::import::{ImportOptions, InputEncoding, Outcome, import};
use machi::service::{Actor, Registry};
use serde_json::json;

use crate::contract::clerk;
use crate::contract::{MY_NUMBER, counts, move_in, takahashi_family};
use crate::support::{AKISHIMA, FUCHU, TestDb, code};

fn actor() -> Actor {
    Actor::system("migration-test")
}

async fn submit(r: &Registry, v: serde_json::Value) {
    r.submit(&code(FUCHU), &serde_json::from_value(v).unwrap(), &actor())
        .await
        .unwrap();
}

fn a(n: u64) -> String {
    machi_domain::ids::AddresseeNumber::from_serial(n)
        .unwrap()
        .to_string()
}

/// A tenant with some history: move-ins, a move, a birth with a
/// non-calendar date, a death with an unknown date, a foreign resident.
async fn populate(r: &Registry) {
    submit(r, takahashi_family()).await;
    let mut foreign = json!({"name": "NGUYEN VAN AN", "name_kana": "グエン　ヴァン　アン", "birth_date": "1995-02-03",
        "sex": "male", "relationship": "世帯主", "kind": "foreign",
        "foreign": {"alphabet_name": "NGUYEN VAN AN", "nationality": "ベトナム", "residence_status": "留学",
            "period_of_stay": "2年", "stay_expires_on": "2027-03-31", "alias": "中村　安"}});
    foreign["my_number"] = json!(MY_NUMBER);
    submit(r, move_in(vec![foreign], "東京都府中市本町一丁目")).await;
    submit(
        r,
        json!({"effective_date": "2024-07-01", "command": {"type": "move_within",
        "persons": [a(1), a(2), a(3)], "address": {"address": "東京都府中市緑町三丁目"}}}),
    )
    .await;
    submit(r, json!({"effective_date": "平成3年2月29日", "command": {"type": "birth", "household_number":
        machi_domain::ids::HouseholdNumber::from_serial(1).unwrap().to_string(),
        "person": {"name": "髙橋　凛", "name_kana": "タカハシ　リン", "birth_date": "平成3年2月29日", "sex": "female", "relationship": "子"}}}))
    .await;
    submit(
        r,
        json!({"effective_date": "令和6年頃", "command": {"type": "death", "person": a(5)}}),
    )
    .await;
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

both_backends!(
    export_import_export_is_identical_and_rerun_changes_nothing,
    bad_input_is_reported_and_nothing_is_imported,
    a_difference_load_appends_only_what_is_new,
    support_measures_and_certificates_migrate,
    a_full_load_leaves_keys_and_indexes_whole,
    a_rehearsal_compares_full_and_incremental_loads,
    an_import_killed_midway_leaves_nothing_and_reruns,
    an_upgrade_to_29_keeps_every_search,
    an_upgrade_to_33_posts_the_distinct_keys,
);

/// The names of a query's single text column, sorted.
async fn names(db: &TestDb, sql: &'static str) -> Vec<String> {
    let mut v: Vec<String> = db
        .store
        .read(None, move |tx| {
            tx.query(sql, &[])?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap();
    v.sort();
    v
}

/// A full load writes the registry's rows in bulk (SQLite: indexes dropped
/// and built again; PostgreSQL: COPied into the tenant's hash partitions).
/// Afterwards every index is there, valid, and used by the other tenant's
/// and the imported tenant's searches alike.
async fn a_full_load_leaves_keys_and_indexes_whole(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    populate(r).await;
    let dir = tempfile::tempdir().unwrap();
    let (empty, full) = (dir.path().join("empty"), dir.path().join("full"));
    export(r, &code(AKISHIMA), &empty, &actor()).await.unwrap();
    export(r, &code(FUCHU), &full, &actor()).await.unwrap();
    // An empty extract first: the tenant is still without history, so the
    // next import is a full load again.
    // (It holds no rows: it writes and records nothing.)
    for (files, rows, outcome) in [
        (&empty, 0, Outcome::Unchanged),
        (&full, 9, Outcome::Imported),
    ] {
        let report = import(
            r,
            &code(AKISHIMA),
            std::slice::from_ref(files),
            &ImportOptions::default(),
            &actor(),
        )
        .await
        .unwrap();
        assert_eq!(report.outcome, outcome, "{:?}", report.problems);
        assert_eq!(report.rows_written, rows);
        assert_indexes_whole(&db).await;
    }
    // PostgreSQL: the load was vacuumed after its commit, so the planner
    // can count on index-only scans of the postings at once (a common
    // trigram's keys were otherwise read whole by a bitmap scan).
    if db.url().is_some() {
        let unmarked = names(
            &db,
            "SELECT relname::text FROM pg_class \
             WHERE relname IN ('search_key_gram', 'resident_gram', 'search_gram_count') AND relallvisible = 0 \
             UNION ALL SELECT t FROM (VALUES ('resident_current'), ('resident_history')) v(t) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_class WHERE relname LIKE v.t || '\\_h%' AND relallvisible > 0)",
        )
        .await;
        assert!(
            unmarked.is_empty(),
            "not vacuumed after the load: {unmarked:?}"
        );
    }
    // Both tenants answer a search by birth date (an index that was rebuilt
    // or built aside) and take new changes.
    for t in [FUCHU, AKISHIMA] {
        let found = r
            .search(
                &code(t),
                &machi::service::registry::SearchParams {
                    birth_date: Some("昭和64年1月7日".into()),
                    limit: 50,
                    ..Default::default()
                },
                &clerk(),
            )
            .await
            .unwrap();
        assert_eq!(found.rows.len(), 1, "{t}");
        submit_to(r, t, takahashi_family()).await;
    }
}

/// Every secondary index of the registry tables is there; on PostgreSQL
/// the tables have their fixed hash partitions (none per tenant), each
/// carrying the parent's indexes, valid and attached, and no table built
/// aside for a load is left.
async fn assert_indexes_whole(db: &TestDb) {
    use machi::store::Backend;
    use machi::store::records::{REGISTRY_PARTITIONS, registry_indexes};
    let backend = if db.url().is_none() {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let mut expected: Vec<String> = registry_indexes(backend)
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    expected.sort();
    if db.url().is_none() {
        let found = names(
            db,
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name IN ('resident_history', 'resident_current') AND sql IS NOT NULL",
        )
        .await;
        assert_eq!(found, expected);
    } else {
        let found = names(
            db,
            "SELECT indexname::text FROM pg_indexes WHERE tablename IN ('resident_history', 'resident_current') \
             AND indexname NOT LIKE '%pkey'",
        )
        .await;
        assert_eq!(found, expected);
        // The same partitions however many tenants: 16 per table, each
        // carrying every index of the parent, valid and attached to it
        // (the primary key and the table's indexes above).
        for table in ["resident_history", "resident_current"] {
            let n = 1 + registry_indexes(Backend::Postgres)
                .iter()
                .filter(|(_, on)| on.starts_with(&format!("{table} ")))
                .count() as i64;
            let parts = db
                .store
                .read(None, move |tx| {
                    tx.query(
                        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                         WHERE i.inhparent = $1::text::regclass ORDER BY 1",
                        &[table.into()],
                    )?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>, _>>()
                })
                .await
                .unwrap();
            let want: Vec<String> = (0..REGISTRY_PARTITIONS)
                .map(|r| format!("{table}_h{r:02}"))
                .collect();
            assert_eq!(parts, want);
            for part in parts {
                let name = part.clone();
                let attached = db
                    .store
                    .read(None, move |tx| {
                        tx.query_one(
                            "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid \
                             JOIN pg_inherits i ON i.inhrelid = x.indexrelid \
                             WHERE c.relname = $1 AND x.indisvalid",
                            &[name.as_str().into()],
                        )?
                        .int(0)
                    })
                    .await
                    .unwrap();
                assert_eq!(attached, n, "{part}");
            }
        }
        // Nothing was left aside, and no tenant has tables of its own.
        let left = names(
            db,
            "SELECT relname::text FROM pg_class WHERE relname LIKE 'resident_%_load%' \
             OR relname ~ '^resident_(history|current)_[0-9]+$'",
        )
        .await;
        assert!(left.is_empty(), "{left:?}");
    }
}

async fn submit_to(r: &Registry, tenant: &str, v: serde_json::Value) {
    r.submit(&code(tenant), &serde_json::from_value(v).unwrap(), &actor())
        .await
        .unwrap();
}

async fn support_measures_and_certificates_migrate(db: TestDb) {
    use machi::service::certificates::{CertificateRequest, Subject};
    use machi_domain::certificate::{CertificateKind, CertificateOptions};
    use machi_domain::support::{Affair, AffairRequest, NewSupportMeasure, Requester};
    let db = db.with_tenants().await;
    let r = &db.registry;
    populate(r).await;
    let protected: machi_domain::ids::AddresseeNumber = a(1).parse().unwrap();
    let measure = r
        .support_register(
            &code(FUCHU),
            &NewSupportMeasure {
                filed_on: r.today(),
                provisional_start: None,
                requester: Requester {
                    addressee_number: protected.clone(),
                    municipality_role: Default::default(),
                    contact: Default::default(),
                },
                related_persons: vec![],
                offenders: vec![],
                affairs: vec![AffairRequest {
                    affair: Affair::ResidentRecordCopy,
                    addresses: vec![],
                }],
                forwarding: Default::default(),
            },
            &actor(),
        )
        .await
        .unwrap();
    for t in [FUCHU, AKISHIMA] {
        r.set_issuer(&code(t), "市長", "架空　太一", &actor())
            .await
            .unwrap();
    }
    let issued = r
        .issue_certificate(
            &code(FUCHU),
            CertificateRequest {
                kind: CertificateKind::ResidentCopy,
                subject: Subject::HouseholdOf(a(4).parse().unwrap()),
                options: CertificateOptions::default(),
                verification_url: "http://localhost/verify".into(),
                may_show_my_number: false,
                counter: None,
            },
            &actor(),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let first = export(r, &code(FUCHU), &one, &actor()).await.unwrap();
    for f in ["support_measures.csv", "certificates.csv"] {
        let text = String::from_utf8(read(&one.join(f))).unwrap();
        assert_eq!(text.lines().count(), 2, "{f}: {text}");
    }
    let report = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&one),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Imported, "{:?}", report.problems);
    // The measure protects the person in the new tenant, and the certificate
    // still verifies there.
    assert!(matches!(
        r.resident(&code(AKISHIMA), &protected, Default::default(), &clerk())
            .await,
        Err(machi::service::ServiceError::SupportBlocked { .. })
    ));
    let v = r
        .verify_certificate(
            &code(AKISHIMA),
            &issued.issue_number,
            &issued.verification_code,
        )
        .await
        .unwrap();
    assert!(v.is_some(), "the migrated certificate verifies");
    export(r, &code(AKISHIMA), &two, &actor()).await.unwrap();
    for f in ["support_measures.csv", "certificates.csv"] {
        assert!(
            read(&one.join(f)) == read(&two.join(f)),
            "{f} differs after a round trip"
        );
    }
    // A side row that contradicts itself is reported, and nothing is written.
    r.create_tenant(code("131202"), "練馬区", "東京都")
        .await
        .unwrap();
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["residents.csv", "households.csv", "certificates.csv"] {
        std::fs::copy(one.join(f), bad.join(f)).unwrap();
    }
    let measures = String::from_utf8(read(&one.join("support_measures.csv"))).unwrap();
    std::fs::write(
        bad.join("support_measures.csv"),
        measures.replacen(",provisional,", ",ended,", 1),
    )
    .unwrap();
    let report = import(
        r,
        &code("131202"),
        std::slice::from_ref(&bad),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    let p = &report.problems[0];
    assert_eq!(
        (p.file.as_str(), p.row, p.column.as_str()),
        ("support_measures.csv", 2, "detail"),
        "{p:?}"
    );
    assert_eq!(counts(&db.store, "131202").await, (0, 0, 0, 0));

    // The measure is confirmed in the old system after the first extract:
    // the difference extract carries it, and the new tenant takes it (the
    // row is newer than the stored one).
    r.support_confirm(
        &code(FUCHU),
        measure.stored.measure_id,
        r.today(),
        None,
        &actor(),
    )
    .await
    .unwrap();
    let diff = dir.path().join("diff");
    machi::migration::export::export_since(
        r,
        &code(FUCHU),
        &diff,
        Some(first.last_change_id),
        &actor(),
    )
    .await
    .unwrap();
    let before = counts(&db.store, AKISHIMA).await;
    let report = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&diff),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Imported, "{:?}", report.problems);
    let (three, four) = (dir.path().join("three"), dir.path().join("four"));
    export(r, &code(FUCHU), &three, &actor()).await.unwrap();
    export(r, &code(AKISHIMA), &four, &actor()).await.unwrap();
    assert!(
        read(&three.join("support_measures.csv")) == read(&four.join("support_measures.csv")),
        "the confirmed measure did not reach the new tenant"
    );
    // The first extract again, re-encoded (CRLF line ends): other bytes,
    // the same content; nothing is new, so nothing is written or recorded.
    let after_diff = counts(&db.store, AKISHIMA).await;
    assert_eq!((after_diff.0, after_diff.1), (before.0, before.1));
    let crlf = dir.path().join("crlf");
    std::fs::create_dir_all(&crlf).unwrap();
    for f in ["residents.csv", "certificates.csv"] {
        let text = String::from_utf8(read(&one.join(f))).unwrap();
        std::fs::write(crlf.join(f), text.replace('\n', "\r\n")).unwrap();
    }
    let report = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&crlf),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Unchanged, "{:?}", report.problems);
    assert_eq!(counts(&db.store, AKISHIMA).await, after_diff);
    // But the first extract's measure, older than the stored one and other
    // than it, is a conflict: reported with its row, nothing written.
    let stale = dir.path().join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::copy(one.join("residents.csv"), stale.join("residents.csv")).unwrap();
    std::fs::copy(
        one.join("support_measures.csv"),
        stale.join("support_measures.csv"),
    )
    .unwrap();
    let report = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&stale),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    let p = &report.problems[0];
    assert_eq!(
        (p.file.as_str(), p.row, p.code.as_str()),
        ("support_measures.csv", 2, "conflicts_with_stored"),
        "{p:?}"
    );
    // A certificate changed since it was imported, or naming a person the
    // tenant does not have, or a 発行番号 twice in the file: refused, each
    // at its row, nothing written.
    let certs = String::from_utf8(read(&one.join("certificates.csv"))).unwrap();
    let mut reader = csv::Reader::from_reader(certs.as_bytes());
    let header = reader.headers().unwrap().clone();
    let row: Vec<String> = reader
        .records()
        .next()
        .unwrap()
        .unwrap()
        .iter()
        .map(String::from)
        .collect();
    let file_of = |rows: &[Vec<String>]| {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header).unwrap();
        for r in rows {
            w.write_record(r).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    };
    let with = |i: usize, v: &str| {
        let mut r = row.clone();
        r[i] = v.to_string();
        r
    };
    let stranger = {
        let mut r = with(0, "R9-0001");
        r[2] = a(99);
        r
    };
    let cases = [
        (
            "changed",
            file_of(&[with(4, "7")]),
            "conflicts_with_stored",
            2,
        ),
        (
            "stranger",
            file_of(&[row.clone(), stranger]),
            "unknown_person",
            3,
        ),
        (
            "twice",
            file_of(&[row.clone(), row.clone()]),
            "duplicate_key",
            3,
        ),
    ];
    for (name, text, code_expected, line) in cases {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(one.join("residents.csv"), d.join("residents.csv")).unwrap();
        std::fs::write(d.join("certificates.csv"), text).unwrap();
        let report = import(
            r,
            &code(AKISHIMA),
            std::slice::from_ref(&d),
            &ImportOptions::default(),
            &actor(),
        )
        .await
        .unwrap();
        assert_eq!(report.outcome, Outcome::Refused, "{name}");
        let p = &report.problems[0];
        assert_eq!(
            (p.file.as_str(), p.row, p.code.as_str()),
            ("certificates.csv", line, code_expected),
            "{name}: {p:?}"
        );
        assert_eq!(counts(&db.store, AKISHIMA).await, after_diff, "{name}");
        if name == "stranger" {
            // --validate-only finds the stranger too.
            let report = import(
                r,
                &code(AKISHIMA),
                std::slice::from_ref(&d),
                &ImportOptions {
                    validate_only: true,
                    ..ImportOptions::default()
                },
                &actor(),
            )
            .await
            .unwrap();
            assert_eq!(report.outcome, Outcome::Refused);
            let p = &report.problems[0];
            assert_eq!(
                (p.file.as_str(), p.row, p.code.as_str()),
                ("certificates.csv", line, code_expected),
                "validate-only: {p:?}"
            );
        }
    }
    // A 支援措置番号 twice, written as 1 and 01: one key, refused in
    // validation at the second row.
    let text = String::from_utf8(read(&one.join("support_measures.csv"))).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let first: Vec<String> = reader
        .records()
        .next()
        .unwrap()
        .unwrap()
        .iter()
        .map(String::from)
        .collect();
    let mut second = first.clone();
    second[0] = format!("0{}", first[0]);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).unwrap();
    w.write_record(&first).unwrap();
    w.write_record(&second).unwrap();
    let d = dir.path().join("measure-twice");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(one.join("residents.csv"), d.join("residents.csv")).unwrap();
    std::fs::write(d.join("support_measures.csv"), w.into_inner().unwrap()).unwrap();
    let report = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&d),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    let p = &report.problems[0];
    assert_eq!(
        (p.file.as_str(), p.row, p.code.as_str()),
        ("support_measures.csv", 3, "duplicate_key"),
        "{p:?}"
    );
    assert_eq!(counts(&db.store, AKISHIMA).await, after_diff);
}

async fn export_import_export_is_identical_and_rerun_changes_nothing(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    populate(r).await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let s = export(r, &code(FUCHU), &one, &actor()).await.unwrap();
    assert_eq!(s.history_rows, 9);
    let report = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&one),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Imported, "{:?}", report.problems);
    assert_eq!(
        (report.persons, report.history_rows, report.rows_written),
        (5, 9, 9)
    );
    export(r, &code(AKISHIMA), &two, &actor()).await.unwrap();
    // The export has the 個人番号 in plain text (the layout's column); the
    // database has it sealed, also after a bulk load (COPY on PostgreSQL).
    assert!(
        String::from_utf8(read(&one.join("residents.csv")))
            .unwrap()
            .contains(MY_NUMBER)
    );
    for (table, rows) in db.raw_dump().await {
        for cell in rows.into_iter().flatten().flatten() {
            assert!(!cell.contains(MY_NUMBER), "{table}: {cell}");
        }
    }
    for f in [
        "residents.csv",
        "households.csv",
        "support_measures.csv",
        "certificates.csv",
        "codes.csv",
    ] {
        assert!(
            read(&one.join(f)) == read(&two.join(f)),
            "{f} differs after a round trip"
        );
    }
    // The imported tenant answers like the original.
    let p = machi_domain::ids::AddresseeNumber::from_serial(5).unwrap();
    let (x, _) = r
        .resident(&code(AKISHIMA), &p, Default::default(), &clerk())
        .await
        .unwrap();
    assert_eq!(
        x.record.birth_date.display_wareki(r.eras()),
        "平成3年2月29日"
    );
    // New numbers continue after the imported ones.
    let out = r
        .submit(
            &code(AKISHIMA),
            &serde_json::from_value(takahashi_family()).unwrap(),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(out.rows[0].record.addressee_number.to_string(), a(6));
    // Importing the same files again changes nothing.
    let before = counts(&db.store, AKISHIMA).await;
    let again = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&one),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyImported);
    assert_eq!(counts(&db.store, AKISHIMA).await, before);
}

async fn bad_input_is_reported_and_nothing_is_imported(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    populate(r).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    export(r, &code(FUCHU), &good, &actor()).await.unwrap();
    let residents = String::from_utf8(read(&good.join("residents.csv"))).unwrap();
    let lines: Vec<&str> = residents.lines().collect();
    let write_case = |name: &str, residents: String, keep_manifest: bool| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("residents.csv"), residents).unwrap();
        std::fs::copy(good.join("households.csv"), d.join("households.csv")).unwrap();
        if keep_manifest {
            std::fs::copy(good.join("manifest.json"), d.join("manifest.json")).unwrap();
        }
        d
    };
    let bad_my_number = residents.replacen("123456789018", "123456789012", 1);
    let duplicate = {
        let mut l = lines.clone();
        l.insert(2, lines[1]);
        l.join("\n") + "\n"
    };
    let unsorted = {
        let mut l = lines.clone();
        let last = l.pop().unwrap();
        l.insert(1, last);
        l.join("\n") + "\n"
    };
    let truncated = residents[..residents.len() - 40].to_string();
    let bad_header = residents.replacen("addressee_number", "atena", 1);
    // Rows edited as CSV: (row index, column, value).
    let edited = |edits: &[(usize, &str, String)]| {
        let mut reader = csv::Reader::from_reader(residents.as_bytes());
        let header = reader.headers().unwrap().clone();
        let mut rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        for (i, column, value) in edits {
            let c = header.iter().position(|h| h == *column).unwrap();
            rows[*i][c] = value.clone();
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header).unwrap();
        for r in rows {
            w.write_record(r).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    };
    let change_of = |i: usize| {
        let mut reader = csv::Reader::from_reader(residents.as_bytes());
        let c = reader
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "change_id")
            .unwrap();
        reader.records().nth(i).unwrap().unwrap()[c].to_string()
    };
    // The last row claims the first row's change, with other items.
    let last_row = lines.len() - 2;
    assert_ne!(change_of(0), change_of(last_row));
    let change_clash = edited(&[(last_row, "change_id", change_of(0))]);
    let cancels_nowhere = edited(&[(last_row, "cancels", "999999".into())]);
    let long_address = edited(&[(0, "address", format!("東京都府中市{}", "一".repeat(300)))]);
    // --validate-only finds it too (looking in the tenant as the load would).
    let rep = import(
        r,
        &code(AKISHIMA),
        &[write_case(
            "cancels_nowhere_checked",
            cancels_nowhere.clone(),
            false,
        )],
        &ImportOptions {
            validate_only: true,
            ..ImportOptions::default()
        },
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Refused);
    assert_eq!(
        rep.problems[0].code, "cancels_unknown_change",
        "{:?}",
        rep.problems
    );
    let cases = vec![
        (
            "bad_my_number",
            write_case("bad_my_number", bad_my_number, false),
            "my_number",
        ),
        (
            "duplicate",
            write_case("duplicate", duplicate, false),
            "history_number",
        ),
        (
            "unsorted",
            write_case("unsorted", unsorted, false),
            "addressee_number",
        ),
        ("truncated", write_case("truncated", truncated, true), ""),
        (
            "change_clash",
            write_case("change_clash", change_clash, false),
            "change_id",
        ),
        (
            "cancels_nowhere",
            write_case("cancels_nowhere", cancels_nowhere, false),
            "cancels",
        ),
        (
            "bad_header",
            write_case("bad_header", bad_header, false),
            "addressee_number",
        ),
        (
            "long_address",
            write_case("long_address", long_address, false),
            "address",
        ),
    ];
    // A household whose member count disagrees: a broken reference.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(good.join("residents.csv"), broken.join("residents.csv")).unwrap();
    let households = String::from_utf8(read(&good.join("households.csv"))).unwrap();
    let mut hl: Vec<String> = households.lines().map(str::to_string).collect();
    let last = hl.len() - 1;
    hl[last] = format!("{},9", hl[last].rsplit_once(',').unwrap().0);
    std::fs::write(broken.join("households.csv"), hl.join("\n") + "\n").unwrap();
    let before = counts(&db.store, AKISHIMA).await;
    for (name, path, column) in cases.into_iter().chain([("broken", broken, "members")]) {
        let rep = import(
            r,
            &code(AKISHIMA),
            &[path],
            &ImportOptions::default(),
            &actor(),
        )
        .await
        .unwrap();
        assert_eq!(rep.outcome, Outcome::Refused, "{name}");
        assert!(rep.problem_count > 0, "{name}");
        let p = &rep.problems[0];
        assert!(!p.message_ja.is_empty() && !p.message_en.is_empty());
        if !column.is_empty() {
            assert!(
                rep.problems.iter().any(|p| p.column == column),
                "{name}: {:?}",
                rep.problems
            );
        }
        assert_eq!(
            counts(&db.store, AKISHIMA).await,
            before,
            "{name} wrote something"
        );
    }
    // What a refused full load set aside or dropped is back as it was.
    assert_indexes_whole(&db).await;
    // Shift_JIS input is read as such. This one holds CP932's extension
    // kanji (髙, 﨑), which JIS X 0213 reads as other kanji: auto-detection
    // refuses to guess, naming the line; named, the encoding is used.
    let sjis = dir.path().join("sjis");
    std::fs::create_dir_all(&sjis).unwrap();
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&residents);
    assert!(!unmappable || residents.contains('𠮷'));
    assert!(residents.contains('髙') || residents.contains('﨑'));
    std::fs::write(sjis.join("residents.csv"), &bytes).unwrap();
    let validate_as = |encoding| ImportOptions {
        encoding,
        validate_only: true,
        ..ImportOptions::default()
    };
    let rep = import(
        r,
        &code(AKISHIMA),
        &[sjis.join("residents.csv")],
        &validate_as(InputEncoding::Auto),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Refused);
    let first_extension = residents
        .lines()
        .position(|l| l.contains('髙') || l.contains('﨑'))
        .unwrap() as u64
        + 1;
    assert_eq!(
        rep.problems
            .iter()
            .map(|p| (p.code.as_str(), p.row))
            .collect::<Vec<_>>(),
        [("encoding_ambiguous", first_extension)],
        "{:?}",
        rep.problems
    );
    let rep = import(
        r,
        &code(AKISHIMA),
        &[sjis.join("residents.csv")],
        &validate_as(InputEncoding::ShiftJis),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(
        rep.encoding.as_deref(),
        Some("shift_jis"),
        "{:?}",
        rep.problems
    );
    assert_eq!(rep.outcome, Outcome::Validated, "{:?}", rep.problems);
    // Without those kanji, auto-detection finds Shift_JIS by itself.
    let plain: String = residents.replace('髙', "高").replace('﨑', "崎");
    let (plain_bytes, _, _) = encoding_rs::SHIFT_JIS.encode(&plain);
    let plain_dir = dir.path().join("sjis-plain");
    std::fs::create_dir_all(&plain_dir).unwrap();
    std::fs::write(plain_dir.join("residents.csv"), &plain_bytes).unwrap();
    let rep = import(
        r,
        &code(AKISHIMA),
        &[plain_dir.join("residents.csv")],
        &validate_as(InputEncoding::Auto),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(
        rep.encoding.as_deref(),
        Some("shift_jis"),
        "{:?}",
        rep.problems
    );
    // A UTF-8 file with one bad byte: reported at its line, not re-read as
    // Shift_JIS.
    let mut broken_utf8 = residents.clone().into_bytes();
    let at = residents.match_indices('\n').nth(4).unwrap().0 + 1;
    broken_utf8.insert(at + 12, 0xFF);
    let bad_byte = dir.path().join("bad-byte");
    std::fs::create_dir_all(&bad_byte).unwrap();
    std::fs::write(bad_byte.join("residents.csv"), &broken_utf8).unwrap();
    let rep = import(
        r,
        &code(AKISHIMA),
        &[bad_byte.join("residents.csv")],
        &validate_as(InputEncoding::Auto),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(
        rep.problems
            .iter()
            .map(|p| (p.code.as_str(), p.row))
            .collect::<Vec<_>>(),
        [("encoding_invalid", 6)],
        "{:?}",
        rep.problems
    );
    // The same file declared as UTF-8: the wrong encoding is reported.
    let rep = import(
        r,
        &code(AKISHIMA),
        &[sjis.join("residents.csv")],
        &ImportOptions {
            encoding: InputEncoding::Utf8,
            ..ImportOptions::default()
        },
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Refused);
    assert!(
        rep.problems.iter().any(|p| p.code == "encoding_invalid"),
        "{:?}",
        rep.problems
    );
    assert_eq!(counts(&db.store, AKISHIMA).await, before);
}

async fn a_difference_load_appends_only_what_is_new(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    populate(r).await;
    let dir = tempfile::tempdir().unwrap();
    let (first, second, copy) = (
        dir.path().join("1"),
        dir.path().join("2"),
        dir.path().join("c"),
    );
    export(r, &code(FUCHU), &first, &actor()).await.unwrap();
    import(
        r,
        &code(AKISHIMA),
        &[first],
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    // More changes in the source, then the difference.
    submit(
        r,
        json!({"effective_date": "2024-09-01", "command": {"type": "move_within",
        "persons": [a(1), a(2), a(3)], "address": {"address": "東京都府中市寿町一丁目"}}}),
    )
    .await;
    export(r, &code(FUCHU), &second, &actor()).await.unwrap();
    let rep = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&second),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Imported, "{:?}", rep.problems);
    assert_eq!((rep.rows_written, rep.rows_already_present), (3, 9));
    export(r, &code(AKISHIMA), &copy, &actor()).await.unwrap();
    assert!(read(&second.join("residents.csv")) == read(&copy.join("residents.csv")));
    // A difference extract carries only the new rows and loads the same way.
    let (diff, third) = (dir.path().join("d"), dir.path().join("3"));
    let last = export(r, &code(FUCHU), &third, &actor())
        .await
        .unwrap()
        .last_change_id;
    // The last change the tenant has is cancelled in the old system: the
    // difference's cancellation rows name a change that is in the tenant,
    // not in the file.
    submit(
        r,
        json!({"effective_date": "", "command": {"type": "cancel", "change_id": last}}),
    )
    .await;
    submit(
        r,
        json!({"effective_date": "2024-10-01", "command": {"type": "move_within",
        "persons": [a(1), a(2), a(3)], "address": {"address": "東京都府中市本町二丁目"}}}),
    )
    .await;
    let d = machi::migration::export::export_since(r, &code(FUCHU), &diff, Some(last), &actor())
        .await
        .unwrap();
    assert!(d.history_rows > 3, "{d:?}");
    assert_eq!(d.households, 0);
    let diff_rows = String::from_utf8(read(&diff.join("residents.csv"))).unwrap();
    assert!(diff_rows.lines().any(|l| l.ends_with(&format!(",{last}"))));
    let rep = import(
        r,
        &code(AKISHIMA),
        std::slice::from_ref(&diff),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Imported, "{:?}", rep.problems);
    assert_eq!(
        (rep.rows_written, rep.rows_already_present),
        (d.history_rows, 0)
    );
    let (source, copy2) = (dir.path().join("s"), dir.path().join("c2"));
    export(r, &code(FUCHU), &source, &actor()).await.unwrap();
    export(r, &code(AKISHIMA), &copy2, &actor()).await.unwrap();
    assert!(read(&source.join("residents.csv")) == read(&copy2.join("residents.csv")));
}

/// The rehearsal end to end on a small generated population.
async fn a_rehearsal_compares_full_and_incremental_loads(db: TestDb) {
    use machi::migration::{generate, rehearse};
    let db = db.with_tenants().await;
    let r = &db.registry;
    let dir = tempfile::tempdir().unwrap();
    let pop = dir.path().join("pop");
    let opts = generate::GenerateOptions {
        residents: 1500,
        seed: 3,
        town_index: 0,
        today: r.today(),
    };
    let g = generate::generate(&pop, &opts, r.eras()).unwrap();
    assert!(g.persons >= 1500);
    let rep = import(
        r,
        &code(FUCHU),
        std::slice::from_ref(&pop),
        &ImportOptions::default(),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Imported, "{:?}", rep.problems.first());
    assert_eq!(rep.history_rows as usize, g.history_rows);
    let reh = rehearse::rehearse(r, &code(FUCHU), &dir.path().join("work"), 20)
        .await
        .unwrap();
    assert!(rehearse::all_loaded(&reh));
    assert_eq!(reh.full.problems + reh.incremental_cutover.problems, 0);
    assert!(reh.changed_households > 0);
    // Downtime counts the extract at cutover as well as the load.
    for step in [&reh.full, &reh.incremental_cutover] {
        assert!(step.extract_seconds > 0.0 && step.load_seconds > 0.0);
        assert_eq!(step.seconds(), step.extract_seconds + step.load_seconds);
    }
    // The difference is what changed: one row per moved person, far fewer
    // than the full load.
    assert!(reh.incremental_cutover.rows > 0);
    assert!(reh.incremental_cutover.rows * 10 < reh.full.rows);
    assert_eq!(
        reh.full.rows,
        reh.incremental_initial.rows + reh.incremental_cutover.rows
    );
}

/// PostgreSQL: a full load writes into the shared hash partitions with
/// row locks and the tables' ordinary write lock only: while a long
/// transaction holds the registry tables (another tenant's export, say),
/// the import completes without waiting for it, and another tenant's read
/// goes through meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_load_does_not_stall_others_behind_a_long_transaction() {
    let db = TestDb::postgres().await.with_tenants().await;
    let r = &db.registry;
    populate(r).await;
    let dir = tempfile::tempdir().unwrap();
    export(r, &code(FUCHU), dir.path(), &actor()).await.unwrap();
    let url = db.url().unwrap();
    // A long reader of 府中市 (an export, say), holding the tables.
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let u = url.clone();
    let holder = std::thread::spawn(move || {
        let mut c = ::postgres::Client::connect(&u, ::postgres::NoTls).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.query(
            "SELECT count(*) FROM resident_history WHERE tenant = $1",
            &[&FUCHU],
        )
        .unwrap();
        held_tx.send(()).unwrap();
        // Holds until told, or gives up: then the test fails below.
        let told = release
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_ok();
        tx.commit().unwrap();
        told
    });
    held.recv().unwrap();
    // The import completes while the long transaction is still open.
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(45),
        import(
            r,
            &code(AKISHIMA),
            &[dir.path().to_path_buf()],
            &ImportOptions::default(),
            &actor(),
        ),
    )
    .await
    .expect("the import waited for the long transaction")
    .unwrap();
    assert_eq!(report.outcome, Outcome::Imported, "{:?}", report.problems);
    assert_eq!(report.rows_written, 9);
    // Another tenant's read goes through too.
    let u = url.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut c = ::postgres::Client::connect(&u, ::postgres::NoTls).unwrap();
        c.batch_execute("SET statement_timeout = '10s'").unwrap();
        c.query_one(
            "SELECT count(*) FROM resident_history WHERE tenant = $1",
            &[&FUCHU],
        )
        .map(|r| r.get::<_, i64>(0))
    })
    .await
    .unwrap();
    assert!(read.is_ok(), "a read queued behind the import: {read:?}");
    release_tx.send(()).unwrap();
    assert!(
        holder.join().unwrap(),
        "the long transaction was not released"
    );
    assert_indexes_whole(&db).await;
}

/// PostgreSQL: adding a tenant (rows only: no partition of its own) does
/// not wait for (nor queue others behind) a long transaction on the
/// registry tables; and two tenants' full imports at once both complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_added_and_loaded_side_by_side() {
    let db = TestDb::postgres().await.with_tenants().await;
    let r = &db.registry;
    populate(r).await;
    let dir = tempfile::tempdir().unwrap();
    export(r, &code(FUCHU), dir.path(), &actor()).await.unwrap();
    let url = db.url().unwrap();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.query(
            "SELECT count(*) FROM resident_history WHERE tenant = $1",
            &[&FUCHU],
        )
        .unwrap();
        held_tx.send(()).unwrap();
        let told = release
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_ok();
        tx.commit().unwrap();
        told
    });
    held.recv().unwrap();
    for (c, name) in [("132080", "武蔵野市"), ("132098", "青梅市")] {
        r.create_tenant(code(c), name, "東京都").await.unwrap();
    }
    // Created while the long transaction is still open.
    release_tx.send(()).unwrap();
    assert!(
        holder.join().unwrap(),
        "adding a tenant waited for the long transaction"
    );
    let load = |t: &'static str| {
        let (r, path) = (r.clone(), dir.path().to_path_buf());
        tokio::spawn(async move {
            import(&r, &code(t), &[path], &ImportOptions::default(), &actor()).await
        })
    };
    let (a, b) = (load("132080"), load("132098"));
    for done in [a.await.unwrap(), b.await.unwrap()] {
        let report = done.unwrap();
        assert_eq!(report.outcome, Outcome::Imported, "{:?}", report.problems);
        assert_eq!(report.rows_written, 9);
    }
    assert_indexes_whole(&db).await;
}

/// PostgreSQL, migration 24: the rows of tenants made with a LIST
/// partition each (migration 11) are carried over, every column of every
/// row, into the fixed hash partitions; the per-tenant partitions are gone,
/// and the tenants are read and changed as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_partitioning_carries_every_tenants_rows() {
    use machi::store::records::REGISTRY_PARTITIONS;
    let server = crate::support::postgres_server();
    let name = format!("machi_t_{}_hash25", std::process::id());
    let url = machi::store::create_fresh_postgres_database(&server, &name)
        .await
        .unwrap();
    // The schema before migration 24 (the LIST layout of migration 11).
    machi::store::migrate_postgres_until(&url, 23)
        .await
        .unwrap();
    let tenants = ["132063", "132071", "132080", "132098", "132101"];
    let u = url.clone();
    let before = tokio::task::spawn_blocking(move || {
        let mut c = ::postgres::Client::connect(&u, ::postgres::NoTls).unwrap();
        for (i, t) in tenants.iter().enumerate() {
            c.batch_execute(&format!(
                "INSERT INTO tenants VALUES ('{t}', '市{i}', '東京都', 0); \
                 INSERT INTO tenant_heads VALUES ('{t}', 3, 1, 3, 0, 0, 'genesis'); \
                 CREATE TABLE resident_history_{t} PARTITION OF resident_history FOR VALUES IN ('{t}'); \
                 CREATE TABLE resident_current_{t} PARTITION OF resident_current FOR VALUES IN ('{t}');"
            ))
            .unwrap();
            for n in 1..=3 {
                c.execute(
                    "INSERT INTO resident_history (tenant, addressee_number, history_number, change_id, \
                     household_number, status, name_key, kana_key, address_key, birth_key, record, reason, \
                     effective_date, effective_key, processed_on, filed_on, input_place, input_terminal, \
                     recorded_at, cancels, my_number_key, resident_code) \
                     VALUES ($1, $2, 1, $3, 'H1', 'resident', $4, 'タカハシ', '府中市宮西町', '19890107', \
                     'v2:record', 'move_in', '2024-04-01', '20240401', '2024-04-01', NULL, '窓口', 'T-1', \
                     $3, NULL, NULL, NULL)",
                    // No sealed 個人番号 key: the keyring check at the
                    // server start would try to open this made-up record.
                    &[&t, &format!("{n:015}"), &(n as i64), &format!("高橋{i}{n}")],
                )
                .unwrap();
                c.execute(
                    "INSERT INTO resident_current (tenant, addressee_number, history_number, household_number, \
                     status, name_key, kana_key, address_key, birth_key, my_number_key, resident_code) \
                     VALUES ($1, $2, 1, 'H1', 'resident', $3, 'タカハシ', '府中市宮西町', '19890107', $4, NULL)",
                    &[&t, &format!("{n:015}"), &format!("高橋{i}{n}"), &format!("mk{i}{n}")],
                )
                .unwrap();
            }
        }
        let rows = |c: &mut ::postgres::Client, table: &str| -> Vec<String> {
            c.query(
                &format!("SELECT t::text FROM {table} t ORDER BY tenant, addressee_number"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        (
            rows(&mut c, "resident_history"),
            rows(&mut c, "resident_current"),
        )
    })
    .await
    .unwrap();
    assert_eq!(before.0.len(), 15);
    // Migration 25, as a server start runs it.
    let store = machi::store::Store::connect(
        &machi::store::DatabaseLocation::Postgres(url.clone()),
        crate::support::test_keyring(),
    )
    .await
    .unwrap();
    let u = url.clone();
    let (after, parts, own) = tokio::task::spawn_blocking(move || {
        let mut c = ::postgres::Client::connect(&u, ::postgres::NoTls).unwrap();
        let rows = |c: &mut ::postgres::Client, table: &str| -> Vec<String> {
            c.query(
                &format!("SELECT t::text FROM {table} t ORDER BY tenant, addressee_number"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let after = (
            rows(&mut c, "resident_history"),
            rows(&mut c, "resident_current"),
        );
        let parts: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_inherits WHERE inhparent IN \
                 ('resident_history'::regclass, 'resident_current'::regclass)",
                &[],
            )
            .unwrap()
            .get(0);
        let own: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname ~ '^resident_(history|current)_[0-9]+$'",
                &[],
            )
            .unwrap()
            .get(0);
        (after, parts, own)
    })
    .await
    .unwrap();
    assert_eq!(after, before);
    assert_eq!(parts, 2 * REGISTRY_PARTITIONS);
    assert_eq!(own, 0);
    // Row-level security still scopes the tables: a tenant sees its own
    // rows only, through the application role.
    for t in tenants {
        let tenant = code(t);
        let n = store
            .read(Some(&tenant), |tx| {
                tx.query_one("SELECT count(*) FROM resident_current", &[])?
                    .int(0)
            })
            .await
            .unwrap();
        assert_eq!(n, 3, "{t}");
    }
    // A tenant added afterwards gets no partition of its own, and writes.
    let r = Registry::new(
        store.clone(),
        machi_domain::dates::EraTable::standard(),
        machi::service::Clock::System,
    );
    r.create_tenant(code("132110"), "新市", "東京都")
        .await
        .unwrap();
    r.submit(
        &code("132110"),
        &serde_json::from_value(takahashi_family()).unwrap(),
        &actor(),
    )
    .await
    .unwrap();
    drop(r);
    drop(store);
    machi::store::drop_postgres_database(&server, &name)
        .await
        .unwrap();
}

/// All or nothing, against an interruption: `machi import` killed (SIGKILL)
/// while it writes leaves the tenant without a row, and running it again
/// loads everything. Through the command as an operator runs it; killed once
/// rows are being written (SQLite: the log file grows; PostgreSQL: the
/// server shows the import's COPY running).
async fn an_import_killed_midway_leaves_nothing_and_reruns(db: TestDb) {
    let location = db.location().await;
    let pg_url = db.url();
    tokio::task::spawn_blocking(move || killed_import(location, pg_url))
        .await
        .unwrap();
    drop(db);
}

fn killed_import(location: machi::store::DatabaseLocation, pg_url: Option<String>) {
    use machi::store::DatabaseLocation;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_machi");
    let dir = tempfile::tempdir().unwrap();
    let url = match &location {
        DatabaseLocation::Sqlite(p) => format!("sqlite://{}", p.display()),
        DatabaseLocation::Postgres(u) => u.clone(),
    };
    let command = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--database")
            .arg(&url)
            .args(args)
            .env("MACHI_LOG", "warn")
            .env("MACHI_MASTER_KEY", crate::support::TEST_MASTER_KEY);
        c
    };
    let machi = |args: &[&str]| {
        let out = command(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    machi(&["migrate"]);
    machi(&["tenant", "add", "132063", "府中市", "東京都"]);
    let population = dir.path().join("gen");
    machi(&[
        "generate",
        "--residents",
        "40000",
        "--output",
        population.to_str().unwrap(),
    ]);
    let rows_in_file = std::fs::read_to_string(population.join("residents.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let exported_rows = || {
        let out = dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        machi(&[
            "export",
            "--tenant",
            "132063",
            "--output",
            out.to_str().unwrap(),
        ]);
        std::fs::read_to_string(out.join("residents.csv"))
            .unwrap()
            .lines()
            .count()
            - 1
    };
    // What shows that rows are being written.
    let wal = match &location {
        DatabaseLocation::Sqlite(p) => {
            Some(std::path::PathBuf::from(format!("{}-wal", p.display())))
        }
        DatabaseLocation::Postgres(_) => None,
    };
    let wal_at_start = wal
        .as_ref()
        .map_or(0, |w| std::fs::metadata(w).map_or(0, |m| m.len()));
    let mut watcher = pg_url.as_ref().map(|u| {
        let server = crate::support::postgres_server();
        let dbname = u.rsplit('/').next().unwrap().to_string();
        (
            ::postgres::Client::connect(&server, ::postgres::NoTls).unwrap(),
            dbname,
        )
    });
    let mut writing = || -> bool {
        match (&wal, &mut watcher) {
            (Some(w), _) => std::fs::metadata(w).map_or(0, |m| m.len()) > wal_at_start + (4 << 20),
            (None, Some((c, dbname))) => {
                c.query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                     AND state = 'active' AND query ILIKE 'COPY%'",
                    &[&*dbname],
                )
                .unwrap()
                .get::<_, i64>(0)
                    > 0
            }
            _ => unreachable!(),
        }
    };
    let mut child = command(&["import", "--tenant", "132063", population.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut killed_midway = false;
    while started.elapsed() < std::time::Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if writing() {
            child.kill().unwrap();
            killed_midway = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.wait();
    assert!(killed_midway, "the import ended before it could be killed");
    // Nothing, or (had the kill come after the commit) everything: never a
    // part.
    let left = exported_rows();
    eprintln!("killed import left {left} rows");
    assert!(
        left == 0 || left == rows_in_file,
        "a killed import left {left} of {rows_in_file} rows"
    );
    let out = machi(&["import", "--tenant", "132063", population.to_str().unwrap()]);
    assert!(out.contains("imported"), "{out}");
    assert_eq!(exported_rows(), rows_in_file);
}

/// The residents of the upgrade test: a household that moves (転居), a
/// name change, a 除票 (転出), and persons whose names hold one character
/// at a part's end (田中　一) and inside a part (田中　一郎).
async fn populate_for_search(r: &Registry) {
    use crate::contract::person;
    submit(
        r,
        move_in(
            vec![
                person(
                    "田中　一郎",
                    "タナカ　イチロウ",
                    "1970-05-01",
                    "male",
                    "世帯主",
                ),
                person("田中　花子", "タナカ　ハナコ", "1972-08-15", "female", "妻"),
            ],
            "東京都府中市宮西町一丁目",
        ),
    )
    .await;
    for (name, kana, address) in [
        ("田中　一", "タナカ　ハジメ", "東京都府中市本町一丁目"),
        ("山川　次郎", "ヤマカワ　ジロウ", "東京都府中市寿町二丁目"),
        ("鈴木　一美", "スズキ　カズミ", "東京都府中市寿町一丁目"),
    ] {
        submit(
            r,
            move_in(
                vec![person(name, kana, "1980-01-01", "female", "世帯主")],
                address,
            ),
        )
        .await;
    }
    submit(
        r,
        json!({"effective_date": "2024-07-01", "command": {"type": "move_within",
        "persons": [a(1), a(2)], "address": {"address": "東京都府中市栄町二丁目"}}}),
    )
    .await;
    submit(
        r,
        json!({"effective_date": "2024-07-02", "command": {"type": "ex_officio_correction",
        "person": a(5), "patch": {"name": "森　一美", "name_kana": "モリ　カズミ"}}}),
    )
    .await;
    submit(
        r,
        json!({"effective_date": "2024-07-03", "command": {"type": "move_out", "persons": [a(4)],
        "destination": {"address": "東京都昭島市田中町一丁目"}}}),
    )
    .await;
}

/// Every search of the upgrade test, each as (what was asked, the names
/// and 宛名番号 found in order); the paged ones one row per page.
async fn search_battery(r: &Registry) -> Vec<(String, Vec<String>)> {
    use machi::service::registry::{SearchParams, encode_cursor};
    let name = |n: &str| SearchParams {
        name: Some(n.into()),
        ..Default::default()
    };
    let address = |n: &str| SearchParams {
        address: Some(n.into()),
        ..Default::default()
    };
    use crate::search::{history, removed};
    let mut asked: Vec<SearchParams> = Vec::new();
    for n in [
        "一",
        "中",
        "花",
        "田中",
        "一郎",
        "中一",
        "田中一郎",
        "田中花子",
        "森一美",
    ] {
        asked.push(name(n));
    }
    // Furigana, folded (hiragana and katakana).
    for n in ["た", "ハナ", "たなか", "カズミ", "もりかずみ"] {
        asked.push(name(n));
    }
    for n in [
        "栄",
        "宮",
        "寿",
        "町",
        "栄町",
        "宮西",
        "本町",
        "寿町",
        "府中市栄町二丁目",
    ] {
        asked.push(address(n));
    }
    // Past names, readings and addresses, and the 除票.
    for p in [
        name("鈴"),
        name("鈴木"),
        name("木一"),
        name("鈴木一美"),
        name("すずき"),
        address("宮"),
        address("宮西"),
        address("宮西町一丁目"),
    ] {
        asked.push(history(p));
    }
    for p in [
        name("川"),
        name("山川"),
        name("次郎"),
        address("寿"),
        address("寿町"),
    ] {
        asked.push(removed(p.clone()));
        asked.push(removed(history(p)));
    }
    asked.push(history(SearchParams {
        address: Some("宮西".into()),
        ..name("田中")
    }));
    let mut out = Vec::new();
    for p in asked {
        for limit in [50, 1] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = r
                    .search(
                        &code(FUCHU),
                        &SearchParams {
                            limit,
                            after: after.clone(),
                            ..p.clone()
                        },
                        &clerk(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}: {p:?}"));
                seen.extend(
                    page.rows
                        .iter()
                        .map(|r| format!("{} {}", r.record.name, r.record.addressee_number)),
                );
                match page.next_after {
                    Some(c) => after = Some(encode_cursor(&c)),
                    None => break,
                }
                assert!(seen.len() <= 20, "{p:?}: {seen:?}");
            }
            out.push((
                format!(
                    "name {:?} address {:?} history {} removed {} limit {limit}",
                    p.name, p.address, p.include_history, p.include_removed
                ),
                seen,
            ));
        }
    }
    out
}

/// Every gram row of the tenant, as "col gram 宛名番号", sorted.
async fn gram_rows(db: &TestDb) -> Vec<String> {
    let t = code(FUCHU);
    db.store
        .read(Some(&t.clone()), move |tx| {
            let mut rows: Vec<String> = tx
                .query(
                    "SELECT CAST(col AS BIGINT), gram, addressee_number FROM resident_gram WHERE tenant = $1",
                    &[t.as_str().into()],
                )?
                .iter()
                .map(|r| Ok(format!("{} {} {}", r.int(0)?, r.text(1)?, r.text(2)?)))
                .collect::<Result<_, machi::store::StoreError>>()?;
            rows.sort();
            Ok::<_, machi::store::StoreError>(rows)
        })
        .await
        .unwrap()
}

/// The gram rows as the code of migration 28 kept them (what an upgraded
/// database holds at version 28), made from the stored keys: `col` 1–3
/// [`records::grams`] of the current rows' keys (one and two characters,
/// migration 25), `col` 4–6 [`records::history_grams`] of every history
/// row's keys. Only `col` < `below`.
async fn v28_gram_rows(db: &TestDb, below: i64) -> Vec<(i64, String, String)> {
    use machi::store::records;
    let t = code(FUCHU);
    db.store
        .read(Some(&t.clone()), move |tx| {
            let mut made = Vec::new();
            for (table, first) in [("resident_current", 1), ("resident_history", 4)] {
                for r in tx.query(
                    &format!(
                        "SELECT addressee_number, name_key, kana_key, address_key FROM {table} WHERE tenant = $1"
                    ),
                    &[t.as_str().into()],
                )? {
                    let a = r.text(0)?;
                    for i in 0..3 {
                        let (col, k) = (first + i, r.text(1 + i as usize)?);
                        let grams = if first == 1 {
                            records::grams(&k)
                        } else {
                            records::history_grams(&k)
                        };
                        made.extend(grams.into_iter().map(|g| (col, g, a.clone())));
                    }
                }
            }
            made.retain(|(col, _, _)| *col < below);
            made.sort();
            made.dedup();
            Ok::<_, machi::store::StoreError>(made)
        })
        .await
        .unwrap()
}

/// Migration 29 on a database that ran migration 28 with the code of its
/// time: every search (names of one, two and three or more characters,
/// furigana, addresses of one and two characters, with history, with
/// 除票, page by page with one row a page) gives the same rows before and
/// after; and the postings end as a database made after 29 keeps them.
///
/// There is no writer of version 28's time in this build, so the
/// database at version 28 is made from one at 29: its residents are
/// written by today's code, then its postings are put back to what
/// version 27 held (`col` 1–2, one- and two-character grams of the
/// current keys, [`records::grams`]) and versions 28 and 29 are taken out
/// of `schema_migrations`; migration 28, applied alone (frozen, as it
/// ran), fills the rest, and its rows are compared with those the code
/// of its time kept. A read path that took a contained two-character gram
/// from `col` 1–3 (what 29 deletes) finds them before 29 and not after.
async fn an_upgrade_to_29_keeps_every_search(db: TestDb) {
    use machi::service::Clock;
    use machi::store::{DatabaseLocation, SqliteSync, Store};
    let db = db.with_tenants().await;
    populate_for_search(&db.registry).await;
    let fresh = gram_rows(&db).await;
    // Back to version 27's postings and schema_migrations.
    let v27 = v28_gram_rows(&db, 3).await;
    let t = code(FUCHU);
    db.store
        .write(Some(&t.clone()), move |tx| {
            tx.execute(
                "DELETE FROM resident_gram WHERE tenant = $1",
                &[t.as_str().into()],
            )?;
            for (col, g, a) in &v27 {
                tx.execute(
                    &format!(
                        "INSERT INTO resident_gram (tenant, col, gram, addressee_number) VALUES ($1, {col}, $2, $3)"
                    ),
                    &[t.as_str().into(), g.as_str().into(), a.as_str().into()],
                )?;
            }
            Ok::<_, machi::store::StoreError>(())
        })
        .await
        .unwrap();
    db.raw("DELETE FROM schema_migrations WHERE version IN (28, 29)")
        .await;
    let location = db.location().await;
    match &location {
        DatabaseLocation::Sqlite(path) => machi::store::migrate_sqlite_until(path, 28).await,
        DatabaseLocation::Postgres(url) => machi::store::migrate_postgres_until(url, 28).await,
    }
    .unwrap();
    let versions: Vec<i64> = db
        .store
        .applied_migrations()
        .await
        .unwrap()
        .iter()
        .map(|m| m.0)
        .collect();
    // Everything but 29 (the migrations after it touch no postings and
    // stay recorded).
    assert!(
        (1..=28).all(|v| versions.contains(&v)) && !versions.contains(&29),
        "{versions:?}"
    );
    let mut v28: Vec<String> = v28_gram_rows(&db, 7)
        .await
        .into_iter()
        .map(|(col, g, a)| format!("{col} {g} {a}"))
        .collect();
    v28.sort();
    assert_eq!(
        gram_rows(&db).await,
        v28,
        "migration 28 fills what the code of its time kept"
    );
    assert!(
        v28.iter()
            .any(|r| r.starts_with("3 ")
                && r.split(' ').nth(1).is_some_and(|g| g.chars().count() == 2)),
        "version 28 holds two-character grams of the current rows"
    );
    let before = search_battery(&db.registry).await;
    // Migration 29, as a server start runs it.
    let store = Store::connect_with(
        &location,
        SqliteSync::Normal,
        crate::support::test_keyring(),
    )
    .await
    .unwrap();
    let upgraded = Registry::new(
        store.clone(),
        machi_domain::dates::EraTable::standard(),
        Clock::System,
    );
    // Every migration applied again, 28 and 29 included (the later ones,
    // which touch no postings, stay recorded as they were).
    let applied: Vec<i64> = store
        .applied_migrations()
        .await
        .unwrap()
        .iter()
        .map(|m| m.0)
        .collect();
    // The versions recorded before the wind-back, with 29 again.
    let mut expected = versions.clone();
    expected.push(29);
    expected.sort();
    assert_eq!(applied, expected);
    let after = search_battery(&upgraded).await;
    for ((asked, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "{asked}: before migration 29, after");
    }
    assert_eq!(before.len(), after.len());
    assert_eq!(gram_rows(&db).await, fresh, "upgraded and fresh postings");
    // The searches found what they ask for (not empty alike).
    let found = |asked: &str| -> Vec<String> {
        after
            .iter()
            .find(|(q, _)| q == asked)
            .unwrap_or_else(|| panic!("{asked}"))
            .1
            .iter()
            .map(|r| r.split(' ').next().unwrap().to_string())
            .collect()
    };
    let (t1, t2, t3) = ("田中　一郎", "田中　花子", "田中　一");
    assert_eq!(
        found("name Some(\"一\") address None history false removed false limit 1"),
        [t3, "森　一美", t1],
    );
    assert_eq!(
        found("name Some(\"田中\") address None history false removed false limit 1"),
        [t3, t1, t2]
    );
    assert_eq!(
        found("name Some(\"田中一郎\") address None history false removed false limit 50"),
        [t1]
    );
    assert_eq!(
        found("name Some(\"ハナ\") address None history false removed false limit 1"),
        [t2]
    );
    assert_eq!(
        found("name None address Some(\"栄\") history false removed false limit 1"),
        [t1, t2]
    );
    assert_eq!(
        found("name None address Some(\"宮西\") history false removed false limit 50"),
        Vec::<String>::new()
    );
    assert_eq!(
        found("name None address Some(\"宮西\") history true removed false limit 1"),
        [t1, t2]
    );
    assert_eq!(
        found("name Some(\"鈴木\") address None history true removed false limit 1"),
        ["森　一美"]
    );
    assert_eq!(
        found("name Some(\"山川\") address None history false removed true limit 1"),
        ["山川　次郎"]
    );
    assert_eq!(
        found("name None address Some(\"寿\") history true removed true limit 1"),
        ["山川　次郎", "森　一美"]
    );
}

/// Migration 33 on a database without it: it posts every history row's
/// distinct keys with their trigrams ([`records::key_trigrams`]) and the
/// counts, every search gives the same rows before and after, and a
/// change after the upgrade keeps them as on a fresh database.
///
/// The database without 33 is made from one with it: its residents are
/// written by today's code, then the two tables are dropped and 33 taken
/// out of `schema_migrations`; a server start applies it again.
async fn an_upgrade_to_33_posts_the_distinct_keys(db: TestDb) {
    use machi::service::Clock;
    use machi::store::{SqliteSync, Store};
    let db = db.with_tenants().await;
    populate_for_search(&db.registry).await;
    let before = search_battery(&db.registry).await;
    // The keys of every history row, the current ones included.
    let (made, made_counts) = crate::search::made_key_grams(&db).await;
    let fresh = crate::search::stored_key_grams(&db).await;
    assert_eq!(
        fresh,
        (made.clone(), made_counts.clone()),
        "changes posted every history row's keys"
    );
    db.raw(
        "DROP TABLE search_key_gram; DROP TABLE search_gram_count; \
         DELETE FROM schema_migrations WHERE version = 33",
    )
    .await;
    let location = db.location().await;
    let store = Store::connect_with(
        &location,
        SqliteSync::Normal,
        crate::support::test_keyring(),
    )
    .await
    .unwrap();
    assert!(
        store
            .applied_migrations()
            .await
            .unwrap()
            .iter()
            .any(|m| m.0 == 33)
    );
    let upgraded = Registry::new(
        store.clone(),
        machi_domain::dates::EraTable::standard(),
        Clock::System,
    );
    assert_eq!(
        crate::search::stored_key_grams(&db).await,
        (made, made_counts),
        "migration 33 posts the history rows' keys and their counts"
    );
    let after = search_battery(&upgraded).await;
    assert_eq!(before.len(), after.len());
    for ((asked, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "{asked}: before migration 33, after");
    }
    // A change after the upgrade posts its new key.
    submit(
        &upgraded,
        json!({"effective_date": "2024-08-01", "command": {"type": "move_within",
        "persons": [a(3)], "address": {"address": "東京都府中市若松町四丁目"}}}),
    )
    .await;
    let (rows, counts) = crate::search::stored_key_grams(&db).await;
    assert!(
        rows.iter()
            .any(|r| r.ends_with(" 若松町四丁目") || r.contains("若松町"))
    );
    assert!(counts.contains(&"3 若松町 1".to_string()), "{counts:?}");
}
