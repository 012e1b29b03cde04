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

/// `Store::read_short` runs on the calling thread only when a reader is
/// free at once: with every SQLite reader held, a short read waits for one
/// on a blocking thread and its caller's thread stays free (a timeout on it
/// fires), and once the readers are given back it sees what was committed.
async fn a_short_read_waits_for_a_busy_pool_without_holding_the_runtime(db: TestDb) {
    assert!(write(&db, "900010".into(), "gc-short".into(), false, false).await);
    let held = 4; // SQLite's reader pool; PostgreSQL's has 8
    let (taken_tx, taken_rx) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Arc::new(std::sync::Barrier::new(held + 1));
    let mut holders = Vec::new();
    for _ in 0..held {
        let (store, taken, gate) = (db.store.clone(), taken_tx.clone(), gate.clone());
        holders.push(tokio::spawn(async move {
            store
                .read(None, move |_| {
                    taken.send(()).unwrap();
                    gate.wait();
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        }));
    }
    let taken = tokio::task::spawn_blocking(move || {
        (0..held).all(|_| {
            taken_rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .is_ok()
        })
    });
    assert!(taken.await.unwrap(), "the readers were not all taken");
    let short = |store: machi::store::Store| async move {
        store
            .read_short(None, |tx| {
                tx.query("SELECT name FROM tenants WHERE name = 'gc-short'", &[])?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
    };
    // On this thread: a read that blocked it would keep the timeout from
    // firing until the pool gave up (30 s).
    let started = std::time::Instant::now();
    let during = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        short(db.store.clone()),
    )
    .await;
    let waited = started.elapsed();
    // The readers are given back before anything is asserted, so that a
    // failure does not leave them waiting.
    let gate2 = gate.clone();
    tokio::task::spawn_blocking(move || gate2.wait())
        .await
        .unwrap();
    for h in holders {
        h.await.unwrap();
    }
    assert!(
        waited < std::time::Duration::from_secs(5),
        "a short read held its caller's thread for {waited:?}"
    );
    match during {
        // SQLite: every reader was held, so the read had to wait.
        Err(_) => assert_eq!(db.store.backend(), machi::store::Backend::Sqlite),
        Ok(r) => {
            assert_eq!(db.store.backend(), machi::store::Backend::Postgres);
            assert_eq!(r.unwrap(), ["gc-short"]);
        }
    }
    assert_eq!(short(db.store.clone()).await.unwrap(), ["gc-short"]);
}

both_backends!(
    a_failing_write_is_undone_alone,
    a_short_read_waits_for_a_busy_pool_without_holding_the_runtime
);
