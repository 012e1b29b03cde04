//! Who is calling the API: a bearer access token (OAuth2 client
//! credentials, `POST /oauth/token`), or a staff session cookie with its CSRF
//! token in `X-CSRF-Token` for anything but GET/HEAD.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::source::ClientAddr;
use crate::service::auth::TokenGrant;
use crate::service::{Caller, ServiceError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "machi_session";

/// An authenticated caller; rejects with 401 otherwise.
pub struct Auth(pub Caller);

/// A cookie's value from the request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty() && t.len() <= 128)
}

/// Resolves the caller of a request, if any credential is valid.
pub async fn caller_of(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ServiceError> {
    if let Some(token) = bearer(headers) {
        return state.registry.token_caller(token).await;
    }
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(caller) = state.registry.session_caller(&token).await? else {
        return Ok(None);
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Caller::Staff { csrf, .. } = &caller else {
            return Ok(None);
        };
        if !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
            return Err(ServiceError::Forbidden);
        }
    }
    Ok(Some(caller))
}

/// Equality that takes as long whatever the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match caller_of(state, &parts.method, &parts.headers).await? {
            Some(c) => Ok(Auth(c)),
            None => Err(ServiceError::Unauthenticated.into()),
        }
    }
}

/// The token request (RFC 6749 §4.4.2), form-encoded. The client may send
/// its id and secret here or by HTTP Basic authentication.
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(example = "client_credentials")]
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// Space-separated subset of the client's scopes; all of them if absent.
    #[schema(example = "jidou_teate:residents:read")]
    scope: Option<String>,
    /// `client_secret_jwt` (RFC 7523 §2.2): exactly
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, with
    /// `client_assertion` and no secret.
    #[schema(example = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")]
    client_assertion_type: Option<String>,
    /// A JWT signed with HS256 keyed by the client secret: `iss` = `sub` =
    /// the client id, `aud` = this endpoint's URL, `exp` at most 300 s after
    /// `iat`, and a `jti` never used before.
    client_assertion: Option<String>,
}

/// An OAuth2 error (RFC 6749 §5.2), with machi's bilingual message.
#[derive(Serialize, ToSchema)]
pub struct TokenError {
    #[schema(example = "invalid_client")]
    error: String,
    error_description: String,
    message_ja: String,
    /// Why a `client_assertion` was refused: `assertion_malformed`,
    /// `assertion_algorithm`, `assertion_signature`, `assertion_claims`,
    /// `assertion_subject`, `assertion_audience`, `assertion_expired`,
    /// `assertion_lifetime`, `assertion_replayed` or `assertion_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "assertion_expired")]
    reason: Option<String>,
}

fn token_error(status: StatusCode, error: &str, en: &str, ja: &str) -> Response {
    token_error_for(status, error, en, ja, None)
}

fn token_error_for(
    status: StatusCode,
    error: &str,
    en: &str,
    ja: &str,
    reason: Option<&str>,
) -> Response {
    let mut res = (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(TokenError {
            error: error.into(),
            error_description: en.into(),
            message_ja: ja.into(),
            reason: reason.map(str::to_string),
        }),
    )
        .into_response();
    // RFC 6749 §5.2: a 401 names the scheme the client may authenticate with.
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"machi\""),
        );
    }
    res
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// OAuth2 token endpoint, client credentials grant only. Tokens live 10
/// minutes; there are no refresh tokens: a client asks again.
///
/// A client authenticates with its id and secret (HTTP Basic,
/// `client_secret_basic`, or form fields, `client_secret_post`) or with a
/// JWT assertion signed with its secret (`client_secret_jwt`, RFC 7523
/// §2.2): `client_assertion_type` and `client_assertion`. The assertion's
/// `aud` is this endpoint's URL (`MACHI_PUBLIC_URL` + `/oauth/token`); each
/// `jti` is accepted once.
///
/// Wrong credentials are throttled per address, in total, and per client and
/// address (429 with `Retry-After`); a stranger's failures never lock the
/// client out at its own address, and asking for a scope not granted is
/// not counted as a failure.
#[utoipa::path(post, path = "/oauth/token", tag = "platform", security(()),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The access token.", body = TokenGrant),
              (status = 400, description = "invalid_request (the body is not a form with grant_type; two client authentication methods at once; a client_assertion without its type or of another type), unsupported_grant_type, or invalid_scope.", body = TokenError),
              (status = 401, description = "invalid_client: no client credentials, an unknown client or a wrong secret (with WWW-Authenticate); for a client_assertion, `reason` says what was wrong with it.", body = TokenError),
              (status = 429, description = "invalid_client: too many failed attempts from this address (or in total, or for this client from this address); the Retry-After header gives the seconds to wait.", body = TokenError),
              (status = 500, description = "internal_error: the database failed; no token was issued.", body = super::error::ErrorBody)))]
pub async fn token(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    form: Result<axum::Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(req)) = form else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded with grant_type",
            "本文は grant_type を含む application/x-www-form-urlencoded で送ってください。",
        );
    };
    if req.grant_type != "client_credentials" {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only the client_credentials grant is supported",
            "grant_type は client_credentials のみ使えます。",
        );
    }
    let basic = basic_credentials(&headers);
    let outcome = if req.client_assertion_type.is_some() || req.client_assertion.is_some() {
        // RFC 6749 §2.3: one authentication method per request.
        if basic.is_some() || req.client_secret.is_some() {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method: a client_assertion or a secret, not both",
                "クライアント認証は client_assertion かシークレットのどちらか一方にしてください。",
            );
        }
        let (Some(kind), Some(assertion)) = (&req.client_assertion_type, &req.client_assertion)
        else {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion and client_assertion_type go together",
                "client_assertion と client_assertion_type は両方指定してください。",
            );
        };
        if kind != crate::service::client_jwt::ASSERTION_TYPE {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion_type は urn:ietf:params:oauth:client-assertion-type:jwt-bearer にしてください。",
            );
        }
        let audience = format!("{}/oauth/token", crate::ui::public_url(&headers));
        s.registry
            .issue_token_by_assertion(
                source,
                assertion,
                req.client_id.as_deref(),
                &audience,
                req.scope.as_deref(),
            )
            .await
    } else {
        let (id, secret) = match (basic, req.client_id, req.client_secret) {
            (Some(c), _, _) => c,
            (None, Some(i), Some(s)) => (i, s),
            _ => {
                return token_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication is missing",
                    "クライアント認証情報がありません。",
                );
            }
        };
        s.registry
            .issue_token_from(source, &id, &secret, req.scope.as_deref())
            .await
    };
    match outcome {
        Ok(grant) => (
            StatusCode::OK,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            Json(grant),
        )
            .into_response(),
        Err(ServiceError::LoginFailed) => token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
            "クライアントIDまたはシークレットが正しくありません。",
        ),
        Err(ServiceError::TooManyAttempts { retry_after }) => {
            let (ja, en) = crate::service::throttle::try_again(retry_after);
            let mut res = token_error(StatusCode::TOO_MANY_REQUESTS, "invalid_client", &en, &ja);
            res.headers_mut()
                .insert(header::RETRY_AFTER, retry_after.into());
            res
        }
        Err(ServiceError::Invalid {
            field,
            code,
            message_en,
            message_ja,
        }) if field == "client_assertion" => token_error_for(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            &message_en,
            &message_ja,
            Some(code),
        ),
        Err(ServiceError::Invalid {
            message_en,
            message_ja,
            ..
        }) => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &message_en,
            &message_ja,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}
