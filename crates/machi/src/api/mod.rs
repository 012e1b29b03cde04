//! The HTTP edge: JSON API under `/api/v1`, `/openapi.json`, `/healthz`
//! (liveness), `/readyz` (readiness), `/metrics`.
//! Handlers are thin: parse, call the service, map the answer.

pub mod auth;
pub mod edge;
pub mod error;
mod handlers;
mod hooks;
pub mod inbox;
pub mod metrics;
mod params;
pub mod source;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Registry;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "machi API",
        description = "Resident registry (住民記録) of the municipalities sharing one machi deployment. \
            Everything a tenant owns lives under /api/v1/tenants/{municipality_code}. \
            Errors are JSON: {code, message_ja, message_en, field?} (ErrorBody); `code` is stable. \
            Every parameter's schema is exactly what the server accepts: a value that does not \
            match is refused with 400 and `field` naming the parameter. An optional query \
            parameter that is empty or blank is the same as leaving it out (`x-blank-is-absent`). \
            Custom string formats: `municipality-code` (the check digit is right), \
            `jp-calendar-date` and `jp-date` (see CalendarDate and RegistryDate), \
            `page-cursor` (opaque: a `next` the API returned).",
        license(name = "Apache-2.0")
    ),
    components(schemas(
        params::MunicipalityCodeSchema,
        params::AddresseeNumberSchema,
        params::HouseholdNumberSchema,
        params::CalendarDateSchema,
        params::RegistryDateSchema,
        params::PageCursorSchema,
    )),
    // Routed by `app_with` with a state of its own; described here.
    paths(metrics::metrics),
    modifiers(&SecuritySchemes),
    tags(
        (name = "platform", description = "Health and tenants"),
        (name = "registry", description = "Residents, households, history and search"),
        (name = "changes", description = "Changes (異動) and the linkage feed"),
        (name = "linkage", description = "Webhook subscriptions: events pushed to other systems, signed per Standard Webhooks"),
        (name = "inbox", description = "申請管理: filings imported from the citizen portal (staff sessions only)"),
    )
)]
struct ApiDoc;

/// How a caller authenticates: a bearer access token from `/oauth/token`
/// (client credentials), or a staff session cookie from the sign-in page
/// with its CSRF token in `X-CSRF-Token` on anything but GET/HEAD.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from POST /oauth/token (client credentials). \
                         Its scopes name what it opens: residents (personal data), \
                         changes (read; `changes:write` to submit), events.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The value of MACHI_METRICS_TOKEN, when the server has one.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::SESSION_COOKIE,
                "A staff session from the sign-in page; on anything but GET/HEAD the \
                 session's CSRF token must be sent in X-CSRF-Token. What it opens is the \
                 staff member's role.",
            ))),
        );
    }
}

/// Every API route with its OpenAPI description: the router's own list.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
        .routes(routes!(auth::token))
        .routes(routes!(handlers::list_tenants, handlers::create_tenant))
        .routes(routes!(handlers::get_tenant))
        .routes(routes!(handlers::get_resident))
        .routes(routes!(handlers::get_resident_history))
        .routes(routes!(handlers::get_household))
        .routes(routes!(handlers::submit_change, handlers::list_changes))
        .routes(routes!(handlers::get_change))
        .routes(routes!(handlers::get_provisional_change))
        .routes(routes!(handlers::search))
        .routes(routes!(handlers::list_events))
        .routes(routes!(
            hooks::create_subscription,
            hooks::list_subscriptions
        ))
        .routes(routes!(hooks::get_subscription, hooks::delete_subscription))
        .routes(routes!(hooks::replay_subscription))
        .routes(routes!(hooks::rotate_secret))
        .routes(routes!(hooks::pause_subscription))
        .routes(routes!(hooks::resume_subscription))
        .routes(routes!(hooks::create_extract))
        .routes(routes!(inbox::list_filings))
        .routes(routes!(inbox::list_refused_filings))
        .routes(routes!(inbox::list_deferred_filings))
        .routes(routes!(inbox::reimport_refused_filing))
        .routes(routes!(inbox::get_filing))
        .routes(routes!(inbox::filing_candidates))
        .routes(routes!(inbox::assign_filing))
        .routes(routes!(inbox::match_filing))
        .routes(routes!(inbox::request_correction))
        .routes(routes!(inbox::reject_filing))
        .routes(routes!(inbox::approve_filing))
        .routes(routes!(inbox::survey_results))
        .routes(routes!(inbox::list_procedure_definitions))
        .routes(routes!(inbox::decide_procedure_definition))
}

/// The router and the OpenAPI document it was built from.
pub fn router_and_doc(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = routes().split_for_parts();
    (router.with_state(state), doc)
}

/// Settings of the HTTP application beyond its state.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// The bearer token `/metrics` asks for (`MACHI_METRICS_TOKEN`); none:
    /// `/metrics` is open.
    pub metrics_token: Option<String>,
    /// The reverse proxies whose `X-Forwarded-For` is believed
    /// (`MACHI_TRUSTED_PROXIES`); none by default.
    pub trusted_proxies: source::TrustedProxies,
}

/// The whole HTTP application: the JSON API and the staff UI, with an open
/// `/metrics` and no trusted proxy.
pub fn app(state: AppState) -> Router {
    app_with(state, AppOptions::default())
}

/// The whole HTTP application: the JSON API, the staff UI and `/metrics`;
/// every request counted and timed under its route template, every
/// response through [`edge::secure_responses`]. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that throttling
/// sees each client's address ([`source`]).
pub fn app_with(state: AppState, options: AppOptions) -> Router {
    let metrics = Arc::new(metrics::Metrics::new(
        state.registry.store().clone(),
        options.metrics_token,
    ));
    let ui = crate::ui::router(state.clone());
    let (router, doc) = router_and_doc(state);
    let router = router.merge(ui);
    let json = doc.to_pretty_json().unwrap_or_default();
    router
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json,
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(metrics::metrics).with_state(metrics.clone()),
        )
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(axum::Extension(options.trusted_proxies))
        .layer(axum::middleware::from_fn(edge::secure_responses))
}

/// The OpenAPI document as committed in the repository (`openapi.json`).
pub fn openapi_json() -> String {
    let (_, doc) = routes().split_for_parts();
    let mut s = doc.to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}
