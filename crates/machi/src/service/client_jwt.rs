//! `client_secret_jwt` client authentication at the token endpoint
//! (RFC 7523 §2.2, OpenID Connect Core §9; the common-functions standard
//! 共通機能標準仕様書 names it for its REST API): instead of sending its
//! secret, a client sends `client_assertion_type =
//! urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a
//! `client_assertion`: a JWT signed with HS256 keyed by its client secret,
//! with `iss` = `sub` = its client id, `aud` = the token endpoint's URL, a
//! short `exp`, `iat` and a `jti` used once.
//!
//! The JWT is parsed and its signature checked by `jsonwebtoken`, with a
//! crypto provider of ours that knows HS256 only (HMAC-SHA256 from the
//! `hmac` and `sha2` crates machi already uses): RSA, elliptic curves and
//! EdDSA are never built, and any other `alg` (`none`, `RS256`, `HS512`…)
//! is refused before a key is touched.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result as JwtResult};
use jsonwebtoken::signature::{Error as SigError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::Sha256;

use super::ServiceError;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live (`exp` − now, and `exp` − `iat`).
pub const MAX_ASSERTION_SECONDS: i64 = 300;
/// Clock difference tolerated between the client and the server.
pub const LEEWAY_SECONDS: i64 = 30;

/// Where a client's sealed secret is bound (the `context` of the seal).
pub fn seal_context(client_id: &str) -> String {
    format!("api-client:{client_id}")
}

struct Hs256Signer(Hmac<Sha256>);
struct Hs256Verifier(Hmac<Sha256>);

impl Signer<Vec<u8>> for Hs256Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SigError> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl JwtSigner for Hs256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SigError> {
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant-time comparison (hmac's verify_slice).
        mac.verify_slice(signature).map_err(|_| SigError::new())
    }
}

impl JwtVerifier for Hs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn hmac_of(key: &[u8]) -> JwtResult<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| ErrorKind::InvalidKeyFormat.into())
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    if *alg != Algorithm::HS256 || key.family() != AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Hs256Signer(hmac_of(key.as_bytes())?)))
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::HS256 || key.family() != AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Hs256Verifier(hmac_of(key.try_get_as_bytes()?)?)))
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    // No JWKs: machi never builds or reads one.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the HS256-only provider for this process (again: harmless).
pub fn install() {
    let _ = PROVIDER.install_default();
}

/// The claims of a client assertion.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    /// One audience or several (RFC 7519 §4.1.3).
    pub aud: serde_json::Value,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

/// Signs an assertion (what a client does; used by the demo, the tests and
/// `machi bench-*`).
pub fn sign(claims: &AssertionClaims, secret: &str) -> Result<String, ServiceError> {
    install();
    let task = |e: jsonwebtoken::errors::Error| {
        ServiceError::Store(crate::store::StoreError::Task(format!("JWT: {e}")))
    };
    let key = EncodingKey::from_secret(secret.as_bytes()).map_err(task)?;
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), claims, &key).map_err(task)
}

/// Why an assertion was refused (all are `invalid_client`, counted by the
/// throttle like a wrong secret).
fn refusal(code: &'static str, ja: &str, en: &str) -> ServiceError {
    ServiceError::Invalid {
        field: "client_assertion".into(),
        code,
        message_ja: ja.into(),
        message_en: en.into(),
    }
}

pub fn malformed() -> ServiceError {
    refusal(
        "assertion_malformed",
        "client_assertion が JWT（ヘッダー.クレーム.署名）として読めません。",
        "client_assertion is not a readable JWT (header.claims.signature)",
    )
}

pub fn wrong_algorithm() -> ServiceError {
    refusal(
        "assertion_algorithm",
        "client_assertion は HS256（クライアントシークレットによる HMAC-SHA256）で署名してください。none や RS256 などは受け付けません。",
        "client_assertion must be signed with HS256 (HMAC-SHA256 keyed by the client secret); none, RS256 and others are refused",
    )
}

pub fn bad_signature() -> ServiceError {
    refusal(
        "assertion_signature",
        "client_assertion の署名を検証できません（クライアントIDまたはシークレットが正しくありません）。",
        "the client_assertion's signature does not verify (unknown client or wrong secret)",
    )
}

pub fn no_sealed_secret() -> ServiceError {
    refusal(
        "assertion_unavailable",
        "このクライアントのシークレットは client_secret_jwt に使えません（旧方式で保存）。シークレットを再発行してください。",
        "this client's secret was stored before client_secret_jwt existed; rotate the secret to use it",
    )
}

/// The `alg` named in a JWT's header, if the header is readable JSON.
fn raw_alg(assertion: &str) -> Option<String> {
    use base64::Engine as _;
    let head = assertion.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(v.get("alg")?.as_str().unwrap_or("").to_string())
}

/// Refuses any assertion whose header names another algorithm than HS256
/// (`none`, `RS256`, `HS512`…), before a key is touched.
pub fn check_algorithm(assertion: &str) -> Result<(), ServiceError> {
    // The header's `alg` as written: "none" is no algorithm jsonwebtoken
    // knows, and must read as a wrong algorithm, not as garbage.
    let alg = raw_alg(assertion).ok_or_else(malformed)?;
    if alg != "HS256" {
        return Err(wrong_algorithm());
    }
    install();
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| malformed())?;
    if header.alg != Algorithm::HS256 {
        return Err(wrong_algorithm());
    }
    Ok(())
}

/// Reads the `iss` of an assertion without checking anything (to find the
/// client whose secret checks it, and whose failures are counted).
pub fn issuer_of(assertion: &str) -> Result<String, ServiceError> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let iss: Iss =
        jsonwebtoken::dangerous::insecure_decode_claims(assertion).map_err(|_| malformed())?;
    iss.iss.filter(|s| !s.is_empty()).ok_or_else(|| {
        refusal(
            "assertion_claims",
            "client_assertion に iss（クライアントID）がありません。",
            "the client_assertion has no iss (the client id)",
        )
    })
}

/// Checks an assertion's signature with `secret` and its claims against
/// `client_id`, `audience` and `now` (seconds, the registry's clock).
/// Returns its claims; the caller remembers the `jti`.
pub fn verify(
    assertion: &str,
    secret: &[u8],
    client_id: &str,
    audience: &str,
    now: i64,
) -> Result<AssertionClaims, ServiceError> {
    install();
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.algorithms = vec![Algorithm::HS256];
    // Times are checked below on the registry's clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims = ["exp", "iss", "sub", "aud"]
        .into_iter()
        .map(String::from)
        .collect();
    let key = DecodingKey::from_secret(secret).map_err(|_| bad_signature())?;
    let data = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v).map_err(|e| match e
        .kind()
    {
        ErrorKind::InvalidSignature => bad_signature(),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => wrong_algorithm(),
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => refusal(
            "assertion_claims",
            "client_assertion には iss・sub・aud・exp・iat・jti がすべて必要です。",
            "the client_assertion needs all of iss, sub, aud, exp, iat and jti",
        ),
        _ => malformed(),
    })?;
    let c = data.claims;
    if c.iss != client_id || c.sub != client_id {
        return Err(refusal(
            "assertion_subject",
            "client_assertion の iss と sub はどちらもクライアントIDにしてください。",
            "the client_assertion's iss and sub must both be the client id",
        ));
    }
    let auds: Vec<&str> = match &c.aud {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    };
    let trim = |s: &str| s.trim_end_matches('/').to_string();
    if !auds.iter().any(|a| trim(a) == trim(audience)) {
        return Err(ServiceError::Invalid {
            field: "client_assertion".into(),
            code: "assertion_audience",
            message_ja: format!(
                "client_assertion の aud はトークンエンドポイントの URL（{audience}）にしてください。"
            ),
            message_en: format!(
                "the client_assertion's aud must be the token endpoint's URL ({audience})"
            ),
        });
    }
    if c.exp + LEEWAY_SECONDS < now {
        return Err(refusal(
            "assertion_expired",
            "client_assertion の有効期限（exp）が切れています。新しく作成してください。",
            "the client_assertion has expired (exp); make a new one",
        ));
    }
    if c.exp > now + MAX_ASSERTION_SECONDS + LEEWAY_SECONDS
        || c.iat > now + LEEWAY_SECONDS
        || c.exp - c.iat > MAX_ASSERTION_SECONDS
        || c.exp < c.iat
    {
        return Err(ServiceError::Invalid {
            field: "client_assertion".into(),
            code: "assertion_lifetime",
            message_ja: format!(
                "client_assertion の有効期間は発行（iat）から {MAX_ASSERTION_SECONDS} 秒以内にし、iat は現在時刻より後にしないでください。"
            ),
            message_en: format!(
                "a client_assertion may live at most {MAX_ASSERTION_SECONDS} s from its iat, and iat may not be in the future"
            ),
        });
    }
    if c.jti.is_empty() || c.jti.len() > 200 {
        return Err(refusal(
            "assertion_claims",
            "client_assertion の jti は 1〜200 文字にしてください。",
            "the client_assertion's jti must be 1 to 200 characters",
        ));
    }
    Ok(c)
}

pub fn replayed() -> ServiceError {
    refusal(
        "assertion_replayed",
        "この client_assertion（jti）は使用済みです。毎回新しい jti で作成してください。",
        "this client_assertion (its jti) was used already; make a new one with a fresh jti each time",
    )
}
