//! The resident record (住民票) and what it is made of (j10, j20, j100–j130).
//!
//! A [`ResidentRecord`] is one full snapshot of a person's record: every change
//! appends a new snapshot as a history row (j200), never edits one.

use serde::{Deserialize, Serialize};

use crate::dates::DateValue;
use crate::ids::{AddresseeNumber, HouseholdNumber, MyNumber, PostalCode, ResidentCode};
use crate::names::{Furigana, PersonName};
use crate::relationship::Relationship;

/// 住民種別: 日本人住民 or 外国人住民 (j10, j20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ResidentKind {
    Japanese,
    Foreign,
}

/// 住民状態 (j10): a resident, or the reason the record became a 除票 (j50).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ResidentStatus {
    /// 住民
    Resident,
    /// 転出 (国内・国外)
    MovedOut,
    /// 死亡
    Deceased,
    /// 職権消除
    Removed,
    /// 記載が取り消された (異動の取消し（減）)
    EntryCancelled,
}

impl ResidentStatus {
    pub fn is_resident(self) -> bool {
        self == ResidentStatus::Resident
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Resident => "住民",
            Self::MovedOut => "転出",
            Self::Deceased => "死亡",
            Self::Removed => "職権消除",
            Self::EntryCancelled => "記載取消",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            Self::Resident => "Resident",
            Self::MovedOut => "Moved out",
            Self::Deceased => "Deceased",
            Self::Removed => "Removed ex officio",
            Self::EntryCancelled => "Entry cancelled",
        }
    }
    /// From the snake_case code used in the API and the database.
    pub fn from_code(code: &str) -> Option<Self> {
        [
            Self::Resident,
            Self::MovedOut,
            Self::Deceased,
            Self::Removed,
            Self::EntryCancelled,
        ]
        .into_iter()
        .find(|s| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .as_deref()
                == Some(code)
        })
    }
}

/// 性別.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    pub fn label_ja(self) -> &'static str {
        match self {
            Sex::Male => "男",
            Sex::Female => "女",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            Sex::Male => "Male",
            Sex::Female => "Female",
        }
    }
}

/// 住所 with 方書 (j10, j260) and 郵便番号 (j170).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The address itself, e.g. 「東京都府中市宮西町二丁目24番地」.
    pub address: String,
    /// 方書: building and room, e.g. 「府中ハイツ101号」.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<PostalCode>,
}

impl Address {
    /// The address and its annex on one line, as a certificate shows it.
    pub fn full(&self) -> String {
        match &self.annex {
            Some(a) if !a.is_empty() => format!("{}　{}", self.address, a),
            _ => self.address.clone(),
        }
    }

    /// Whether the 住所 and the 方書 fit: each at most
    /// [`MAX_ADDRESS_CHARS`] characters, and the two together, folded for
    /// search ([`crate::names::search_key`], which can lengthen a
    /// compatibility character), at most [`MAX_ADDRESS_KEY_CHARS`]. The
    /// registry posts a key's text for search from its first 511
    /// characters, and a database index holds a key of a few thousand
    /// bytes at most: a longer address could be missed by a search or
    /// refused by the database instead of here.
    pub fn check(&self) -> Result<(), AddressError> {
        let parts = [
            ("住所", "address", Some(&self.address)),
            ("方書", "annex", self.annex.as_ref()),
        ];
        for (ja, en, v) in parts {
            let chars = v.map_or(0, |v| v.chars().count());
            if chars > MAX_ADDRESS_CHARS {
                return Err(AddressError::TooLong {
                    part_ja: ja,
                    part_en: en,
                    chars,
                    max: MAX_ADDRESS_CHARS,
                });
            }
        }
        let chars = crate::names::search_key(&self.full()).chars().count();
        if chars > MAX_ADDRESS_KEY_CHARS {
            return Err(AddressError::TooLong {
                part_ja: "住所と方書（検索用に変換した形）",
                part_en: "address with its annex (as folded for search)",
                chars,
                max: MAX_ADDRESS_KEY_CHARS,
            });
        }
        Ok(())
    }
}

/// Longest 住所, and longest 方書, accepted (characters).
pub const MAX_ADDRESS_CHARS: usize = 200;
/// Longest 住所 with its 方書 once folded for search (characters).
pub const MAX_ADDRESS_KEY_CHARS: usize = 500;

/// An address that does not fit ([`Address::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the {part_en} is too long: {chars} characters, at most {max}")]
    TooLong {
        part_ja: &'static str,
        part_en: &'static str,
        chars: usize,
        max: usize,
    },
}

impl crate::error::Localized for AddressError {
    fn code(&self) -> &'static str {
        "address_too_long"
    }

    fn message_ja(&self) -> String {
        match self {
            AddressError::TooLong {
                part_ja,
                chars,
                max,
                ..
            } => format!("{part_ja}が長すぎます（{chars}文字、{max}文字まで）"),
        }
    }

    fn message_en(&self) -> String {
        self.to_string()
    }
}

/// 本籍・筆頭者 (j120): Japanese residents only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredDomicile {
    /// 本籍
    pub domicile: String,
    /// 筆頭者
    pub head: String,
}

/// The items only foreign residents have (j20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignResidentInfo {
    /// 氏名（アルファベット）
    pub alphabet_name: String,
    /// 通称 (j70)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_kana: Option<Furigana>,
    /// 国籍・地域
    pub nationality: String,
    /// 在留資格, e.g. 「技術・人文知識・国際業務」 or 「特別永住者」.
    pub residence_status: String,
    /// 在留期間, e.g. 「3年」.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_of_stay: Option<String>,
    /// 在留期間の満了の日 (shown in 西暦, j90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stay_expires_on: Option<DateValue>,
    /// 在留カード番号 / 特別永住者証明書番号
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_number: Option<String>,
}

/// 転出先 (j650): planned destination of a move-out, domestic or abroad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// 転出先住所（予定）; a municipality alone is enough (j650).
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<PostalCode>,
    /// True for 国外転出.
    #[serde(default)]
    pub abroad: bool,
}

/// 消除 facts a 除票 keeps (j10 「住民票の除票固有の記載事項」).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// 消除事由
    pub reason: crate::change::ChangeReason,
    /// 事由の生じた年月日 (転出の場合は転出予定年月日)
    pub date: DateValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
}

/// 住民票: one full snapshot of a person's record, as a history row holds it
/// (j200: every item in one row, household-common items kept per person).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentRecord {
    pub addressee_number: AddresseeNumber,
    pub household_number: HouseholdNumber,
    pub kind: ResidentKind,
    pub status: ResidentStatus,
    /// 氏名, exactly as entered.
    pub name: PersonName,
    /// 氏名のフリガナ (j180)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_kana: Option<Furigana>,
    /// 生年月日 (j80: may be non-calendar or unknown).
    pub birth_date: DateValue,
    pub sex: Sex,
    /// 続柄 (j110)
    pub relationship: Relationship,
    /// 世帯主の氏名; None while the household has no head (j100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_name: Option<PersonName>,
    /// 本籍・筆頭者 (j120)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_domicile: Option<RegisteredDomicile>,
    pub address: Address,
    /// 住所を定めた年月日 (住定日)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_since: Option<DateValue>,
    /// 住民となった年月日 (foreign residents: 外国人住民となった年月日)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_since: Option<DateValue>,
    /// 転入前住所 (国外を含む)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<String>,
    /// 個人番号
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_number: Option<MyNumber>,
    /// 住民票コード
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_code: Option<ResidentCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign: Option<ForeignResidentInfo>,
    /// 除票 facts, once the person is no longer a resident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<Removal>,
}
