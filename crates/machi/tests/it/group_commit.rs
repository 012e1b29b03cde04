//! Group commit (SQLite's writer, PostgreSQL's appender): a write that
//! fails is undone alone and the others of its commit stay, whether it ran
//! first in its transaction (SQLite: no savepoint then; the transaction is
//! rolled back and begun again) or after another (a savepoint).

use machi::store::StoreError;

use crate::support::TestDb;

/// Adds a row to `tenants` named `name`, then fails if `fail`.
async fn write(db: &TestDb, code: String, name: String, fail: bool, append: bool) -> bool {
    let f = move |tx: &mut machi::store::Tx<'_>| {
        tx.execute(
            "INSERT INTO tenants (municipality_code, name, prefecture, created_at) VALUES ($1, $2, '東京都', 0)",
            &[code.as_str().into(), name.as_str().into()],
        )?;
        if fail {
            return Err(StoreError::Corrupt("refused after writing".into()));
        }
        Ok::<_, StoreError>(())
    };
    let r = if append {
        db.store.append(None, f).await
    } else {
        db.store.write(None, f).await
    };
    r.is_ok()
}

async fn names(db: &TestDb) -> Vec<String> {
    db.store
        .read(None, |tx| {
            tx.query(
                "SELECT name FROM tenants WHERE name LIKE 'gc-%' ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap()
}

async fn a_failing_write_is_undone_alone(db: TestDb) {
    // One after another: each write is the first of its transaction.
    assert!(!write(&db, "900001".into(), "gc-a1".into(), true, false).await);
    assert!(write(&db, "900002".into(), "gc-a2".into(), false, false).await);
    assert!(!write(&db, "900003".into(), "gc-a3".into(), true, false).await);
    assert_eq!(names(&db).await, ["gc-a2"]);
    // At once: failing and succeeding writes share commits in any order.
    let db = std::sync::Arc::new(db);
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let fail = i % 3 != 1;
            let ok = write(
                &db,
                format!("91{i:04}"),
                format!("gc-b{i:02}"),
                fail,
                i % 2 == 0,
            )
            .await;
            assert_eq!(ok, !fail, "write {i}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut want: Vec<String> = vec!["gc-a2".into()];
    want.extend(
        (0..60u32)
            .filter(|i| i % 3 == 1)
            .map(|i| format!("gc-b{i:02}")),
    );
    assert_eq!(names(&db).await, want);
}

both_backends!(a_failing_write_is_undone_alone);
