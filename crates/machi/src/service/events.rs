//! The linkage feed's events as CloudEvents 1.0: the one envelope the pull
//! feed (`GET …/events`) and webhooks deliver.
//!
//! Event types follow one scheme, `jp.machi.{area}.{thing}.{what}.v1`:
//!
//! | type | when |
//! |---|---|
//! | `jp.machi.registry.change.{reason}.v1` | a change (異動, j210) is committed; `{reason}` is the 異動事由 code, e.g. `move_in`, `cancellation_amendment` |
//! | `jp.machi.registry.import.completed.v1` | a migration import is committed |
//! | `jp.machi.support.measure.{registered,confirmed,extended,ended,cancelled}.v1` | a 支援措置 (j440) is registered or changes state |
//! | `jp.machi.certificate.issued.v1` | a certificate (j1000–j1070) is issued |
//! | `jp.machi.portal.filing.approved.v1` | a filing from the citizen portal is approved for the business system that owns its procedure (申請管理) |
//!
//! The suffix is the version of the `data` shape: a change to it that a
//! consumer could trip over gets a new type (`…v2`), published beside the
//! old one for a transition period.
//!
//! `data` is thin: which change and which persons (宛名番号, 履歴番号, 世帯番号),
//! the reason and the dates; never a 個人番号, a name or an address. A
//! consumer reads the records it is allowed to see through the API, where
//! support measures (j380) apply.

use machi_domain::change::ChangeReason;
use serde::Serialize;
use utoipa::ToSchema;

use super::ServiceError;
use crate::store::records::OutboxEvent;

/// Prefix of every type.
pub const TYPE_PREFIX: &str = "jp.machi.";

/// The type of an import.
pub const IMPORT_COMPLETED: &str = "jp.machi.registry.import.completed.v1";
/// The type of a certificate issue.
pub const CERTIFICATE_ISSUED: &str = "jp.machi.certificate.issued.v1";
/// What happened to a support measure, as the type's `{what}`.
pub const SUPPORT_ACTIONS: [&str; 5] =
    ["registered", "confirmed", "extended", "ended", "cancelled"];

/// The type of a change with `reason`.
pub fn change_type(reason: ChangeReason) -> String {
    format!("jp.machi.registry.change.{}.v1", reason.code())
}

/// The type of a support measure event (`action` one of [`SUPPORT_ACTIONS`]).
pub fn support_type(action: &str) -> String {
    format!("jp.machi.support.measure.{action}.v1")
}

/// Every event type machi publishes, in a stable order.
pub fn known_types() -> Vec<String> {
    let mut v: Vec<String> = ChangeReason::ALL.into_iter().map(change_type).collect();
    v.push(IMPORT_COMPLETED.to_string());
    v.extend(SUPPORT_ACTIONS.iter().map(|a| support_type(a)));
    v.push(CERTIFICATE_ISSUED.to_string());
    v.push(super::inbox::FILING_APPROVED.to_string());
    v
}

/// What an event type means, in Japanese and English, for a page (a
/// person never reads the type's code): 異動：転入, 支援措置：本登録 …;
/// None for a type machi does not publish.
pub fn type_label(t: &str) -> Option<(String, String)> {
    if let Some(r) = t
        .strip_prefix("jp.machi.registry.change.")
        .and_then(|r| r.strip_suffix(".v1"))
        .and_then(ChangeReason::from_code)
    {
        return Some((
            format!("異動：{}", r.label_ja()),
            format!("Change: {}", r.label_en()),
        ));
    }
    if let Some(a) = t
        .strip_prefix("jp.machi.support.measure.")
        .and_then(|a| a.strip_suffix(".v1"))
    {
        let (ja, en) = match a {
            "registered" => ("申出の受付", "registered"),
            "confirmed" => ("本登録", "confirmed"),
            "extended" => ("延長", "extended"),
            "ended" => ("終了", "ended"),
            "cancelled" => ("取消し", "cancelled"),
            _ => return None,
        };
        return Some((format!("支援措置：{ja}"), format!("Support measure: {en}")));
    }
    match t {
        IMPORT_COMPLETED => Some((
            "住民記録の一括移行の完了".into(),
            "Migration import completed".into(),
        )),
        CERTIFICATE_ISSUED => Some(("証明書の交付".into(), "Certificate issued".into())),
        super::inbox::FILING_APPROVED => Some((
            "電子申請の承認（担当業務への引継ぎ）".into(),
            "Online filing approved (handed to its business system)".into(),
        )),
        _ => None,
    }
}

/// A type filter as a client sends it: names separated by commas (and/or
/// repeated parameters, already joined by the caller). A name may end in
/// `*` to take every type under a prefix (`jp.machi.registry.change.*`).
/// Unknown names and patterns matching nothing are refused, so a typo does
/// not silently filter everything out. Empty: every type. A pattern is
/// kept as the pattern (not the types it matches today), so a type added
/// later under its prefix is matched too ([`type_matches`]); a name a
/// pattern of the same filter covers is dropped.
pub fn parse_type_filter<'a>(
    field: &str,
    parts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, ServiceError> {
    let known = known_types();
    let mut out: Vec<String> = Vec::new();
    let parts: Vec<&str> = parts.into_iter().collect();
    // Only separators (","): a malformed filter, not "every type".
    if let Some(p) = parts
        .iter()
        .find(|p| !p.trim().is_empty() && p.split(',').all(|n| n.trim().is_empty()))
    {
        let shown: String = p.chars().take(80).collect();
        return Err(ServiceError::Invalid {
            field: field.to_string(),
            code: "invalid_event_type",
            message_ja: format!(
                "イベント種別「{shown}」は正しい形式ではありません。種別の一覧は API の説明にあります。"
            ),
            message_en: format!(
                "event type \"{shown}\" is malformed; the list of types is in the API description"
            ),
        });
    }
    for raw in parts.into_iter().flat_map(|p| p.split(',')) {
        let name = raw.trim();
        if name.is_empty() {
            continue;
        }
        let bad = |why_ja: &str, why_en: &str| ServiceError::Invalid {
            field: field.to_string(),
            code: "invalid_event_type",
            message_ja: format!(
                "イベント種別「{}」は{why_ja}。種別の一覧は API の説明にあります。",
                name.chars().take(80).collect::<String>()
            ),
            message_en: format!(
                "event type \"{}\" {why_en}; the list of types is in the API description",
                name.chars().take(80).collect::<String>()
            ),
        };
        if name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._*".contains(c))
        {
            return Err(bad("正しい形式ではありません", "is malformed"));
        }
        let matched: Vec<&String> = match name.strip_suffix('*') {
            // Whole segments only: `jp.machi.registry.change.*`, never a
            // bare `*` or `j*` (a filter that filters nothing).
            Some(prefix) if !prefix.contains('*') && prefix.ends_with('.') => {
                let m: Vec<&String> = known.iter().filter(|k| k.starts_with(prefix)).collect();
                if !m.is_empty() && !out.iter().any(|o| o == name) {
                    out.push(name.to_string());
                }
                m
            }
            Some(_) => return Err(bad("正しい形式ではありません", "is malformed")),
            None if name.contains('*') => {
                return Err(bad("正しい形式ではありません", "is malformed"));
            }
            None => known.iter().filter(|k| *k == name).collect(),
        };
        if matched.is_empty() {
            return Err(bad("存在しません", "does not exist"));
        }
        if !name.ends_with('*') && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    // A name some pattern of the filter covers adds nothing.
    let patterns: Vec<String> = out.iter().filter(|o| o.ends_with('*')).cloned().collect();
    out.retain(|o| o.ends_with('*') || !patterns.iter().any(|p| type_matches(p, o)));
    if known.iter().all(|k| out.iter().any(|o| type_matches(o, k))) {
        // Everything: the same as no filter.
        out.clear();
    }
    Ok(out)
}

/// Whether an entry of a type filter (a name, or a `prefix.*` pattern)
/// takes events of type `kind`.
pub fn type_matches(entry: &str, kind: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => entry == kind,
    }
}

/// One event in the CloudEvents 1.0 JSON format.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct CloudEvent {
    #[schema(example = "1.0")]
    pub specversion: String,
    /// Stable: the same event always has the same id (`{団体コード}-{sequence}`),
    /// on the pull feed and in every webhook retry; a consumer applies it once.
    #[schema(example = "132063-42")]
    pub id: String,
    /// The tenant: `/machi/tenants/{団体コード}`.
    #[schema(example = "/machi/tenants/132063")]
    pub source: String,
    #[serde(rename = "type")]
    #[schema(example = "jp.machi.registry.change.move_in.v1")]
    pub r#type: String,
    /// When the event was committed (RFC 3339).
    pub time: String,
    /// What the event is about, under the source: `changes/{id}`,
    /// `support-measures/{id}`, `certificates/{発行番号}`, `imports/{digest}`.
    #[schema(example = "changes/42")]
    pub subject: String,
    #[schema(example = "application/json")]
    pub datacontenttype: String,
    /// The tenant's event sequence number (CloudEvents `sequence`
    /// extension): gap-free per tenant, in commit order; a String,
    /// zero-padded to 20 digits so that it also orders as text.
    #[schema(example = "00000000000000000042")]
    pub sequence: String,
    /// What changed (see the type); never a 個人番号, a name or an address.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// The sequence as a number.
    pub fn seq(&self) -> i64 {
        self.sequence.parse().unwrap_or(0)
    }
}

/// The CloudEvent of a stored event; `time` is formatted by `rfc3339`.
pub fn cloud_event(tenant: &str, e: &OutboxEvent, rfc3339: impl Fn(i64) -> String) -> CloudEvent {
    let d = &e.payload;
    let subject = if let Some(id) = e.change_id {
        format!("changes/{id}")
    } else if let Some(id) = d.get("measure_id").and_then(|v| v.as_i64()) {
        format!("support-measures/{id}")
    } else if let Some(n) = d.get("issue_number").and_then(|v| v.as_str()) {
        format!("certificates/{n}")
    } else if let Some(n) = d.get("digest").and_then(|v| v.as_str()) {
        format!("imports/{n}")
    } else {
        format!("events/{}", e.seq)
    };
    CloudEvent {
        specversion: "1.0".into(),
        id: e.event_id.clone(),
        source: format!("/machi/tenants/{tenant}"),
        r#type: e.kind.clone(),
        time: rfc3339(e.created_at),
        subject,
        datacontenttype: "application/json".into(),
        sequence: format!("{:020}", e.seq),
        data: e.payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_accepts_names_lists_and_prefixes() {
        let f = parse_type_filter(
            "type",
            ["jp.machi.registry.change.move_in.v1,jp.machi.certificate.issued.v1"],
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        // A pattern is kept as such (types added later under it match);
        // a name it covers adds nothing.
        let f = parse_type_filter(
            "type",
            ["jp.machi.support.*,jp.machi.support.measure.registered.v1"],
        )
        .unwrap();
        assert_eq!(f, vec!["jp.machi.support.*".to_string()]);
        assert!(type_matches(&f[0], "jp.machi.support.measure.later.v1"));
        assert!(!type_matches(&f[0], "jp.machi.supported.v1"));
        // Every published type has words for a page.
        for t in known_types() {
            let (ja, en) = type_label(&t).unwrap_or_else(|| panic!("{t} has no label"));
            assert!(!ja.contains('_') && !en.contains('_'), "{t}: {ja} / {en}");
        }
        assert_eq!(type_label("jp.machi.nothing.v1"), None);
        // A pattern takes whole segments.
        for bad in ["*", "j*", "jp.machi.registry.chan*", "a*b", "**"] {
            assert!(parse_type_filter("type", [bad]).is_err(), "{bad}");
        }
        assert!(parse_type_filter("type", ["jp.machi.*"]).is_ok());
        assert!(
            parse_type_filter("type", ["jp.machi.*"])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn filter_refuses_unknown_and_malformed() {
        for bad in [
            "jp.machi.registry.change.moved.v1",
            "JP.x",
            "a*b",
            "x.*",
            "a b",
            ",",
            " , ",
        ] {
            let e = parse_type_filter("type", [bad]).unwrap_err();
            assert!(
                matches!(
                    e,
                    ServiceError::Invalid {
                        code: "invalid_event_type",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }
}
