//! What every response gets on its way out, and what a request the
//! extractors cannot read is told.
//!
//! - `Referrer-Policy: no-referrer` and `X-Content-Type-Options: nosniff`
//!   on every response;
//! - `Cache-Control: no-store` on every response but the stylesheet,
//!   `/healthz` and `/openapi.json`: the API and the pages carry personal
//!   data, and one rule for all of them cannot be forgotten on a new route;
//! - an error body never carries a parser's own words (serde's "line 1
//!   column 5", "recursion limit exceeded", "expected ..."): rejections
//!   map to fixed bilingual messages with a stable `code` and, where the
//!   parser knows it, the `field`; and any plain-text 4xx an extractor
//!   still answers with is replaced by such a message (JSON for the API,
//!   the error page for the UI).

use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Responses that carry no personal data and may be cached.
fn cacheable(path: &str) -> bool {
    path.starts_with("/static/") || path == "/healthz" || path == "/openapi.json"
}

/// Paths answered with pages rather than JSON.
fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/")
        || path.starts_with("/oauth/")
        || path == "/healthz"
        || path == "/openapi.json")
}

/// The middleware: security headers on every response, and no extractor
/// text in any error body.
pub async fn secure_responses(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let lang = crate::ui::Lang::of(req.headers());
    let mut res = next.run(req).await;
    let plain_text = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if res.status().is_client_error() && plain_text {
        res = replace_rejection(res.status(), &path, lang);
    }
    let h = res.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !cacheable(&path) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The fixed message for a request an extractor refused.
fn unreadable(status: StatusCode) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "body_too_large",
            "リクエスト本文が大きすぎます（上限 2 MB）。",
            "the request body is larger than the 2 MB limit",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "リクエスト本文の形式（Content-Type）が正しくありません。",
            "the request body has the wrong Content-Type",
        ),
        _ => ApiError::new(
            status,
            "invalid_request",
            "リクエストを読み取れませんでした。内容を確認してください。",
            "the request could not be read; check it and send it again",
        ),
    }
}

fn replace_rejection(status: StatusCode, path: &str, lang: crate::ui::Lang) -> Response {
    let e = unreadable(status);
    if is_page(path) {
        crate::ui::error_page(
            lang,
            &crate::ui::UiError {
                status,
                ja: e.body.message_ja,
                en: e.body.message_en,
            },
        )
    } else {
        e.into_response()
    }
}

/// The field a deserialisation error points at, as the request spells it
/// (`persons[1].name_kana`), when it is a plain field path.
fn field_of(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let found =
            if let Some(p) = err.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
                Some((p.path().to_string(), p.inner().to_string()))
            } else {
                err.downcast_ref::<serde_path_to_error::Error<serde::de::value::Error>>()
                    .map(|p| (p.path().to_string(), p.inner().to_string()))
            };
        if let Some((path, inner)) = found {
            let mut path = if path == "." { String::new() } else { path };
            // A missing field is reported at its parent; name the field.
            if let Some(name) = inner
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(name);
            }
            let plain = !path.is_empty()
                && path.len() <= 100
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c));
            return plain.then_some(path);
        }
        cur = err.source();
    }
    None
}

/// A JSON body that could not be read, as the OpenAPI document states it:
/// `invalid_json` with 400 when it is not JSON (or nests deeper than the
/// parser goes), 415 without the JSON content type, 422 when it is JSON of
/// the wrong shape (`field` names the part at fault when the parser knows
/// it); `body_too_large` with 413 over the 2 MB limit.
pub fn json_error(e: JsonRejection) -> ApiError {
    match &e {
        JsonRejection::JsonDataError(_) => match field_of(&e) {
            Some(field) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
                format!("項目「{field}」がないか、値の種類が正しくありません。"),
                format!("field {field} is missing or has a value of the wrong kind"),
            )
            .with_field(field),
            None => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
                "リクエスト本文の項目の構成が正しくありません。",
                "the request body does not have the fields this operation takes",
            ),
        },
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(
            "invalid_json",
            "リクエスト本文が正しい JSON ではありません。",
            "the request body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_json",
            "リクエスト本文は Content-Type: application/json で送ってください。",
            "send the request body with Content-Type: application/json",
        ),
        other => unreadable(other.status()),
    }
}

/// Query parameters that could not be read.
pub fn query_error(e: QueryRejection) -> ApiError {
    match field_of(&e) {
        Some(field) => ApiError::bad_request(
            "invalid_query",
            format!("クエリパラメータ「{field}」が正しくありません。"),
            format!("query parameter {field} is not valid"),
        )
        .with_field(field),
        None => ApiError::bad_request(
            "invalid_query",
            "クエリパラメータが正しくありません。",
            "the query parameters are not valid",
        ),
    }
}

/// A URL path that could not be read.
pub fn path_error(_: PathRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_path",
        "URL のパスが正しくありません。",
        "the URL path is not valid",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{FromRequest, Query};
    use axum::http::Uri;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Person {
        name: String,
        age: u32,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        persons: Vec<Person>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Counts {
        counts: std::collections::HashMap<String, u32>,
    }

    async fn parse<T: serde::de::DeserializeOwned>(body: &str) -> ApiError {
        let req = Request::builder()
            .method("POST")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        match axum::Json::<T>::from_request(req, &()).await {
            Ok(_) => panic!("{body} was accepted"),
            Err(e) => json_error(e),
        }
    }

    async fn json(body: &str) -> ApiError {
        parse::<Body>(body).await
    }

    fn no_parser_text(e: &ApiError) {
        let text = format!("{} {}", e.body.message_en, e.body.message_ja);
        for w in [
            "line",
            "column",
            "expected",
            "recursion",
            "invalid type",
            "`",
        ] {
            assert!(!text.contains(w), "{w} in {text}");
        }
    }

    #[tokio::test]
    async fn json_errors_name_the_field_and_nothing_of_the_parser() {
        let e =
            json(r#"{"persons": [{"name": "x", "age": 1}, {"name": "y", "age": "old"}]}"#).await;
        assert_eq!(
            (e.status, e.body.code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_json")
        );
        assert_eq!(e.body.field.as_deref(), Some("persons[1].age"));
        no_parser_text(&e);
        let e = json(r#"{"persons": [{"name": "x"}]}"#).await;
        assert_eq!(e.body.field.as_deref(), Some("persons[0].age"));
        no_parser_text(&e);
        let e = json(r#"{"persons": [{"name": "x", "#).await;
        assert_eq!(
            (e.status, e.body.code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        no_parser_text(&e);
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        let e = parse::<serde_json::Value>(&deep).await;
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        no_parser_text(&e);
        // A key the client made up is not echoed as a field.
        let e = parse::<Counts>(r#"{"counts": {"<script>": "x"}}"#).await;
        assert_eq!(e.body.field, None, "{:?}", e.body);
        assert_eq!(e.body.code, "invalid_json");
        no_parser_text(&e);
    }

    #[test]
    fn query_errors_name_the_parameter() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Q {
            limit: Option<u32>,
        }
        let uri: Uri = "/x?limit=ten".parse().unwrap();
        let e = query_error(Query::<Q>::try_from_uri(&uri).unwrap_err());
        assert_eq!(e.body.field.as_deref(), Some("limit"));
        no_parser_text(&e);
    }
}
