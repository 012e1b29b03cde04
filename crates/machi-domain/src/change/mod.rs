//! Changes (異動): commands, their validation and the history they append
//! (j200, j210, j460–j490, j560–j860, j980).

mod command;
mod error;
mod history;
mod locality;
mod plan;
mod reason;
pub mod review;

pub use command::*;
pub use error::ChangeError;
pub use history::{
    AsOf, ChangeInfo, HistoryRow, households_of_change, plan_cancellation, select_as_of,
};
pub use locality::{Locality, Municipality, PREFECTURES};
pub use plan::{Allocated, ChangePlan, Notice, PlanContext, RegistryView, plan, reason_of};
pub use reason::{ChangeReason, ReasonCategory};

#[cfg(test)]
mod tests;
