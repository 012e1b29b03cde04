//! 続柄 (j110): the relationship of a household member to the head.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::Localized;

/// The terms that may be joined with 「の」 (j110 ②).
const TERMS: &[&str] = &[
    "夫",
    "妻",
    "夫（未届）",
    "妻（未届）",
    "子",
    "父",
    "母",
    "兄",
    "姉",
    "弟",
    "妹",
];

/// How many terms j110 ③ allows in one chain (「子の子の子の子」).
const MAX_GENERATIONS: usize = 4;

/// 続柄 (j110): 世帯主, a term of ② or a chain of up to four of them joined by
/// 「の」 (③), 縁故者 (④) or 同居人 (⑤). Anything else (祖父, 孫, 甥, five or
/// more generations, ...) is rejected: j110 forbids managing it, and says a
/// chain of five or more must be entered as 縁故者.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Relationship(String);

impl Relationship {
    /// 世帯主.
    pub const HEAD: &'static str = "世帯主";

    pub fn head() -> Self {
        Relationship(Self::HEAD.to_string())
    }

    pub fn parse(input: &str) -> Result<Self, RelationshipError> {
        let s = input.trim().replace('(', "（").replace(')', "）");
        if s.is_empty() {
            return Err(RelationshipError::Empty);
        }
        if s == Self::HEAD || s == "縁故者" || s == "同居人" {
            return Ok(Relationship(s));
        }
        let parts: Vec<&str> = s.split('の').collect();
        if parts.iter().any(|p| !TERMS.contains(p)) {
            return Err(RelationshipError::NotAllowed(input.to_string()));
        }
        // 未届 only makes sense for the spouse of the head: a standalone term.
        if parts.len() > 1 && parts.iter().any(|p| p.contains('（')) {
            return Err(RelationshipError::NotAllowed(input.to_string()));
        }
        if parts.len() > MAX_GENERATIONS {
            return Err(RelationshipError::TooManyGenerations(input.to_string()));
        }
        Ok(Relationship(s))
    }

    pub fn is_head(&self) -> bool {
        self.0 == Self::HEAD
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Relationship {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Relationship {
    type Error = RelationshipError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Relationship::parse(&s)
    }
}

impl From<Relationship> for String {
    fn from(r: Relationship) -> String {
        r.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationshipError {
    #[error("relationship is empty")]
    Empty,
    #[error("relationship {0:?} is not one the standard allows (j110)")]
    NotAllowed(String),
    #[error("relationship {0:?} chains more than four generations; enter 縁故者 (j110)")]
    TooManyGenerations(String),
}

impl Localized for RelationshipError {
    fn code(&self) -> &'static str {
        "invalid_relationship"
    }
    fn message_ja(&self) -> String {
        match self {
            Self::Empty => "続柄が入力されていません。".into(),
            Self::NotAllowed(s) => {
                format!("続柄「{s}」は標準仕様で管理できる続柄ではありません（j110）。")
            }
            Self::TooManyGenerations(s) => {
                format!("続柄「{s}」は5世代以上です。「縁故者」としてください（j110）。")
            }
        }
    }
    fn message_en(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_relationships_of_j110() {
        for s in [
            "世帯主",
            "妻",
            "夫（未届）",
            "子",
            "子の妻",
            "子の子",
            "子の子の子の子",
            "父の兄の子",
            "縁故者",
            "同居人",
            "妻(未届)",
        ] {
            assert!(Relationship::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_what_j110_forbids() {
        for s in [
            "",
            "祖父",
            "孫",
            "甥",
            "子の子の子の子の子",
            "準世帯主",
            "妻（未届）の子",
        ] {
            assert!(Relationship::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            Relationship::parse("子の子の子の子の子").unwrap_err(),
            RelationshipError::TooManyGenerations("子の子の子の子の子".into())
        );
    }
}
