//! The shape every domain error shares, so that the edges (HTTP, CLI) can
//! show it to a person in Japanese or English and to a program as a stable code.

/// An error a person can read in either language and a program can match on.
pub trait Localized {
    /// Stable, machine-readable code in snake_case, e.g. `invalid_my_number`.
    fn code(&self) -> &'static str;
    /// The message in Japanese.
    fn message_ja(&self) -> String;
    /// The message in English.
    fn message_en(&self) -> String;
}
