//! PostgreSQL's second wall: row-level security by tenant, and an
//! application role that may not rewrite or delete facts. PostgreSQL only:
//! SQLite has neither roles nor policies (its wall is the storage API's
//! tenant argument, tested in `contract` and `isolation`).

use crate::contract::takahashi_family;
use crate::support::{AKISHIMA, FUCHU, TestDb, code};
use machi::service::Actor;
use machi::store::StoreError;

/// PostgreSQL's insufficient_privilege: both a row-level-security refusal
/// and a missing grant answer with it; the message tells them apart.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// The SQLSTATE and message of a refused statement.
fn refusal<T: std::fmt::Debug>(r: Result<T, postgres::Error>) -> (String, String) {
    let e = r.expect_err("the statement should have been refused");
    let db = e.as_db_error().expect("a refusal by the server");
    (db.code().code().to_string(), db.message().to_string())
}

/// The same for a statement run through machi's store.
fn store_refusal<T: std::fmt::Debug>(r: Result<T, StoreError>) -> (String, String) {
    match r {
        Err(StoreError::Postgres(e)) => refusal::<()>(Err(e)),
        other => panic!("expected a refusal by PostgreSQL, got {other:?}"),
    }
}

async fn fuchu_with_family() -> TestDb {
    let db = TestDb::postgres().await.with_tenants().await;
    let req = serde_json::from_value(takahashi_family()).unwrap();
    db.registry
        .submit(&code(FUCHU), &req, &Actor::system("test"))
        .await
        .unwrap();
    db
}

/// As the application role on a connection of its own: another tenant's
/// rows are invisible and cannot be written (the policy refuses, SQLSTATE
/// 42501 "row-level security"), and facts cannot be updated or deleted
/// (no grant: 42501 "permission denied").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_hides_other_tenants_and_facts_are_append_only() {
    let db = fuchu_with_family().await;
    let url = db.url().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("SET ROLE machi_app").unwrap();
        let scoped = |c: &mut postgres::Client, tenant: &str, sql: &str| {
            let mut tx = c.transaction().unwrap();
            tx.execute("SELECT set_config('machi.tenant', $1, true)", &[&tenant])
                .unwrap();
            let r = tx.execute(sql, &[]);
            drop(tx); // rolled back
            r
        };
        let count = |c: &mut postgres::Client, tenant: &str| -> i64 {
            let mut tx = c.transaction().unwrap();
            tx.execute("SELECT set_config('machi.tenant', $1, true)", &[&tenant])
                .unwrap();
            tx.query_one("SELECT COUNT(*) FROM resident_history", &[])
                .unwrap()
                .get(0)
        };
        // 府中市's three rows are there, and visible to 府中市 only.
        assert_eq!(count(&mut c, FUCHU), 3);
        assert_eq!(count(&mut c, AKISHIMA), 0);
        let unscoped: i64 = c
            .query_one("SELECT COUNT(*) FROM resident_history", &[])
            .unwrap()
            .get(0);
        assert_eq!(unscoped, 0);

        // Writing a row of 府中市 while scoped to 昭島市: the policy refuses it.
        let insert = format!(
            "INSERT INTO outbox (tenant, seq, event_id, kind, payload, created_at) \
             VALUES ('{FUCHU}', 99, 'x', 'x', '{{}}', 0)"
        );
        let (state, message) = refusal(scoped(&mut c, AKISHIMA, &insert));
        assert_eq!(state, INSUFFICIENT_PRIVILEGE, "{message}");
        assert!(message.contains("row-level security"), "{message}");
        // The same row scoped to 府中市 is accepted: the refusal was the policy's.
        assert_eq!(scoped(&mut c, FUCHU, &insert).unwrap(), 1);

        // A table the role may update: 府中市's rows are out of 昭島市's reach
        // (zero rows visible to the UPDATE), though they are there.
        let touch = format!("UPDATE resident_current SET tenant = tenant WHERE tenant = '{FUCHU}'");
        assert_eq!(scoped(&mut c, AKISHIMA, &touch).unwrap(), 0);
        assert_eq!(scoped(&mut c, FUCHU, &touch).unwrap(), 3);

        // Facts: no UPDATE or DELETE, even within the tenant's own scope.
        for sql in [
            "UPDATE resident_history SET record = '{}'",
            "DELETE FROM resident_history",
            "UPDATE changes SET operator = 'x'",
            "DELETE FROM audit_log",
            "DELETE FROM outbox",
        ] {
            let (state, message) = refusal(scoped(&mut c, FUCHU, sql));
            assert_eq!(state, INSUFFICIENT_PRIVILEGE, "{sql}: {message}");
            assert!(message.contains("permission denied"), "{sql}: {message}");
        }
    })
    .await
    .unwrap();
}

/// machi's connections plan each statement for its parameters and the
/// tables as they are now (`plan_cache_mode = force_custom_plan`), never
/// from a generic plan cached while the tables were empty: the pool's
/// writes and reads and the group-committing appender alike
/// (docs/notes/wt-pgperf.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_plans_for_the_parameters() {
    let db = TestDb::postgres().await.with_tenants().await;
    let t = code(FUCHU);
    let mode = "SELECT current_setting('plan_cache_mode')";
    let written = db
        .store
        .write(Some(&t), move |tx| tx.query_one(mode, &[])?.text(0))
        .await
        .unwrap();
    let read = db
        .store
        .read(Some(&t), move |tx| tx.query_one(mode, &[])?.text(0))
        .await
        .unwrap();
    let appended = db
        .store
        .append(Some(&t), move |tx| tx.query_one(mode, &[])?.text(0))
        .await
        .unwrap();
    assert_eq!(
        (written.as_str(), read.as_str(), appended.as_str()),
        (
            "force_custom_plan",
            "force_custom_plan",
            "force_custom_plan"
        )
    );
}

/// machi's own pool: every connection runs as `machi_app` (a superuser
/// login is switched to it, so the policies apply), and through it facts
/// cannot be rewritten or deleted, nor another tenant's rows seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_runs_as_the_application_role() {
    let db = fuchu_with_family().await;
    let t = code(FUCHU);
    // Several connections at once, so that more than one of the pool answers.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = db.store.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(Some(&t.clone()), |tx| {
                    let r = tx.query_one(
                        "SELECT current_user::text, r.rolsuper::text, r.rolbypassrls::text, pg_sleep(0.05)::text \
                         FROM pg_roles r WHERE r.rolname = current_user",
                        &[],
                    )?;
                    Ok::<_, StoreError>((r.text(0)?, r.text(1)?, r.text(2)?))
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            (
                "machi_app".to_string(),
                "false".to_string(),
                "false".to_string()
            )
        );
    }
    let reader = db
        .store
        .read(Some(&t.clone()), |tx| {
            tx.query_one("SELECT current_user::text", &[])?.text(0)
        })
        .await
        .unwrap();
    assert_eq!(reader, "machi_app");

    let before = crate::contract::counts(&db.store, FUCHU).await;
    for sql in [
        "UPDATE resident_history SET record = '{}'",
        "DELETE FROM resident_history",
        "UPDATE changes SET operator = 'x'",
        "DELETE FROM audit_log",
        "UPDATE outbox SET payload = '{}'",
    ] {
        let sql_c = sql.to_string();
        let r = db
            .store
            .write(Some(&t.clone()), move |tx| tx.execute(&sql_c, &[]))
            .await;
        let (state, message) = store_refusal(r);
        assert_eq!(state, INSUFFICIENT_PRIVILEGE, "{sql}: {message}");
        assert!(message.contains("permission denied"), "{sql}: {message}");
    }
    assert_eq!(crate::contract::counts(&db.store, FUCHU).await, before);
    assert_eq!(before.0, 3);
    // Scoped to 昭島市, the store sees none of 府中市's rows.
    let akishima = code(AKISHIMA);
    let seen = db
        .store
        .read(Some(&akishima), |tx| {
            tx.query_one("SELECT COUNT(*) FROM resident_history", &[])?
                .int(0)
        })
        .await
        .unwrap();
    assert_eq!(seen, 0);
}
