//! machi: the resident registry (住民記録) of many municipalities on one
//! deployment. See README.md and docs/ for the shape; the domain rules live
//! in the `machi-domain` crate.
//!
//! Layers, dependencies pointing down: `api` and `cli` (edges) → `service`
//! → `store` → `machi_domain`.

pub mod api;
pub mod bench;
pub mod bench_hooks;
pub mod bench_http;
pub mod bench_portal;
pub mod bench_search;
pub mod bench_tenants;
pub mod certificate;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod demo_portal;
pub mod linkage;
pub mod migration;
pub mod portal;
pub mod service;
pub mod store;
pub mod synth;
pub mod ui;
