//! The citizen portal in `machi demo` (issue 11, item 11): the portal runs
//! in the demo's process on a port of its own, with the five shipped
//! procedures published for 府中市 and 昭島市, its filings sealed to the
//! demo back office's key and pulled into the demo registry on an interval.
//!
//! The demo also makes a synthetic signing CA ("DEMO … (synthetic; not
//! JPKI)", `machi-sign` feature `demo-signer`) and issues DEMO cards to a few
//! synthetic residents of the demo. The portal trusts only that CA. Nothing
//! here is for production: the CA key lives in memory, so a restarted demo
//! issues new cards.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use machi_domain::change::AsOf;
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};
use machi_portal::seal::OpeningKey;
use machi_portal::signing::{DemoCards, DemoPerson, SignatureFiles, Signing};
use machi_portal::{Config, Portal};
use sha2::{Digest, Sha256};

use crate::service::{Actor, Registry};

/// The tenants the demo portal serves: 団体コード, names.
pub const PORTAL_TENANTS: [(&str, &str, &str); 2] = [
    ("132063", "府中市", "Fuchu City"),
    ("132071", "昭島市", "Akishima City"),
];

/// How often the demo back office pulls the demo portal.
pub const PULL_EVERY: Duration = Duration::from_secs(5);

/// Who holds a DEMO card: the demo municipality, the resident's 宛名番号.
pub struct CardHolder {
    pub tenant_name: String,
    pub addressee: AddresseeNumber,
    pub name: String,
}

/// The portal as the demo runs it. Dropping it stops the server and the pulls.
pub struct DemoPortal {
    pub url: String,
    /// The pull token, with which the back office also tells the portal
    /// each filing's status.
    pub token: String,
    /// The pull link (key and trust anchors): staff re-import quarantined
    /// filings with it.
    pub link: Arc<crate::portal::PortalLink>,
    pub cards: Option<Arc<DemoCards>>,
    pub holders: Vec<CardHolder>,
    server: tokio::task::JoinHandle<()>,
    puller: tokio::task::JoinHandle<()>,
}

impl Drop for DemoPortal {
    fn drop(&mut self) {
        self.server.abort();
        self.puller.abort();
    }
}

/// The demo back office's key pair: kept in `portal-backoffice.key` beside
/// the demo database (mode 0600) so filings sealed before a restart still
/// open after it.
fn backoffice_key(data_dir: &Path) -> anyhow::Result<OpeningKey> {
    let path = data_dir.join("portal-backoffice.key");
    if let Ok(hex) = std::fs::read_to_string(&path) {
        return OpeningKey::from_hex(&hex).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let key = OpeningKey::generate()?;
    std::fs::create_dir_all(data_dir)?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    use std::io::Write;
    o.open(&path)?.write_all(key.to_hex().as_bytes())?;
    Ok(key)
}

/// 生年月日 as a JPKI card writes it: era digit (1 明治 … 5 令和) then the
/// Gregorian date.
fn card_birth_date(d: chrono::NaiveDate) -> String {
    let starts = [
        (5, chrono::NaiveDate::from_ymd_opt(2019, 5, 1)),
        (4, chrono::NaiveDate::from_ymd_opt(1989, 1, 8)),
        (3, chrono::NaiveDate::from_ymd_opt(1926, 12, 25)),
        (2, chrono::NaiveDate::from_ymd_opt(1912, 7, 30)),
    ];
    let era = starts
        .iter()
        .find(|(_, s)| s.is_some_and(|s| d >= s))
        .map(|(e, _)| *e)
        .unwrap_or(1);
    format!("{era}{}", d.format("%Y%m%d"))
}

/// Issues DEMO cards (the portal's [`DemoCards`]) to the first
/// `per_tenant` adult residents of each portal tenant (by 宛名番号), with
/// their 基本4情報 from the registry. RSA key generation takes seconds.
pub async fn issue_cards(
    registry: &Registry,
    per_tenant: usize,
) -> anyhow::Result<(DemoCards, Vec<CardHolder>)> {
    let actor = Actor::system("demo-cards");
    let today = registry.today();
    let mut people = Vec::new();
    let mut holders = Vec::new();
    for (code, name_ja, _) in PORTAL_TENANTS {
        let tenant: MunicipalityCode = code
            .parse()
            .map_err(|e| anyhow::anyhow!("demo tenant {code}: {e:?}"))?;
        let mut found = 0;
        for serial in 1..200u64 {
            if found == per_tenant {
                break;
            }
            let Ok(a) = AddresseeNumber::from_serial(serial) else {
                break;
            };
            let Ok((row, _)) = registry
                .resident(&tenant, &a, AsOf::default(), &actor)
                .await
            else {
                continue;
            };
            let r = row.record;
            let Some(born) = r.birth_date.as_calendar() else {
                continue;
            };
            if !r.status.is_resident() || (today - born).num_days() < 20 * 365 {
                continue;
            }
            people.push(DemoPerson {
                name: r.name.as_str().to_owned(),
                sex: match r.sex {
                    machi_domain::model::Sex::Male => "1".into(),
                    machi_domain::model::Sex::Female => "2".into(),
                },
                date_of_birth: card_birth_date(born),
                address: r.address.full(),
            });
            holders.push(CardHolder {
                tenant_name: name_ja.to_owned(),
                addressee: r.addressee_number.clone(),
                name: r.name.as_str().to_owned(),
            });
            found += 1;
        }
    }
    let cards = tokio::task::spawn_blocking(move || DemoCards::issue(&people, Utc::now()))
        .await?
        .map_err(anyhow::Error::msg)?;
    Ok((cards, holders))
}

/// Starts the demo portal on `port` (database `portal.sqlite` in
/// `data_dir`), publishes the shipped procedures for the portal tenants,
/// and pulls its filings into `registry` every [`PULL_EVERY`].
pub async fn start_portal(
    registry: &Registry,
    data_dir: &Path,
    port: u16,
    cards: Option<(DemoCards, Vec<CardHolder>)>,
) -> anyhow::Result<DemoPortal> {
    let key = backoffice_key(data_dir)?;
    let token = hex::encode(machi_portal::seal::random::<32>()?);
    let mut config = Config::new(key.public());
    config.pull_token_sha256 = Some(hex::encode(Sha256::digest(token.as_bytes())));
    let (cards, holders) = match cards {
        Some((c, h)) => (Some(Arc::new(c)), h),
        None => (None, vec![]),
    };
    // The portal trusts the DEMO CA only; the back office checks each
    // signature again on import against the same CA.
    let signing = match &cards {
        Some(c) => Some(Arc::new(
            Signing::load(
                SignatureFiles::default(),
                vec![c.ca_der().to_vec()],
                vec![c.crl_der().to_vec()],
            )
            .map_err(|e| anyhow::anyhow!("{}\n{}", e.message_ja(), e.message_en()))?,
        )),
        None => None,
    };
    config.signing = signing.clone();
    config.demo_cards = cards.clone();
    let portal = Portal::open(&data_dir.join("portal.sqlite"), config)?;
    for (code, ja, en) in PORTAL_TENANTS {
        portal
            .publish_shipped(code, ja, en)
            .map_err(|e| anyhow::anyhow!("{} / {}", e.message_ja(), e.message_en()))?;
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("portal port {port}: {e}"))?;
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, machi_portal::router(portal)).await {
            tracing::error!(error = %e, "demo portal stopped");
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    // The same pull worker as `machi serve`'s: each round imports, then
    // pushes the queued status updates (a decision's push that failed
    // at once is retried here).
    let link = crate::portal::PortalLink {
        client: crate::service::hooks::http_client(Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?,
        url: url.clone(),
        token: token.clone(),
        key,
        signing,
        batch: 200,
    };
    let link = Arc::new(link);
    let puller =
        crate::portal::spawn_pull_worker(link.clone(), registry.store().clone(), PULL_EVERY);
    Ok(DemoPortal {
        url,
        token,
        link,
        cards,
        holders,
        server,
        puller,
    })
}

/// Prints the portal's address and the DEMO cards' holders.
pub fn print_links(p: &DemoPortal) {
    println!(
        "  citizen portal (its own database; filings pulled every {} s): {}/",
        PULL_EVERY.as_secs(),
        p.url
    );
    for (code, ja, _) in PORTAL_TENANTS {
        println!("    {ja}: {}/t/{code}", p.url);
    }
    match &p.cards {
        Some(_) => {
            println!(
                "  DEMO signing cards (synthetic residents; a DEMO CA, not JPKI — nothing they sign is valid anywhere else):"
            );
            for h in &p.holders {
                println!("    {} {}  宛名番号 {}", h.tenant_name, h.name, h.addressee);
            }
        }
        None => println!("  DEMO signing cards: none issued (--no-cards)"),
    }
}
