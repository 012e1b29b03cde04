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
}

/// An OAuth2 error (RFC 6749 §5.2), with machi's bilingual message.
#[derive(Serialize, ToSchema)]
pub struct TokenError {
    #[schema(example = "invalid_client")]
    error: String,
    error_description: String,
    message_ja: String,
}

fn token_error(status: StatusCode, error: &str, en: &str, ja: &str) -> Response {
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
/// Wrong credentials are throttled per address, in total, and per client and
/// address (429 with `Retry-After`); a stranger's failures never lock the
/// client out at its own address, and asking for a scope not granted is
/// not counted as a failure.
#[utoipa::path(post, path = "/oauth/token", tag = "platform", security(()),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The access token.", body = TokenGrant),
              (status = 400, description = "invalid_request (the body is not a form with grant_type), unsupported_grant_type, or invalid_scope.", body = TokenError),
              (status = 401, description = "invalid_client: no client credentials, an unknown client or a wrong secret (with WWW-Authenticate).", body = TokenError),
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
    let (id, secret) = match (
        basic_credentials(&headers),
        req.client_id,
        req.client_secret,
    ) {
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
    match s
        .registry
        .issue_token_from(source, &id, &secret, req.scope.as_deref())
        .await
    {
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
