//! The access log under concurrent reads (j1370): many readers of one
//! tenant share group commits, each further entry of a commit chained to
//! the head the transaction holds; refused reads (a protected person,
//! j440) roll their savepoint back in the middle of such a commit. The
//! chain must verify whole, with exactly one entry per answered read and
//! one refusal entry per refused read.

use machi::service::{Actor, ServiceError};
use machi_domain::change::ChangeRequest;
use machi_domain::support::{Affair, AffairRequest, NewSupportMeasure, Requester};

use crate::contract::{move_in, person, takahashi_family};
use crate::support::{FUCHU, TestDb, code};

both_backends!(
    concurrent_reads_and_refusals_keep_the_chain_whole,
    appends_rolled_back_in_a_group_commit_leave_no_trace,
);

/// Appends through the group commit where every third write appends its
/// entry and then fails: its savepoint is rolled back, and the chain head
/// the transaction holds must go back with it.
async fn appends_rolled_back_in_a_group_commit_leave_no_trace(db: TestDb) {
    use machi::store::StoreError;
    use machi::store::records::{self, AuditEntry};
    let db = db.with_tenants().await;
    let fuchu = code(FUCHU);
    let before = db.registry.verify_audit(&fuchu).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let store = db.store.clone();
        let t = fuchu.clone();
        tasks.push(tokio::spawn(async move {
            let scope = t.clone();
            store
                .append(Some(&scope), move |tx| {
                    let entry = AuditEntry {
                        operator: format!("writer{i}"),
                        terminal: "T".into(),
                        function: "test.append".into(),
                        target: String::new(),
                        detail: "{}".into(),
                        my_number_shown: false,
                    };
                    records::append_next_audit(tx, &t, 1_700_000_000_000_000, &entry)?;
                    if i % 3 == 2 {
                        return Err(StoreError::Conflict);
                    }
                    Ok(())
                })
                .await
        }));
    }
    let mut kept = 0u64;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => kept += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("an append failed: {e}"),
        }
    }
    assert_eq!(kept, 40);
    let after = db.registry.verify_audit(&fuchu).await.unwrap();
    assert_eq!(after.first_bad, None, "{after:?}");
    assert_eq!(after.entries, before.entries + kept);
}

async fn concurrent_reads_and_refusals_keep_the_chain_whole(db: TestDb) {
    let db = db.with_tenants().await;
    let r = &db.registry;
    let fuchu = code(FUCHU);
    let req: ChangeRequest = serde_json::from_value(takahashi_family()).unwrap();
    let out = r
        .submit(&fuchu, &req, &Actor::system("setup"))
        .await
        .unwrap();
    // A second household elsewhere: nobody in it is protected.
    let other = move_in(
        vec![
            person(
                "佐藤　花子",
                "サトウ　ハナコ",
                "1980-02-03",
                "female",
                "世帯主",
            ),
            person("佐藤　蓮", "サトウ　レン", "2012-09-30", "male", "子"),
        ],
        "東京都府中市寿町一丁目5番地",
    );
    let free = r
        .submit(
            &fuchu,
            &serde_json::from_value(other).unwrap(),
            &Actor::system("setup"),
        )
        .await
        .unwrap();
    let protected = out.rows[0].record.addressee_number.clone();
    r.support_register(
        &fuchu,
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
        &Actor::system("setup"),
    )
    .await
    .unwrap();
    let before = r.verify_audit(&fuchu).await.unwrap();
    assert_eq!(before.first_bad, None);

    let readable: Vec<_> = free
        .rows
        .iter()
        .map(|x| x.record.addressee_number.clone())
        .collect();
    let mut tasks = Vec::new();
    for i in 0..48usize {
        let r = r.clone();
        let fuchu = fuchu.clone();
        // Every fourth read is of the protected person: refused.
        let person = if i % 4 == 3 {
            protected.clone()
        } else {
            readable[i % readable.len()].clone()
        };
        tasks.push(tokio::spawn(async move {
            r.resident(
                &fuchu,
                &person,
                Default::default(),
                &Actor::system(&format!("reader{i}")),
            )
            .await
            .map(|_| ())
        }));
    }
    let (mut answered, mut refused) = (0u64, 0u64);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => answered += 1,
            Err(ServiceError::SupportBlocked { .. }) => refused += 1,
            Err(e) => panic!("a read failed: {e}"),
        }
    }
    assert_eq!((answered, refused), (36, 12));
    let after = r.verify_audit(&fuchu).await.unwrap();
    assert_eq!(after.first_bad, None, "{after:?}");
    // One entry per answered read, one per refusal (`support.blocked`).
    assert_eq!(after.entries, before.entries + answered + refused);
}
