//! Counter-assisted filing (書かない窓口, issue 11 item 7): a clerk fills a
//! published procedure for a resident at the counter, the registry's data
//! prefilled, the applicant checks it, and the filing joins the filings
//! imported from the portal (`portal_filings`), marked as filed at the
//! counter, with the clerk and the applicant recorded, in one transaction
//! with its access-log entry (j1370).
//!
//! The clerk records how the applicant's identity was checked in person
//! ([`CounterIdentity`]): the 本人確認書類 seen, and whether the person
//! came themself or a 代理人 did (name, relationship, 委任状 seen or not;
//! without a 委任状 only a member of the applicant's household may file).
//! The record travels with the filing and, in words, into the access log;
//! the inbox approves a counter filing of a procedure that needs a
//! signature only when it carries this record.

use machi_domain::certificate::counter::IdentityDocument;
use machi_domain::ids::{AddresseeNumber, MunicipalityCode};
use serde_json::{Value, json};

use super::registry::access_entry;
use super::{Actor, Registry, ServiceError};
use crate::store::portal_filings::{self, NewPortalFiling};
use crate::store::records;

/// What the clerk files for the applicant.
pub struct CounterFiling {
    /// The resident the filing is made for (the applicant).
    pub applicant: AddresseeNumber,
    pub procedure: String,
    pub version: u32,
    /// The answers as the filing carries them
    /// ([`machi_procedures::Definition::filing_payload`]).
    pub answers: serde_json::Value,
    /// File fields whose originals the clerk saw at the counter (their
    /// copies are not kept).
    pub documents_seen: Vec<String>,
    /// The clerk's name as staff see it.
    pub clerk_name: String,
    /// An anonymous procedure (a survey): the applicant is not recorded,
    /// neither in the filing nor in the access log (nor is an identity
    /// check asked for).
    pub anonymous: bool,
    /// How the clerk checked who is filing, as entered; required unless
    /// the procedure is anonymous ([`IdentityInput::check`]).
    pub identity: Option<IdentityInput>,
    /// The applicant's name and the names of the other members of the
    /// applicant's household, from the registry: a representative without
    /// a 委任状 must be one of them.
    pub applicant_name: String,
    pub household: Vec<String>,
    /// The one-time token of the confirmation the applicant agreed to
    /// ([`new_confirmation_token`]): a second POST of the same
    /// confirmation (a double click, a browser's resend) finds the filing
    /// the first one made instead of making another.
    pub once: String,
    /// Party key (`applicant`, `members.0`, …) → 宛名番号, for the persons
    /// the clerk filed for from the registry: the inbox shows them matched.
    pub matches: std::collections::BTreeMap<String, String>,
}

/// What [`Registry::file_at_counter`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterFiled {
    pub filing_id: i64,
    pub receipt: String,
    /// True when this confirmation had been filed already: nothing new
    /// was stored, and this is the first filing.
    pub repeated: bool,
}

/// The number of groups of a confirmation token (16 characters).
const TOKEN_GROUPS: usize = 4;

/// A fresh one-time token for a counter confirmation page.
pub fn new_confirmation_token() -> Result<String, ServiceError> {
    machi_portal::seal::new_code(TOKEN_GROUPS)
        .map_err(|e| ServiceError::Store(crate::store::StoreError::Task(e.to_string())))
}

/// The token as posted in its canonical form, or None when it is not one.
pub fn confirmation_token(posted: &str) -> Option<String> {
    machi_portal::seal::normalize_code(posted, TOKEN_GROUPS)
}

/// 本人確認書類: what the clerk saw at the counter. The list follows the
/// usual practice for 住民異動届 at the counter: one official document with
/// a photo suffices (マイナンバーカード, 運転免許証, 旅券, 在留カード・特別
/// 永住者証明書); documents without a photo (資格確認書, 年金手帳, …) count
/// only two together, and the clerk names them; anything else (e.g. a
/// 身体障害者手帳 or another official photo ID) is その他, named in a note.
/// A 職員証 (公用請求) is not offered: it identifies an official making a
/// request, not an applicant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownDocument {
    MyNumberCard,
    DriversLicence,
    Passport,
    ResidenceCard,
    /// Two documents without a photo (named in the note).
    TwoWithoutPhoto,
    /// Another document (named in the note).
    Other,
}

impl ShownDocument {
    pub const ALL: [ShownDocument; 6] = [
        ShownDocument::MyNumberCard,
        ShownDocument::DriversLicence,
        ShownDocument::Passport,
        ShownDocument::ResidenceCard,
        ShownDocument::TwoWithoutPhoto,
        ShownDocument::Other,
    ];
    pub fn code(self) -> &'static str {
        match self {
            ShownDocument::MyNumberCard => "my_number_card",
            ShownDocument::DriversLicence => "drivers_licence",
            ShownDocument::Passport => "passport",
            ShownDocument::ResidenceCard => "residence_card",
            ShownDocument::TwoWithoutPhoto => "two_without_photo",
            ShownDocument::Other => "other",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.code() == s)
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            ShownDocument::MyNumberCard => "マイナンバーカード",
            ShownDocument::DriversLicence => "運転免許証（運転経歴証明書を含む）",
            ShownDocument::Passport => "旅券（パスポート）",
            ShownDocument::ResidenceCard => "在留カード・特別永住者証明書",
            ShownDocument::TwoWithoutPhoto => "写真のない書類2点（資格確認書・年金手帳など）",
            ShownDocument::Other => "その他（書類名を記入）",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            ShownDocument::MyNumberCard => "My Number Card",
            ShownDocument::DriversLicence => "driving licence (or driving history certificate)",
            ShownDocument::Passport => "passport",
            ShownDocument::ResidenceCard => {
                "residence card or special permanent resident certificate"
            }
            ShownDocument::TwoWithoutPhoto => {
                "two documents without a photo (e.g. health insurance eligibility certificate, pension book)"
            }
            ShownDocument::Other => "another document (name it)",
        }
    }
    /// The clerk names the document(s) seen.
    pub fn needs_note(self) -> bool {
        matches!(self, ShownDocument::TwoWithoutPhoto | ShownDocument::Other)
    }
    /// The same document as a certificate request records it, when there
    /// is one.
    pub fn as_certificate_identity(self) -> Option<IdentityDocument> {
        match self {
            ShownDocument::MyNumberCard => Some(IdentityDocument::MyNumberCard),
            ShownDocument::DriversLicence => Some(IdentityDocument::DriversLicence),
            ShownDocument::Passport => Some(IdentityDocument::Passport),
            ShownDocument::ResidenceCard => Some(IdentityDocument::ResidenceCard),
            ShownDocument::TwoWithoutPhoto => Some(IdentityDocument::TwoDocuments),
            ShownDocument::Other => None,
        }
    }
}

/// Who came to the counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appeared {
    /// 本人.
    Themselves,
    /// 代理人.
    Representative {
        name: String,
        /// 本人との関係 (e.g. 妻, 長男, 知人).
        relationship: String,
        /// 委任状 seen.
        power_of_attorney: bool,
    },
}

/// The identity check of a counter filing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterIdentity {
    pub document: ShownDocument,
    /// The documents named (required for two documents and for その他).
    pub note: String,
    pub appeared: Appeared,
}

/// The identity check as entered (form inputs or JSON), unchecked.
#[derive(Debug, Clone, Default)]
pub struct IdentityInput {
    /// A [`ShownDocument`] code.
    pub document: String,
    pub note: String,
    /// `self` or `representative`.
    pub appeared: String,
    pub representative_name: String,
    pub representative_relationship: String,
    /// `yes` or `no`.
    pub power_of_attorney: String,
}

/// One thing wrong with an [`IdentityInput`]: the input at fault
/// (`document`, `note`, `appeared`, `representative_name`,
/// `representative_relationship`, `power_of_attorney`), a stable code and
/// the message in Japanese and English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProblem {
    pub input: &'static str,
    pub code: &'static str,
    pub message_ja: String,
    pub message_en: String,
}

impl IdentityProblem {
    fn new(input: &'static str, code: &'static str, ja: &str, en: &str) -> Self {
        IdentityProblem {
            input,
            code,
            message_ja: ja.into(),
            message_en: en.into(),
        }
    }
    pub fn into_error(self) -> ServiceError {
        ServiceError::Invalid {
            field: format!("identity.{}", self.input),
            code: self.code,
            message_ja: self.message_ja,
            message_en: self.message_en,
        }
    }
}

/// A name compared as people write it: without spaces of either width.
fn name_key(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A short text the clerk types: trimmed, 1 to `max` characters, no
/// control characters. `None` when it is not.
fn short_text(s: &str, max: usize) -> Option<String> {
    let t = s.trim();
    (!t.is_empty() && t.chars().count() <= max && !t.chars().any(char::is_control))
        .then(|| t.to_string())
}

impl IdentityInput {
    /// Checks the entry. `applicant_name` and `household` (the names of
    /// the applicant's household, from the registry) decide whether a
    /// representative without a 委任状 may file. Every problem is listed.
    pub fn check(
        &self,
        applicant_name: &str,
        household: &[String],
    ) -> Result<CounterIdentity, Vec<IdentityProblem>> {
        let mut out = vec![];
        let document = ShownDocument::from_code(self.document.trim());
        if document.is_none() {
            out.push(IdentityProblem::new(
                "document",
                "identity_document_required",
                "確認した本人確認書類を選んでください。",
                "choose the identity document you saw",
            ));
        }
        let note = self.note.trim();
        let note = if note.is_empty() {
            if document.is_some_and(ShownDocument::needs_note) {
                out.push(IdentityProblem::new(
                    "note",
                    "identity_note_required",
                    "確認した書類の名前を書いてください（例：資格確認書、年金手帳）。",
                    "name the document(s) you saw (e.g. health insurance eligibility certificate, pension book)",
                ));
            }
            String::new()
        } else {
            match short_text(note, 60) {
                Some(n) => n,
                None => {
                    out.push(IdentityProblem::new(
                        "note",
                        "identity_note_invalid",
                        "書類の名前は60文字以内で書いてください。",
                        "name the document(s) in 60 characters or fewer",
                    ));
                    String::new()
                }
            }
        };
        let appeared = match self.appeared.trim() {
            "self" => Some(Appeared::Themselves),
            "representative" => {
                let name = short_text(&self.representative_name, 40);
                if name.is_none() {
                    out.push(IdentityProblem::new(
                        "representative_name",
                        "representative_name_required",
                        "代理人の氏名を40文字以内で入力してください。",
                        "give the representative's name, 40 characters or fewer",
                    ));
                }
                let relationship = short_text(&self.representative_relationship, 20);
                if relationship.is_none() {
                    out.push(IdentityProblem::new(
                        "representative_relationship",
                        "representative_relationship_required",
                        "代理人と本人との関係を20文字以内で入力してください（例：妻、長男、知人）。",
                        "give the representative's relationship to the applicant, 20 characters or fewer (e.g. wife, son, friend)",
                    ));
                }
                let poa = match self.power_of_attorney.trim() {
                    "yes" => Some(true),
                    "no" => Some(false),
                    _ => {
                        out.push(IdentityProblem::new(
                            "power_of_attorney",
                            "power_of_attorney_required",
                            "委任状を確認したかどうかを選んでください。",
                            "say whether you saw a power of attorney",
                        ));
                        None
                    }
                };
                if let Some(n) = &name {
                    if name_key(n) == name_key(applicant_name) {
                        out.push(IdentityProblem::new(
                            "appeared",
                            "representative_is_applicant",
                            "代理人の氏名が申請する方と同じです。本人が来た場合は「本人」を選んでください。",
                            "the representative's name is the applicant's: choose \"the person\" if they came themself",
                        ));
                    } else if poa == Some(false)
                        && !household.iter().any(|m| name_key(m) == name_key(n))
                    {
                        out.push(IdentityProblem::new(
                            "power_of_attorney",
                            "power_of_attorney_needed",
                            "委任状がない代理人の届出は、申請する方と同じ世帯の方に限ります。委任状を確認してください。",
                            "a representative without a power of attorney must belong to the applicant's household: check a power of attorney",
                        ));
                    }
                }
                match (name, relationship, poa) {
                    (Some(name), Some(relationship), Some(power_of_attorney)) => {
                        Some(Appeared::Representative {
                            name,
                            relationship,
                            power_of_attorney,
                        })
                    }
                    _ => None,
                }
            }
            _ => {
                out.push(IdentityProblem::new(
                    "appeared",
                    "appeared_required",
                    "窓口に来た方が本人か代理人かを選んでください。",
                    "say whether the applicant came themself or a representative came",
                ));
                None
            }
        };
        match (document, appeared) {
            (Some(document), Some(appeared)) if out.is_empty() => Ok(CounterIdentity {
                document,
                note,
                appeared,
            }),
            _ => Err(out),
        }
    }
}

impl CounterIdentity {
    /// As the filing stores it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "document": self.document.code(),
            "note": self.note,
            "appeared": match self.appeared {
                Appeared::Themselves => "self",
                Appeared::Representative { .. } => "representative",
            },
        });
        if let Appeared::Representative {
            name,
            relationship,
            power_of_attorney,
        } = &self.appeared
        {
            v["representative"] = json!({
                "name": name,
                "relationship": relationship,
                "power_of_attorney": power_of_attorney,
            });
        }
        v
    }

    /// Read back from a stored filing's `counter.identity`; `None` when it
    /// is absent or not a complete record.
    pub fn from_json(v: &Value) -> Option<CounterIdentity> {
        let r = &v["representative"];
        let input = IdentityInput {
            document: v["document"].as_str()?.to_string(),
            note: v["note"].as_str().unwrap_or_default().to_string(),
            appeared: v["appeared"].as_str()?.to_string(),
            representative_name: r["name"].as_str().unwrap_or_default().to_string(),
            representative_relationship: r["relationship"].as_str().unwrap_or_default().to_string(),
            power_of_attorney: match r["power_of_attorney"].as_bool() {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => String::new(),
            },
        };
        // The household rule was checked when it was filed; the names
        // given here only keep it from failing again.
        let name = input.representative_name.clone();
        input.check("", &[name]).ok()
    }

    /// The record in words, as (Japanese label, English label, Japanese
    /// value, English value).
    pub fn describe(&self) -> Vec<(&'static str, &'static str, String, String)> {
        let doc = |en: bool| {
            let l = if en {
                self.document.label_en()
            } else {
                self.document.label_ja()
            };
            // The note names the documents; the label's examples go.
            let l = l
                .split_once(if en { " (" } else { "（" })
                .filter(|_| self.document.needs_note())
                .map(|(head, _)| head)
                .unwrap_or(l);
            if self.note.is_empty() {
                l.to_string()
            } else if en {
                format!("{l}: {}", self.note)
            } else {
                format!("{l}（{}）", self.note)
            }
        };
        let mut out = vec![("本人確認書類", "Identity document", doc(false), doc(true))];
        match &self.appeared {
            Appeared::Themselves => out.push((
                "窓口に来た方",
                "Who came",
                "本人".into(),
                "the applicant".into(),
            )),
            Appeared::Representative {
                name,
                relationship,
                power_of_attorney,
            } => {
                out.push((
                    "窓口に来た方",
                    "Who came",
                    "代理人".into(),
                    "a representative".into(),
                ));
                out.push(("代理人の氏名", "Representative", name.clone(), name.clone()));
                out.push((
                    "本人との関係",
                    "Relationship",
                    relationship.clone(),
                    relationship.clone(),
                ));
                out.push(if *power_of_attorney {
                    (
                        "委任状",
                        "Power of attorney",
                        "確認した".into(),
                        "seen".into(),
                    )
                } else {
                    (
                        "委任状",
                        "Power of attorney",
                        "なし（同じ世帯の方）".into(),
                        "none (a member of the household)".into(),
                    )
                });
            }
        }
        out
    }

    /// The access log's words for it (Japanese, the log's language).
    fn log_detail(&self, detail: &mut Value) {
        let words = self.describe();
        detail["identity_document"] = json!(words[0].2);
        match &self.appeared {
            Appeared::Themselves => detail["appeared_as"] = json!("本人"),
            Appeared::Representative {
                name,
                relationship,
                power_of_attorney,
            } => {
                detail["appeared_as"] = json!("代理人");
                detail["representative_name"] = json!(name);
                detail["representative_relationship"] = json!(relationship);
                detail["power_of_attorney"] = json!(power_of_attorney);
            }
        }
    }
}

/// The identity check a counter filing carries, if it carries a complete
/// one.
pub fn identity_of(f: &portal_filings::StoredPortalFiling) -> Option<CounterIdentity> {
    if !portal_filings::filed_at_counter(&f.portal_id) {
        return None;
    }
    CounterIdentity::from_json(&f.filing["counter"]["identity"])
}

impl Registry {
    /// The procedures a clerk can file at the counter for a tenant: the
    /// shipped ones and the tenant's own published ones (stored with the
    /// filings pulled from the portal), each at its newest version the
    /// back office acts on — shipped, or accepted by the tenant's
    /// administrator (a version awaiting acceptance or refused is not
    /// offered: its filing could not be approved). Shipped first, in
    /// their order, then the tenant's own by title.
    pub async fn counter_procedures(
        &self,
        tenant: &MunicipalityCode,
    ) -> Result<Vec<std::sync::Arc<machi_procedures::Definition>>, ServiceError> {
        use crate::store::procedure_definitions as defs;
        self.ensure_tenant(tenant).await?;
        let t = tenant.clone();
        let all = self
            .store()
            .read(Some(tenant), move |tx| {
                let mut out = Vec::new();
                for d in defs::all(tx, &t)? {
                    if defs::trust(tx, &t, d.id(), i64::from(d.version()))?.approvable() {
                        out.push(d);
                    }
                }
                Ok::<_, ServiceError>(out)
            })
            .await?;
        // Newest approvable version per procedure.
        let mut newest: Vec<std::sync::Arc<machi_procedures::Definition>> = Vec::new();
        for d in all {
            match newest.iter_mut().find(|n| n.id() == d.id()) {
                Some(n) if n.version() < d.version() => *n = d,
                Some(_) => {}
                None => newest.push(d),
            }
        }
        let shipped_rank = |id: &str| {
            defs::shipped()
                .iter()
                .position(|(s, _, _)| s == id)
                .unwrap_or(usize::MAX)
        };
        newest.sort_by(|a, b| {
            shipped_rank(a.id())
                .cmp(&shipped_rank(b.id()))
                .then_with(|| a.procedure.title.ja.cmp(&b.procedure.title.ja))
        });
        Ok(newest)
    }

    /// Stores a counter-assisted filing; returns its 受付番号. The filing
    /// is stored like an imported one (same format, same table), its
    /// portal id `counter:<受付番号>` (see
    /// [`portal_filings::COUNTER_PREFIX`]) and its `counter` member naming
    /// the clerk, the applicant and the documents seen.
    pub async fn file_at_counter(
        &self,
        tenant: &MunicipalityCode,
        f: CounterFiling,
        actor: &Actor,
    ) -> Result<CounterFiled, ServiceError> {
        let identity = if f.anonymous {
            None
        } else {
            let input = f.identity.clone().unwrap_or_default();
            match input.check(&f.applicant_name, &f.household) {
                Ok(i) => Some(i),
                Err(mut problems) => return Err(problems.remove(0).into_error()),
            }
        };
        let Some(once) = confirmation_token(&f.once) else {
            return Err(ServiceError::Invalid {
                field: "once".into(),
                code: "confirmation_missing",
                message_ja:
                    "申請内容の確認画面から申請してください（確認画面の情報がありません）。".into(),
                message_en: "file from the applicant's confirmation page (its token is missing)"
                    .into(),
            });
        };
        let receipt = machi_portal::seal::new_code(3)
            .map_err(|e| ServiceError::Store(crate::store::StoreError::Task(e.to_string())))?;
        let now = self.clock().now();
        let at = now.timestamp_micros();
        let submitted_at = now.with_timezone(&super::clock::jst()).to_rfc3339();
        let filing = json!({
            "format": "machi-portal-filing/1",
            "receipt": receipt,
            "submitted_at": submitted_at,
            "signed_content": {
                "tenant": tenant.as_str(),
                "procedure": f.procedure,
                "version": f.version,
                "answers": f.answers,
            },
            "signature": null,
            "counter": {
                "clerk": actor.operator,
                "clerk_name": f.clerk_name,
                "terminal": actor.terminal,
                "applicant": (!f.anonymous).then(|| f.applicant.as_str()),
                "documents_seen": f.documents_seen,
                "applicant_confirmed": true,
                "identity": identity.as_ref().map(CounterIdentity::to_json),
            },
        });
        let mut detail = json!({
            "procedure": f.procedure,
            "version": f.version,
            "receipt": receipt,
            "matched": f.matches.len(),
        });
        if let Some(i) = &identity {
            i.log_detail(&mut detail);
        }
        let bytes = serde_json::to_vec(&filing)
            .map_err(|e| ServiceError::Store(crate::store::StoreError::Task(e.to_string())))?;
        let entry = access_entry(
            actor,
            "counter_filing.file",
            if f.anonymous {
                format!("procedure:{}", f.procedure)
            } else {
                f.applicant.to_string()
            },
            detail,
            false,
        );
        let (t, r) = (tenant.clone(), receipt.clone());
        let (procedure, version) = (f.procedure.clone(), i64::from(f.version));
        let applicant = (!f.anonymous).then(|| f.applicant.to_string());
        let matches = f.matches.clone();
        let place = self.tenant(tenant).await?;
        let municipality = machi_domain::change::Municipality {
            prefecture: place.prefecture,
            name: place.name,
        };
        let answers = f.answers.clone();
        self.store()
            .write(Some(tenant), move |tx| {
                // The tenant's write lock: the filing number is MAX + 1, as
                // an import's batch counts it too (crate::portal).
                records::lock_tenant(tx, &t)?;
                // Only a procedure version the back office acts on (shipped,
                // or the tenant's own accepted by its administrator).
                let def = crate::store::procedure_definitions::lookup(tx, &t, &procedure, version)?;
                if def.is_none()
                    || !crate::store::procedure_definitions::trust(tx, &t, &procedure, version)?
                        .approvable()
                {
                    return Err(ServiceError::Invalid {
                        field: "procedure".into(),
                        code: "procedure_not_offered",
                        message_ja: "その手続（版）は窓口では受け付けられません（公開され、団体管理者が受け入れた手続だけです）。".into(),
                        message_en: "that procedure version cannot be filed at the counter (only published procedures the tenant administrator accepted)".into(),
                    });
                }
                if let Some(def) = &def {
                    move_out_inside(def, &answers, &municipality)?;
                }
                // One confirmation, one filing: the token names the filing.
                let portal_id = format!("{}{once}", portal_filings::COUNTER_PREFIX);
                let repeat = |tx: &mut crate::store::Tx<'_>| {
                    let Some((filing_id, receipt)) =
                        portal_filings::by_portal_id(tx, &t, &portal_id)?
                    else {
                        return Ok::<_, ServiceError>(None);
                    };
                    let first = portal_filings::get(tx, &t, filing_id)?
                        .ok_or(ServiceError::FilingNotFound(filing_id))?;
                    if first.procedure != procedure
                        || first.filing["counter"]["applicant"].as_str() != applicant.as_deref()
                    {
                        return Err(ServiceError::Invalid {
                            field: "once".into(),
                            code: "confirmation_used",
                            message_ja: "この確認画面はすでに別の申請に使われました。申請内容の確認からやり直してください。".into(),
                            message_en: "this confirmation was already used for another filing; check the answers again".into(),
                        });
                    }
                    Ok(Some(CounterFiled {
                        filing_id,
                        receipt,
                        repeated: true,
                    }))
                };
                if let Some(first) = repeat(tx)? {
                    return Ok(first);
                }
                let Some(filing_id) = portal_filings::insert_returning_id(
                    tx,
                    &t,
                    &NewPortalFiling {
                        portal_id: &portal_id,
                        receipt: &r,
                        procedure: &procedure,
                        version,
                        received_at: &submitted_at,
                        imported_at: at,
                        filing: &bytes,
                        // Identity was checked in person at the counter.
                        signed: false,
                    },
                )?
                else {
                    // Stored meanwhile (the tenant lock makes this rare).
                    return repeat(tx)?.ok_or(ServiceError::FilingNotFound(0));
                };
                if !matches.is_empty() {
                    portal_filings::set_matches(tx, &t, filing_id, &matches)?;
                }
                records::append_next_audit(tx, &t, at, &entry)?;
                Ok::<_, ServiceError>(CounterFiled {
                    filing_id,
                    receipt: r.clone(),
                    repeated: false,
                })
            })
            .await
    }
}

/// j650 (転出先入力), with j560/j630: a 転出届 filed at the counter whose
/// destination the text places in this municipality is a 転居. Refused
/// when it is filed, as the registry refuses the 転出 itself, so that no
/// filing is made that could never be approved.
fn move_out_inside(
    def: &machi_procedures::Definition,
    answers: &serde_json::Value,
    m: &machi_domain::change::Municipality,
) -> Result<(), ServiceError> {
    if def.action_kind() != machi_procedures::ActionKind::RegistryChange
        || def.action.change.as_deref() != Some("move_out")
    {
        return Ok(());
    }
    let Some(field) = def.action.mapping.get("destination") else {
        return Ok(());
    };
    let Some(address) = answers[field.as_str()]["address"].as_str() else {
        return Ok(());
    };
    if let machi_domain::change::Locality::Inside = m.locate(address) {
        return Err(machi_domain::change::ChangeError::InsideMunicipality {
            address: address.to_string(),
            municipality: format!("{}{}", m.prefecture, m.name),
        }
        .into());
    }
    Ok(())
}
