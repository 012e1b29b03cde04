//! machi's integration tests: one binary. Every suite runs on SQLite and on
//! PostgreSQL (`both_backends!`); the API tests drive the real router.

/// Runs each named `async fn(TestDb)` twice, as `<module>::sqlite::<name>`
/// on a fresh SQLite file and as `<module>::postgres::<name>` on a fresh
/// PostgreSQL database. `.ci/run` counts both lists and fails unless each
/// ran in full.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::TestDb::sqlite().await).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(crate::support::TestDb::postgres().await).await; })*
        }
    };
}

mod access_log;
mod allowance;
mod allowance_edges;
mod allowance_faults;
mod allowance_recovery;
mod api;
mod auth_cache;
mod browser;
mod browser_allowance;
mod browser_counter_filing;
mod browser_forms;
mod browser_front_to_back;
mod browser_hooks;
mod browser_inbox;
mod browser_mobile;
mod browser_portal;
mod browser_portal_sign;
mod browser_requeue;
mod browser_review;
mod browser_surveys;
mod client_jwt;
mod contract;
mod counter;
mod counter_filing;
mod duties;
mod dv_hiding;
mod faults;
mod group_commit;
mod hook_faults;
mod hooks;
mod hooks_admin;
mod inbox;
mod isolation;
mod linkage_files;
mod migration;
mod openapi;
mod operability;
mod portal;
mod portal_sign;
mod procdefs;
mod readable;
mod registry_model;
mod requeue;
mod rls;
mod roles;
mod search;
mod security_throttle;
mod support;
mod support_http;
mod support_measures;
mod ui;
mod ui_forms;
