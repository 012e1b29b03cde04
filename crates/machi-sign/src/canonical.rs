//! The canonical form of a filing: the exact bytes a citizen signs.
//!
//! A filing is signed as the JSON Canonicalization Scheme (JCS, RFC 8785)
//! serialisation of this object:
//!
//! ```json
//! {"fields":{...},"format":"machi-filing/1","nonce":"...",
//!  "procedure":{"id":"...","version":3},"tenant":"132063"}
//! ```
//!
//! - `format`: the version of this canonical form (`machi-filing/1`).
//! - `tenant`: the municipality code (全国地方公共団体コード, 6 digits) the filing is addressed to.
//! - `procedure`: the procedure's id and the published version the filing was made on.
//! - `nonce`: a random value the portal hands out when the signing starts,
//!   independent of the receipt number (受付番号, which exists only after
//!   receipt); it makes every signature unique and lets both sides refuse a
//!   replayed filing.
//! - `fields`: the answers, as the procedure definition names them.
//!
//! JCS as applied here: object members sorted by the UTF-16 code units of
//! their names, no insignificant whitespace, strings escaped as RFC 8785 §3.2.2.2
//! says (only `"`, `\` and U+0000..U+001F; non-ASCII written as UTF-8, never
//! normalised: a name in 髙 or 﨑 is signed as typed). One restriction:
//! numbers must be integers within ±2^53 (JCS writes numbers as ECMAScript
//! does; integers in that range need no float formatting, and a filing has
//! no need of fractions: amounts are in yen, dates are strings). A
//! fractional or larger number is refused with [`SignError::NotCanonical`]
//! rather than signed in a form another verifier might write differently.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SignError;

/// Version tag of the canonical form.
pub const CANONICAL_FORMAT: &str = "machi-filing/1";

const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// What a citizen signs: the filing's answers and what they are addressed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilingPayload {
    /// 全国地方公共団体コード (6 digits) of the municipality.
    pub tenant: String,
    /// The procedure's id, e.g. `tenshutsu`.
    pub procedure_id: String,
    /// The published version the filing was made on.
    pub procedure_version: u32,
    /// The signing nonce handed out by the portal (receipt-independent).
    pub nonce: String,
    /// The answers (a JSON object).
    pub fields: Value,
}

impl FilingPayload {
    /// The canonical JSON object (before serialisation).
    pub fn to_canonical_value(&self) -> Value {
        serde_json::json!({
            "format": CANONICAL_FORMAT,
            "tenant": self.tenant,
            "procedure": { "id": self.procedure_id, "version": self.procedure_version },
            "nonce": self.nonce,
            "fields": self.fields,
        })
    }

    /// The bytes that are signed (RFC 8785 serialisation of [`Self::to_canonical_value`]).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, SignError> {
        canonicalize(&self.to_canonical_value())
    }
}

/// RFC 8785 (JCS) serialisation of a JSON value, integers only.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, SignError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out, 0)?;
    Ok(out)
}

const MAX_DEPTH: usize = 64;

fn write_value(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), SignError> {
    if depth > MAX_DEPTH {
        return Err(SignError::NotCanonical {
            detail: format!("nested deeper than {MAX_DEPTH}"),
        });
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let i = n
                .as_i64()
                .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
                .filter(|i| (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(i))
                .ok_or_else(|| SignError::NotCanonical {
                    detail: format!("number {n} is not an integer within ±2^53"),
                })?;
            out.extend_from_slice(i.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785 §3.2.3: sort by the UTF-16 code units of the names.
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 8785 §3.2.2.2 string serialisation.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{9}' => out.extend_from_slice(b"\\t"),
            '\u{a}' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\u{d}' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_by_utf16_and_escapes_as_rfc8785() {
        // RFC 8785 §3.2.3 sorts by UTF-16 code units: U+1F600 (surrogates
        // D83D DE00) comes before U+FB33, though its code point is larger.
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2, "a": 3, "\r": 4, "1": 5});
        let s = String::from_utf8(canonicalize(&v).unwrap()).unwrap();
        assert_eq!(
            s,
            "{\"\\r\":4,\"1\":5,\"a\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
        let v = json!({"s": "tab\there \"q\" \\ \u{1} /é髙"});
        let s = String::from_utf8(canonicalize(&v).unwrap()).unwrap();
        assert_eq!(s, "{\"s\":\"tab\\there \\\"q\\\" \\\\ \\u0001 /é髙\"}");
    }

    #[test]
    fn integers_only() {
        assert_eq!(
            canonicalize(&json!([0, -1, 9007199254740991_i64])).unwrap(),
            b"[0,-1,9007199254740991]"
        );
        assert!(matches!(
            canonicalize(&json!(1.5)),
            Err(SignError::NotCanonical { .. })
        ));
        assert!(matches!(
            canonicalize(&json!(9007199254740992_i64)),
            Err(SignError::NotCanonical { .. })
        ));
    }

    #[test]
    fn payload_form_is_stable() {
        let p = FilingPayload {
            tenant: "132063".into(),
            procedure_id: "tenshutsu".into(),
            procedure_version: 2,
            nonce: "n-1".into(),
            fields: json!({"to": "東京都昭島市", "members": ["架空 太郎"], "date": "2027-01-10"}),
        };
        let s = String::from_utf8(p.canonical_bytes().unwrap()).unwrap();
        assert_eq!(
            s,
            "{\"fields\":{\"date\":\"2027-01-10\",\"members\":[\"架空 太郎\"],\"to\":\"東京都昭島市\"},\"format\":\"machi-filing/1\",\"nonce\":\"n-1\",\"procedure\":{\"id\":\"tenshutsu\",\"version\":2},\"tenant\":\"132063\"}"
        );
    }
}
