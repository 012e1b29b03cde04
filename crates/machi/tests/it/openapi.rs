//! The OpenAPI document: the committed `openapi.json` is the one the code
//! generates, and the API keeps what it says.
//!
//! The contract test is generated from the document: it walks every
//! operation and every parameter (and every constrained property of a JSON
//! request body), generates values from each schema with proptest (pattern,
//! bounds, type, the custom formats) — valid ones and invalid ones — and
//! drives the real router in-process. It checks that a valid value is never
//! refused with 400, that an invalid one is 400 with an error body whose
//! `field` names it, and that every answer's status is one the operation
//! documents, with a body that matches the schema documented for it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat};
use http_body_util::BodyExt;
use machi::api::{self, AppState};
use machi::service::Actor;
use machi_domain::dates::EraTable;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::{client_token, platform_headers};
use crate::contract::takahashi_family;
use crate::support::{FUCHU, TestDb};

#[test]
fn committed_openapi_document_is_current() {
    let generated = machi::api::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != generated {
        panic!(
            "openapi.json is stale: run `cargo run -p machi -- openapi --output openapi.json` and commit it"
        );
    }
}

both_backends!(the_api_keeps_its_openapi_contract);

/// Generated values per parameter: this many valid and this many invalid.
const CASES: u32 = 32;

// ---------------------------------------------------------------------------
// The document, as the test reads it.

/// Where a generated value goes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Place {
    Path,
    Query,
    /// A top-level property of the JSON request body.
    Body,
}

/// One input of an operation: a parameter or a body property.
#[derive(Clone, Debug)]
struct Input {
    name: String,
    place: Place,
    /// The schema, `$ref` resolved.
    schema: Value,
    /// The value sent when another input is varied.
    example: Value,
    /// `x-blank-is-absent`: an empty or blank value means "not given".
    blank_is_absent: bool,
}

#[derive(Clone, Debug)]
struct Operation {
    method: String,
    template: String,
    inputs: Vec<Input>,
    /// Documented statuses and the schema of each one's JSON body.
    responses: BTreeMap<u16, Option<Value>>,
    /// Security scheme names the operation accepts.
    security: Vec<String>,
    /// Whether it also answers a request without credentials (`{}` among
    /// its security requirements, or none).
    anonymous: bool,
    /// The JSON or form request body: content type, example.
    body: Option<(String, Value)>,
}

impl Operation {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let mut inputs: Vec<Input> = op["parameters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| Input {
                    name: p["name"].as_str().expect("name").to_string(),
                    place: match p["in"].as_str() {
                        Some("path") => Place::Path,
                        Some("query") => Place::Query,
                        other => panic!("{template}: parameter in {other:?}"),
                    },
                    schema: resolve(doc, &p["schema"]).clone(),
                    example: p
                        .get("example")
                        .cloned()
                        .unwrap_or_else(|| panic!("{template}: {} has no example", p["name"])),
                    blank_is_absent: p["x-blank-is-absent"] == json!(true),
                })
                .collect();
            let mut body = None;
            if let Some(content) = op["requestBody"]["content"].as_object() {
                let (ct, media) = content.iter().next().expect("content");
                let schema = resolve(doc, &media["schema"]);
                if let Some(example) = media.get("example") {
                    // Properties with constraints are inputs of their own.
                    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                        let prop_schema = resolve(doc, prop);
                        let constrained = ["pattern", "format", "minLength", "maxLength"]
                            .iter()
                            .any(|k| prop_schema.get(k).is_some());
                        if constrained && example.get(name).is_some() {
                            inputs.push(Input {
                                name: name.clone(),
                                place: Place::Body,
                                schema: prop_schema.clone(),
                                example: example[name].clone(),
                                blank_is_absent: false,
                            });
                        }
                    }
                    body = Some((ct.clone(), example.clone()));
                } else {
                    body = Some((ct.clone(), Value::Null));
                }
            }
            let responses = op["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .map(|(status, r)| {
                    let schema = r["content"]["application/json"]["schema"].clone();
                    (
                        status.parse::<u16>().expect("numeric status"),
                        (!schema.is_null()).then_some(schema),
                    )
                })
                .collect();
            let requirements = op["security"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let anonymous = requirements.is_empty()
                || requirements
                    .iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            let security = requirements
                .iter()
                .flat_map(|req| req.as_object().into_iter().flatten())
                .map(|(k, _)| k.clone())
                .collect();
            out.push(Operation {
                method: method.to_uppercase(),
                template: template.clone(),
                inputs,
                responses,
                security,
                anonymous,
                body,
            });
        }
    }
    out
}

/// A JSON value checked against a schema: `$ref`, types (with `null`),
/// `required`, `properties` (no property the schema does not name),
/// `items`, `enum`, `oneOf`/`anyOf`/`allOf`.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    for s in schema["allOf"].as_array().into_iter().flatten() {
        validate(doc, s, v, at)?;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema[key].as_array()
            && !alts.iter().any(|s| validate(doc, s, v, at).is_ok())
        {
            return Err(format!("{at}: {v} matches none of its {key}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not of type {t}"));
        }
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {values:?}"));
    }
    if let Some(o) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !o.contains_key(r) {
                return Err(format!("{at}: required property {r} is missing"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, x) in o {
                match props.get(k) {
                    Some(p) => validate(doc, p, x, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}: property {k} is not documented")),
                }
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, x) in a.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What a schema says a value is.

/// Characters `str::trim` removes, for the conventions the document states.
fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bound(schema: &Value, key: &str) -> Option<i64> {
    schema.get(key).and_then(Value::as_i64)
}

/// A decimal integer as a query or path value: digits with an optional minus.
fn integer_text(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn fold_digit(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '０'..='９' => Some(c as u32 - '０' as u32),
        _ => None,
    }
}

/// Format `municipality-code`: the sixth digit is the check digit of the five.
fn check_digit(first5: &[u32]) -> u32 {
    let sum: u32 = first5.iter().zip([6, 5, 4, 3, 2]).map(|(d, w)| d * w).sum();
    (11 - sum % 11) % 10
}

/// Rewrites the last digit of a code that matches the pattern to the check
/// digit plus `offset` (0: right; 1..=9: wrong), in the same width.
fn with_check_digit(s: &str, offset: u32) -> String {
    let digits: Vec<(usize, u32)> = s
        .char_indices()
        .filter_map(|(i, c)| fold_digit(c).map(|d| (i, d)))
        .collect();
    let Some(&(last_at, _)) = digits.last() else {
        return s.to_string();
    };
    let values: Vec<u32> = digits.iter().map(|&(_, d)| d).collect();
    let d = (check_digit(&values[..values.len().saturating_sub(1)]) + offset) % 10;
    let old = s[last_at..].chars().next().unwrap_or('0');
    let new = if old.is_ascii_digit() {
        char::from_digit(d, 10).unwrap_or('0')
    } else {
        char::from_u32('０' as u32 + d).unwrap_or('０')
    };
    format!("{}{new}{}", &s[..last_at], &s[last_at + old.len_utf8()..])
}

/// Whether `s` matches the (anchored) pattern, compiled once.
fn matches(pattern: &str, s: &str) -> bool {
    static CACHE: Mutex<BTreeMap<String, regex::Regex>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| {
            regex::Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern}: {e}"))
        })
        .is_match(s)
}

/// Whether `s` is a value the schema allows (the document's own rules).
fn conforms(schema: &Value, s: &str) -> bool {
    match schema["type"].as_str() {
        Some("integer") => integer_text(s).is_some_and(|n| {
            bound(schema, "minimum").is_none_or(|m| n >= m)
                && bound(schema, "maximum").is_none_or(|m| n <= m)
        }),
        Some("boolean") => s == "true" || s == "false",
        _ => {
            let len = s.chars().count() as i64;
            let pattern_ok = schema["pattern"].as_str().is_none_or(|p| matches(p, s));
            let format_ok = match schema["format"].as_str() {
                Some("municipality-code") => with_check_digit(s, 0) == s,
                _ => true,
            };
            pattern_ok
                && format_ok
                && bound(schema, "minLength").is_none_or(|m| len >= m)
                && bound(schema, "maxLength").is_none_or(|m| len <= m)
        }
    }
}

// ---------------------------------------------------------------------------
// Values from a schema.

fn calendar_date(min_year: i32) -> impl Strategy<Value = NaiveDate> {
    (min_year..=9999i32, 1u32..=12, 1u32..=31).prop_filter_map("a calendar day", |(y, m, d)| {
        NaiveDate::from_ymd_opt(y, m, d)
    })
}

/// A calendar date as a person writes it: ISO 8601 or 和暦 (from 明治6年).
fn date_text() -> BoxedStrategy<String> {
    let eras = EraTable::standard();
    prop_oneof![
        calendar_date(1).prop_map(|d| d.format("%Y-%m-%d").to_string()),
        calendar_date(1873).prop_map(move |d| eras.format_wareki(d)),
    ]
    .boxed()
}

/// An RFC 3339 instant, with or without fractions, `Z` or an offset.
fn date_time() -> BoxedStrategy<String> {
    (
        -2_208_988_800i64..=7_258_118_400,
        -14 * 60i32..=14 * 60,
        any::<bool>(),
    )
        .prop_map(|(secs, minutes, millis)| {
            let offset = FixedOffset::east_opt(minutes * 60).expect("offset");
            let t = DateTime::from_timestamp(secs, 123_000_000)
                .expect("instant")
                .with_timezone(&offset);
            let form = if millis {
                SecondsFormat::Millis
            } else {
                SecondsFormat::Secs
            };
            t.to_rfc3339_opts(form, minutes == 0)
        })
        .boxed()
}

fn unanchored(pattern: &str) -> &str {
    let p = pattern.strip_prefix('^').unwrap_or(pattern);
    p.strip_suffix('$').unwrap_or(p)
}

fn from_pattern(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(unanchored(pattern))
        .unwrap_or_else(|e| panic!("pattern {pattern}: {e}"))
        .boxed()
}

fn any_text(max: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(any::<char>(), 0..max)
        .prop_map(String::from_iter)
        .boxed()
}

/// Values the schema allows (plus blanks where blank means "not given").
fn valid_values(input: &Input) -> BoxedStrategy<String> {
    let schema = input.schema.clone();
    let main: BoxedStrategy<String> = match schema["type"].as_str() {
        Some("integer") => {
            let min = bound(&schema, "minimum").unwrap_or(i64::MIN);
            let max = bound(&schema, "maximum").unwrap_or(i64::MAX);
            prop_oneof![Just(min), Just(max), min..=max]
                .prop_map(|n| n.to_string())
                .boxed()
        }
        Some("boolean") => prop_oneof![Just("true".to_string()), Just("false".to_string())].boxed(),
        _ => match (schema["format"].as_str(), schema["pattern"].as_str()) {
            (Some("municipality-code"), Some(p)) => from_pattern(p)
                .prop_map(|s| with_check_digit(&s, 0))
                .boxed(),
            (Some("jp-calendar-date"), _) => date_text(),
            (Some("jp-date"), _) => prop_oneof![
                4 => date_text(),
                1 => prop_oneof![
                    Just("令和3年2月29日".to_string()),
                    Just("令和3年4月上旬".to_string()),
                    Just("2001年頃".to_string()),
                    Just("令和3年 月日不詳".to_string()),
                    Just("年月日不詳".to_string()),
                ],
            ]
            .boxed(),
            (Some("date-time"), _) => date_time(),
            // Opaque: only what the API handed out, i.e. the example.
            (Some("page-cursor"), _) => Just(text(&input.example)).boxed(),
            (_, Some(p)) => from_pattern(p),
            _ => any_text(16),
        },
    };
    let schema_for_filter = schema.clone();
    let main = main
        .prop_filter("allowed by the schema", move |s| {
            conforms(&schema_for_filter, s)
        })
        .boxed();
    if input.blank_is_absent {
        prop_oneof![
            6 => main,
            1 => prop_oneof![Just(String::new()), Just(" ".to_string()), Just("\u{3000}".to_string())],
        ]
        .boxed()
    } else {
        main
    }
}

/// Values the schema refuses, or None when it allows every string.
fn invalid_values(input: &Input) -> Option<BoxedStrategy<String>> {
    let schema = input.schema.clone();
    let candidates: BoxedStrategy<String> = match schema["type"].as_str() {
        Some("integer") => {
            let min = bound(&schema, "minimum");
            let max = bound(&schema, "maximum");
            let mut options: Vec<BoxedStrategy<String>> = vec![
                "[a-zA-Z .,+_-]{0,2}[0-9]{0,3}[a-zA-Z .,eE+_-]{1,3}[0-9]{0,2}".boxed(),
                Just("9223372036854775808".to_string()).boxed(),
                Just("-9223372036854775809".to_string()).boxed(),
            ];
            if let Some(min) = min {
                options.push(
                    (min.saturating_sub(1000)..min)
                        .prop_map(|n| n.to_string())
                        .boxed(),
                );
            }
            if let Some(max) = max {
                options.push(
                    (max + 1..=max.saturating_add(1000))
                        .prop_map(|n| n.to_string())
                        .boxed(),
                );
            }
            proptest::strategy::Union::new(options).boxed()
        }
        Some("boolean") => prop_oneof!["[a-zA-Z0-9 ]{0,6}", Just("TRUE".to_string())].boxed(),
        _ => match (schema["format"].as_str(), schema["pattern"].as_str()) {
            (Some("jp-calendar-date"), _) => prop_oneof![
                "[a-zA-Z]{1,10}",
                (1i32..=9999).prop_map(|y| format!("{y:04}-02-30")),
                (1i32..=9999).prop_map(|y| format!("{y:04}-13-01")),
            ]
            .boxed(),
            (Some("jp-date"), _) => "[a-zA-Z]{1,10}".boxed(),
            (Some("date-time"), _) => prop_oneof![
                "[a-zA-Z]{1,10}",
                calendar_date(1900).prop_map(|d| d.format("%Y-%m-%d").to_string()),
            ]
            .boxed(),
            (format, Some(p)) => {
                let mutated = valid_values(&Input {
                    blank_is_absent: false,
                    ..input.clone()
                })
                .prop_flat_map(|v| {
                    let n = v.chars().count();
                    (Just(v), 0..=n, "[0-9a-zA-Z０-９ー/.%-]")
                })
                .prop_map(|(v, at, c)| {
                    let mut chars: Vec<char> = v.chars().collect();
                    if at < chars.len() && at % 2 == 0 {
                        chars.remove(at);
                    } else {
                        chars.insert(at.min(chars.len()), c.chars().next().unwrap_or('x'));
                    }
                    chars.into_iter().collect::<String>()
                });
                let mut options: Vec<BoxedStrategy<String>> =
                    vec![any_text(20), mutated.boxed(), "[0-9]{0,20}".boxed()];
                if format == Some("municipality-code") {
                    options.push(
                        (from_pattern(p), 1u32..=9)
                            .prop_map(|(s, off)| with_check_digit(&s, off))
                            .boxed(),
                    );
                }
                if let Some(max) = bound(&schema, "maxLength") {
                    let max = max as usize;
                    options.push(
                        proptest::collection::vec(
                            proptest::char::range('a', 'z'),
                            max + 1..max + 8,
                        )
                        .prop_map(String::from_iter)
                        .boxed(),
                    );
                }
                proptest::strategy::Union::new(options).boxed()
            }
            _ => return None,
        },
    };
    let blank_ok = input.blank_is_absent;
    let in_path = input.place == Place::Path;
    // The date formats are no pattern: their invalid values are made so.
    let decidable = !matches!(
        schema["format"].as_str(),
        Some("jp-calendar-date" | "jp-date" | "date-time")
    );
    Some(
        candidates
            .prop_filter("refused by the schema", move |s| {
                let allowed = decidable && conforms(&schema, s);
                let means_absent = blank_ok && blank(s);
                let unroutable = in_path && s.is_empty();
                !(allowed || means_absent || unroutable)
            })
            .boxed(),
    )
}

// ---------------------------------------------------------------------------
// Requests.

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Answer {
    status: u16,
    body: Value,
}

struct Client {
    router: axum::Router,
    /// Headers per security scheme name.
    credentials: BTreeMap<String, Vec<(String, String)>>,
    /// A session of FUCHU's tenant administrator, for the operations only
    /// a tenant administrator may use (procedure definitions from the
    /// portal); the `session` credential is the platform operator's.
    tenant_admin: Vec<(String, String)>,
    /// A session of FUCHU's supervisor, for the operations only a
    /// supervisor may use (importing a refused filing again).
    supervisor: Vec<(String, String)>,
}

impl Client {
    /// The credential the operation accepts first.
    fn headers_for(&self, op: &Operation) -> Vec<(String, String)> {
        if op.template.contains("/procedure-definitions")
            && op.security.iter().any(|s| s == "session")
        {
            return self.tenant_admin.clone();
        }
        if op.template.contains("/filings/refused/") && op.security.iter().any(|s| s == "session") {
            return self.supervisor.clone();
        }
        op.security
            .iter()
            .find_map(|s| self.credentials.get(s))
            .cloned()
            .unwrap_or_default()
    }
}

/// The operation's request with `input` set to `value` and every other
/// input at its example.
fn request(
    op: &Operation,
    vary: Option<(&str, Place, &str)>,
    headers: &[(String, String)],
) -> Request<Body> {
    let value_of = |i: &Input| match vary {
        Some((name, place, v)) if name == i.name && place == i.place => v.to_string(),
        _ => text(&i.example),
    };
    let mut uri = op.template.clone();
    let mut query = Vec::new();
    for i in &op.inputs {
        match i.place {
            Place::Path => uri = uri.replace(&format!("{{{}}}", i.name), &pct(&value_of(i))),
            Place::Query => query.push(format!("{}={}", i.name, pct(&value_of(i)))),
            Place::Body => {}
        }
    }
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    let mut req = Request::builder().method(op.method.as_str()).uri(uri);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let body = match &op.body {
        Some((ct, example)) if ct == "application/json" => {
            let mut body = example.clone();
            if let Some((name, Place::Body, v)) = vary {
                body[name] = Value::String(v.to_string());
            }
            req = req.header("content-type", ct);
            Body::from(body.to_string())
        }
        Some((ct, _)) => {
            req = req.header("content-type", ct);
            Body::from("grant_type=client_credentials")
        }
        None => Body::empty(),
    };
    req.body(body).expect("request")
}

async fn send(router: &axum::Router, req: Request<Body>) -> Answer {
    let res = router.clone().oneshot(req).await.expect("router");
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer { status, body }
}

/// The answer is one the operation documents, with the documented body.
fn documented(doc: &Value, op: &Operation, a: &Answer) -> Result<(), String> {
    let Some(schema) = op.responses.get(&a.status) else {
        return Err(format!(
            "status {} is not documented (documented: {:?}); body {}",
            a.status,
            op.responses.keys().collect::<Vec<_>>(),
            a.body
        ));
    };
    if a.status >= 500 {
        return Err(format!("server error {}: {}", a.status, a.body));
    }
    if let Some(schema) = schema {
        validate(doc, schema, &a.body, "body")
            .map_err(|e| format!("status {}: {e}; body {}", a.status, a.body))?;
    }
    Ok(())
}

/// Runs a property over generated values, blocking on the async check.
fn property(
    strategy: BoxedStrategy<String>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    runner
        .run(&strategy, |v| check(&v).map_err(TestCaseError::fail))
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// The test.

async fn the_api_keeps_its_openapi_contract(db: TestDb) {
    let db = db.with_tenants().await;
    // A portal link (its portal unreachable: only a refused re-import
    // needs none) for the re-import of a quarantined filing.
    let importer = machi::portal::PortalLink {
        client: machi::service::hooks::http_client(std::time::Duration::from_secs(5)).unwrap(),
        url: "http://127.0.0.1:9".into(),
        token: "unused".into(),
        key: machi_portal::seal::OpeningKey::generate().unwrap(),
        signing: None,
        batch: 100,
    };
    let router = api::app(AppState {
        registry: db
            .registry
            .clone()
            .with_portal_importer(Some(std::sync::Arc::new(importer))),
    });
    let doc: Value = serde_json::from_str(&machi::api::openapi_json()).expect("document");
    let bearer = client_token(&db, &router, FUCHU).await;
    // Subscriptions 1 and 2 of the bearer's client (the examples name 1;
    // the DELETE example names 2).
    for _ in 0..2 {
        let seeded = router
            .clone()
            .oneshot(
                axum::http::Request::post(format!("/api/v1/tenants/{FUCHU}/subscriptions"))
                    .header("authorization", &bearer)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        r#"{"url":"https://example.org/hook"}"#,
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(seeded.status(), axum::http::StatusCode::CREATED);
    }
    let mut credentials = BTreeMap::new();
    credentials.insert(
        "bearer".to_string(),
        vec![("authorization".to_string(), bearer.clone())],
    );
    let platform = platform_headers(&db).await;
    credentials.insert("session".to_string(), platform.clone());
    crate::ui::staff(&db, FUCHU, "admin", machi_domain::access::Role::TenantAdmin).await;
    let admin = db
        .registry
        .login(
            Some(&FUCHU.parse().unwrap()),
            "admin",
            crate::ui::PASSWORD,
            "T-ADMIN",
        )
        .await
        .unwrap();
    crate::ui::staff(&db, FUCHU, "boss", machi_domain::access::Role::Supervisor).await;
    let boss = db
        .registry
        .login(
            Some(&FUCHU.parse().unwrap()),
            "boss",
            crate::ui::PASSWORD,
            "T-BOSS",
        )
        .await
        .unwrap();
    let client = Client {
        router: router.clone(),
        credentials,
        tenant_admin: vec![
            ("cookie".into(), format!("machi_session={}", admin.token)),
            ("x-csrf-token".into(), admin.session.csrf),
        ],
        supervisor: vec![
            ("cookie".into(), format!("machi_session={}", boss.token)),
            ("x-csrf-token".into(), boss.session.csrf),
        ],
    };
    // …and the quarantined filing the re-import's example names (it does
    // not open: deferred, then quarantined a week on; imported again, it
    // is refused again: 200, `refused`).
    let example = machi::portal::PulledFiling {
        id: "9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e".into(),
        tenant: FUCHU.into(),
        procedure: "survey_internet".into(),
        version: 1,
        received_at: "2026-12-01T09:00:00+09:00".into(),
        sealed: "eA==".into(),
    };
    let key = machi_portal::seal::OpeningKey::generate().unwrap();
    let t0 = 1_765_000_000;
    for at in [t0, t0 + 7 * 86_400] {
        machi::portal::import(&db.store, &key, None, std::slice::from_ref(&example), at)
            .await
            .unwrap();
    }
    // The examples name a family that exists: the first 宛名番号 and 世帯番号,
    // change 1.
    let seed = Request::post(format!("/api/v1/tenants/{FUCHU}/changes"))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body(Body::from(takahashi_family().to_string()))
        .expect("request");
    assert_eq!(send(&router, seed).await.status, 201);
    // …and provisional change 1, entered by the same client.
    let caller = db
        .registry
        .token_caller(bearer.trim_start_matches("Bearer "))
        .await
        .expect("token")
        .expect("a live token");
    let (pending, _) = db
        .registry
        .enter_provisional(
            &FUCHU.parse().unwrap(),
            &serde_json::from_value(crate::contract::move_in(
                vec![
                    json!({"name": "見本　一郎", "name_kana": "ミホン　イチロウ",
                    "birth_date": "1980-01-01", "sex": "male", "relationship": "世帯主"}),
                ],
                "東京都府中市宮西町一丁目1番地",
            ))
            .expect("request"),
            &caller.actor(),
        )
        .await
        .expect("provisional change");
    assert_eq!(pending, 1);

    // …and filing 1 in the inbox (申請管理).
    crate::inbox::stored_juminhyo(&db).await;

    let ops = operations(&doc);
    assert!(ops.len() >= 13, "{} operations", ops.len());
    let rt = tokio::runtime::Handle::current();
    let mut failures: Vec<String> = Vec::new();
    let mut checked = (0usize, 0usize);

    tokio::task::block_in_place(|| {
        for op in &ops {
            let headers = client.headers_for(op);
            // The examples together are a request the operation accepts.
            let a = rt.block_on(send(&client.router, request(op, None, &headers)));
            let body_has_example = !matches!(&op.body, Some((_, Value::Null)));
            if let Err(e) = documented(&doc, op, &a) {
                failures.push(format!("{}: examples: {e}", op.label()));
            } else if body_has_example && a.status >= 400 && a.status != 409 {
                failures.push(format!(
                    "{}: the examples are refused: {} {}",
                    op.label(),
                    a.status,
                    a.body
                ));
            }
            for input in &op.inputs {
                let name = input.name.as_str();
                let place = input.place;
                let valid = property(valid_values(input), |v| {
                    let a = rt.block_on(send(
                        &client.router,
                        request(op, Some((name, place, v)), &headers),
                    ));
                    documented(&doc, op, &a)?;
                    if a.status == 400 {
                        return Err(format!("valid {name}={v:?} refused: {}", a.body));
                    }
                    Ok(())
                });
                checked.0 += CASES as usize;
                if let Err(e) = valid {
                    failures.push(format!("{}: {name} (valid): {e}", op.label()));
                }
                let Some(strategy) = invalid_values(input) else {
                    continue;
                };
                let invalid = property(strategy, |v| {
                    let a = rt.block_on(send(
                        &client.router,
                        request(op, Some((name, place, v)), &headers),
                    ));
                    documented(&doc, op, &a)?;
                    if a.status != 400 || a.body["field"] != json!(name) {
                        return Err(format!(
                            "invalid {name}={v:?} answered {} {} (want 400 naming {name})",
                            a.status, a.body
                        ));
                    }
                    Ok(())
                });
                checked.1 += CASES as usize;
                if let Err(e) = invalid {
                    failures.push(format!("{}: {name} (invalid): {e}", op.label()));
                }
            }
        }
    });

    // Credentials: none, a token that is not one, a token with too few
    // scopes, a session without its CSRF token. Every answer is documented.
    let narrow = {
        let (id, secret) = db
            .registry
            .create_client(
                &FUCHU.parse().unwrap(),
                "narrow",
                "narrow:events:read",
                &Actor::system("setup"),
            )
            .await
            .unwrap();
        let grant = db.registry.issue_token(&id, &secret, None).await.unwrap();
        vec![(
            "authorization".to_string(),
            format!("Bearer {}", grant.access_token),
        )]
    };
    let no_csrf: Vec<(String, String)> = platform
        .iter()
        .filter(|(k, _)| k != "x-csrf-token")
        .cloned()
        .collect();
    for op in &ops {
        let mut variants: Vec<(&str, Vec<(String, String)>)> = vec![
            ("no credential", vec![]),
            (
                "an unknown token",
                vec![("authorization".into(), "Bearer not-a-token".into())],
            ),
            ("the platform operator", platform.clone()),
            ("a session without its CSRF token", no_csrf.clone()),
        ];
        if op.security.iter().any(|s| s == "bearer") {
            variants.push(("a token with another scope", narrow.clone()));
        }
        for (what, headers) in variants {
            let a = send(&router, request(op, None, &headers)).await;
            if let Err(e) = documented(&doc, op, &a) {
                failures.push(format!("{}: {what}: {e}", op.label()));
            }
            if headers.is_empty() && !op.anonymous && a.status != 401 {
                failures.push(format!("{}: {what}: {} not 401", op.label(), a.status));
            }
        }
        // Bodies that are not the JSON asked for.
        if matches!(&op.body, Some((ct, _)) if ct == "application/json") {
            let headers = client.headers_for(op);
            let mut bad: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
                ("no content type", None, b"{}".to_vec()),
                ("not JSON", Some("application/json"), b"{not json".to_vec()),
                (
                    "JSON of another shape",
                    Some("application/json"),
                    b"[1]".to_vec(),
                ),
            ];
            let mut big = b"{\"x\":\"".to_vec();
            big.resize(3 << 20, b'a');
            big.extend_from_slice(b"\"}");
            bad.push(("a body over 2 MB", Some("application/json"), big));
            for (what, ct, bytes) in bad {
                let mut req = request(op, None, &headers);
                req.headers_mut().remove("content-type");
                if let Some(ct) = ct {
                    req.headers_mut()
                        .insert("content-type", ct.parse().expect("header"));
                }
                *req.body_mut() = Body::from(bytes);
                let a = send(&router, req).await;
                if let Err(e) = documented(&doc, op, &a) {
                    failures.push(format!("{}: {what}: {e}", op.label()));
                }
                if !(400..500).contains(&a.status) {
                    failures.push(format!("{}: {what}: {}", op.label(), a.status));
                }
            }
        }
    }
    println!(
        "contract: {} operations, {} inputs, {} valid and {} invalid values",
        ops.len(),
        ops.iter().map(|o| o.inputs.len()).sum::<usize>(),
        checked.0,
        checked.1
    );
    assert!(
        failures.is_empty(),
        "{} contract failures ({} valid, {} invalid values tried):\n{}",
        failures.len(),
        checked.0,
        checked.1,
        failures.join("\n")
    );
}

/// The identifier patterns the document states agree with the parsers on
/// every character: before the value, after it, and in place of a digit.
#[test]
fn identifier_patterns_agree_with_the_parsers_on_every_character() {
    use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};
    let doc: Value = serde_json::from_str(&machi::api::openapi_json()).expect("document");
    let schemas = &doc["components"]["schemas"];
    type Parser = fn(&str) -> bool;
    // (schema, the value around which `c` goes: before, after, and as its
    // last digit; for 13206 the check digit is 3 or ３).
    let cases: [(&str, &str, Parser); 3] = [
        ("MunicipalityCode", "132063", |s| {
            s.parse::<MunicipalityCode>().is_ok()
        }),
        ("AddresseeNumber", "12", |s| {
            s.parse::<AddresseeNumber>().is_ok()
        }),
        ("HouseholdNumber", "12", |s| {
            s.parse::<HouseholdNumber>().is_ok()
        }),
    ];
    let disagreements: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|&(name, value, parses)| {
                let schema = &schemas[name];
                scope.spawn(move || {
                    let pattern = regex::Regex::new(schema["pattern"].as_str().expect("pattern"))
                        .expect("a pattern the regex crate reads");
                    let municipality = schema["format"] == "municipality-code";
                    let head = &value[..value.len() - 1];
                    let mut found = Vec::new();
                    let mut s = String::new();
                    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
                        for form in 0..3 {
                            s.clear();
                            match form {
                                0 => {
                                    s.push(c);
                                    s.push_str(value);
                                }
                                1 => {
                                    s.push_str(value);
                                    s.push(c);
                                }
                                _ => {
                                    s.push_str(head);
                                    s.push(c);
                                }
                            }
                            let by_doc = pattern.is_match(&s)
                                && (!municipality || with_check_digit(&s, 0) == s);
                            if by_doc != parses(&s) {
                                found.push(format!("{name} {s:?}: document says {by_doc}"));
                            }
                        }
                    }
                    found
                })
            })
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("thread"))
            .collect()
    });
    assert!(
        disagreements.is_empty(),
        "{} disagreements, e.g. {:?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(10)]
    );
}
