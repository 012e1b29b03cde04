//! PostgreSQL's second wall: row-level security by tenant, and an
//! application role that may not rewrite or delete facts.

use crate::contract::takahashi_family;
use crate::support::{AKISHIMA, FUCHU, TestDb, code};
use machi::service::Actor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_hides_other_tenants_and_facts_are_append_only() {
    let db = TestDb::postgres().await.with_tenants().await;
    let req = serde_json::from_value(takahashi_family()).unwrap();
    db.registry
        .submit(&code(FUCHU), &req, &Actor::system("test"))
        .await
        .unwrap();
    let url = db.url().unwrap();
    let result = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("SET ROLE machi_app").unwrap();
        let count = |c: &mut postgres::Client, tenant: &str| -> i64 {
            let mut tx = c.transaction().unwrap();
            tx.execute("SELECT set_config('machi.tenant', $1, true)", &[&tenant]).unwrap();
            let n: i64 = tx
                .query_one("SELECT COUNT(*) FROM resident_history", &[])
                .unwrap()
                .get(0);
            tx.commit().unwrap();
            n
        };
        let fuchu = count(&mut c, FUCHU);
        let akishima = count(&mut c, AKISHIMA);
        let unscoped: i64 = c.query_one("SELECT COUNT(*) FROM resident_history", &[]).unwrap().get(0);
        // Writing another tenant's row while scoped to 昭島市 is refused.
        let mut tx = c.transaction().unwrap();
        tx.execute("SELECT set_config('machi.tenant', $1, true)", &[&AKISHIMA]).unwrap();
        let cross = tx.execute(
            "INSERT INTO outbox (tenant, seq, event_id, kind, payload, created_at) VALUES ($1, 99, 'x', 'x', '{}', 0)",
            &[&FUCHU],
        );
        drop(tx);
        // Facts cannot be updated or deleted by the application role.
        let mut tx = c.transaction().unwrap();
        tx.execute("SELECT set_config('machi.tenant', $1, true)", &[&FUCHU]).unwrap();
        let update = tx.execute("UPDATE resident_history SET record = '{}'", &[]);
        drop(tx);
        let mut tx = c.transaction().unwrap();
        tx.execute("SELECT set_config('machi.tenant', $1, true)", &[&FUCHU]).unwrap();
        let delete = tx.execute("DELETE FROM audit_log", &[]);
        drop(tx);
        (fuchu, akishima, unscoped, cross.is_err(), update.is_err(), delete.is_err())
    })
    .await
    .unwrap();
    assert_eq!(result, (3, 0, 0, true, true, true));
}
