//! The allowance system's side of the linkage interface, as any vendor's
//! system would use it: OAuth2 client credentials at `/oauth/token`, the
//! pull feed `GET /api/v1/tenants/{code}/events` with a long poll, and the
//! JSON API for the residents and households an event names. Nothing here
//! knows the registry's storage.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::Value;
use tokio::sync::{Mutex, watch};

use crate::rules;
use crate::store::{ClaimRow, Effect, Person, Store, StoreError, WorkKind};

/// The event types the allowance system reads: the registry's changes,
/// and online filings approved for a business system (申請管理), of which
/// it takes the 児童手当認定請求.
pub const EVENT_TYPES: &str = "jp.machi.registry.change.*,jp.machi.portal.filing.approved.v1";

/// The event of an online filing approved for its business system.
pub const FILING_APPROVED: &str = "jp.machi.portal.filing.approved.v1";

/// The business system name 児童手当認定請求 filings are handed to (the
/// shipped definition's `system`).
pub const SYSTEM: &str = "jidoteate";

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("registry unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("registry answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("registry answered something unexpected: {0}")]
    Shape(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the registry is and who the allowance system is to it.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `http://127.0.0.1:8080` (no trailing slash needed).
    pub base_url: String,
    /// 団体コード.
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
}

/// A client of the registry's API.
pub struct RegistryClient {
    http: reqwest::Client,
    config: LinkConfig,
    token: Mutex<Option<(String, Instant)>>,
}

impl RegistryClient {
    pub fn new(config: LinkConfig) -> Result<RegistryClient, LinkError> {
        // rustls's ring provider, once per process (a second install is
        // refused, harmlessly); ring is marked deprecated for lacking
        // post-quantum key exchange, as in the registry's webhook client.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(RegistryClient {
            http,
            config,
            token: Mutex::new(None),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.config.tenant
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    async fn token(&self, fresh: bool) -> Result<String, LinkError> {
        let mut t = self.token.lock().await;
        if !fresh
            && let Some((tok, until)) = t.as_ref()
            && Instant::now() < *until
        {
            return Ok(tok.clone());
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", &self.config.client_secret)
            .finish();
        let res = self
            .http
            .post(self.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let v = json_of(res).await?;
        let tok = v["access_token"]
            .as_str()
            .ok_or_else(|| LinkError::Shape("no access_token".into()))?
            .to_string();
        let secs = v["expires_in"]
            .as_u64()
            .unwrap_or(60)
            .saturating_sub(30)
            .max(10);
        *t = Some((tok.clone(), Instant::now() + Duration::from_secs(secs)));
        Ok(tok)
    }

    /// GET `path` with the bearer token (a new token once on 401).
    async fn get(&self, path: &str) -> Result<Option<Value>, LinkError> {
        for fresh in [false, true] {
            let tok = self.token(fresh).await?;
            let res = self
                .http
                .get(self.url(path))
                .bearer_auth(&tok)
                .send()
                .await?;
            match res.status().as_u16() {
                401 if !fresh => continue,
                404 | 403 => return Ok(None),
                _ => return Ok(Some(json_of(res).await?)),
            }
        }
        unreachable!("the loop returns")
    }

    /// GET `path`, telling a person a support measure hides (the
    /// registry's 403 `support_measure_block`, j440) from one it does not
    /// know or this client may not read.
    async fn lookup(&self, path: &str) -> Result<Answer, LinkError> {
        for fresh in [false, true] {
            let tok = self.token(fresh).await?;
            let res = self
                .http
                .get(self.url(path))
                .bearer_auth(&tok)
                .send()
                .await?;
            match res.status().as_u16() {
                401 if !fresh => continue,
                403 => {
                    let text = res.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    return Ok(
                        if body["error"]["code"] == SUPPORT_BLOCK || body["code"] == SUPPORT_BLOCK {
                            Answer::Hidden
                        } else {
                            Answer::Unknown
                        },
                    );
                }
                404 => return Ok(Answer::Unknown),
                _ => return Ok(Answer::Found(json_of(res).await?)),
            }
        }
        unreachable!("the loop returns")
    }

    /// A person's record now and their history ([`Self::resident_history`]),
    /// telling a person hidden by a support measure from an unknown one.
    pub async fn resident_lookup(&self, addressee: &str) -> Result<Lookup, LinkError> {
        if addressee.is_empty() || !addressee.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Lookup::Unknown);
        }
        let path = format!(
            "/api/v1/tenants/{}/residents/{addressee}",
            self.config.tenant
        );
        Ok(match self.lookup(&path).await? {
            Answer::Found(v) => {
                let history = v["history"]
                    .as_array()
                    .map(|a| a.iter().map(row_of).collect())
                    .unwrap_or_default();
                Lookup::Found(Box::new((row_of(&v["record"]), history)))
            }
            Answer::Hidden => Lookup::Hidden,
            Answer::Unknown => Lookup::Unknown,
        })
    }

    /// Whether the registry hides household `household` (as of `as_of`)
    /// from this client by a support measure (j440): a member of it, or
    /// someone living at its address, is protected.
    pub async fn household_hidden(
        &self,
        household: &str,
        as_of: Option<NaiveDate>,
    ) -> Result<bool, LinkError> {
        if household.is_empty() || !household.chars().all(|c| c.is_ascii_digit()) {
            return Ok(false);
        }
        let mut path = format!(
            "/api/v1/tenants/{}/households/{household}",
            self.config.tenant
        );
        if let Some(d) = as_of {
            path.push_str(&format!("?as_of={}", d.format("%Y-%m-%d")));
        }
        Ok(matches!(self.lookup(&path).await?, Answer::Hidden))
    }

    /// The events after `after` (long poll up to `wait` seconds).
    pub async fn events(&self, after: i64, wait: u64) -> Result<Vec<Value>, LinkError> {
        let path = format!(
            "/api/v1/tenants/{}/events?after={after}&limit=100&wait={wait}&type={EVENT_TYPES}",
            self.config.tenant
        );
        let v = self
            .get(&path)
            .await?
            .ok_or_else(|| LinkError::Shape("the feed answered 403/404".into()))?;
        v["events"]
            .as_array()
            .cloned()
            .ok_or_else(|| LinkError::Shape("no events".into()))
    }

    /// A person as the registry shows them now (None: not visible to this
    /// client, e.g. under a support measure, or unknown).
    pub async fn resident(&self, addressee: &str) -> Result<Option<Person>, LinkError> {
        self.resident_as_of(addressee, None).await
    }

    /// A person as the registry shows them on the effective date `as_of`
    /// (`?as_of=`; None: now). None: not visible, unknown, or with no
    /// record on that day (not yet registered).
    pub async fn resident_as_of(
        &self,
        addressee: &str,
        as_of: Option<NaiveDate>,
    ) -> Result<Option<Person>, LinkError> {
        Ok(self
            .resident_history(addressee, as_of)
            .await?
            .map(|(p, _)| p.person))
    }

    /// A person's record (as of `as_of`, None: now) and their whole
    /// history, oldest first, each row with the change that appended it
    /// (`GET …/residents/{n}`; 履歴, j200). None: not visible or unknown.
    pub async fn resident_history(
        &self,
        addressee: &str,
        as_of: Option<NaiveDate>,
    ) -> Result<Option<(Row, Vec<Row>)>, LinkError> {
        if addressee.is_empty() || !addressee.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let mut path = format!(
            "/api/v1/tenants/{}/residents/{addressee}",
            self.config.tenant
        );
        if let Some(d) = as_of {
            path.push_str(&format!("?as_of={}", d.format("%Y-%m-%d")));
        }
        Ok(self.get(&path).await?.map(|v| {
            let history = v["history"]
                .as_array()
                .map(|a| a.iter().map(row_of).collect())
                .unwrap_or_default();
            (row_of(&v["record"]), history)
        }))
    }

    /// Where a notice to `addressee` is sent, as the registry shows the
    /// person now: the name, and the 住所 with 方書 and 郵便番号; for a
    /// person who moved out of the municipality, the 転出先 the registry
    /// recorded (with its 郵便番号 when one was entered). Hidden: a
    /// support measure hides the person from this client. None: not
    /// visible to this client or unknown; also for a person who moved
    /// abroad or died (no address in Japan the registry knows to send to).
    pub async fn mailing_address(&self, addressee: &str) -> Result<Mailing, LinkError> {
        if addressee.is_empty() || !addressee.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Mailing::None);
        }
        let path = format!(
            "/api/v1/tenants/{}/residents/{addressee}",
            self.config.tenant
        );
        // A support measure (j440) is told apart from a record this
        // client does not know: the clerk is told what to do instead.
        let v = match self.lookup(&path).await? {
            Answer::Found(v) => v,
            Answer::Hidden => return Ok(Mailing::Hidden),
            Answer::Unknown => return Ok(Mailing::None),
        };
        let r = &v["record"];
        // Shown after a support officer's release (the record says
        // `support_measure`): still no address on a notice to post. The
        // clerk hands it over at the counter instead (j440).
        if !r["support_measure"].is_null() {
            return Ok(Mailing::Hidden);
        }
        let name = r["name"].as_str().unwrap_or_default().to_string();
        let text = |v: &Value| {
            v.as_str()
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
        };
        let removal = &r["removal"];
        if removal.is_object() {
            let reason = removal["reason"].as_str().unwrap_or_default();
            if reason.contains("death") || removal["destination_abroad"] == true {
                return Ok(Mailing::None);
            }
            return Ok(text(&removal["destination"])
                .map(|address| {
                    Mailing::Found(MailingAddress {
                        name,
                        postal_code: text(&removal["destination_postal_code"]),
                        address,
                        moved_out: true,
                    })
                })
                .unwrap_or(Mailing::None));
        }
        let Some(address) = text(&r["address"]) else {
            return Ok(Mailing::None);
        };
        Ok(Mailing::Found(MailingAddress {
            name,
            postal_code: text(&r["postal_code"]),
            address: match text(&r["address_annex"]) {
                Some(annex) => format!("{address}　{annex}"),
                None => address,
            },
            moved_out: false,
        }))
    }

    /// An online filing as the registry's inbox shows it to another system
    /// (`GET …/filings/{id}`, with `residents:read`): its summary, the
    /// answers as labelled text, and the matched persons. None: not
    /// visible or unknown.
    pub async fn filing(&self, id: i64) -> Result<Option<Value>, LinkError> {
        let path = format!("/api/v1/tenants/{}/filings/{id}", self.config.tenant);
        self.get(&path).await
    }

    /// A household's current members (None: not visible or unknown).
    pub async fn household(
        &self,
        household: &str,
    ) -> Result<Option<(Option<String>, Vec<Person>)>, LinkError> {
        self.household_as_of(household, None).await
    }

    /// A household's resident members on the effective date `as_of`
    /// (`?as_of=`; None: now). None: not visible, unknown, or without
    /// members on that day.
    pub async fn household_as_of(
        &self,
        household: &str,
        as_of: Option<NaiveDate>,
    ) -> Result<Option<(Option<String>, Vec<Person>)>, LinkError> {
        if household.is_empty() || !household.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let mut path = format!(
            "/api/v1/tenants/{}/households/{household}",
            self.config.tenant
        );
        if let Some(d) = as_of {
            path.push_str(&format!("?as_of={}", d.format("%Y-%m-%d")));
        }
        Ok(self.get(&path).await?.map(|v| {
            let head = v["head_addressee_number"].as_str().map(str::to_string);
            let members = v["members"]
                .as_array()
                .map(|a| a.iter().map(person_of).collect())
                .unwrap_or_default();
            (head, members)
        }))
    }
}

async fn json_of(res: reqwest::Response) -> Result<Value, LinkError> {
    let status = res.status().as_u16();
    let text = res.text().await?;
    if !(200..300).contains(&status) {
        return Err(LinkError::Status {
            status,
            body: text.chars().take(300).collect(),
        });
    }
    serde_json::from_str(&text).map_err(|e| LinkError::Shape(e.to_string()))
}

fn iso_date(v: &Value) -> Option<NaiveDate> {
    v.as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

fn person_of(r: &Value) -> Person {
    Person {
        addressee_number: r["addressee_number"].as_str().unwrap_or_default().into(),
        name: r["name"].as_str().unwrap_or_default().into(),
        birth: iso_date(&r["birth_date"]["iso"]),
        household: r["household_number"].as_str().unwrap_or_default().into(),
        relationship: r["relationship"].as_str().unwrap_or_default().into(),
        resident: r["status"] == "resident",
        removal: r["removal"].as_object().map(|m| {
            (
                m.get("reason")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                m.get("date").and_then(|d| iso_date(&d["iso"])),
            )
        }),
    }
}

/// The registry's error code for a read a support measure blocks (j440).
/// It names nobody: the same for the protected person and for those who
/// live with them.
pub const SUPPORT_BLOCK: &str = "support_measure_block";

enum Answer {
    Found(Value),
    Hidden,
    Unknown,
}

/// A person as the registry answers this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The record now and the history, oldest first.
    Found(Box<(Row, Vec<Row>)>),
    /// Hidden by a support measure (支援措置, j440): the registry will not
    /// show the record, nor tell its changes, to this system.
    Hidden,
    /// Not known to the registry, or not readable by this client.
    Unknown,
}

/// Where mail reaches a person, as the registry answers this client
/// ([`RegistryClient::mailing_address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mailing {
    Found(MailingAddress),
    /// Hidden by a support measure (支援措置, j440): the registry gives
    /// this system neither the address nor the name.
    Hidden,
    /// No address to send to: death, a move abroad, unknown or not
    /// readable by this client.
    None,
}

/// A person's name and where mail reaches them, as the registry shows
/// them ([`RegistryClient::mailing_address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailingAddress {
    pub name: String,
    pub postal_code: Option<String>,
    pub address: String,
    /// The 転出先 of a person who moved out.
    pub moved_out: bool,
}

/// One row of a person's history as the registry's API shows it: the
/// person in that row and the change (異動) that appended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub person: Person,
    /// The registry's number of the change.
    pub change: Option<i64>,
    /// 異動事由 code (`move_out`, `death`, `household_transfer` …).
    pub reason: String,
    /// 異動日.
    pub effective_on: Option<NaiveDate>,
    /// For a 異動の取消し: the change it cancelled.
    pub cancels: Option<i64>,
}

fn row_of(r: &Value) -> Row {
    Row {
        person: person_of(r),
        change: r["change"]["change_id"].as_i64(),
        reason: r["change"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        effective_on: iso_date(&r["change"]["effective_date"]["iso"]),
        cancels: r["change"]["cancels"].as_i64(),
    }
}

/// Whether `p` is a child the allowance may concern on `on`: a 続柄 of 子
/// (子, 長男, 養子 …) and not past the fiscal year of 22.
pub fn is_child(p: &Person, on: NaiveDate) -> bool {
    p.relationship.contains('子')
        && !p.relationship.contains("妻")
        && p.birth.is_some_and(|b| rules::counted_until(b) >= on)
}

/// The allowance system's worker: reads the feed from its saved cursor,
/// applies each event once.
pub struct Worker {
    pub store: Store,
    pub client: RegistryClient,
}

impl Worker {
    /// Reads one batch (long poll up to `wait` s) and applies it; the
    /// number of events read.
    pub async fn step(&self, wait: u64) -> Result<usize, LinkError> {
        let after = self.store.cursor(self.client.tenant()).await?;
        if after == 0 {
            // The first read of the feed: what was recorded before today
            // is history (see `Store::feed_started_on`).
            self.store
                .feed_started_on(self.client.tenant(), crate::today_in_japan())
                .await?;
        }
        let events = self.client.events(after, wait).await?;
        for e in &events {
            self.handle(e).await?;
        }
        Ok(events.len())
    }

    /// Applies one event (a redelivered one changes nothing).
    pub async fn handle(&self, e: &Value) -> Result<bool, LinkError> {
        let id = e["id"]
            .as_str()
            .ok_or_else(|| LinkError::Shape("event without id".into()))?;
        let seq: i64 = e["sequence"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LinkError::Shape("event without sequence".into()))?;
        let kind = e["type"].as_str().unwrap_or_default();
        if self.store.applied(id).await? {
            // Still move the cursor (a redelivery after a crash between
            // apply and the next read).
            return Ok(self
                .store
                .apply(self.client.tenant(), seq, id, kind, Vec::new())
                .await?);
        }
        let effects = if kind == FILING_APPROVED {
            self.filing_effects(&e["data"]).await?
        } else {
            // The day the registry recorded the change (the event's
            // time, in Japan).
            let recorded = e["time"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&machi_domain::dates::jst()).date_naive());
            self.effects(&e["data"], recorded).await?
        };
        Ok(self
            .store
            .apply(self.client.tenant(), seq, id, kind, effects)
            .await?)
    }

    /// A 児童手当認定請求 approved in the registry's inbox becomes a work
    /// item for the allowance clerk, who checks the filing and enters the
    /// claim with nothing typed again: the claimant as the registry's clerk
    /// matched them, and the day the filing was received as 請求日.
    /// Filings of other systems are not this system's.
    async fn filing_effects(&self, data: &Value) -> Result<Vec<Effect>, LinkError> {
        if data["system"].as_str() != Some(SYSTEM) {
            return Ok(Vec::new());
        }
        let Some(filing_id) = data["filing_id"].as_i64() else {
            return Err(LinkError::Shape("a filing event without filing_id".into()));
        };
        let Some(applicant) = data["persons"][0]["addressee_number"].as_str() else {
            return Ok(Vec::new());
        };
        let Some(f) = self.client.filing(filing_id).await? else {
            return Ok(Vec::new());
        };
        let Some(received_on) = f["filing"]["received_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&machi_domain::dates::jst()).date_naive())
        else {
            return Err(LinkError::Shape(
                "a filing without its received time".into(),
            ));
        };
        let Some(p) = self.client.resident(applicant).await? else {
            return Ok(Vec::new());
        };
        Ok(vec![Effect::OnlineClaim {
            person: p.addressee_number,
            person_name: p.name,
            household: p.household,
            received_on,
            filing_id,
            receipt: f["filing"]["receipt"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }])
    }

    /// What a change means for the allowance.
    async fn effects(
        &self,
        data: &Value,
        recorded: Option<NaiveDate>,
    ) -> Result<Vec<Effect>, LinkError> {
        // A change withheld for a support measure (j440) names nobody.
        if data["withheld"].as_str() == Some("support_measure") {
            return self.hidden_effects().await;
        }
        let Some(reason) = data["reason"].as_str() else {
            return Ok(Vec::new());
        };
        let on = iso_date(&data["effective_date"]["date"]);
        // The registry's number of this change, and of the change it
        // cancels (異動の取消し).
        let change = data["change_id"].as_i64();
        let cancels = data["cancels"].as_i64();
        let persons: Vec<String> = data["persons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["addressee_number"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        match reason {
            "birth" => {
                for a in &persons {
                    let Some(p) = self.client.resident(a).await? else {
                        continue;
                    };
                    // Old events (a replay, the first read of a long
                    // history) raise no work for a child who has left or
                    // is past the fiscal year of 18 by now.
                    if !still_due(&p) {
                        continue;
                    }
                    let claims = self.store.claims_of_household(&p.household).await?;
                    let (kind, claim_id) = match claims.first() {
                        Some(c) => (WorkKind::BirthIncrease, Some(c.id)),
                        None => (WorkKind::BirthClaim, None),
                    };
                    out.push(work(kind, &p, on.or(p.birth), claim_id));
                }
            }
            "move_in" | "move_in_from_abroad" => {
                // Only what a clerk must act on: a child under the age
                // limit (still_due) who arrives in a claimant's household
                // (a 額改定請求 may be due, 児童手当法第9条第1項), or in a
                // household without a claim while the move-in is recent
                // (a 認定請求 within 15 days starts from the month after
                // the move-in, 第8条第3項); anyone else arriving in a
                // claimant's household (a household check). Not: an adult
                // in a household without a claim, a child counted
                // in a running claim already, a move-in before the 請求日
                // of the household's claim (the claim was made on that
                // household), nor an old move-in of a household without a
                // claim recorded before this system began to read the
                // feed (the first read of a long history). A move-in
                // recorded since is live however late it is read: an
                // outage of the worker loses no work item.
                let today = crate::today_in_japan();
                let started = self
                    .store
                    .feed_started_on(self.client.tenant(), today)
                    .await?;
                let fresh = move_in_is_recent(on, recorded, today)
                    || recorded.is_some_and(|r| r >= started);
                for a in &persons {
                    let Some(p) = self.client.resident(a).await? else {
                        continue;
                    };
                    if !still_due(&p) {
                        // An adult (or a child past the age) joining a
                        // claimant's household after the 請求日 changes the
                        // household the claim was made on: the clerk checks
                        // who cares for the children and bears the living
                        // costs (the 受給者 may be another, 児童手当法第4条).
                        if p.resident {
                            for c in self.store.claims_of_household(&p.household).await? {
                                if on.is_none_or(|d| c.claimed_on < d) {
                                    out.push(check_effect(
                                        &c,
                                        a,
                                        p.name.clone(),
                                        "household_transfer",
                                        on,
                                    ));
                                }
                            }
                        }
                        continue;
                    }
                    let counted = self.store.claims_of_person(a).await?.iter().any(|c| {
                        c.children
                            .iter()
                            .any(|x| x.child == *a && x.left_on.is_none())
                    });
                    if counted {
                        continue;
                    }
                    let claims = self.store.claims_of_household(&p.household).await?;
                    match claims.first() {
                        Some(c) if on.is_some_and(|d| c.claimed_on >= d) => {}
                        Some(c) => out.push(work(WorkKind::MoveInClaim, &p, on, Some(c.id))),
                        None if fresh => out.push(work(WorkKind::MoveInClaim, &p, on, None)),
                        None => {}
                    }
                }
            }
            "move_out" | "move_out_abroad" | "death" => {
                let Some(label) = departure(reason) else {
                    return Ok(out);
                };
                // The change also lists the household members it rewrote
                // and who stay (the 世帯主 gone: j490 makes the one left
                // the head, or the household is left without one); only
                // the persons it took off the registry have left.
                for a in &removed_persons(data) {
                    let claims = self.store.claims_of_person(a).await?;
                    if claims.is_empty() {
                        continue;
                    }
                    let p = self.client.resident(a).await?;
                    let Some(day) = departure_day(p.as_ref(), on) else {
                        continue;
                    };
                    for c in claims {
                        out.extend(departure_effects(&c, a, day, label, change));
                    }
                }
                quiet_children_of_ended(&mut out);
            }
            "cancellation_entry" => {
                // 異動の取消し（増）: a removal (転出, 死亡 …) cancelled as
                // made in error; the person is on the registry again. Only
                // what the cancelled change itself did is undone: the claim
                // it ended runs again and the child it took away is
                // counted again, so the overpayments it caused are
                // cancelled (see store::record_overpayments). An end or a
                // leave by another change (a real move-out years ago, a
                // child gone to another claim), or one recorded before the
                // causing change was kept, is left alone, as is a claimant
                // with a running claim or a child counted in a running
                // claim now: the clerk gets a work item to check, and
                // nothing is paid back by itself.
                for a in &persons {
                    let ended = self.store.claims_ended_for(a).await?;
                    if ended.is_empty() {
                        continue;
                    }
                    let Some(p) = self.client.resident(a).await? else {
                        continue;
                    };
                    if !p.resident || p.removal.is_some() {
                        continue;
                    }
                    let running = self.store.claims_of_person(a).await?;
                    for (c, by) in ended {
                        let caused = cancels.is_some() && by == cancels;
                        if c.claimant == *a && c.ended_on.is_some() {
                            let claims_now = running.iter().any(|r| r.claimant == *a);
                            if caused && !claims_now {
                                out.push(Effect::Reinstate { claim_id: c.id });
                            }
                        } else if c
                            .children
                            .iter()
                            .any(|x| x.child == *a && x.left_on.is_some())
                        {
                            let counted_now = running.iter().any(|r| {
                                r.children
                                    .iter()
                                    .any(|x| x.child == *a && x.left_on.is_none())
                            });
                            if caused && !counted_now {
                                out.push(Effect::ChildBack {
                                    claim_id: c.id,
                                    child: a.clone(),
                                });
                            }
                        }
                        let who = Person {
                            household: c.household.clone(),
                            ..p.clone()
                        };
                        out.push(work(WorkKind::CorrectionCheck, &who, on, Some(c.id)));
                    }
                }
            }
            other => {
                for a in &persons {
                    for c in self.store.claims_of_person(a).await? {
                        let name = self
                            .client
                            .resident(a)
                            .await?
                            .map(|p| p.name)
                            .unwrap_or_default();
                        out.push(check_effect(&c, a, name, other, on));
                    }
                }
            }
        }
        Ok(out)
    }

    /// A change the registry withheld for a support measure (支援措置,
    /// j440: `{change_id, withheld: "support_measure"}`): it may be the
    /// 転出 of a child or the claimant of a running claim, which the
    /// allowance would otherwise keep paying on the last data it read. The
    /// event names nobody, so every person of a running claim (the
    /// claimant, the children still counted) not already flagged is looked
    /// up; each one the registry now hides gets a
    /// [`WorkKind::RecordHidden`] item for the clerk, who confirms the
    /// facts at the counter. Nothing is ended or kept on a guess.
    async fn hidden_effects(&self) -> Result<Vec<Effect>, LinkError> {
        let flagged: Vec<(i64, String)> = self
            .store
            .work_items(true)
            .await?
            .into_iter()
            .filter(|w| w.kind == WorkKind::RecordHidden)
            .filter_map(|w| Some((w.claim_id?, w.person)))
            .collect();
        let mut out = Vec::new();
        for c in self.store.claims().await? {
            if c.ended_on.is_some() {
                continue;
            }
            let mut persons = vec![(c.claimant.clone(), c.claimant_name.clone())];
            persons.extend(
                c.children
                    .iter()
                    .filter(|x| x.registered && x.left_on.is_none())
                    .map(|x| (x.child.clone(), x.name.clone())),
            );
            for (a, name) in persons {
                if flagged.iter().any(|(id, p)| *id == c.id && *p == a) {
                    continue;
                }
                if matches!(self.client.resident_lookup(&a).await?, Lookup::Hidden) {
                    out.push(work(
                        WorkKind::RecordHidden,
                        &Person {
                            addressee_number: a,
                            name,
                            birth: None,
                            household: c.household.clone(),
                            relationship: String::new(),
                            resident: true,
                            removal: None,
                        },
                        None,
                        Some(c.id),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Runs until `stop` turns true: long polls, applies, and on errors
    /// waits (1 s, doubling to 30 s) and tries again from the saved cursor.
    pub async fn run(self, mut stop: watch::Receiver<bool>, wait: u64) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if *stop.borrow() {
                return;
            }
            let r = tokio::select! {
                r = self.step(wait) => r,
                _ = stop.changed() => return,
            };
            match r {
                Ok(_) => backoff = Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!("allowance feed: {e}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// The changes by which a claimant's entitlement ends or a child leaves a
/// claim on their own (児童手当法第8条第2項, 第9条第3項), and the reason
/// recorded: 死亡, or 転出 (to another municipality or abroad).
pub fn departure(reason: &str) -> Option<&'static str> {
    match reason {
        "death" => Some("死亡"),
        "move_out" | "move_out_abroad" => Some("転出"),
        _ => None,
    }
}

/// The day a departure counts from: for a 転出 the planned move-out date
/// the person's record keeps (転出予定日), else the change's 異動日 `on`.
pub fn departure_day(p: Option<&Person>, on: Option<NaiveDate>) -> Option<NaiveDate> {
    p.and_then(|p| p.removal.as_ref().and_then(|r| r.1)).or(on)
}

/// What the departure (死亡・転出, [`departure`]) of person `a` on `day`
/// does to claim `c` (児童手当法第8条第2項, 第9条第3項): the claimant's
/// entitlement ends, paid through that month; a child is counted through
/// that month and reduced from the next. Each with its work item.
/// `change`: the registry change that did it, kept so that only its
/// cancellation (異動の取消し) undoes it. The worker applies this to the
/// running claims when the event arrives, and a claim entered late to the
/// departures between its 請求日 and its entry.
pub fn departure_effects(
    c: &ClaimRow,
    a: &str,
    day: NaiveDate,
    label: &str,
    change: Option<i64>,
) -> Vec<Effect> {
    let name = if c.claimant == a {
        c.claimant_name.clone()
    } else {
        c.children
            .iter()
            .find(|x| x.child == a)
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    let who = Person {
        addressee_number: a.to_string(),
        name,
        birth: None,
        household: c.household.clone(),
        relationship: String::new(),
        resident: false,
        removal: None,
    };
    if c.claimant == a {
        vec![
            Effect::EndClaim {
                claim_id: c.id,
                on: day,
                reason: label.into(),
                change,
            },
            work(WorkKind::ClaimEnded, &who, Some(day), Some(c.id)),
        ]
    } else {
        vec![
            Effect::ChildLeft {
                claim_id: c.id,
                child: a.to_string(),
                on: day,
                reason: label.into(),
                change,
            },
            work(WorkKind::ChildLeft, &who, Some(day), Some(c.id)),
        ]
    }
}

/// A claim that ends by a change (its claimant moved out or died) needs
/// one work item, the 消滅 ([`WorkKind::ClaimEnded`]): the children who
/// left by the same change (the whole household moving out) are still
/// recorded as gone ([`Effect::ChildLeft`]), but raise no 「児童の転出・
/// 死亡」 item of their own for that claim (児童手当法第8条第2項: nothing is
/// paid after the month the entitlement ended, so there is no reduction
/// to make).
pub fn quiet_children_of_ended(out: &mut Vec<Effect>) {
    let ended: Vec<i64> = out
        .iter()
        .filter_map(|e| match e {
            Effect::EndClaim { claim_id, .. } => Some(*claim_id),
            _ => None,
        })
        .collect();
    out.retain(|e| {
        !matches!(e, Effect::Work { kind: WorkKind::ChildLeft, claim_id: Some(id), .. } if ended.contains(id))
    });
}

/// What another change (世帯の異動, 修正 …, `reason`) of person `a`
/// (named `name`) on `on` means for claim `c`: nothing by itself; the
/// clerk checks care and livelihood, or the correction.
pub fn check_effect(
    c: &ClaimRow,
    a: &str,
    name: String,
    reason: &str,
    on: Option<NaiveDate>,
) -> Effect {
    let kind = match reason {
        "household_split" | "household_merge" | "household_transfer" | "head_change"
        | "move_within" => WorkKind::HouseholdCheck,
        _ => WorkKind::CorrectionCheck,
    };
    let who = Person {
        addressee_number: a.to_string(),
        name,
        birth: None,
        household: c.household.clone(),
        relationship: String::new(),
        resident: true,
        removal: None,
    };
    work(kind, &who, on, Some(c.id))
}

/// What became of a child of the claimant's household on a past 請求日,
/// read from the child's history: what the worker would have done to the
/// claim had it been entered on that day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// In the claimant's household still, throughout.
    Stayed,
    /// Died or moved out ([`departure`]) on `day`. `back`: the change by
    /// which the child came back into the claimant's household later (a
    /// 転入 after a 転出): not counted again until a new 額改定請求
    /// (児童手当法第9条第1項), for which the clerk gets a work item.
    Left {
        day: NaiveDate,
        label: &'static str,
        change: Option<i64>,
        back: Option<Box<Row>>,
    },
    /// Out of the claimant's household by another change (`reason`: 世帯
    /// 変更, 世帯分離, 職権消除 …) on `on`: for the clerk to check.
    Other {
        reason: String,
        on: Option<NaiveDate>,
    },
    /// The registry does not show this child to the allowance system: a
    /// support measure (支援措置, j440) covers them, or the record is not
    /// there. Nothing is guessed: the clerk checks at the counter.
    Hidden,
}

impl RegistryClient {
    /// What became of child `child`, in household `then` on `claimed_on`,
    /// since, month by month as the history shows it (a child who left
    /// and came back is not taken as having stayed): in the claimant's
    /// household (`then`, or `now` where the claimant's household is now)
    /// throughout, gone by a departure (the first change after
    /// `claimed_on` that took them out; with the change that brought them
    /// back, if any), or gone by another change. Changes cancelled since
    /// (異動の取消し) are skipped: they never happened. A child the
    /// registry does not show to this client is [`Since::Hidden`].
    pub async fn since(
        &self,
        child: &str,
        then: &str,
        now: &str,
        claimed_on: NaiveDate,
    ) -> Result<Since, LinkError> {
        let (current, history) = match self.resident_lookup(child).await? {
            Lookup::Found(x) => *x,
            Lookup::Hidden | Lookup::Unknown => return Ok(Since::Hidden),
        };
        let cancelled: Vec<i64> = history.iter().filter_map(|r| r.cancels).collect();
        let after: Vec<&Row> = history
            .iter()
            .filter(|r| {
                r.effective_on.is_some_and(|e| e > claimed_on)
                    && !r.change.is_some_and(|c| cancelled.contains(&c))
            })
            .collect();
        let home = |r: &Row| {
            r.person.resident && (r.person.household == then || r.person.household == now)
        };
        let at = after.iter().position(|r| !home(r));
        if at.is_none() && home(&current) {
            return Ok(Since::Stayed);
        }
        let row = at.map_or(&current, |i| after[i]);
        let back = after[at.map_or(after.len(), |i| i + 1)..]
            .iter()
            .find(|r| r.person.resident && r.person.household == now)
            .map(|r| Box::new((*r).clone()));
        if !row.person.resident
            && let Some(label) = departure(&row.reason)
            && let Some(day) = departure_day(
                // The record now has the latest word on this departure (a
                // planned date confirmed since), unless the child came
                // back (and maybe left again) after it.
                Some(if current.person.resident || back.is_some() {
                    &row.person
                } else {
                    &current.person
                }),
                row.effective_on,
            )
        {
            return Ok(Since::Left {
                day,
                label,
                change: row.change,
                back,
            });
        }
        Ok(Since::Other {
            reason: row.reason.clone(),
            on: row.effective_on,
        })
    }

    /// The change by which `child`, in household `now` today but not in
    /// the claimant's household on `claimed_on`, joined it: the first row
    /// after `claimed_on` with them a resident of `now` (出生, 転入, 世帯変更
    /// …). None: not visible to this client.
    pub async fn joined(
        &self,
        child: &str,
        now: &str,
        claimed_on: NaiveDate,
    ) -> Result<Option<Row>, LinkError> {
        let Some((current, history)) = self.resident_history(child, None).await? else {
            return Ok(None);
        };
        Ok(Some(
            history
                .into_iter()
                .find(|r| {
                    r.effective_on.is_some_and(|e| e > claimed_on)
                        && r.person.resident
                        && r.person.household == now
                })
                .unwrap_or(current),
        ))
    }
}

/// Whether a move-in of 異動日 `on`, recorded by the registry on
/// `recorded`, is recent on `today`: within the 15 days after it in which
/// a 認定請求 still starts from the month after the move-in (児童手当法第8条
/// 第3項), counted from the 異動日 or, for a move-in recorded late, from
/// the day it was recorded.
pub fn move_in_is_recent(
    on: Option<NaiveDate>,
    recorded: Option<NaiveDate>,
    today: NaiveDate,
) -> bool {
    [on, recorded]
        .into_iter()
        .flatten()
        .any(|d| d <= today && today <= d + chrono::Days::new(15))
}

/// Whether a claim for child `p` may still be due today: a resident,
/// within the fiscal year of 18.
fn still_due(p: &Person) -> bool {
    let today = crate::today_in_japan();
    p.resident && p.birth.is_some_and(|b| rules::child_until(b) >= today)
}

pub(crate) fn work(
    kind: WorkKind,
    p: &Person,
    on: Option<NaiveDate>,
    claim_id: Option<i64>,
) -> Effect {
    Effect::Work {
        kind,
        person: p.addressee_number.clone(),
        person_name: p.name.clone(),
        household: p.household.clone(),
        event_on: on,
        claim_id,
    }
}

/// The persons a change event lists as no longer residents (the record's
/// status in the event: 転出, 死亡 …). An event without statuses (written
/// before they were carried) counts every listed person.
fn removed_persons(data: &Value) -> Vec<String> {
    data["persons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["status"].as_str() != Some("resident"))
                .filter_map(|p| p["addressee_number"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A move-in is recent for the 15 days after its 異動日 (児童手当法第8条
    /// 第3項), or after the day the registry recorded it (a move-in
    /// entered late); a move-in of years ago read for the first time is
    /// not.
    #[test]
    fn a_move_in_is_recent_for_fifteen_days_from_its_date_or_its_recording() {
        let today = d("2026-12-07");
        assert!(move_in_is_recent(Some(d("2026-11-22")), None, today));
        assert!(!move_in_is_recent(Some(d("2026-11-21")), None, today));
        assert!(move_in_is_recent(
            Some(d("2025-06-01")),
            Some(d("2026-12-01")),
            today
        ));
        assert!(!move_in_is_recent(
            Some(d("2020-04-20")),
            Some(d("2020-05-01")),
            today
        ));
        assert!(!move_in_is_recent(None, None, today));
    }
}
