//! Accepting filings (issue 11, items 3, 4 and 10): each filing's
//! answers are checked against the published definition, its signature
//! verified when the procedure needs one, the filing sealed to the back
//! office's key, and then stored by **group commit**.
//!
//! This is the one accept path: the served submit (`POST /d/submit`) sends
//! one [`Submission`] through [`Portal::accept_batch`], a caller with many
//! (the benchmark) sends them together. The per-filing work (checking,
//! verifying, sealing) needs no lock and runs on as many threads as call
//! in. The write is serialised: whoever finds no commit in progress
//! becomes the writer and stores everything waiting — its own filings and
//! those of every caller queued meanwhile — in one transaction (one
//! fsync), each filing in its own savepoint ([`Store::file_many`]), then
//! wakes the others. Every caller returns only after its own filings are
//! committed, with one result per filing: a used signing nonce (also one
//! used earlier in the same batch) or a draft already sent refuses that
//! filing alone.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use base64::Engine as _;
use machi_procedures::{Answers, CheckContext, Definition, Identity, canonical_json};

use crate::store::{Conflict, SealedFiling, Store, StoreError};
use crate::{Portal, seal};

/// One filing to accept.
#[derive(Debug, Clone)]
pub struct Submission {
    pub tenant: String,
    pub procedure: String,
    pub version: u32,
    /// What was typed, by input name (see [`machi_procedures::Answers`]).
    pub answers: Answers,
    /// The signing nonce (署名番号) the signature covers.
    pub nonce: Option<String>,
    /// CMS SignedData (DER, detached) over the canonical form of the
    /// filing ([`crate::signing::payload_of`] of [`signed_content`]), when
    /// the procedure needs a signature.
    pub signature: Option<Vec<u8>>,
    /// DEMO ONLY: the signature was made with a demo card (carried in the
    /// filing so the back office labels it).
    pub demo: bool,
    /// The resume code of the draft it comes from: deleted in the same
    /// transaction; a draft already gone refuses the filing (sent twice).
    pub draft_code: Option<String>,
    /// The 受付番号 of the filing this one corrects (the citizen was asked
    /// to correct it and sent it again): carried in the sealed filing, so
    /// the back office links the two.
    pub corrects: Option<String>,
}

/// Why a filing was not accepted (nothing of it is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable: `not_published`, `invalid_answers`, `signature_required`,
    /// `signature_unavailable`, `signature_rejected`, `replayed`,
    /// `already_sent`, `internal`.
    pub code: &'static str,
    pub ja: String,
    pub en: String,
    /// What the citizen's page needs to say more.
    pub detail: Detail,
}

/// The specifics of a [`Refusal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    None,
    /// The first answer that does not check.
    Input(String),
    /// The signature did not verify.
    Sign(machi_sign::SignError),
    /// The signing nonce was already used, by the filing with this
    /// 受付番号 when known.
    Replayed {
        earlier: Option<String>,
    },
}

impl Refusal {
    fn new(code: &'static str, ja: impl Into<String>, en: impl Into<String>) -> Refusal {
        Refusal {
            code,
            ja: ja.into(),
            en: en.into(),
            detail: Detail::None,
        }
    }

    fn internal(e: impl std::fmt::Display) -> Refusal {
        Refusal::new(
            "internal",
            format!("ポータルのデータベースに書けませんでした：{e}"),
            format!("the portal could not store the filing: {e}"),
        )
    }

    fn of_conflict(c: Conflict) -> Refusal {
        match c {
            Conflict::NonceUsed { earlier } => {
                let (ja, en) = match &earlier {
                    Some(r) => (
                        format!("この署名番号はすでに受付番号 {r} の申請に使われています。"),
                        format!("this signing number was already used by the filing {r}"),
                    ),
                    None => (
                        "この署名番号はすでに別の申請に使われています。".to_owned(),
                        "this signing number was already used by another filing".to_owned(),
                    ),
                };
                Refusal {
                    code: "replayed",
                    ja,
                    en,
                    detail: Detail::Replayed { earlier },
                }
            }
            Conflict::AlreadySent => Refusal::new(
                "already_sent",
                "この申請はすでに送信されています。",
                "this application was already sent",
            ),
            Conflict::Seal(e) | Conflict::Failed(e) => Refusal::internal(e),
        }
    }
}

/// The content a citizen signs: tenant, procedure, version, the signing
/// nonce and the answers as the filing carries them
/// ([`Definition::filing_payload`]).
pub fn signed_content(
    tenant: &str,
    procedure: &str,
    version: u32,
    nonce: Option<&str>,
    payload: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "tenant": tenant,
        "procedure": procedure,
        "version": version,
        "answers": payload,
    });
    if let Some(n) = nonce {
        v["nonce"] = serde_json::Value::String(n.to_owned());
    }
    v
}

/// Published definitions, parsed once: a published version never changes
/// and is never withdrawn (see [`crate::store::Store::publish`]).
#[derive(Default)]
pub(crate) struct Definitions(Mutex<HashMap<(String, String, u32), Arc<Definition>>>);

impl Definitions {
    fn get(
        &self,
        store: &Store,
        tenant: &str,
        procedure: &str,
        version: u32,
    ) -> Option<Arc<Definition>> {
        let key = (tenant.to_owned(), procedure.to_owned(), version);
        if let Some(d) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Some(d.clone());
        }
        let def = Arc::new(
            store
                .definition(tenant, procedure, version)
                .ok()
                .flatten()
                .and_then(|src| Definition::parse(&src).ok())?,
        );
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, def.clone());
        Some(def)
    }
}

/// Outcome of one caller's rows in a group commit.
type Committed = Result<Vec<Result<(), Conflict>>, String>;

/// The group-commit queue (see the module documentation).
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    done: Condvar,
}

#[derive(Default)]
struct Queue {
    next: u64,
    waiting: Vec<(u64, Vec<SealedFiling>)>,
    writing: bool,
    results: HashMap<u64, Committed>,
    commits: u64,
}

impl GroupCommit {
    /// Stores `rows` in the next transaction and returns when it is
    /// committed (blocking: call from a thread that may wait).
    fn commit(&self, store: &Store, rows: Vec<SealedFiling>) -> Committed {
        let lock = || self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut q = lock();
        let ticket = q.next;
        q.next += 1;
        q.waiting.push((ticket, rows));
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r;
            }
            if q.writing {
                q = self.done.wait(q).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Nobody is writing: write everything waiting, ours included.
            q.writing = true;
            let jobs = std::mem::take(&mut q.waiting);
            drop(q);
            let sizes: Vec<(u64, usize)> = jobs.iter().map(|(t, r)| (*t, r.len())).collect();
            let all: Vec<SealedFiling> = jobs.into_iter().flat_map(|(_, r)| r).collect();
            let written =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.file_many(&all)));
            let mut outcome: Result<std::vec::IntoIter<Result<(), Conflict>>, String> =
                match written {
                    Ok(Ok(v)) if v.len() == all.len() => Ok(v.into_iter()),
                    Ok(Ok(_)) => Err("the batch's results do not match its filings".into()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the batch's write failed unexpectedly".into()),
                };
            q = lock();
            for (t, n) in sizes {
                let r = match &mut outcome {
                    Ok(it) => Ok(it.by_ref().take(n).collect()),
                    Err(e) => Err(e.clone()),
                };
                q.results.insert(t, r);
            }
            q.writing = false;
            q.commits += 1;
            self.done.notify_all();
        }
    }
}

impl Portal {
    /// Checks, verifies and seals one filing (no lock, no write).
    fn prepare(
        &self,
        s: &Submission,
        ctx: &CheckContext,
        now: &str,
    ) -> Result<(String, SealedFiling), Refusal> {
        let Some(def) = self
            .defs
            .get(&self.store, &s.tenant, &s.procedure, s.version)
        else {
            return Err(Refusal::new(
                "not_published",
                "この手続のこの版は公開されていません。",
                "this version of the procedure is not published",
            ));
        };
        if let Some((_, e)) = def.check_all(&s.answers, ctx).first() {
            return Err(Refusal {
                detail: Detail::Input(e.input.clone()),
                ..Refusal::new(
                    "invalid_answers",
                    format!("入力内容に誤りがあります（{}）：{}", e.input, e.message.ja),
                    format!(
                        "an answer is not valid ({}): {}",
                        e.input,
                        e.message.en.as_deref().unwrap_or(&e.message.ja)
                    ),
                )
            });
        }
        let content = signed_content(
            &s.tenant,
            &s.procedure,
            s.version,
            s.nonce.as_deref(),
            def.filing_payload(&s.answers, ctx),
        );
        let mut signature = serde_json::Value::Null;
        let mut nonce = None;
        if def.identity() == Identity::Signature {
            let Some(cms) = &s.signature else {
                return Err(Refusal::new(
                    "signature_required",
                    "この手続には電子署名が必要です。",
                    "this procedure needs an electronic signature",
                ));
            };
            let Some(signing) = &self.config.signing else {
                return Err(Refusal::new(
                    "signature_unavailable",
                    "このポータルでは電子署名を受け付けていません。",
                    "this portal cannot verify signatures",
                ));
            };
            let Some(payload) = crate::signing::payload_of(&content) else {
                return Err(Refusal::new(
                    "signature_required",
                    "署名番号がありません。",
                    "the signing nonce is missing",
                ));
            };
            // Checked here, at acceptance: the CRL or the clock may have
            // moved since the citizen's signing step.
            let v = signing
                .verifier()
                .verify_filing(cms, &payload, (self.config.clock)())
                .map_err(|e| {
                    use machi_domain::error::Localized;
                    Refusal {
                        code: "signature_rejected",
                        ja: e.message_ja(),
                        en: e.message_en(),
                        detail: Detail::Sign(e),
                    }
                })?;
            nonce = s.nonce.clone();
            signature = serde_json::json!({
                "format": "cms-detached/1",
                "cms": base64::engine::general_purpose::STANDARD.encode(cms),
                "demo": s.demo,
                "portal_check": {
                    "result": "valid",
                    "certificate": v.certificate,
                    "signing_time": v.signing_time.to_rfc3339(),
                    "verified_at": v.verified_at.to_rfc3339(),
                },
            });
        }
        let receipt = seal::new_code(3).map_err(Refusal::internal)?;
        let id = seal::lookup_id(self.store.secret(), "receipt", &receipt);
        let mut filing = serde_json::json!({
            "format": "machi-portal-filing/1",
            "receipt": receipt,
            "submitted_at": now,
            "signed_content": content,
            "signature": signature,
        });
        if let Some(c) = &s.corrects {
            filing["corrects"] = serde_json::Value::String(c.clone());
        }
        let sealed = seal::seal_filing(&self.config.recipient, &canonical_json(&filing), &id)
            .map_err(Refusal::internal)?;
        Ok((
            receipt.clone(),
            SealedFiling {
                id,
                receipt,
                tenant: s.tenant.clone(),
                procedure: s.procedure.clone(),
                version: s.version,
                sealed,
                received_at: now.to_owned(),
                nonce,
                draft_code: s.draft_code.clone(),
            },
        ))
    }

    /// Accepts filings: each checked, verified and sealed, then all that
    /// passed stored by group commit (in one transaction with whatever
    /// other callers have waiting). Returns, in order, the 受付番号 of each
    /// accepted filing or why it was refused, once they are committed. A
    /// database error of the transaction stores none of it. Blocking.
    pub fn accept_batch(
        &self,
        subs: &[Submission],
    ) -> Result<Vec<Result<String, Refusal>>, StoreError> {
        let now = self.now();
        let ctx = CheckContext::new(now.date_naive());
        let now = now.to_rfc3339();
        let mut rows = Vec::with_capacity(subs.len());
        let mut out = Vec::with_capacity(subs.len());
        for s in subs {
            match self.prepare(s, &ctx, &now) {
                Ok((receipt, row)) => {
                    rows.push(row);
                    out.push(Ok(receipt));
                }
                Err(r) => out.push(Err(r)),
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        let mut stored = self
            .group
            .commit(&self.store, rows)
            .map_err(StoreError::Batch)?
            .into_iter();
        for o in out.iter_mut().filter(|o| o.is_ok()) {
            match stored.next() {
                Some(Ok(())) => {}
                Some(Err(c)) => *o = Err(Refusal::of_conflict(c)),
                None => *o = Err(Refusal::internal("no result")),
            }
        }
        Ok(out)
    }

    /// Accepts one filing (the served submit): its 受付番号 once committed,
    /// or why not (a database error is a refusal coded `internal`).
    pub fn accept(&self, s: &Submission) -> Result<String, Refusal> {
        match self.accept_batch(std::slice::from_ref(s)) {
            Ok(mut v) => v
                .pop()
                .unwrap_or_else(|| Err(Refusal::internal("no result"))),
            Err(e) => Err(Refusal::internal(e)),
        }
    }

    /// How many group commits (transactions of filings) were made since
    /// the portal opened.
    pub fn commits(&self) -> u64 {
        self.group
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .commits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::seal::OpeningKey;

    fn portal() -> (std::sync::Arc<Portal>, OpeningKey) {
        let key = OpeningKey::generate().unwrap();
        let p = Portal::open(std::path::Path::new(":memory:"), Config::new(key.public())).unwrap();
        p.publish_shipped("132063", "府中市", "Fuchu City").unwrap();
        (p, key)
    }

    fn survey(age: &str) -> Submission {
        let mut answers = Answers::new();
        answers.insert("age_group".into(), age.into());
        answers.insert("uses_internet".into(), "no".into());
        answers.insert("want_class".into(), "yes".into());
        Submission {
            tenant: "132063".into(),
            procedure: "survey_internet".into(),
            version: 1,
            answers,
            nonce: None,
            signature: None,
            demo: false,
            draft_code: None,
            corrects: None,
        }
    }

    #[test]
    fn a_batch_stores_what_checks_and_refuses_the_rest() {
        let (p, key) = portal();
        let mut unpublished = survey("a70");
        unpublished.version = 9;
        let out = p
            .accept_batch(&[survey("a70"), survey("a99"), unpublished, survey("a80")])
            .unwrap();
        assert!(out[0].is_ok() && out[3].is_ok(), "{out:?}");
        assert_eq!(out[1].as_ref().unwrap_err().code, "invalid_answers");
        assert_eq!(out[2].as_ref().unwrap_err().code, "not_published");
        // A signed procedure without a signature stores nothing.
        let out = p
            .accept_batch(&[{
                let mut s = survey("a70");
                s.procedure = "tenshutsu".into();
                s
            }])
            .unwrap();
        assert!(out[0].is_err(), "{out:?}");
        let pending = p.store.pending(10).unwrap();
        assert_eq!(pending.len(), 2);
        // Each stored filing opens with the back office's key, bound to its row.
        for (id, _, procedure, _, _, sealed) in pending {
            assert_eq!(procedure, "survey_internet");
            let plain = key.open(&sealed, &id).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(v["format"], "machi-portal-filing/1");
            assert_eq!(v["signed_content"]["answers"]["want_class"], "yes");
        }
        // Each receipt finds its filing's status.
        let receipt = out_receipt(&p);
        assert!(p.store.filing(&receipt).unwrap().is_some());
    }

    fn out_receipt(p: &Portal) -> String {
        p.accept_batch(&[survey("a75")]).unwrap()[0]
            .clone()
            .unwrap()
    }
}
