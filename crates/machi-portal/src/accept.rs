//! Accepting filings in batches (issue 11, items 3, 4 and 10): each
//! filing's answers are checked against the published definition, its
//! signature verified when the procedure needs one, the filing sealed to
//! the back office's key, and the batch stored in one transaction.
//!
//! The per-filing work (checking, verifying, sealing) needs no lock and
//! runs on as many threads as call in; only the insert is serialised, one
//! transaction (one fsync) per batch instead of one per filing.
//! `machi bench-portal` measures this path.

use std::collections::HashMap;

use base64::Engine as _;
use machi_procedures::{Answers, CheckContext, Definition, Identity, canonical_json};

use crate::store::{SealedFiling, StoreError};
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
}

/// Why a filing was not accepted (nothing of it is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub ja: String,
    pub en: String,
}

impl Refusal {
    fn new(code: &'static str, ja: impl Into<String>, en: impl Into<String>) -> Refusal {
        Refusal {
            code,
            ja: ja.into(),
            en: en.into(),
        }
    }
}

/// The content a citizen signs: tenant, procedure, version and the answers
/// as the filing carries them ([`Definition::filing_payload`]).
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

type DefCache = HashMap<(String, String, u32), Option<Definition>>;

impl Portal {
    /// Checks, verifies and seals one filing (no lock, no write).
    fn prepare(
        &self,
        s: &Submission,
        ctx: &CheckContext,
        defs: &mut DefCache,
        now: &str,
    ) -> Result<(String, SealedFiling), Refusal> {
        let key = (s.tenant.clone(), s.procedure.clone(), s.version);
        if !defs.contains_key(&key) {
            let def = self
                .store
                .definition(&s.tenant, &s.procedure, s.version)
                .ok()
                .flatten()
                .and_then(|src| Definition::parse(&src).ok());
            defs.insert(key.clone(), def);
        }
        let Some(Some(def)) = defs.get(&key) else {
            return Err(Refusal::new(
                "not_published",
                "この手続のこの版は公開されていません。",
                "this version of the procedure is not published",
            ));
        };
        if let Some((_, e)) = def.check_all(&s.answers, ctx).first() {
            return Err(Refusal::new(
                "invalid_answers",
                format!("入力内容に誤りがあります（{}）：{}", e.input, e.message.ja),
                format!(
                    "an answer is not valid ({}): {}",
                    e.input,
                    e.message.en.as_deref().unwrap_or(&e.message.ja)
                ),
            ));
        }
        let content = signed_content(
            &s.tenant,
            &s.procedure,
            s.version,
            s.nonce.as_deref(),
            def.filing_payload(&s.answers, ctx),
        );
        let mut signer = serde_json::Value::Null;
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
            let v = signing
                .verifier()
                .verify_filing(cms, &payload, chrono::Utc::now())
                .map_err(|e| {
                    use machi_domain::error::Localized;
                    Refusal::new("signature_rejected", e.message_ja(), e.message_en())
                })?;
            let who = v.certificate.basic_four;
            signer = serde_json::json!({
                "name": who.name, "birth_date": who.date_of_birth.raw,
                "sex": who.sex.label_ja(), "address": who.address,
            });
        }
        let receipt = seal::new_code(3)
            .map_err(|e| Refusal::new("internal", e.to_string(), e.to_string()))?;
        let id = seal::lookup_id(self.store.secret(), "receipt", &receipt);
        let filing = serde_json::json!({
            "format": "machi-portal-filing/1",
            "receipt": receipt,
            "submitted_at": now,
            "signed_content": content,
            "signature": s.signature.as_ref().map(|c| base64::engine::general_purpose::STANDARD.encode(c)),
            "signer_at_portal": signer,
        });
        let sealed = seal::seal_filing(&self.config.recipient, &canonical_json(&filing), &id)
            .map_err(|e| Refusal::new("internal", e.to_string(), e.to_string()))?;
        Ok((
            receipt,
            SealedFiling {
                id,
                tenant: s.tenant.clone(),
                procedure: s.procedure.clone(),
                version: s.version,
                sealed,
                received_at: now.to_owned(),
            },
        ))
    }

    /// Accepts a batch of filings: each checked, verified and sealed, then
    /// all accepted ones stored in one transaction. Returns, in order, the
    /// 受付番号 of each accepted filing or why it was refused. A database
    /// error stores none of the batch.
    pub fn accept_batch(
        &self,
        subs: &[Submission],
    ) -> Result<Vec<Result<String, Refusal>>, StoreError> {
        let now = self.now();
        let ctx = CheckContext::new(now.date_naive());
        let now = now.to_rfc3339();
        let mut defs = DefCache::new();
        let mut rows = Vec::with_capacity(subs.len());
        let mut out = Vec::with_capacity(subs.len());
        for s in subs {
            match self.prepare(s, &ctx, &mut defs, &now) {
                Ok((receipt, row)) => {
                    rows.push(row);
                    out.push(Ok(receipt));
                }
                Err(r) => out.push(Err(r)),
            }
        }
        self.store.file_many(&rows)?;
        Ok(out)
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
