//! Migration in and out (j1410): the standard-layout CSV files, a synthetic
//! population generator, streaming import with a validation report, and
//! export of a whole tenant.

pub mod encoding;
pub mod export;
pub mod generate;
pub mod import;
pub mod layout;
pub mod manifest;
pub mod rehearse;
pub mod side;
pub mod sjis2004;
