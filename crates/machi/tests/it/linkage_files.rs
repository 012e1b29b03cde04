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
use crate::support::{FUCHU, TestDb, code};

both_backends!(
    full_then_difference_extracts_add_up_to_the_next_full_one,
    an_extract_without_its_manifest_is_redone,
    a_difference_without_an_earlier_extract_is_refused,
    the_schedule_writes_full_then_differences_only_when_events_came,
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
