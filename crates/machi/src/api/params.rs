//! The API's parameters as the OpenAPI document states them: exactly what
//! the handlers accept, no more and no less. The patterns follow the parsers
//! in `machi_domain::ids` (white space trimmed as `str::trim` does,
//! full-width digits read as digits); a property test
//! (`tests/it/openapi.rs`) drives the router with values generated from
//! this document and fails when the two disagree.
//!
//! Conventions the document states once and every handler keeps:
//! * an optional query parameter that is empty or blank is the same as
//!   leaving it out (`x-blank-is-absent: true`), as HTML forms send them;
//! * a value that does not match its schema is refused with 400 and an
//!   [`super::error::ErrorBody`] whose `field` names the parameter.

use std::borrow::Cow;

use axum::http::StatusCode;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber};
use serde_json::{Value, json};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Ref, RefOr, Required, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::error::ApiError;

/// The characters `str::trim` removes (Unicode `White_Space`), as a regex
/// class both ECMA-262 and Rust's `regex` read the same way.
pub const WS: &str = r"[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// One digit as the identifier parsers read it: ASCII or full-width.
const DIGIT: &str = "[0-9０-９]";

/// The extension marking an optional query parameter whose empty or blank
/// value means "not given".
pub const BLANK_IS_ABSENT: &str = "x-blank-is-absent";

fn trimmed(body: &str) -> String {
    format!("^{WS}*{body}{WS}*$")
}

fn string_schema(
    format: Option<&str>,
    pattern: Option<String>,
    description: &str,
    example: Value,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format.map(|f| SchemaFormat::Custom(f.to_string())))
        .pattern(pattern)
        .description(Some(description))
        .examples([example])
        .into()
}

/// Implements `ToSchema` for a marker type documenting one parameter type.
macro_rules! doc_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

doc_schema!(
    /// 全国地方公共団体コード.
    MunicipalityCodeSchema,
    "MunicipalityCode",
    string_schema(
        Some("municipality-code"),
        Some(trimmed(&format!("{DIGIT}{{6}}"))),
        "全国地方公共団体コード (団体コード): six digits, the last the check digit of the \
         first five (weights 6, 5, 4, 3, 2; check digit = (11 − sum mod 11) mod 10); \
         format `municipality-code` means the check digit must be right. Full-width \
         digits (０-９) are read as digits and surrounding white space is ignored. A \
         well-formed code of no tenant, or of another tenant, is 404 tenant_not_found.",
        json!("132063"),
    )
);

doc_schema!(
    /// 宛名番号.
    AddresseeNumberSchema,
    "AddresseeNumber",
    string_schema(
        None,
        Some(trimmed(&format!("{DIGIT}{{1,15}}"))),
        "宛名番号 (j130): 1 to 15 digits. Numbers machi allocates are ten digits, a \
         nine-digit serial and its M11W2-7 check digit; numbers allocated earlier keep \
         their form, so the check digit is not required. Full-width digits are read as \
         digits and surrounding white space is ignored.",
        json!(example_addressee()),
    )
);

doc_schema!(
    /// 世帯番号.
    HouseholdNumberSchema,
    "HouseholdNumber",
    string_schema(
        None,
        Some(trimmed(&format!("{DIGIT}{{1,15}}"))),
        "世帯番号 (j130): 1 to 15 digits, like 宛名番号 (the check digit is not required). \
         Full-width digits are read as digits and surrounding white space is ignored.",
        json!(example_household()),
    )
);

doc_schema!(
    /// A calendar date in 西暦 or 和暦.
    CalendarDateSchema,
    "CalendarDate",
    string_schema(
        Some("jp-calendar-date"),
        None,
        "A calendar date (暦上日, j80) in 西暦 (`2024-04-01`, `2024年4月1日`) or 和暦 \
         (`令和6年4月1日`, `R6.4.1`), years 1 to 9999; format `jp-calendar-date`. Full-width \
         characters and white space inside are read as in a form. A day that is not on \
         the calendar (2月30日) or an unknown date (不詳) is refused.",
        json!("令和6年4月1日"),
    )
);

doc_schema!(
    /// A date as the registry keeps one: calendar, non-calendar or unknown.
    RegistryDateSchema,
    "RegistryDate",
    string_schema(
        Some("jp-date"),
        None,
        "A 年月日 as j80 keeps one, in 西暦 or 和暦: a calendar date (`1989-01-08`, \
         `平成元年1月8日`), a date not on the calendar (`令和3年2月29日`) or one of the \
         fourteen 不詳日 patterns (`令和3年4月上旬`, `2001年頃`, `令和3年 月日不詳`, \
         `年月日不詳`); format `jp-date`.",
        json!("平成元年1月8日"),
    )
);

doc_schema!(
    /// An opaque page cursor.
    PageCursorSchema,
    "PageCursor",
    string_schema(
        Some("page-cursor"),
        Some(trimmed("(?:[0-9A-Fa-f]{2})+")),
        "Where the next page starts: pass the `next` of the previous page unchanged \
         (format `page-cursor`: opaque). It is hexadecimal; one that does not decode to \
         a position of this list is 400 invalid_cursor.",
        json!("31"),
    )
);

/// The first 宛名番号 machi allocates (serial 1 with its check digit).
pub fn example_addressee() -> String {
    AddresseeNumber::from_serial(1)
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// The first 世帯番号 machi allocates.
pub fn example_household() -> String {
    HouseholdNumber::from_serial(1)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

fn integer(min: Option<i64>, max: Option<i64>, default: Option<i64>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(
            utoipa::openapi::schema::KnownFormat::Int64,
        )))
        .minimum(min)
        .maximum(max)
        .default(default.map(Value::from))
        .into()
}

fn boolean() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .default(Some(Value::Bool(false)))
        .into()
}

fn free_text() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

fn timestamp() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(
            utoipa::openapi::schema::KnownFormat::DateTime,
        )))
        .into()
}

fn path(name: &str, schema: RefOr<Schema>, description: &str, example: Value) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .example(Some(example))
        .build()
}

fn query(name: &str, schema: RefOr<Schema>, description: &str, example: Value) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .example(Some(example))
        .extensions(Some(
            ExtensionsBuilder::new().add(BLANK_IS_ABSENT, true).build(),
        ))
        .build()
}

fn tenant_param() -> Parameter {
    path(
        "municipality_code",
        reference::<MunicipalityCodeSchema>(),
        "団体コード of the tenant: the caller's own.",
        json!("132063"),
    )
}

/// Implements `IntoParams` for a marker type from a list of parameters.
macro_rules! doc_params {
    ($(#[$doc:meta])* $ty:ident, [$($param:expr),* $(,)?]) => {
        $(#[$doc])*
        pub struct $ty;

        impl IntoParams for $ty {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![$($param),*]
            }
        }
    };
}

doc_params!(
    /// `{municipality_code}`
    TenantPath,
    [tenant_param()]
);

doc_params!(
    /// `{municipality_code}/residents/{addressee_number}`
    ResidentPath,
    [
        tenant_param(),
        path(
            "addressee_number",
            reference::<AddresseeNumberSchema>(),
            "宛名番号 of the person.",
            json!(example_addressee()),
        ),
    ]
);

doc_params!(
    /// `{municipality_code}/households/{household_number}`
    HouseholdPath,
    [
        tenant_param(),
        path(
            "household_number",
            reference::<HouseholdNumberSchema>(),
            "世帯番号 of the household.",
            json!(example_household()),
        ),
    ]
);

doc_params!(
    /// `{municipality_code}/changes/{change_id}`
    ChangePath,
    [
        tenant_param(),
        path(
            "change_id",
            integer(None, None, None),
            "The change's id (`change_id` of a change result), decimal digits with an \
             optional leading minus sign. An id of no change of this tenant is 404.",
            json!(1),
        ),
    ]
);

doc_params!(
    /// `{municipality_code}/provisional-changes/{pending_id}`
    ProvisionalPath,
    [
        tenant_param(),
        path(
            "pending_id",
            integer(None, None, None),
            "The provisional change's number (`pending_id` of a 202 answer), decimal \
             digits with an optional leading minus sign. A number of no provisional \
             change of this tenant, or of one the caller neither entered nor may \
             approve, is 404.",
            json!(1),
        ),
    ]
);

fn as_of_param() -> Parameter {
    query(
        "as_of",
        reference::<CalendarDateSchema>(),
        "The state on this effective date (異動日).",
        json!("令和6年4月1日"),
    )
}

fn recorded_as_of_param() -> Parameter {
    query(
        "recorded_as_of",
        timestamp(),
        "The state as the registry recorded it at this instant (RFC 3339, e.g. \
         `2026-11-22T10:00:00+09:00`); surrounding white space is ignored.",
        json!("2099-01-01T00:00:00+09:00"),
    )
}

doc_params!(
    /// `{municipality_code}/subscriptions/{subscription_id}`
    SubscriptionPath,
    [
        tenant_param(),
        path(
            "subscription_id",
            integer(None, None, None),
            "The subscription's id (`subscription_id` of a subscription), decimal digits. \
             An id of no subscription of the calling client is 404.",
            json!(1),
        ),
    ]
);

doc_params!(
    /// `{municipality_code}/subscriptions/{subscription_id}` to delete (its
    /// example is another subscription than the other operations' one).
    SubscriptionDeletePath,
    [
        tenant_param(),
        path(
            "subscription_id",
            integer(None, None, None),
            "The subscription's id (`subscription_id` of a subscription), decimal digits. \
             An id of no subscription of the calling client is 404.",
            json!(2),
        ),
    ]
);

doc_params!(
    /// `as_of` and `recorded_as_of`.
    AsOfParams,
    [as_of_param(), recorded_as_of_param()]
);

doc_params!(
    /// `recorded_as_of` only (history rows are the same on any effective date).
    RecordedAsOfParams,
    [recorded_as_of_param()]
);

doc_params!(
    /// A page of changes.
    PageParams,
    [
        query(
            "after",
            reference::<PageCursorSchema>(),
            "Cursor: the `next` of the previous page.",
            json!("31"),
        ),
        query(
            "limit",
            integer(Some(1), Some(200), Some(50)),
            "Page size.",
            json!(50),
        ),
    ]
);

doc_params!(
    /// Search conditions (j320–j340); at least one of `name`, `birth_date`,
    /// `address`, `addressee_number`, `household_number` is required.
    SearchConditions,
    [
        query(
            "name",
            free_text(),
            "氏名, アルファベット氏名, 通称 or フリガナ; partial match; width, かな/カナ, 濁点, \
             拗音 and common 異体字 (髙→高 …) are folded (j330).",
            json!("髙橋"),
        ),
        query(
            "birth_date",
            reference::<RegistryDateSchema>(),
            "生年月日.",
            json!("昭和64年1月7日"),
        ),
        query(
            "address",
            free_text(),
            "住所 or 方書, partial match.",
            json!("府中市"),
        ),
        query(
            "addressee_number",
            reference::<AddresseeNumberSchema>(),
            "宛名番号.",
            json!(example_addressee()),
        ),
        query(
            "household_number",
            reference::<HouseholdNumberSchema>(),
            "世帯番号.",
            json!(example_household()),
        ),
        query(
            "include_history",
            boolean(),
            "Also match past names and addresses (j340).",
            json!(true),
        ),
        query(
            "include_removed",
            boolean(),
            "Also return persons who are no longer residents (除票).",
            json!(true),
        ),
        query(
            "after",
            reference::<PageCursorSchema>(),
            "Cursor: the `next` of the previous page.",
            json!(hex::encode(example_addressee())),
        ),
        query(
            "limit",
            integer(Some(1), Some(200), Some(50)),
            "Page size.",
            json!(50),
        ),
    ]
);

doc_params!(
    /// A pull of the linkage feed.
    EventParams,
    [
        query(
            "after",
            integer(Some(0), None, Some(0)),
            "Return events with `seq` greater than this.",
            json!(0),
        ),
        query(
            "limit",
            integer(Some(1), Some(1000), Some(100)),
            "Page size.",
            json!(100),
        ),
        query(
            "type",
            event_types(),
            "Event types to return (all when absent). Repeat the parameter or separate \
             names with commas; a name ending in `.*` takes every type under that prefix \
             (`jp.machi.registry.change.*`; whole segments only, never a bare `*`). Unknown or \
             malformed types are refused (400, `invalid_event_type`).",
            json!("jp.machi.registry.change.move_in.v1"),
        ),
        query(
            "wait",
            integer(Some(0), Some(MAX_WAIT_SECONDS), Some(0)),
            "Long poll: when no event is there yet, wait up to this many seconds for the \
             first one; the answer comes as soon as one is committed.",
            json!(0),
        ),
    ]
);

/// Longest long-poll wait of the linkage feed, in seconds.
pub const MAX_WAIT_SECONDS: i64 = 30;

/// The event types machi publishes (see `service::events`).
fn event_types() -> RefOr<Schema> {
    let names: Vec<String> = crate::service::events::known_types()
        .iter()
        .map(|t| t.replace('.', "\\."))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^({})$", names.join("|"))))
        .into()
}

// ---------------------------------------------------------------------------
// Reading query values the way the document states them.

/// The value of an optional query parameter: `None` when absent, empty or blank.
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

fn bad(field: &str, code: &str, ja: String, en: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, ja, en).with_field(field)
}

/// An integer written as decimal digits with an optional leading minus.
pub fn integer_text(field: &str, s: &str) -> Result<i64, ApiError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            field,
            "invalid_integer",
            format!("{field} は整数（半角数字）で指定してください: {}", shown(s)),
            format!("{field} must be an integer: {:?}", shown(s)),
        ));
    }
    s.parse().map_err(|_| {
        bad(
            field,
            "invalid_integer",
            format!("{field} の値が大きすぎます: {}", shown(s)),
            format!("{field} is out of range: {:?}", shown(s)),
        )
    })
}

/// An optional integer query parameter within `min..=max`.
pub fn int_param(
    field: &str,
    v: &Option<String>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let Some(s) = given(v) else {
        return Ok(default);
    };
    let n = integer_text(field, s)?;
    if n < min || n > max {
        let range_ja = if max == i64::MAX {
            format!("{min}以上")
        } else {
            format!("{min}〜{max}")
        };
        let range_en = if max == i64::MAX {
            format!("at least {min}")
        } else {
            format!("from {min} to {max}")
        };
        return Err(bad(
            field,
            "out_of_range",
            format!("{field} は{range_ja}で指定してください: {n}"),
            format!("{field} must be {range_en}: {n}"),
        ));
    }
    Ok(n)
}

/// An optional boolean query parameter: `true` or `false`.
pub fn bool_param(field: &str, v: &Option<String>) -> Result<bool, ApiError> {
    match given(v) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(s) => Err(bad(
            field,
            "invalid_boolean",
            format!(
                "{field} は true または false で指定してください: {}",
                shown(s)
            ),
            format!("{field} must be true or false: {:?}", shown(s)),
        )),
    }
}

/// At most 40 characters of an offending value, for a message.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

doc_params!(
    /// `{municipality_code}/filings/{filing_id}` (申請管理).
    FilingPath,
    [
        tenant_param(),
        path(
            "filing_id",
            integer(None, None, None),
            "The filing's number in the inbox, decimal digits with an optional leading minus \
             sign. A number of no filing of this tenant is 404.",
            json!(1),
        ),
    ]
);

doc_params!(
    /// `{municipality_code}/filings/refused/{portal_id}` (取り込めなかった申請).
    RefusalPath,
    [
        tenant_param(),
        path(
            "portal_id",
            string_schema(
                None,
                None,
                "The portal's id of a filing refused on import (`id` of `GET …/filings/refused`).",
                json!("9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e"),
            ),
            "The portal's id of a quarantined filing, as `GET …/filings/refused` lists it \
             (`id`). An id of no quarantined filing of this tenant is 404.",
            json!("9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e9f2c4e0b7a1d3c5e"),
        ),
    ]
);

doc_params!(
    /// `{municipality_code}/surveys/{survey}/results` (アンケート集計).
    SurveyPath,
    [
        tenant_param(),
        path(
            "survey",
            string_schema(
                None,
                Some("^[a-z][a-z0-9_]{0,39}$".into()),
                "A survey procedure's id.",
                json!("survey_internet"),
            ),
            "A survey the tenant knows (shipped or its own). Any other id is 404.",
            json!("survey_internet"),
        ),
    ]
);

doc_params!(
    /// The inbox's filters (申請管理); each optional.
    FilingConditions,
    [
        query(
            "procedure",
            string_schema(
                None,
                Some("^[a-z][a-z0-9_]{0,39}$".into()),
                "A procedure's id: one shipped with machi (tenshutsu, juminhyo, gakudo, \
                 jidoteate, survey_internet) or one the tenant published; an id the \
                 back office has no filing of matches nothing.",
                json!("tenshutsu"),
            ),
            "Only filings of this procedure.",
            json!("tenshutsu"),
        ),
        query(
            "status",
            string_schema(
                None,
                Some(
                    "^(open|received|under_review|correction_requested|awaiting_decision|approved|rejected)$"
                        .into(),
                ),
                "A status of the inbox, or `open` (received or under review).",
                json!("open"),
            ),
            "Only filings in this status.",
            json!("open"),
        ),
        query(
            "received_from",
            reference::<CalendarDateSchema>(),
            "Received on or after this day (Japan time).",
            json!("令和8年12月1日"),
        ),
        query(
            "received_to",
            reference::<CalendarDateSchema>(),
            "Received on or before this day (Japan time).",
            json!("2026-12-31"),
        ),
        query(
            "assigned_to",
            free_text(),
            "A clerk's login, or `none` for filings nobody has taken up.",
            json!("none"),
        ),
        query(
            "signed",
            ObjectBuilder::new().schema_type(Type::Boolean).into(),
            "Only signed (`true`) or unsigned (`false`) filings.",
            json!(true),
        ),
        query(
            "filed",
            string_schema(
                None,
                Some("^(counter|portal)$".into()),
                "`counter`: filed by a clerk at the counter (書かない窓口); `portal`: filed online.",
                json!("counter"),
            ),
            "Only filings made this way.",
            json!("counter"),
        ),
        query(
            "before",
            integer(Some(1), None, None),
            "A `next` of the previous page.",
            json!(100),
        ),
    ]
);
