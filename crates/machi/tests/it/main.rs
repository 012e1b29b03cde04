//! machi's integration tests: one binary. The storage contract suite runs on
//! SQLite and on PostgreSQL; the API tests drive the real router.

mod api;
mod browser;
mod contract;
mod isolation;
mod migration;
mod openapi;
mod rls;
mod support;
mod support_measures;
mod ui;
