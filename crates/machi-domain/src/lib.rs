//! machi's domain: the rules of the resident registry (住民記録) in plain Rust.
//!
//! No I/O, no async, no clock: time is passed in. Every other layer of machi
//! builds on these types; nothing here imports from those layers.
//!
//! Where code implements a section of the resident-record standard, its doc
//! comment names the section (`j80` = section (80), file `j80.txt` of the
//! standard's text).

pub mod access;
pub mod certificate;
pub mod change;
pub mod dates;
pub mod error;
pub mod ids;
pub mod input;
pub mod model;
pub mod names;
pub mod relationship;
pub mod support;
