//! A citizen on a phone (390 CSS px) files a 転出届 signed with a demo card
//! (issue 11, items 3 and 9): the check-your-answers page leads to the
//! signing step (the document, its 署名番号, the upload, and — the portal
//! runs in demo mode — 「デモ用カード」), a wrong file is refused with an
//! error summary, the demo card signs, the confirmation shows the
//! certificate's basic four items, and the receipt follows. axe-core and
//! the readability check run on every screenshot. The back office then
//! imports the filing and verifies the signature again with its own copy
//! of the anchor and CRL.

use std::sync::Arc;

use fantoccini::Locator;
use machi_portal::seal::OpeningKey;
use machi_portal::signing::{DemoCards, DemoPerson, SignatureFiles, Signing, demo_people};
use machi_portal::{Config, Portal};
use sha2::{Digest, Sha256};

use crate::browser::Harness;
use crate::support::{FUCHU, TestDb, code};

both_backends!(browser_portal_signed_tenshutsu_with_a_demo_card);

async fn next(h: &Harness) {
    h.click(".actions button[value=next]").await;
}

async fn date(h: &Harness, key: &str, d: chrono::NaiveDate) {
    h.select(&format!("f-{key}-era"), "seireki").await;
    h.fill(&format!("f-{key}-year"), &d.format("%Y").to_string())
        .await;
    h.fill(&format!("f-{key}-month"), &d.format("%-m").to_string())
        .await;
    h.fill(&format!("f-{key}-day"), &d.format("%-d").to_string())
        .await;
}

/// A portal on a port of its own with the shipped procedures published
/// for 府中市, DEMO cards issued to `people` (its only trust anchor), and
/// the pull token [`crate::inbox::TOKEN`].
pub(crate) struct DemoPortal {
    pub(crate) base: String,
    pub(crate) portal: Arc<Portal>,
    pub(crate) key: OpeningKey,
    pub(crate) cards: Arc<DemoCards>,
    _dir: tempfile::TempDir,
}

pub(crate) async fn demo_portal(people: Vec<DemoPerson>) -> DemoPortal {
    let dir = tempfile::tempdir().unwrap();
    let key = OpeningKey::generate().unwrap();
    let cards = Arc::new(
        tokio::task::spawn_blocking(move || DemoCards::issue(&people, chrono::Utc::now()))
            .await
            .unwrap()
            .unwrap(),
    );
    let mut config = Config::new(key.public());
    config.signing = Some(Arc::new(
        Signing::load(
            SignatureFiles::default(),
            vec![cards.ca_der().to_vec()],
            vec![cards.crl_der().to_vec()],
        )
        .unwrap(),
    ));
    config.demo_cards = Some(cards.clone());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(crate::inbox::TOKEN.as_bytes())));
    let portal = Portal::open(&dir.path().join("portal.db"), config).unwrap();
    portal
        .publish_shipped(FUCHU, "府中市", "Fuchu City")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = machi_portal::router(portal.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    DemoPortal {
        base,
        portal,
        key,
        cards,
        _dir: dir,
    }
}

impl DemoPortal {
    /// The back office's own signature check: the same anchor and CRL,
    /// loaded on its side.
    pub(crate) fn back_office_signing(&self) -> Signing {
        Signing::load(
            SignatureFiles::default(),
            vec![self.cards.ca_der().to_vec()],
            vec![self.cards.crl_der().to_vec()],
        )
        .unwrap()
    }
}

/// Who files the 転出届 on the portal: the applicant, the one member who
/// moves (themself) with their date of birth as typed in 和暦 (era, year,
/// month, day), and where to.
pub(crate) struct Citizen<'a> {
    pub(crate) name: &'a str,
    pub(crate) kana: &'a str,
    pub(crate) born: (&'a str, &'a str, &'a str, &'a str),
    pub(crate) postal: &'a str,
    pub(crate) destination: &'a str,
    /// Days from today to the move.
    pub(crate) moving_in: i64,
}

/// On a phone (the viewport must be 390 CSS px wide): the 転出届 on
/// `portal`, page by page, to the signing step. Screenshots (with axe)
/// `{prefix}-01-start`, `{prefix}-02-check-answers`, `{prefix}-03-sign`.
pub(crate) async fn fill_tenshutsu(h: &Harness, portal: &str, who: &Citizen<'_>, prefix: &str) {
    h.client
        .goto(&format!("{portal}/t/{FUCHU}/tenshutsu"))
        .await
        .unwrap();
    h.wait_for("button.start").await;
    let width: i64 = h
        .client
        .execute("return window.innerWidth;", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    assert_eq!(width, 390, "a phone-width viewport");
    h.shot(&format!("{prefix}-01-start")).await;
    h.click("button.start").await;
    h.wait_for("#f-applicant_name").await;
    h.fill("f-applicant_name", who.name).await;
    h.fill("f-applicant_kana", who.kana).await;
    h.fill("f-phone", "042-000-0000").await;
    next(h).await;
    let today = chrono::Utc::now()
        .with_timezone(&machi_portal::jst())
        .date_naive();
    h.wait_for("#f-moving_date-year").await;
    date(
        h,
        "moving_date",
        today + chrono::Duration::days(who.moving_in),
    )
    .await;
    next(h).await;
    h.wait_for("#f-destination-postal").await;
    h.fill("f-destination-postal", who.postal).await;
    h.fill("f-destination-address", who.destination).await;
    next(h).await;
    h.wait_for("#f-members-0-name").await;
    h.fill("f-members-0-name", who.name).await;
    h.fill("f-members-0-kana", who.kana).await;
    let (era, year, month, day) = who.born;
    h.select("f-members-0-birth_date-era", era).await;
    h.fill("f-members-0-birth_date-year", year).await;
    h.fill("f-members-0-birth_date-month", month).await;
    h.fill("f-members-0-birth_date-day", day).await;
    next(h).await;
    h.wait_for("#f-visit_date-year").await;
    date(
        h,
        "visit_date",
        today + chrono::Duration::days(who.moving_in + 2),
    )
    .await;
    next(h).await;

    // Check your answers leads to signing, not to sending.
    h.wait_for("a[href='/d/sign']").await;
    h.shot(&format!("{prefix}-02-check-answers")).await;
    h.click("a[href='/d/sign']").await;
    h.wait_for("#nonce").await;
    let page = h.text().await;
    assert!(page.contains("署名番号"));
    assert!(page.contains("デモ用カード"), "labelled as a demo");
    assert!(page.contains(who.destination));
    h.shot(&format!("{prefix}-03-sign")).await;
}

/// On the signing page: signs with the first demo card; on the
/// confirmation the certificate's items (`name` as the card has it).
/// Screenshot `{prefix}-05-confirm`.
pub(crate) async fn sign_with_demo_card(h: &Harness, name: &str, prefix: &str) {
    h.click("#demo-card-0").await;
    h.click("button[value=demo]").await;
    h.wait_for("#signer").await;
    let page = h.text().await;
    assert!(page.contains(name), "the certificate's name");
    assert!(page.contains("デモ用カード"));
    h.shot(&format!("{prefix}-05-confirm")).await;
}

/// On the confirmation: sends; returns the 受付番号. Screenshot
/// `{prefix}-07-receipt`.
pub(crate) async fn send(h: &Harness, prefix: &str) -> String {
    h.click("form[action='/d/submit'] button").await;
    h.wait_for("#receipt").await;
    h.shot(&format!("{prefix}-07-receipt")).await;
    h.client
        .find(Locator::Id("receipt"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .to_owned()
}

async fn browser_portal_signed_tenshutsu_with_a_demo_card(db: TestDb) {
    let p = demo_portal(demo_people()).await;
    let db = db.with_tenants().await;
    let store = db.store.clone();
    let h = Harness::browser(db, p.base.clone(), Some((390, 844))).await;
    let (portal, key, dir) = (p.portal.clone(), &p.key, &p._dir);
    fill_tenshutsu(
        &h,
        &p.base,
        &Citizen {
            name: "架空 太郎",
            kana: "カクウ タロウ",
            born: ("昭和", "60", "1", "2"),
            postal: "196-0001",
            destination: "東京都昭島市美堀町架空1番",
            moving_in: 10,
        },
        "portal-sign",
    )
    .await;

    // A picture instead of a signature file: refused, with the summary.
    let png = dir.path().join("photo.png");
    std::fs::write(
        &png,
        [
            0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0, b'I', b'E', b'N', b'D',
            0xAE, 0x42, 0x60, 0x82,
        ],
    )
    .unwrap();
    h.client
        .find(Locator::Id("signature"))
        .await
        .unwrap()
        .send_keys(&png.display().to_string())
        .await
        .unwrap();
    h.click("button[value=upload]").await;
    h.wait_for(".error-summary").await;
    assert!(h.text().await.contains(".p7s、CMS形式"));
    h.shot("portal-sign-04-wrong-file").await;

    // The demo card signs.
    sign_with_demo_card(&h, "架空　太郎", "portal-sign").await;
    assert!(
        h.text().await.contains("昭和60年1月2日"),
        "its date of birth in 和暦"
    );
    // In English too (the label stays).
    h.click("a[lang=en]").await;
    h.wait_for("#signer").await;
    assert!(h.text().await.contains("デモ用カード"));
    h.shot("portal-sign-06-confirm-en").await;
    send(&h, "portal-sign").await;

    // The back office imports it and verifies the signature itself.
    let pending = portal.store.pending(10).unwrap();
    assert_eq!(pending.len(), 1);
    use base64::Engine as _;
    let pulled: Vec<machi::portal::PulledFiling> = pending
        .into_iter()
        .map(
            |(id, tenant, procedure, version, received_at, sealed)| machi::portal::PulledFiling {
                id,
                tenant,
                procedure,
                version: i64::from(version),
                received_at,
                sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
            },
        )
        .collect();
    let back_office = p.back_office_signing();
    let out = machi::portal::import(
        &store,
        key,
        Some(&back_office),
        &pulled,
        chrono::Utc::now().timestamp(),
    )
    .await
    .unwrap();
    assert_eq!((out.imported, out.signatures_valid), (1, 1), "{out:?}");
    let fuchu = code(FUCHU);
    let f2 = fuchu.clone();
    let check = store
        .read(Some(&f2), move |tx| {
            let rows = machi::store::portal_filings::list(tx, &fuchu, 1)?;
            machi::store::portal_signatures::get(tx, &fuchu, rows[0].filing_id)
        })
        .await
        .unwrap()
        .unwrap();
    assert!(check.is_valid() && check.demo, "{check:?}");
    h.client.clone().close().await.unwrap();
}
