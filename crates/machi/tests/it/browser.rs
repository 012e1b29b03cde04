//! The staff UI in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`). These tests
//! fail, not skip, when the browser is missing. Screenshots go to
//! `target/browser-screenshots/`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use machi::api::{self, AppState};
use machi::service::Actor;
use serde_json::json;

use crate::contract::takahashi_family;
use crate::support::TestDb;

both_backends!(
    browser_counter_day,
    browser_support_block_release_and_cross_tenant_denial,
    browser_an_account_takes_two_people,
);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where screenshots are saved for a person to look at.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// axe-core's script: `MACHI_AXE_JS`, or the copy `tools/test` installs.
fn axe_path() -> PathBuf {
    std::env::var_os("MACHI_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tools/axe/node_modules/axe-core/axe.min.js")
        })
}

/// A Chrome DevTools command sent through chromedriver.
#[derive(Debug)]
struct Cdp(serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.0.to_string()))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The app on a port of its own, a chromedriver, and a browser session.
pub(crate) struct Harness {
    pub(crate) db: TestDb,
    pub(crate) base: String,
    driver: Child,
    pub(crate) client: Client,
    pub(crate) downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Drop for Harness {
    /// Stops chromedriver and every browser process it started: they share
    /// its process group (killing chromedriver alone left headless
    /// Chromium running after each test, which loaded the machine).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Harness {
    pub(crate) async fn start(db: TestDb) -> Harness {
        Harness::start_with(db, |r| r).await
    }

    /// [`Harness::start`], the server's registry set up by `wire` (e.g.
    /// with a portal link).
    pub(crate) async fn start_with(
        db: TestDb,
        wire: impl FnOnce(machi::service::Registry) -> machi::service::Registry,
    ) -> Harness {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver fonts-ipaexfont)"
            );
        }
        machi::demo::seed(&db.registry, 40)
            .await
            .expect("demo data");
        machi::demo::seed_accounts(&db.registry)
            .await
            .expect("demo accounts");
        let req: machi_domain::change::ChangeRequest =
            serde_json::from_value(takahashi_family()).unwrap();
        db.registry
            .submit(&"132063".parse().unwrap(), &req, &Actor::system("setup"))
            .await
            .expect("family");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = api::app(AppState {
            registry: wire(db.registry.clone()),
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Harness::browser(db, base, None).await
    }

    /// A chromedriver and a browser session on `base` (any server): a
    /// desktop window, or with `phone` = (width, height) a phone's viewport
    /// in CSS pixels (device emulation; headless windows are at least 500
    /// wide).
    pub(crate) async fn browser(db: TestDb, base: String, phone: Option<(u32, u32)>) -> Harness {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver fonts-ipaexfont)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // A process group of its own, so that Drop stops the browsers too.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                    "plugins.always_open_pdf_externally": true,
                }
            }
        });
        let mut caps = caps;
        if let Some((width, height)) = phone {
            caps["goog:chromeOptions"]["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "touch": true }
            });
        }
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a browser session");
        Harness {
            db,
            base,
            driver,
            client,
            downloads,
            _profile: profile,
        }
    }

    /// The viewport from now on: a phone's (width, height) in CSS pixels
    /// with touch, or `None` for the desktop window again. Through the
    /// Chrome DevTools protocol (chromedriver's `goog/cdp/execute`), so
    /// one session can be the citizen's phone and then the clerk's desk.
    pub(crate) async fn viewport(&self, phone: Option<(u32, u32)>) {
        let cmds = match phone {
            Some((width, height)) => vec![
                json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 2, "mobile": true } }),
                json!({ "cmd": "Emulation.setTouchEmulationEnabled", "params": { "enabled": true } }),
            ],
            None => vec![
                json!({ "cmd": "Emulation.clearDeviceMetricsOverride", "params": {} }),
                json!({ "cmd": "Emulation.setTouchEmulationEnabled", "params": { "enabled": false } }),
            ],
        };
        for c in cmds {
            self.client
                .issue_cmd(Cdp(c))
                .await
                .expect("a DevTools command");
        }
    }

    pub(crate) async fn go(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// A screenshot for a person to look at, and axe-core's WCAG 2.2 AA
    /// check of the same page, which must find nothing.
    pub(crate) async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
        crate::readable::assert_readable(&self.text().await, name);
        self.axe(name).await;
    }

    /// Injects axe-core (from npm, `tools/axe`, installed by `tools/test`)
    /// and fails on any WCAG 2.0/2.1/2.2 A or AA violation of the page.
    pub(crate) async fn axe(&self, name: &str) {
        let source = std::fs::read_to_string(axe_path()).unwrap_or_else(|e| {
            panic!(
                "axe-core is missing ({}: {e}): run tools/test, or `npm ci` in tools/axe",
                axe_path().display()
            )
        });
        self.client
            .execute(&format!("{source}\n;return true;"), vec![])
            .await
            .expect("inject axe-core");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag', values:
                     ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })
                   .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact,
                       help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')) }))))
                   .catch(e => done([{ id: 'axe-error', help: String(e) }]));",
                vec![],
            )
            .await
            .expect("run axe-core");
        let violations = found.as_array().cloned().unwrap_or_default();
        assert!(
            violations.is_empty(),
            "axe-core: WCAG 2.2 AA violations on page {name}: {}",
            serde_json::to_string_pretty(&violations).unwrap()
        );
    }

    pub(crate) async fn fill(&self, id: &str, value: &str) {
        let e = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|_| panic!("#{id}"));
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    pub(crate) async fn select(&self, id: &str, value: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }

    pub(crate) async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("{css}"))
            .click()
            .await
            .unwrap();
    }

    pub(crate) async fn text(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Signs in with the keyboard only: type, Tab, Enter (j400).
    pub(crate) async fn login(&self, tenant: &str, login: &str, password: &str) {
        self.go("/login").await;
        self.fill("tenant", tenant).await;
        self.fill("login", login).await;
        self.fill("password", password).await;
        self.client
            .find(Locator::Id("password"))
            .await
            .unwrap()
            .send_keys("\u{E007}")
            .await
            .unwrap();
        self.wait_for("#me").await;
    }

    pub(crate) async fn logout(&self) {
        self.go("/ui").await;
        self.click("header form button").await;
        self.wait_for("#login-submit").await;
    }

    pub(crate) async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            // Generous: a debug build's key derivation (the portal's resume
            // code) on a loaded CI machine has taken more than 10 s.
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("{css} did not appear"));
    }
}

async fn browser_counter_day(db: TestDb) {
    let h = Harness::start(db).await;
    // Sign in, search by reading.
    h.login("132063", "clerk", "clerk-Demo-2026").await;
    h.shot("01-home-clerk").await;
    h.go("/ui/search").await;
    h.fill("name", "たかはし").await;
    h.click("#search-submit").await;
    h.wait_for("#results").await;
    assert!(h.text().await.contains("髙橋　一郎"));
    h.shot("02-search").await;
    h.click("#results a").await;
    h.wait_for("#timeline").await;
    h.shot("03-resident").await;
    // The language switch comes back to the same page: the site sends
    // `Referrer-Policy: no-referrer`, the switch link asks for a
    // same-origin Referer.
    let here = h.client.current_url().await.unwrap();
    for lang in ["en", "ja"] {
        h.click("a[href^='/lang']").await;
        h.wait_for("#timeline").await;
        assert_eq!(h.client.current_url().await.unwrap(), here);
        let page = h.client.source().await.unwrap();
        assert!(page.contains(&format!("<html lang=\"{lang}\"")), "{lang}");
    }

    // A 転入 entered provisionally through the form.
    h.go("/ui/entry?type=move_in").await;
    for (id, v) in [
        ("effective_date", "令和6年4月1日"),
        ("p0_name", "架空　健一"),
        ("p0_name_kana", "カクウ　ケンイチ"),
        ("p0_birth_date", "昭和60年10月10日"),
        ("p0_relationship", "世帯主"),
        ("address", "東京都府中市寿町一丁目5番地"),
        ("previous_address", "東京都小金井市本町六丁目1番地"),
    ] {
        h.fill(id, v).await;
    }
    h.select("p0_sex", "male").await;
    h.shot("04-move-in-form").await;
    h.click("#entry-submit").await;
    h.wait_for("#confirm-enter").await;
    h.click("#confirm-enter").await;
    h.wait_for("#pending-id").await;
    assert!(h.text().await.contains("仮登録（審査待ち）"));
    h.logout().await;

    // The supervisor approves it.
    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    h.go("/ui/approvals").await;
    h.wait_for("#pending-list").await;
    h.shot("05-approvals").await;
    h.click("#pending-list a").await;
    h.wait_for("#approve").await;
    h.click("#approve").await;
    h.wait_for("#committed-change").await;
    assert!(h.text().await.contains("本登録済み"));
    h.shot("06-approved").await;
    h.logout().await;

    // A 転居 of the new resident, from the resident page.
    h.login("132063", "clerk", "clerk-Demo-2026").await;
    h.go("/ui/search").await;
    h.fill("name", "カクウ　ケンイチ").await;
    h.click("#search-submit").await;
    h.wait_for("#results a").await;
    h.click("#results a").await;
    h.wait_for("#timeline").await;
    let person = h
        .client
        .find(Locator::Id("addressee-number"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    h.click("a[href*='type=move_within']").await;
    h.wait_for("#entry-form").await;
    h.fill("effective_date", "令和7年4月1日").await;
    h.fill("address", "東京都府中市府中町二丁目1番地").await;
    h.click("#entry-submit").await;
    h.wait_for("#confirm-enter").await;
    h.click("#confirm-enter").await;
    h.wait_for("#pending-id").await;
    h.shot("07-move-within-entered").await;
    h.logout().await;
    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    h.go("/ui/approvals").await;
    h.click("#pending-list a").await;
    h.wait_for("#approve").await;
    h.click("#approve").await;
    h.wait_for("#committed-change").await;
    h.go(&format!("/ui/residents/{person}")).await;
    let page = h.text().await;
    assert!(
        page.contains("府中町二丁目1番地") && page.contains("転居"),
        "{page}"
    );
    h.shot("08-after-move-within").await;
    h.logout().await;

    // A certificate issued and downloaded.
    h.login("132063", "clerk", "clerk-Demo-2026").await;
    h.go(&format!("/ui/certificates/new?person={person}")).await;
    h.wait_for("#certificate-form").await;
    h.click("#head_and_relationship").await;
    // At the counter: the person themself, My Number Card shown.
    h.click("#requester_self").await;
    h.select("identity", "my_number_card").await;
    h.shot("09-certificate-form").await;
    h.click("#issue").await;
    // The on-screen confirmation, then the PDF from it.
    h.wait_for("#issued").await;
    let page = h.text().await;
    assert!(
        page.contains("証明書を発行しました") && page.contains("本人"),
        "{page}"
    );
    h.shot("09b-certificate-issued").await;
    h.click("a.pdf").await;
    let started = Instant::now();
    let pdf = loop {
        let found = std::fs::read_dir(h.downloads.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "pdf"));
        // Whole: Chromium may show the name before the bytes are all there.
        if let Some(p) = found
            && std::fs::read(&p).is_ok_and(|b| {
                b.starts_with(b"%PDF") && b.windows(5).rev().take(64).any(|w| w == b"%%EOF")
            })
        {
            break p;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no certificate downloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF"), "{}", pdf.display());
    std::fs::copy(&pdf, screenshot_dir().join("10-certificate.pdf")).unwrap();
    // Read in the tenant's scope: on PostgreSQL row-level security shows
    // no tenant's rows to a transaction that names none.
    let fuchu = crate::support::code(crate::support::FUCHU);
    let issued =
        h.db.registry
            .store()
            .read(Some(&fuchu), |tx| {
                tx.query_one("SELECT COUNT(*) FROM certificates", &[])?
                    .int(0)
            })
            .await
            .unwrap();
    assert_eq!(issued, 1);
}

async fn browser_support_block_release_and_cross_tenant_denial(db: TestDb) {
    let h = Harness::start(db).await;
    let a1 = machi_domain::ids::AddresseeNumber::from_serial(1)
        .unwrap()
        .to_string();
    // The family's head is the last person entered in 府中市: find them.
    let rows =
        h.db.registry
            .search(
                &"132063".parse().unwrap(),
                &machi::service::registry::SearchParams {
                    name: Some("髙橋　一郎".into()),
                    limit: 5,
                    ..Default::default()
                },
                &Actor::system("t"),
            )
            .await
            .unwrap()
            .rows;
    let person = rows[0].record.addressee_number.to_string();

    // The support officer registers a measure (provisional protection).
    h.login("132063", "support", "support-Demo-2026").await;
    h.go(&format!("/ui/support/new?requester={person}")).await;
    h.wait_for("#support-form").await;
    h.shot("11-support-form").await;
    h.click("#support-submit").await;
    h.wait_for("#measure-id").await;
    h.shot("12-support-registered").await;
    let measure_url = h.client.current_url().await.unwrap();
    h.logout().await;

    // The clerk is blocked.
    h.login("132063", "clerk", "clerk-Demo-2026").await;
    h.go(&format!("/ui/residents/{person}")).await;
    let page = h.text().await;
    assert!(
        page.contains("支援措置") && !page.contains("髙橋　一郎"),
        "{page}"
    );
    h.shot("13-blocked").await;
    h.logout().await;

    // The officer releases one viewing for the clerk.
    h.login("132063", "support", "support-Demo-2026").await;
    h.client.goto(measure_url.as_str()).await.unwrap();
    h.wait_for("#release-form").await;
    h.select("purpose", "view").await;
    h.fill("for_operator", "clerk").await;
    h.click("#release").await;
    h.wait_for("#releases").await;
    h.shot("14-released").await;
    h.logout().await;

    h.login("132063", "clerk", "clerk-Demo-2026").await;
    h.go(&format!("/ui/residents/{person}")).await;
    h.wait_for("#record").await;
    assert!(h.text().await.contains("髙橋　一郎"));
    h.shot("15-viewed-once").await;
    h.go(&format!("/ui/residents/{person}")).await;
    assert!(
        !h.text().await.contains("髙橋　一郎"),
        "the release served one request"
    );
    h.logout().await;

    // Another tenant's clerk asks for the same ids: never 府中市's people.
    h.login("132071", "clerk", "clerk-Demo-2026").await;
    for path in [
        format!("/ui/residents/{person}"),
        format!("/ui/residents/{a1}"),
        "/ui/search?name=%E9%AB%98%E6%A9%8B".to_string(),
        "/api/v1/tenants/132063/residents/".to_string() + &a1,
    ] {
        h.go(&path).await;
        let page = h.text().await;
        assert!(
            !page.contains("髙橋") && !page.contains("府中市"),
            "{path}: {page}"
        );
    }
    // The page a person sees (the last path above is the JSON API's).
    h.go("/ui/search?name=%E9%AB%98%E6%A9%8B").await;
    h.shot("16-cross-tenant-denied").await;
}

/// Separation of duties in the browser: the administrator proposes a clerk,
/// the supervisor approves and gets the activation code, the new clerk sets
/// their own password and signs in.
async fn browser_an_account_takes_two_people(db: TestDb) {
    let h = Harness::start(db).await;
    h.login("132063", "admin", "admin-Demo-2026").await;
    h.go("/ui/admin/accounts").await;
    h.fill("login", "new.clerk").await;
    h.fill("display_name", "新任 窓口").await;
    h.select("role", "clerk").await;
    h.click("form[action='/ui/admin/accounts'] button[type=submit]")
        .await;
    h.wait_for("#pending-grants").await;
    let page = h.text().await;
    assert!(
        page.contains("承認するまで効力はありません") && !page.contains("activation-code"),
        "{page}"
    );
    h.shot("17-account-proposed").await;
    h.logout().await;

    h.login("132063", "supervisor", "supervisor-Demo-2026")
        .await;
    h.go("/ui/grants").await;
    h.wait_for("#pending-grants").await;
    h.shot("18-proposals").await;
    h.click("#pending-grants button[value=approve]").await;
    h.wait_for("#activation-code").await;
    let code = h
        .client
        .find(Locator::Id("activation-code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    h.shot("19-approved-with-code").await;
    h.logout().await;

    h.go("/activate").await;
    for (id, v) in [
        ("tenant", "132063"),
        ("login", "new.clerk"),
        ("code", code.as_str()),
        ("password", "new-Clerk-Password-1"),
        ("password_again", "new-Clerk-Password-1"),
    ] {
        h.fill(id, v).await;
    }
    h.shot("20-activate").await;
    h.click("#activate-submit").await;
    h.wait_for("#login-notice").await;
    h.login("132063", "new.clerk", "new-Clerk-Password-1").await;
    assert!(h.text().await.contains("新任 窓口"));
}
