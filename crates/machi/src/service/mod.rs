//! Services: the use cases the HTTP API and the CLI drive alike.

pub mod addresses;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod certificates;
pub mod client_jwt;
pub mod clock;
pub mod counter_filing;
pub mod definitions;
pub mod events;
pub mod grants;
pub mod hooks;
pub mod inbox;
pub mod registry;
pub mod support;
pub mod surveys;
pub mod throttle;

pub use auth::Caller;
pub use clock::Clock;
pub use registry::{Actor, Registry, ServiceError};
