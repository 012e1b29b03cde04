//! Index-backed search (j330, j340): ranking (exact, then prefix, then
//! contained), 異体字 found from the common form, removed and past records
//! only on request, and the indexes kept in the change's own transaction.

use machi::service::ServiceError;
use machi::service::registry::{SearchParams, encode_cursor};
use machi::store::StoreError;
use machi::store::records;
use machi_domain::change::{AsOf, ChangeRequest};
use machi_domain::ids::MunicipalityCode;
use machi_domain::names::{PersonName, search_key};
use serde_json::json;

use crate::contract::{clerk, move_in, person};
use crate::support::{FUCHU, TestDb, code};

both_backends!(
    search_ranks_exact_then_prefix_then_contained,
    search_pages_through_ranks_with_its_cursor,
    search_finds_variants_from_the_common_form,
    search_shows_removed_and_past_records_only_on_request,
    search_index_changes_with_its_transaction_only,
    search_finds_one_and_two_characters_through_grams,
    search_refold_folds_old_keys_again_in_batches,
    search_finds_addresses_by_one_and_two_characters_through_grams,
    search_with_history_finds_one_and_two_characters_through_grams,
    search_finds_three_characters_through_distinct_keys,
    search_with_history_finds_three_characters_at_every_rank,
    search_with_history_agrees_with_every_history_row,
    an_address_too_long_for_the_search_keys_is_refused,
);

async fn submit(db: &TestDb, v: serde_json::Value) -> machi::service::registry::ChangeOutcome {
    let req: ChangeRequest = serde_json::from_value(v.clone()).expect("request");
    db.registry
        .submit(&code(FUCHU), &req, &clerk())
        .await
        .unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// Moves in one person per name, in this order (so 宛名番号 follow it),
/// each at an address without 方書.
async fn residents(db: &TestDb, people: &[(&str, &str, &str)]) {
    for (name, kana, address) in people {
        let mut v = move_in(
            vec![person(name, kana, "1980-01-01", "female", "世帯主")],
            address,
        );
        v["command"]["household"]["address"]
            .as_object_mut()
            .expect("address")
            .remove("annex");
        submit(db, v).await;
    }
}

fn by_name(n: &str) -> SearchParams {
    SearchParams {
        name: Some(n.into()),
        limit: 50,
        ..Default::default()
    }
}

/// `p` with past records (`include_history`, j340).
pub(crate) fn history(p: SearchParams) -> SearchParams {
    SearchParams {
        include_history: true,
        ..p
    }
}

/// `p` with 除票 (`include_removed`).
pub(crate) fn removed(p: SearchParams) -> SearchParams {
    SearchParams {
        include_removed: true,
        ..p
    }
}

async fn names(db: &TestDb, p: SearchParams) -> Vec<String> {
    db.registry
        .search(&code(FUCHU), &p, &clerk())
        .await
        .unwrap()
        .rows
        .iter()
        .map(|r| r.record.name.as_str().to_string())
        .collect()
}

async fn search_ranks_exact_then_prefix_then_contained(db: TestDb) {
    let db = db.with_tenants().await;
    // Moved in contained first, exact last: the order of the results is
    // the ranking's, not the 宛名番号's.
    residents(
        &db,
        &[
            (
                "本田中　一",
                "ホンダナカ　ハジメ",
                "東京都府中市宮西町一丁目1番地",
            ),
            (
                "田中　一郎",
                "タナカ　イチロウ",
                "東京都府中市宮西町一丁目10番地",
            ),
            ("田中　一", "タナカ　ハジメ", "東京都府中市宮西町一丁目"),
            ("佐藤　花子", "サトウ　ハナコ", "東京都府中市本町一丁目"),
        ],
    )
    .await;
    // Three characters (the distinct keys serve the contained match).
    assert_eq!(
        names(&db, by_name("田中一")).await,
        ["田中　一", "田中　一郎", "本田中　一"]
    );
    // Two characters: prefix matches in key order, then contained.
    assert_eq!(
        names(&db, by_name("田中")).await,
        ["田中　一", "田中　一郎", "本田中　一"]
    );
    // One character: contained matches in the order of the gram that
    // starts there (一 at a name's end before 一郎), then 宛名番号.
    assert_eq!(
        names(&db, by_name("一")).await,
        ["本田中　一", "田中　一", "田中　一郎"]
    );
    // Furigana, folded (ハジメ in hiragana, ウ after オ段).
    assert_eq!(
        names(&db, by_name("たなかはじめ")).await,
        ["田中　一", "本田中　一"]
    );
    assert_eq!(
        names(&db, by_name("ハジメ")).await,
        ["本田中　一", "田中　一"]
    );
    // Addresses: exact, then prefix in key order (code points: 一丁目10番地
    // before 一丁目1番地), then contained.
    let by_address = |a: &str| SearchParams {
        address: Some(a.into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(
        names(&db, by_address("東京都府中市宮西町一丁目")).await,
        ["田中　一", "田中　一郎", "本田中　一"]
    );
    assert_eq!(
        names(&db, by_address("宮西町一丁目")).await,
        ["本田中　一", "田中　一郎", "田中　一"]
    );
    assert_eq!(names(&db, by_address("本町")).await, ["佐藤　花子"]);
    assert!(names(&db, by_name("鈴木")).await.is_empty());
    // Name and address together: ranked by the name, filtered by both.
    assert_eq!(
        names(
            &db,
            SearchParams {
                address: Some("1番地".into()),
                ..by_name("田中")
            }
        )
        .await,
        ["本田中　一"]
    );
}

async fn search_pages_through_ranks_with_its_cursor(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            (
                "本田中　一",
                "ホンダナカ　ハジメ",
                "東京都府中市宮西町一丁目",
            ),
            ("田中　一郎", "タナカ　イチロウ", "東京都府中市宮西町一丁目"),
            ("田中　一", "タナカ　ハジメ", "東京都府中市宮西町一丁目"),
            ("田中　一二三", "タナカ　ヒフミ", "東京都府中市宮西町一丁目"),
            ("山田中一", "ヤマダナカイチ", "東京都府中市宮西町一丁目"),
        ],
    )
    .await;
    for query in ["田中一", "田中"] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = db
                .registry
                .search(
                    &code(FUCHU),
                    &SearchParams {
                        limit: 1,
                        after: after.clone(),
                        ..by_name(query)
                    },
                    &clerk(),
                )
                .await
                .unwrap();
            seen.extend(page.rows.iter().map(|r| r.record.name.to_string()));
            match page.next_after {
                Some(c) => after = Some(encode_cursor(&c)),
                None => break,
            }
            assert!(seen.len() <= 5, "{seen:?}");
        }
        assert_eq!(
            seen,
            names(&db, by_name(query)).await,
            "pages of one row give the whole ranked list ({query})"
        );
        assert_eq!(seen.len(), 5, "{seen:?}");
    }
    // A cursor that is not one is refused, in both languages.
    let bad = db
        .registry
        .search(
            &code(FUCHU),
            &SearchParams {
                after: Some(hex_of("9\u{1F}x\u{1F}1")),
                ..by_name("田中")
            },
            &clerk(),
        )
        .await;
    assert!(
        matches!(&bad, Err(ServiceError::Invalid { code: "invalid_cursor", message_ja, .. }) if !message_ja.is_empty()),
        "{bad:?}"
    );
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn search_finds_variants_from_the_common_form(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            ("髙橋　一", "タカハシ　ハジメ", "東京都府中市宮西町一丁目"),
            ("𠮷田　花子", "ヨシダ　ハナコ", "東京都府中市宮西町一丁目"),
            ("渡邉　恵子", "ワタナベ　ケイコ", "東京都府中市宮西町一丁目"),
            // 鷗 and 鴎: a pair of the MJ 縮退マップ.
            ("森　鷗外", "モリ　オウガイ", "東京都府中市宮西町一丁目"),
        ],
    )
    .await;
    assert_eq!(names(&db, by_name("高橋")).await, ["髙橋　一"]);
    assert_eq!(names(&db, by_name("高橋一")).await, ["髙橋　一"]);
    assert_eq!(names(&db, by_name("吉田花子")).await, ["𠮷田　花子"]);
    assert_eq!(names(&db, by_name("渡辺")).await, ["渡邉　恵子"]);
    assert_eq!(names(&db, by_name("森鴎外")).await, ["森　鷗外"]);
    // And the other way round: the variant typed finds the variant.
    assert_eq!(names(&db, by_name("髙橋")).await, ["髙橋　一"]);
    // From the MJ 縮退マップ (j330's own example: 辺 finds 𨘢).
    residents(
        &db,
        &[("𨘢見　次郎", "ヘンミ　ジロウ", "東京都府中市宮西町一丁目")],
    )
    .await;
    assert_eq!(names(&db, by_name("辺見次郎")).await, ["𨘢見　次郎"]);
    assert_eq!(names(&db, by_name("辺見")).await, ["𨘢見　次郎"]);
    // Every variant the folding tables list is found from its common
    // form: a sample across each table, moved in and searched.
    let mj: Vec<(char, char)> = machi_domain::names::mj_variants().collect();
    let step = mj.len() / 12;
    let mj_sample: Vec<(char, char)> = mj.iter().step_by(step).take(12).copied().collect();
    let mut table: Vec<(char, char)> = machi_domain::names::KANJI_VARIANTS.to_vec();
    table.extend(&mj_sample);
    let table = &table[..];
    let hand = machi_domain::names::KANJI_VARIANTS.len();
    let picks = table
        .iter()
        .take(hand)
        .step_by((hand / 12).max(1))
        .take(12)
        .chain(&table[hand..]);
    for (i, (variant, common)) in picks.enumerate() {
        let name = format!("{variant}野　太{}", ["郎", "一", "助"][i % 3]);
        residents(
            &db,
            &[(name.as_str(), "カヤノ　タロウ", "東京都府中市本町二丁目")],
        )
        .await;
        let common = machi_domain::names::search_key(&common.to_string());
        let found = names(&db, by_name(&format!("{common}野太"))).await;
        assert!(found.contains(&name), "{variant} → {common}: {found:?}");
        assert_eq!(
            search_key(&variant.to_string()),
            search_key(&common.to_string())
        );
    }
}

async fn search_shows_removed_and_past_records_only_on_request(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            (
                "旧姓川　花子",
                "キュウセイカワ　ハナコ",
                "東京都府中市寿町一丁目",
            ),
            (
                "転出山　次郎",
                "テンシュツヤマ　ジロウ",
                "東京都府中市本町三丁目",
            ),
        ],
    )
    .await;
    let t = code(FUCHU);
    let found = db
        .registry
        .search(&t, &by_name("旧姓川"), &clerk())
        .await
        .unwrap();
    let hanako = found.rows[0].record.addressee_number.to_string();
    let found = db
        .registry
        .search(&t, &by_name("転出山"), &clerk())
        .await
        .unwrap();
    let jiro = found.rows[0].record.addressee_number.to_string();
    // A new name (a correction) and a move-out.
    submit(
        &db,
        json!({"effective_date": "2024-06-01", "command": {"type": "ex_officio_correction",
        "person": hanako, "patch": {"name": "新姓野　花子", "name_kana": "シンセイノ　ハナコ"}}}),
    )
    .await;
    submit(
        &db,
        json!({"effective_date": "2024-06-20", "command": {"type": "move_out", "persons": [jiro],
        "destination": {"address": "東京都昭島市田中町一丁目"}}}),
    )
    .await;
    for q in ["旧姓川", "旧姓川花子", "姓川", "旧"] {
        assert!(names(&db, by_name(q)).await.is_empty(), "{q}");
        assert_eq!(
            names(&db, history(by_name(q))).await,
            ["新姓野　花子"],
            "{q}"
        );
    }
    assert_eq!(names(&db, by_name("新姓野")).await, ["新姓野　花子"]);
    assert_eq!(
        names(&db, by_name("きゅうせいかわ")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(&db, history(by_name("きゅうせいかわ"))).await,
        ["新姓野　花子"]
    );
    for q in ["転出山次郎", "転出山", "出山", "次"] {
        assert!(
            !names(&db, by_name(q))
                .await
                .contains(&"転出山　次郎".to_string()),
            "{q}"
        );
        assert!(
            names(&db, removed(by_name(q)))
                .await
                .contains(&"転出山　次郎".to_string()),
            "{q}"
        );
    }
    // The past address of a removed person: both requests needed.
    let by_address = SearchParams {
        address: Some("本町三丁目".into()),
        limit: 50,
        ..Default::default()
    };
    assert!(names(&db, by_address.clone()).await.is_empty());
    assert_eq!(
        names(&db, removed(by_address.clone())).await,
        ["転出山　次郎"],
        "a 除票 keeps its last address"
    );
    // Ranking with history: the exact past name first.
    residents(
        &db,
        &[(
            "旧姓川　花子子",
            "キュウセイカワ　ハナココ",
            "東京都府中市寿町一丁目",
        )],
    )
    .await;
    assert_eq!(
        names(&db, history(by_name("旧姓川花子"))).await,
        ["新姓野　花子", "旧姓川　花子子"]
    );
}

async fn search_index_changes_with_its_transaction_only(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[("見本　太郎", "ミホン　タロウ", "東京都府中市宮西町一丁目")],
    )
    .await;
    let t = code(FUCHU);
    let found = db
        .registry
        .search(&t, &by_name("見本"), &clerk())
        .await
        .unwrap();
    let (row, _) = db
        .registry
        .resident(
            &t,
            &found.rows[0].record.addressee_number,
            AsOf::default(),
            &clerk(),
        )
        .await
        .unwrap();
    // A change that writes a new name and then fails: inside its
    // transaction the new name is found through the indexes, after it
    // nothing is.
    let mut renamed = row.clone();
    renamed.history_number += 1;
    renamed.record.name = PersonName::new("索引試験　改名").unwrap();
    let key = |s: &str| records::SearchFilter {
        name_key: Some(search_key(s)),
        ..Default::default()
    };
    let (tt, r2) = (t.clone(), renamed.clone());
    let (f3, f2) = (key("索引試験改"), key("改名"));
    let inside: Result<(), StoreError> = db
        .store
        .write(Some(&t), move |tx| {
            records::append_history(tx, &tt, &r2)?;
            let three = records::search(tx, &tt, &f3, None, 10)?;
            let two = records::search(tx, &tt, &f2, None, 10)?;
            assert_eq!(
                three.len(),
                1,
                "found in its own transaction (distinct keys)"
            );
            assert_eq!(two.len(), 1, "found in its own transaction (short key)");
            Err(StoreError::Task("the change fails after writing".into()))
        })
        .await;
    assert!(inside.is_err());
    for q in ["索引試験改", "索引試験改名", "改名", "索引"] {
        assert!(names(&db, by_name(q)).await.is_empty(), "{q}");
        assert!(
            names(
                &db,
                SearchParams {
                    include_history: true,
                    include_removed: true,
                    ..by_name(q)
                }
            )
            .await
            .is_empty(),
            "{q} (history)"
        );
    }
    assert_eq!(names(&db, by_name("見本太郎")).await, ["見本　太郎"]);
    // The indexes themselves hold nothing of it.
    let leftover = db
        .store
        .read(Some(&t), move |tx| {
            let sql = "SELECT (SELECT count(*) FROM resident_current WHERE name_key LIKE '%索引試験%') \
                 + (SELECT count(*) FROM resident_history WHERE name_key LIKE '%索引試験%') \
                 + (SELECT count(*) FROM search_key_gram WHERE key LIKE '%索引試験%')";
            tx.query_one(sql, &[])?.int(0)
        })
        .await
        .unwrap();
    assert_eq!(leftover, 0);
    // The same change committed is found at once.
    let (tt, r2) = (t.clone(), renamed);
    db.store
        .write(Some(&t), move |tx| records::append_history(tx, &tt, &r2))
        .await
        .unwrap();
    assert_eq!(names(&db, by_name("索引試験改")).await, ["索引試験　改名"]);
    assert_eq!(names(&db, by_name("改名")).await, ["索引試験　改名"]);
    assert!(names(&db, by_name("見本")).await.is_empty());
    assert_eq!(
        names(
            &db,
            SearchParams {
                include_history: true,
                ..by_name("見本太郎")
            }
        )
        .await,
        ["索引試験　改名"]
    );
}

/// Pages of `limit` rows of a search, followed by their cursors.
async fn all_pages(db: &TestDb, p: SearchParams, limit: i64) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = db
            .registry
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
            .unwrap();
        seen.extend(page.rows.iter().map(|r| r.record.name.to_string()));
        match page.next_after {
            Some(c) => after = Some(encode_cursor(&c)),
            None => break,
        }
        assert!(seen.len() <= 50, "{seen:?}");
    }
    seen
}

/// The grams of every current row of the tenant (names, furigana,
/// addresses: `col` 1–3) as stored, and as [`records::current_grams`]
/// makes them from the stored keys.
async fn stored_and_made_grams(db: &TestDb) -> (Vec<String>, Vec<String>) {
    let t = code(FUCHU);
    let tenant = t.clone();
    db.store
        .read(Some(&tenant), move |tx| {
            let stored: Vec<String> = tx
                .query(
                    "SELECT CAST(col AS BIGINT), gram, addressee_number FROM resident_gram WHERE tenant = $1 AND col <= 3",
                    &[t.as_str().into()],
                )?
                .iter()
                .map(|r| Ok(format!("{} {} {}", r.int(0)?, r.text(1)?, r.text(2)?)))
                .collect::<Result<_, StoreError>>()?;
            let mut made = Vec::new();
            for r in tx.query(
                "SELECT addressee_number, name_key, kana_key, address_key FROM resident_current WHERE tenant = $1",
                &[t.as_str().into()],
            )? {
                let a = r.text(0)?;
                for (col, k) in [(1, r.text(1)?), (2, r.text(2)?), (3, r.text(3)?)] {
                    made.extend(
                        records::current_grams(&k)
                            .into_iter()
                            .map(|g| format!("{col} {g} {a}")),
                    );
                }
            }
            let (mut stored, mut made) = (stored, made);
            stored.sort();
            made.sort();
            Ok::<_, StoreError>((stored, made))
        })
        .await
        .unwrap()
}

/// The history postings (`col` 4–6) as stored, and as
/// [`records::history_grams`] makes them from every history row's keys.
async fn stored_and_made_history_grams(db: &TestDb) -> (Vec<String>, Vec<String>) {
    let t = code(FUCHU);
    let tenant = t.clone();
    db.store
        .read(Some(&tenant), move |tx| {
            let stored: Vec<String> = tx
                .query(
                    "SELECT CAST(col AS BIGINT), gram, addressee_number FROM resident_gram WHERE tenant = $1 AND col >= 4",
                    &[t.as_str().into()],
                )?
                .iter()
                .map(|r| Ok(format!("{} {} {}", r.int(0)?, r.text(1)?, r.text(2)?)))
                .collect::<Result<_, StoreError>>()?;
            let mut made = Vec::new();
            for r in tx.query(
                "SELECT addressee_number, name_key, kana_key, address_key FROM resident_history WHERE tenant = $1",
                &[t.as_str().into()],
            )? {
                let a = r.text(0)?;
                for (col, k) in [(4, r.text(1)?), (5, r.text(2)?), (6, r.text(3)?)] {
                    made.extend(
                        records::history_grams(&k)
                            .into_iter()
                            .map(|g| format!("{col} {g} {a}")),
                    );
                }
            }
            let (mut stored, mut made) = (stored, made);
            stored.sort();
            made.sort();
            made.dedup();
            Ok::<_, StoreError>((stored, made))
        })
        .await
        .unwrap()
}

/// One and two characters (j340): contained matches come from the gram
/// postings (`resident_gram`), each person once even where the character
/// occurs twice, page by page; the postings are kept with each change
/// and the bulk fill gives the same grams as a change.
async fn search_finds_one_and_two_characters_through_grams(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            // 中 twice after the first character: grams 中田 and 中.
            (
                "山中田中　花",
                "ヤマナカタナカ　ハナ",
                "東京都府中市本町一丁目",
            ),
            ("田中　一", "タナカ　ハジメ", "東京都府中市本町一丁目"),
            ("中村　次郎", "ナカムラ　ジロウ", "東京都府中市本町一丁目"),
            ("本田　中子", "ホンダ　ナカコ", "東京都府中市本町一丁目"),
            ("佐藤　花子", "サトウ　ハナコ", "東京都府中市本町一丁目"),
        ],
    )
    .await;
    // One character: prefix (中村), then contained in gram order: 中一
    // (田中一), 中子 (本田中子), 中田 (山中田中花, which also has 中花:
    // listed once, at its first gram).
    let one = names(&db, by_name("中")).await;
    assert_eq!(
        one,
        ["中村　次郎", "田中　一", "本田　中子", "山中田中　花"]
    );
    assert_eq!(all_pages(&db, by_name("中"), 1).await, one);
    assert_eq!(all_pages(&db, by_name("中"), 2).await, one);
    // Two characters: prefix (田中一), then the bigram's postings.
    assert_eq!(
        names(&db, by_name("田中")).await,
        ["田中　一", "山中田中　花", "本田　中子"]
    );
    assert_eq!(
        names(&db, by_name("花")).await,
        ["山中田中　花", "佐藤　花子"]
    );
    // Furigana: one and two characters.
    assert_eq!(
        names(&db, by_name("ナカ")).await,
        ["中村　次郎", "山中田中　花", "田中　一", "本田　中子"]
    );
    assert_eq!(
        all_pages(&db, by_name("コ"), 1).await,
        ["本田　中子", "佐藤　花子"]
    );
    // Nothing for a character nobody has.
    assert!(names(&db, by_name("鬱")).await.is_empty());
    assert!(names(&db, by_name("鬱金")).await.is_empty());
    // A change of name moves the person's grams.
    let t = code(FUCHU);
    let found = db
        .registry
        .search(&t, &by_name("本田中子"), &clerk())
        .await
        .unwrap();
    let (row, _) = db
        .registry
        .resident(
            &t,
            &found.rows[0].record.addressee_number,
            AsOf::default(),
            &clerk(),
        )
        .await
        .unwrap();
    let mut renamed = row.clone();
    renamed.history_number += 1;
    renamed.record.name = PersonName::new("本田　春子").unwrap();
    let tt = t.clone();
    db.store
        .write(Some(&t), move |tx| {
            records::append_history(tx, &tt, &renamed)
        })
        .await
        .unwrap();
    assert_eq!(names(&db, by_name("春")).await, ["本田　春子"]);
    assert!(
        !names(&db, by_name("中"))
            .await
            .contains(&"本田　中子".to_string())
    );
    let (stored, made) = stored_and_made_grams(&db).await;
    assert!(!stored.is_empty());
    assert_eq!(stored, made, "the grams kept by changes");
    // The bulk fill (migration 25, imports) makes the same grams.
    let tt = t.clone();
    db.store
        .write(Some(&t), move |tx| {
            tx.execute(
                "DELETE FROM resident_gram WHERE tenant = $1",
                &[tt.as_str().into()],
            )?;
            let sql = records::gram_fill_sql(tx.backend(), "resident_current", "c.tenant = $1");
            tx.execute(&sql, &[tt.as_str().into()])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let (filled, made) = stored_and_made_grams(&db).await;
    assert_eq!(filled, made, "the grams of the bulk fill");
    assert_eq!(filled, stored);
}

/// Addresses by one and two characters (j340, migration 28): the current
/// rows' address grams serve them as they serve names: prefix matches in
/// key order, then contained ones (two characters: the bigram's postings
/// in 宛名番号 order; one: in the order of the gram that starts there),
/// page by page; a change of address moves the grams.
async fn search_finds_addresses_by_one_and_two_characters_through_grams(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            ("青木　一", "アオキ　ハジメ", "東京都府中市本町二丁目"),
            ("赤井　二", "アカイ　ツグ", "東京都府中市宮町一丁目"),
            ("白石　三", "シロイシ　ミツ", "東京都府中市町田二丁目"),
            ("黒田　四", "クロダ　シロウ", "府中市本宿町"),
        ],
    )
    .await;
    let by_address = |a: &str| SearchParams {
        address: Some(a.into()),
        limit: 50,
        ..Default::default()
    };
    // Two characters: prefix (府中市本宿町), then the bigram 府中's postings.
    let two = names(&db, by_address("府中")).await;
    assert_eq!(two, ["黒田　四", "青木　一", "赤井　二", "白石　三"]);
    assert_eq!(all_pages(&db, by_address("府中"), 1).await, two);
    assert_eq!(
        names(&db, by_address("二丁")).await,
        ["青木　一", "白石　三"]
    );
    assert_eq!(names(&db, by_address("本町")).await, ["青木　一"]);
    // One character: contained, in gram order: 町 alone at the end
    // (本宿町), 町一 (宮町一丁目), 町二 (本町二丁目), 町田 (町田二丁目).
    let one = names(&db, by_address("町")).await;
    assert_eq!(one, ["黒田　四", "赤井　二", "青木　一", "白石　三"]);
    assert_eq!(all_pages(&db, by_address("町"), 1).await, one);
    assert_eq!(all_pages(&db, by_address("町"), 3).await, one);
    // Prefix: 東 starts three addresses (in key order), and is nowhere
    // else.
    assert_eq!(
        names(&db, by_address("東")).await,
        ["赤井　二", "青木　一", "白石　三"]
    );
    assert!(names(&db, by_address("鬱")).await.is_empty());
    assert!(names(&db, by_address("鬱金")).await.is_empty());
    // A move takes the old address's grams away and brings the new ones.
    let t = code(FUCHU);
    let found = db
        .registry
        .search(&t, &by_name("青木"), &clerk())
        .await
        .unwrap();
    let aoki = found.rows[0].record.addressee_number.to_string();
    submit(
        &db,
        json!({"effective_date": "2024-06-01", "command": {"type": "move_within",
        "persons": [aoki], "address": {"address": "東京都府中市栄町三丁目"}}}),
    )
    .await;
    assert!(names(&db, by_address("本町")).await.is_empty());
    assert_eq!(names(&db, by_address("栄")).await, ["青木　一"]);
    assert_eq!(names(&db, by_address("三丁")).await, ["青木　一"]);
    let (stored, made) = stored_and_made_grams(&db).await;
    assert!(stored.iter().any(|g| g.starts_with("3 ")));
    assert_eq!(stored, made, "the address grams kept by changes");
}

/// With past records (`include_history`), one and two characters (j340,
/// migration 28): the history postings give every rank, exact (a past
/// key of one or two characters), prefix and contained, each in 宛名番号
/// order as the conditions alone would; 除票 only with `include_removed`;
/// paging gives the same; the postings hold the grams of every history
/// row, and the bulk fill makes the same.
async fn search_with_history_finds_one_and_two_characters_through_grams(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            ("旧川　花子", "キュウカワ　ハナコ", "東京都府中市寿町一丁目"),
            ("川口　一", "カワグチ　ハジメ", "東京都府中市本町一丁目"),
            ("小川　次郎", "オガワ　ジロウ", "東京都府中市宮町一丁目"),
            ("林　一", "ハヤシ　ハジメ", "東京都府中市寿町二丁目"),
            ("林　一郎", "ハヤシ　イチロウ", "東京都府中市寿町三丁目"),
        ],
    )
    .await;
    let t = code(FUCHU);
    let who = |n: &'static str| {
        let db = &db;
        let t = t.clone();
        async move {
            db.registry
                .search(&t, &by_name(n), &clerk())
                .await
                .unwrap()
                .rows[0]
                .record
                .addressee_number
                .to_string()
        }
    };
    let (hanako, kawaguchi, ogawa, hayashi) = (
        who("旧川").await,
        who("川口").await,
        who("小川").await,
        who("林一").await,
    );
    // New names (corrections), a move within, a move-out.
    submit(
        &db,
        json!({"effective_date": "2024-06-01", "command": {"type": "ex_officio_correction",
        "person": hanako, "patch": {"name": "新野　花子", "name_kana": "シンノ　ハナコ"}}}),
    )
    .await;
    submit(
        &db,
        json!({"effective_date": "2024-06-01", "command": {"type": "ex_officio_correction",
        "person": hayashi, "patch": {"name": "森　一", "name_kana": "モリ　ハジメ"}}}),
    )
    .await;
    submit(
        &db,
        json!({"effective_date": "2024-06-02", "command": {"type": "move_within",
        "persons": [ogawa], "address": {"address": "東京都府中市栄町二丁目"}}}),
    )
    .await;
    submit(
        &db,
        json!({"effective_date": "2024-06-20", "command": {"type": "move_out", "persons": [kawaguchi],
        "destination": {"address": "東京都昭島市田中町一丁目"}}}),
    )
    .await;
    // One character: contained in a past name (旧川花子) and a current one.
    assert_eq!(names(&db, by_name("川")).await, ["小川　次郎"]);
    let h1 = names(&db, history(by_name("川"))).await;
    assert_eq!(h1, ["新野　花子", "小川　次郎"]);
    // With 除票: the prefix match (川口一) first, then contained.
    let hr1 = names(&db, removed(history(by_name("川")))).await;
    assert_eq!(hr1, ["川口　一", "新野　花子", "小川　次郎"]);
    for limit in [1, 2] {
        assert_eq!(all_pages(&db, history(by_name("川")), limit).await, h1);
        assert_eq!(
            all_pages(&db, removed(history(by_name("川"))), limit).await,
            hr1
        );
    }
    // Two characters: prefix and contained, past names only with history.
    assert!(names(&db, by_name("旧川")).await.is_empty());
    assert_eq!(names(&db, history(by_name("旧川"))).await, ["新野　花子"]);
    assert_eq!(names(&db, history(by_name("川花"))).await, ["新野　花子"]);
    // Exact (a past name of two characters), then prefix.
    assert_eq!(names(&db, by_name("林一")).await, ["林　一郎"]);
    assert_eq!(
        names(&db, history(by_name("林一"))).await,
        ["森　一", "林　一郎"]
    );
    assert_eq!(
        all_pages(&db, history(by_name("林一")), 1).await,
        ["森　一", "林　一郎"]
    );
    assert_eq!(
        names(&db, history(by_name("林"))).await,
        ["森　一", "林　一郎"]
    );
    // Furigana: a past reading (ハヤシハジメ) and a current one, prefix.
    assert_eq!(names(&db, by_name("ハヤ")).await, ["林　一郎"]);
    assert_eq!(
        names(&db, history(by_name("ハヤ"))).await,
        ["森　一", "林　一郎"]
    );
    // Addresses: a past one with history, in 宛名番号 order.
    let by_address = |a: &str| SearchParams {
        address: Some(a.into()),
        limit: 50,
        ..Default::default()
    };
    assert!(names(&db, by_address("宮町")).await.is_empty());
    assert_eq!(
        names(&db, history(by_address("宮町"))).await,
        ["小川　次郎"]
    );
    assert_eq!(names(&db, history(by_address("宮"))).await, ["小川　次郎"]);
    assert_eq!(names(&db, by_address("栄")).await, ["小川　次郎"]);
    assert_eq!(
        names(&db, history(by_address("寿町"))).await,
        ["新野　花子", "森　一", "林　一郎"]
    );
    assert_eq!(
        names(&db, removed(history(by_address("本町")))).await,
        ["川口　一"]
    );
    assert!(names(&db, history(by_address("本町"))).await.is_empty());
    // Name and address together, with history: both on the person's rows.
    assert_eq!(
        names(
            &db,
            history(SearchParams {
                address: Some("寿町".into()),
                ..by_name("林")
            })
        )
        .await,
        ["森　一", "林　一郎"]
    );
    assert!(names(&db, history(by_name("鬱"))).await.is_empty());
    assert!(names(&db, history(by_name("鬱金"))).await.is_empty());
    // The postings hold every history row's grams; the bulk fill
    // (migration 28, imports) makes exactly those.
    let (stored, made) = stored_and_made_history_grams(&db).await;
    assert!(!made.is_empty());
    assert_eq!(stored, made, "the history grams kept by changes");
    let tt = t.clone();
    db.store
        .write(Some(&t), move |tx| {
            tx.execute(
                "DELETE FROM resident_gram WHERE tenant = $1",
                &[tt.as_str().into()],
            )?;
            let sql = records::gram_fill_sql(tx.backend(), "resident_current", "c.tenant = $1");
            tx.execute(&sql, &[tt.as_str().into()])?;
            let sql =
                records::history_gram_fill_sql(tx.backend(), "resident_history", "c.tenant = $1");
            tx.execute(&sql, &[tt.as_str().into()])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let (filled, made2) = stored_and_made_history_grams(&db).await;
    assert_eq!(filled, made2, "the history grams of the bulk fill");
    assert_eq!(filled, stored);
    let (current, made) = stored_and_made_grams(&db).await;
    assert_eq!(current, made);
}

/// `machi search refold` (j330): keys folded with an earlier table are
/// folded again, batch by batch; a stopped re-fold resumes; once done,
/// running it again changes nothing.
async fn search_refold_folds_old_keys_again_in_batches(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            ("髙橋　一", "タカハシ　ハジメ", "東京都府中市宮西町一丁目"),
            ("渡邉　恵子", "ワタナベ　ケイコ", "東京都府中市宮西町一丁目"),
            ("森　鷗外", "モリ　オウガイ", "東京都府中市宮西町一丁目"),
            ("田中　一", "タナカ　ハジメ", "東京都府中市宮西町一丁目"),
        ],
    )
    .await;
    let t = code(FUCHU);
    // As a database made before the MJ table: the variants kept as typed
    // in the stored keys (and their grams).
    let tt = t.clone();
    let old_keys = db
        .store
        .write(Some(&t), move |tx| {
            let rows = tx.query(
                "SELECT addressee_number, name_key, kana_key FROM resident_current WHERE tenant = $1",
                &[tt.as_str().into()],
            )?;
            let mut changed = 0;
            for r in rows {
                let (a, k, kana) = (r.text(0)?, r.text(1)?, r.text(2)?);
                let old = k.replace('高', "髙").replace('辺', "邉").replace('鴎', "鷗");
                if old == k {
                    continue;
                }
                changed += 1;
                tx.execute(
                    "UPDATE resident_current SET name_key = $1 WHERE tenant = $2 AND addressee_number = $3",
                    &[old.as_str().into(), tt.as_str().into(), a.as_str().into()],
                )?;
                records::replace_grams(
                    tx,
                    &tt,
                    &a,
                    [Some(k.as_str()), Some(kana.as_str()), None],
                    [Some(old.as_str()), Some(kana.as_str()), None],
                )?;
            }
            Ok::<_, StoreError>(changed)
        })
        .await
        .unwrap();
    assert_eq!(old_keys, 3);
    for q in ["高橋", "渡辺", "鴎外", "辺"] {
        assert!(names(&db, by_name(q)).await.is_empty(), "{q} before");
    }
    // One person a batch, stopped after two batches: not done yet.
    let p = db
        .registry
        .refold_search_keys(&t, 1, Some(2), false)
        .await
        .unwrap();
    assert!(!p.finished);
    assert!(p.after.is_some());
    // Resumed: runs to the end.
    let p = db
        .registry
        .refold_search_keys(&t, 1, None, false)
        .await
        .unwrap();
    assert!(p.finished);
    assert_eq!(p.updated_rows, 3, "{p:?}");
    assert_eq!(names(&db, by_name("高橋")).await, ["髙橋　一"]);
    assert_eq!(names(&db, by_name("渡辺")).await, ["渡邉　恵子"]);
    assert_eq!(names(&db, by_name("鴎外")).await, ["森　鷗外"]);
    assert_eq!(names(&db, by_name("辺")).await, ["渡邉　恵子"]);
    let (stored, made) = stored_and_made_grams(&db).await;
    assert_eq!(stored, made);
    // Again: nothing to do; from the start again: nothing changes.
    let again = db
        .registry
        .refold_search_keys(&t, 1, None, false)
        .await
        .unwrap();
    assert_eq!(again, p);
    let restarted = db
        .registry
        .refold_search_keys(&t, 2, None, true)
        .await
        .unwrap();
    assert!(restarted.finished);
    assert_eq!(restarted.updated_rows, 0);
    assert_eq!(stored_and_made_grams(&db).await, (stored, made));
}

/// The distinct keys posted per trigram (`search_key_gram`) and the
/// counts per trigram (`search_gram_count`) of the tenant, as stored:
/// "col gram key" and "col gram count", sorted.
pub(crate) async fn stored_key_grams(db: &TestDb) -> (Vec<String>, Vec<String>) {
    let t = code(FUCHU);
    let tenant = t.clone();
    db.store
        .read(Some(&tenant), move |tx| {
            let mut keys: Vec<String> = tx
                .query(
                    "SELECT CAST(col AS BIGINT), gram, key FROM search_key_gram WHERE tenant = $1",
                    &[t.as_str().into()],
                )?
                .iter()
                .map(|r| Ok(format!("{} {} {}", r.int(0)?, r.text(1)?, r.text(2)?)))
                .collect::<Result<_, StoreError>>()?;
            let mut counts: Vec<String> = tx
                .query(
                    "SELECT CAST(col AS BIGINT), gram, CAST(keys AS BIGINT) FROM search_gram_count WHERE tenant = $1",
                    &[t.as_str().into()],
                )?
                .iter()
                .map(|r| Ok(format!("{} {} {}", r.int(0)?, r.text(1)?, r.int(2)?)))
                .collect::<Result<_, StoreError>>()?;
            keys.sort();
            counts.sort();
            Ok::<_, StoreError>((keys, counts))
        })
        .await
        .unwrap()
}

/// The rows [`stored_key_grams`] should hold: the keys of every history
/// row (the current ones included) with their [`records::key_trigrams`],
/// and the counts of those rows.
pub(crate) async fn made_key_grams(db: &TestDb) -> (Vec<String>, Vec<String>) {
    let t = code(FUCHU);
    let tenant = t.clone();
    db.store
        .read(Some(&tenant), move |tx| {
            let mut made: Vec<(i64, String, String)> = Vec::new();
            for r in tx.query(
                "SELECT name_key, kana_key, address_key FROM resident_history WHERE tenant = $1",
                &[t.as_str().into()],
            )? {
                for (col, k) in [(1, r.text(0)?), (2, r.text(1)?), (3, r.text(2)?)] {
                    made.extend(
                        records::key_trigrams(&k)
                            .into_iter()
                            .map(|g| (col, g, k.clone())),
                    );
                }
            }
            made.sort();
            made.dedup();
            let mut counts: std::collections::BTreeMap<(i64, String), i64> = Default::default();
            for (col, g, _) in &made {
                *counts.entry((*col, g.clone())).or_default() += 1;
            }
            let made = made
                .into_iter()
                .map(|(c, g, k)| format!("{c} {g} {k}"))
                .collect();
            let counts = counts
                .into_iter()
                .map(|((c, g), n)| format!("{c} {g} {n}"))
                .collect();
            Ok::<_, StoreError>((made, counts))
        })
        .await
        .unwrap()
}

fn by_address(a: &str) -> SearchParams {
    SearchParams {
        address: Some(a.into()),
        limit: 50,
        ..Default::default()
    }
}

/// Three characters or more through the distinct keys (issue 10, item 1;
/// migration 33): a contained match reads the keys of the text's rarest
/// trigram and joins them to the current rows, in 宛名番号 order after the
/// exact and prefix matches, page by page, for addresses, names and
/// furigana alike. Each distinct key is posted once (a household shares
/// its address), a change posts a new key in its own transaction (gone
/// after a rollback), a key nobody has any more stays (the keys are those
/// of every history row) and finds nobody now, with history it is found,
/// a text no key has finds nobody with history either, and the bulk fill
/// of imports posts what changes post.
async fn search_finds_three_characters_through_distinct_keys(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            (
                "山田　一郎",
                "ヤマダ　イチロウ",
                "東京都府中市宮西町一丁目1番",
            ),
            (
                "川田　花子",
                "カワダ　ハナコ",
                "東京都府中市宮西町一丁目1番",
            ),
            ("田山　次郎", "タヤマ　ジロウ", "東京都府中市本町一丁目1番"),
            (
                "本田　山田",
                "ホンダ　ヤマダ",
                "東京都府中市宮西町一丁目10番",
            ),
            ("佐藤　花", "サトウ　ハナ", "東京都府中市寿町一丁目1番"),
        ],
    )
    .await;
    // A full address: exact (in 宛名番号 order); no prefix (10番 is
    // not 1番), and nobody has it inside.
    assert_eq!(
        names(&db, by_address("東京都府中市宮西町一丁目1番")).await,
        ["山田　一郎", "川田　花子"]
    );
    // Contained only (10番 is not 1番), in 宛名番号 order; one and all
    // pages alike.
    let contained = names(&db, by_address("町一丁目1番")).await;
    assert_eq!(
        contained,
        ["山田　一郎", "川田　花子", "田山　次郎", "佐藤　花"]
    );
    assert_eq!(
        all_pages(&db, by_address("町一丁目1番"), 1).await,
        contained
    );
    assert_eq!(
        all_pages(&db, by_address("町一丁目1番"), 2).await,
        contained
    );
    assert_eq!(
        names(&db, by_address("宮西町一")).await,
        ["山田　一郎", "川田　花子", "本田　山田"]
    );
    // Names and furigana (a prefix match first).
    assert_eq!(names(&db, by_name("田一郎")).await, ["山田　一郎"]);
    assert_eq!(names(&db, by_name("田山田")).await, ["本田　山田"]);
    assert_eq!(
        names(&db, by_name("やまだ")).await,
        ["山田　一郎", "本田　山田"]
    );
    assert_eq!(names(&db, by_name("田花子")).await, ["川田　花子"]);
    // Nobody: a trigram nobody has, and trigrams everybody has that
    // make a text nobody has.
    assert!(names(&db, by_address("大阪府")).await.is_empty());
    assert!(names(&db, by_address("鬱金香")).await.is_empty());
    assert!(names(&db, by_address("府中市府中市")).await.is_empty());
    // The keys as changes posted them: each distinct key once.
    let (stored, counts) = stored_key_grams(&db).await;
    let (made, made_counts) = made_key_grams(&db).await;
    assert!(!stored.is_empty());
    assert_eq!(stored, made, "each distinct key posted once");
    assert_eq!(counts, made_counts, "the count of keys of each trigram");
    assert!(
        counts.contains(&"3 宮西町 2".to_string()),
        "two addresses have 宮西町: {counts:?}"
    );
    // A change posts a new address in its own transaction only.
    let t = code(FUCHU);
    let found = db
        .registry
        .search(&t, &by_name("佐藤花"), &clerk())
        .await
        .unwrap();
    let (row, _) = db
        .registry
        .resident(
            &t,
            &found.rows[0].record.addressee_number,
            AsOf::default(),
            &clerk(),
        )
        .await
        .unwrap();
    let mut moved = row.clone();
    moved.history_number += 1;
    moved.record.address.address = "東京都府中市栄町三丁目5番".into();
    let f = records::SearchFilter {
        address_key: Some(search_key("栄町三丁目")),
        ..Default::default()
    };
    let (tt, m2, f2) = (t.clone(), moved.clone(), f.clone());
    let inside: Result<(), StoreError> = db
        .store
        .write(Some(&t), move |tx| {
            records::append_history(tx, &tt, &m2)?;
            assert_eq!(
                records::search(tx, &tt, &f2, None, 10)?.len(),
                1,
                "found in its own transaction"
            );
            Err(StoreError::Task("the change fails after writing".into()))
        })
        .await;
    assert!(inside.is_err());
    assert!(names(&db, by_address("栄町三丁目")).await.is_empty());
    assert_eq!(stored_key_grams(&db).await, (stored, counts), "rolled back");
    // Committed: the new key is posted, the old one stays (a recheck
    // finds nobody there).
    let (tt, m2) = (t.clone(), moved.clone());
    db.store
        .write(Some(&t), move |tx| records::append_history(tx, &tt, &m2))
        .await
        .unwrap();
    assert_eq!(names(&db, by_address("栄町三丁目")).await, ["佐藤　花"]);
    assert!(names(&db, by_address("府中市寿町")).await.is_empty());
    let (stored, counts) = stored_key_grams(&db).await;
    assert_eq!(stored, made_key_grams(&db).await.0, "new key posted");
    assert!(
        stored.iter().any(|s| s.starts_with("3 寿町一 ")),
        "the old key stays"
    );
    // With history (and 除票): the past address is found; a text no
    // history row has finds nobody at any rank.
    let history = |p: SearchParams| removed(history(p));
    assert_eq!(
        names(&db, history(by_address("府中市寿町"))).await,
        ["佐藤　花"]
    );
    assert_eq!(names(&db, history(by_name("田一郎"))).await, ["山田　一郎"]);
    for q in ["鬱金香", "府中市府中市"] {
        assert!(names(&db, history(by_address(q))).await.is_empty(), "{q}");
        assert!(names(&db, history(by_name(q))).await.is_empty(), "{q}");
    }
    assert!(counts.contains(&"3 栄町三 1".to_string()), "{counts:?}");
    // The bulk fill (imports) posts the keys and counts as changes do.
    // (Deleted as the owner: the application may only add keys.)
    db.raw("DELETE FROM search_key_gram").await;
    db.raw("DELETE FROM search_gram_count").await;
    let tt = t.clone();
    db.store
        .write(Some(&t), move |tx| {
            let sql = records::key_gram_fill_sql(tx.backend(), "resident_history", "c.tenant = $1");
            tx.execute(&sql, &[tt.as_str().into()])?;
            tx.execute(records::KEY_GRAM_COUNT_SQL, &[tt.as_str().into()])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    assert_eq!(
        stored_key_grams(&db).await,
        made_key_grams(&db).await,
        "the bulk fill"
    );
    assert_eq!(names(&db, by_address("栄町三丁目")).await, ["佐藤　花"]);
}

/// With past records (`include_history`), three characters or more
/// (j340; migration 34 on PostgreSQL: the matching keys and the history's
/// key B-trees): a past name found exactly ranks before a current name
/// that starts with the text, which ranks before one that contains it; a
/// person's best row decides (a past prefix beats a current contained
/// match); 除票 only with `include_removed`; every page size gives the
/// same; texts nobody ever had find nobody at any rank.
async fn search_with_history_finds_three_characters_at_every_rank(db: TestDb) {
    let db = db.with_tenants().await;
    residents(
        &db,
        &[
            (
                "川村　一郎",
                "カワムラ　イチロウ",
                "東京都府中市寿町一丁目1番",
            ),
            (
                "川村　一郎太",
                "カワムラ　イチロウタ",
                "東京都府中市本町一丁目2番",
            ),
            (
                "小川村　一郎",
                "オガワムラ　イチロウ",
                "東京都府中市宮町一丁目3番",
            ),
            (
                "川村　一郎丸",
                "カワムラ　イチロウマル",
                "東京都府中市栄町一丁目4番",
            ),
            (
                "川村　一郎次",
                "カワムラ　イチロウジ",
                "東京都府中市緑町一丁目5番",
            ),
        ],
    )
    .await;
    let t = code(FUCHU);
    let mut ids = Vec::new();
    for n in [
        "川村一郎",
        "川村一郎太",
        "小川村一郎",
        "川村一郎丸",
        "川村一郎次",
    ] {
        let found = db.registry.search(&t, &by_name(n), &clerk()).await.unwrap();
        ids.push(found.rows[0].record.addressee_number.to_string());
    }
    // 一郎 becomes 森村 (his exact name is now past), 一郎丸 becomes
    // 大川村 (a past prefix, a current contained match), 一郎次 moves
    // out (除票), and 一郎太 moves within (his address is past).
    for (i, name, kana) in [
        (0, "森村　一郎", "モリムラ　イチロウ"),
        (3, "大川村　一郎", "オオカワムラ　イチロウ"),
    ] {
        submit(
            &db,
            json!({"effective_date": "2024-06-01", "command": {"type": "ex_officio_correction",
            "person": ids[i], "patch": {"name": name, "name_kana": kana}}}),
        )
        .await;
    }
    submit(
        &db,
        json!({"effective_date": "2024-06-20", "command": {"type": "move_out", "persons": [ids[4]],
        "destination": {"address": "東京都昭島市田中町一丁目"}}}),
    )
    .await;
    submit(
        &db,
        json!({"effective_date": "2024-06-02", "command": {"type": "move_within",
        "persons": [ids[1]], "address": {"address": "東京都府中市若松町二丁目7番"}}}),
    )
    .await;
    // Now: 川村一郎太 (prefix), then 小川村一郎 and 大川村一郎 (contained).
    assert_eq!(
        names(&db, by_name("川村一郎")).await,
        ["川村　一郎太", "小川村　一郎", "大川村　一郎"]
    );
    // With history: 森村一郎 (exact, past), 川村一郎太 and 大川村一郎
    // (prefix; the latter through his past name), 小川村一郎 (contained).
    let want = ["森村　一郎", "川村　一郎太", "大川村　一郎", "小川村　一郎"];
    assert_eq!(names(&db, history(by_name("川村一郎"))).await, want);
    for limit in [1, 2, 3] {
        assert_eq!(
            all_pages(&db, history(by_name("川村一郎")), limit).await,
            want
        );
    }
    // 除票 too: 川村一郎次 is a prefix match.
    let with_removed = [
        "森村　一郎",
        "川村　一郎太",
        "大川村　一郎",
        "川村　一郎次",
        "小川村　一郎",
    ];
    assert_eq!(
        names(&db, removed(history(by_name("川村一郎")))).await,
        with_removed
    );
    assert_eq!(
        all_pages(&db, removed(history(by_name("川村一郎"))), 2).await,
        with_removed
    );
    // Furigana alike.
    assert_eq!(names(&db, history(by_name("カワムライチロウ"))).await, want);
    // A past address: exact, prefix and contained; not found without
    // history.
    assert!(names(&db, by_address("府中市本町一丁目")).await.is_empty());
    assert_eq!(
        names(&db, history(by_address("東京都府中市本町一丁目2番"))).await,
        ["川村　一郎太"]
    );
    assert_eq!(
        names(&db, history(by_address("東京都府中市本町"))).await,
        ["川村　一郎太"]
    );
    assert_eq!(
        names(&db, history(by_address("府中市本町一丁目"))).await,
        ["川村　一郎太"]
    );
    assert_eq!(
        names(&db, history(by_address("一丁目"))).await,
        ["森村　一郎", "川村　一郎太", "小川村　一郎", "大川村　一郎"]
    );
    // Nobody ever had these: no rank finds anyone.
    for q in ["鬱金香", "村村村", "川村一郎太郎"] {
        assert!(
            names(&db, removed(history(by_name(q)))).await.is_empty(),
            "{q}"
        );
        assert!(
            names(&db, removed(history(by_address(q)))).await.is_empty(),
            "{q}"
        );
    }
}

/// A person's best rank for `q` over `keys` (exact 0, prefix 1,
/// contained 2), as the search defines it.
fn best_rank(keys: &[String], q: &str) -> Option<u8> {
    keys.iter()
        .filter_map(|k| {
            if k == q {
                Some(0)
            } else if k.starts_with(q) {
                Some(1)
            } else if k.contains(q) {
                Some(2)
            } else {
                None
            }
        })
        .min()
}

/// A person's rank for `q` on their current `key`, with the order inside
/// the rank of a search without history (a prefix by its key, then
/// 宛名番号), for sorting expected results.
fn current_rank(key: &str, q: &str, a: &str) -> Option<(u8, String, String)> {
    best_rank(&[key.to_string()], q).map(|r| {
        let order = if r == 1 {
            key.to_string()
        } else {
            String::new()
        };
        (r, order, a.to_string())
    })
}

/// The 宛名番号 of `f`'s search in one page, and page by page (`page` a
/// page) up to `most` persons.
async fn one_and_paged(
    db: &TestDb,
    t: &MunicipalityCode,
    f: &records::SearchFilter,
    page: i64,
    most: usize,
) -> (Vec<String>, Vec<String>) {
    let (tt, f2) = (t.clone(), f.clone());
    db.store
        .read(Some(t), move |tx| {
            let one: Vec<String> = records::search(tx, &tt, &f2, None, 100_000)?
                .into_iter()
                .map(|h| h.row.record.addressee_number.to_string())
                .collect();
            let mut paged = Vec::new();
            let mut after = None;
            while paged.len() < most {
                let got = records::search(tx, &tt, &f2, after.as_ref(), page)?;
                let Some(last) = got.last() else { break };
                after = Some(last.cursor.clone());
                let full = got.len() as i64 == page;
                paged.extend(
                    got.iter()
                        .map(|h| h.row.record.addressee_number.to_string()),
                );
                if !full {
                    break;
                }
            }
            Ok::<_, StoreError>((one, paged))
        })
        .await
        .unwrap()
}

/// With past records (`include_history`), against a reading of every
/// history row (issue 10, item 1): over a generated town of 1,500
/// residents with moves, for texts taken from past and current names,
/// furigana and addresses (whole keys, their starts, their middles), one
/// so common that its keys are too many to join one by one (a walk in
/// 宛名番号 order), and one nobody has, the persons found and their order
/// are those of the best rank over each person's history rows, with and
/// without 除票, in one page and page by page. Without history, the same
/// texts find what each person's current row gives (the common text walks
/// the postings of its sparsest pair of characters), and a contained name
/// shared by many with an address only the last of them has is found past
/// the first persons checked (SQLite checks them a chunk at a time); a
/// 600-character text with a wildcard finds nobody without an error.
async fn search_with_history_agrees_with_every_history_row(db: TestDb) {
    use machi::migration::generate::{GenerateOptions, generate};
    use machi::migration::import::{ImportOptions, Outcome, import};
    use machi_domain::model::ResidentStatus;
    use std::collections::BTreeMap;
    let db = db.with_tenants().await;
    let r = &db.registry;
    let t = code(FUCHU);
    let dir = tempfile::tempdir().unwrap();
    let opts = GenerateOptions {
        residents: 1500,
        seed: 11,
        town_index: 0,
        today: r.today(),
    };
    generate(dir.path(), &opts, r.eras()).unwrap();
    let rep = import(
        r,
        &t,
        &[dir.path().to_path_buf()],
        &ImportOptions::default(),
        &machi::service::Actor::system("search-test"),
    )
    .await
    .unwrap();
    assert_eq!(rep.outcome, Outcome::Imported, "{:?}", rep.problems.first());
    // Every person's keys over their history rows, and whether they are
    // residents now (their current row).
    let tt = t.clone();
    let (keys, current, now) = db
        .store
        .read(Some(&t), move |tx| {
            let mut keys: BTreeMap<String, [Vec<String>; 3]> = BTreeMap::new();
            records::each_history_row(tx, &tt, None, |row| {
                let k = records::search_keys_of(&row.record);
                let e = keys
                    .entry(row.record.addressee_number.to_string())
                    .or_default();
                for (i, key) in k.into_iter().enumerate() {
                    if !e[i].contains(&key) {
                        e[i].push(key);
                    }
                }
                Ok(())
            })?;
            let all = records::SearchFilter {
                include_removed: true,
                ..Default::default()
            };
            let found = records::search(tx, &tt, &all, None, 100_000)?;
            let current: BTreeMap<String, bool> = found
                .iter()
                .map(|h| {
                    (
                        h.row.record.addressee_number.to_string(),
                        h.row.record.status == ResidentStatus::Resident,
                    )
                })
                .collect();
            // The keys of each person's current row.
            let now: BTreeMap<String, [String; 3]> = found
                .iter()
                .map(|h| {
                    (
                        h.row.record.addressee_number.to_string(),
                        records::search_keys_of(&h.row.record),
                    )
                })
                .collect();
            Ok::<_, StoreError>((keys, current, now))
        })
        .await
        .unwrap();
    assert_eq!(keys.len(), current.len());
    // Texts from persons whose past address (or name) is not their current one.
    let mut texts: Vec<(usize, String)> = Vec::new();
    for col in 0..3 {
        let moved: Vec<Vec<char>> = keys
            .values()
            .filter(|k| k[col].len() > 1 && k[col][0].chars().count() >= 6)
            .map(|k| k[col][0].chars().collect())
            .collect();
        if col == 2 {
            assert!(moved.len() >= 4, "the town has moves: {}", moved.len());
        }
        for past in moved.iter().take(4) {
            let n = past.len();
            texts.push((col, past.iter().collect()));
            texts.push((col, past[..n - 1].iter().collect()));
            texts.push((col, past[..4].iter().collect()));
            texts.push((col, past[n - 4..].iter().collect()));
            texts.push((col, past[2..5].iter().collect()));
        }
        // Parts of current keys (common family names, towns).
        for k in keys
            .values()
            .filter(|k| k[col][0].chars().count() >= 5)
            .take(3)
        {
            let cur: Vec<char> = k[col].last().unwrap().chars().collect();
            if cur.len() >= 4 {
                texts.push((col, cur[..3].iter().collect()));
                texts.push((col, cur[1..4].iter().collect()));
            }
        }
        texts.push((col, "鬱金香".into()));
    }
    // A text so common that more than 500 distinct addresses contain it
    // (the walk), checked as stored.
    texts.push((2, "府中市".into()));
    assert!(texts.len() > 30, "{} texts", texts.len());
    let many = keys
        .values()
        .flat_map(|k| k[2].iter())
        .collect::<std::collections::BTreeSet<_>>();
    assert!(
        many.iter().filter(|k| k.contains("府中市")).count() > 500,
        "府中市 is in more than 500 address keys"
    );
    for (col, q) in texts {
        for (include_removed, include_history) in
            [(false, true), (true, true), (false, false), (true, false)]
        {
            // With history: the best rank over every row, in 宛名番号
            // order. Without: the current row's rank, prefixes in key
            // order (code points), then 宛名番号.
            let mut want: Vec<(u8, String, String)> = if include_history {
                keys.iter()
                    .filter(|(a, _)| include_removed || current[*a])
                    .filter_map(|(a, k)| {
                        best_rank(&k[col], &q).map(|r| (r, String::new(), a.clone()))
                    })
                    .collect()
            } else {
                now.iter()
                    .filter(|(a, _)| include_removed || current[*a])
                    .filter_map(|(a, k)| current_rank(&k[col], &q, a))
                    .collect()
            };
            want.sort();
            let want: Vec<String> = want.into_iter().map(|(_, _, a)| a).collect();
            let f = records::SearchFilter {
                name_key: (col == 0).then(|| q.clone()),
                kana_key: (col == 1).then(|| q.clone()),
                address_key: (col == 2).then(|| q.clone()),
                include_history,
                include_removed,
                ..Default::default()
            };
            // The first 120 page by page, 40 at a time.
            let (one, paged) = one_and_paged(&db, &t, &f, 40, 120).await;
            assert_eq!(
                one, want,
                "{q} (column {col}, removed {include_removed}, history {include_history})"
            );
            assert_eq!(paged, want[..want.len().min(120)], "{q} paged");
        }
    }
    // A contained name that many persons share, with a second text (an
    // address) that only the last of them has: the persons of the name's
    // keys are checked a chunk at a time in 宛名番号 order (SQLite), so
    // the one match is found past the first chunks, page by page too.
    let contained_by = |q: &str| -> Vec<&String> {
        now.iter()
            .filter(|(a, k)| current[*a] && k[0].contains(q) && !k[0].starts_with(q))
            .map(|(a, _)| a)
            .collect()
    };
    let mut given: Vec<(usize, String)> = now
        .values()
        .flat_map(|k| {
            let cs: Vec<char> = k[0].chars().collect();
            cs.windows(3)
                .filter(|w| w.iter().all(|c| !c.is_control()))
                .map(|w| w.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .map(|q| (contained_by(&q).len(), q))
        .filter(|(n, _)| (20..=400).contains(n))
        .collect();
    given.sort();
    let (n, q) = given
        .pop()
        .expect("a contained name shared by 20 to 400 residents");
    let last = contained_by(&q).last().copied().unwrap().clone();
    let address = now[&last][2].clone();
    // Everyone at the address whose name has the text at any rank (a
    // household member's may start with it).
    let mut want: Vec<(u8, String, String)> = now
        .iter()
        .filter(|(a, k)| current[*a] && k[2].contains(&address))
        .filter_map(|(a, k)| current_rank(&k[0], &q, a))
        .collect();
    want.sort();
    let want: Vec<String> = want.into_iter().map(|(_, _, a)| a).collect();
    assert!(
        want.len() < 5 && want.contains(&last),
        "{q} at {address}: {want:?}"
    );
    let f = records::SearchFilter {
        name_key: Some(q.clone()),
        address_key: Some(address.clone()),
        ..Default::default()
    };
    let (one, paged) = one_and_paged(&db, &t, &f, 1, usize::MAX).await;
    assert_eq!(one, want, "{q} ({n} residents) at {address}");
    assert_eq!(paged, want, "{q} at {address}, one a page");
    // A long text the keys cannot answer (a LIKE wildcard in it) walks
    // the postings of a pair sampled from a few of its 600 pairs: nobody,
    // and no error (SQLite refuses a compound SELECT of more than 500).
    let long: String = std::iter::once('%')
        .chain((0..600).filter_map(|i| char::from_u32(0x4E00 + i)))
        .collect();
    for include_history in [false, true] {
        let f = records::SearchFilter {
            name_key: Some(long.clone()),
            include_history,
            ..Default::default()
        };
        let tt = t.clone();
        let found = db
            .store
            .read(Some(&t), move |tx| records::search(tx, &tt, &f, None, 50))
            .await
            .unwrap();
        assert!(found.is_empty(), "history {include_history}");
    }
}

/// An address longer than the search keys hold (200 characters, or 500
/// once folded: a compatibility character can fold to many) is refused
/// with a typed error in both languages before anything is written, on
/// both backends (on PostgreSQL a long enough key would otherwise reach
/// the key B-tree's size limit); one of 200 characters is stored and
/// found by its last characters.
async fn an_address_too_long_for_the_search_keys_is_refused(db: TestDb) {
    use machi_domain::error::Localized;
    let db = db.with_tenants().await;
    let t = code(FUCHU);
    let at = |address: String| {
        let mut v = move_in(
            vec![person(
                "長住　太郎",
                "ナガスミ　タロウ",
                "1980-01-01",
                "male",
                "世帯主",
            )],
            "東京都府中市寿町一丁目",
        );
        v["command"]["household"]["address"] = json!({ "address": address });
        serde_json::from_value::<ChangeRequest>(v).expect("request")
    };
    let long = format!("東京都府中市寿町{}", "一".repeat(1000));
    let folded_long = format!("東京都府中市寿町{}", "\u{FDFA}".repeat(60));
    for address in [long, folded_long] {
        let e = db
            .registry
            .submit(&t, &at(address.clone()), &clerk())
            .await
            .expect_err("refused");
        match &e {
            ServiceError::Change(c) => {
                assert_eq!(c.code(), "address_too_long", "{c:?}");
                assert!(c.message_ja().contains("長すぎます"), "{}", c.message_ja());
                assert!(c.message_en().contains("too long"), "{}", c.message_en());
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        names(&db, by_name("長住")).await.is_empty(),
        "nothing written"
    );
    // 200 characters: stored, and found by the end of the address.
    let fits = format!("東京都府中市寿町{}二番", "一".repeat(190));
    assert_eq!(fits.chars().count(), 200);
    db.registry.submit(&t, &at(fits), &clerk()).await.unwrap();
    assert_eq!(names(&db, by_address("一一二番")).await, ["長住　太郎"]);
}
