//! Change commands (異動) as a clerk or another system submits them.
//!
//! Text fields arrive as entered; [`super::plan`] validates every one against
//! the rules (ids, dates per j80, names per j180) and names the field that is
//! wrong, so an API client or a form can point at it.

use serde::{Deserialize, Serialize};

use crate::model::{ResidentKind, Sex};

/// What every change carries (j200, j480, j570, j230).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeMeta {
    /// 異動日 (j480): 和暦 or 西暦; not after the processing day except for 転出.
    pub effective_date: String,
    /// 届出日 (j570), for changes made on a notification.
    #[serde(default)]
    pub filed_on: Option<String>,
    /// 入力場所 (j230), e.g. 「市民課窓口」.
    #[serde(default)]
    pub input_place: String,
    /// 入力端末 (j230), e.g. 「T-001」.
    #[serde(default)]
    pub input_terminal: String,
    /// j490: proceed although the head leaves a household of two or more
    /// remaining members; the household stays without a head and a
    /// 世帯主変更依頼 notice is raised.
    #[serde(default)]
    pub allow_headless_household: bool,
}

/// A person who becomes a resident (転入, 出生, 職権記載).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewPerson {
    pub name: String,
    #[serde(default)]
    pub name_kana: Option<String>,
    pub birth_date: String,
    pub sex: Sex,
    /// 続柄 to the head of the household the person lives in.
    pub relationship: String,
    #[serde(default = "japanese")]
    pub kind: ResidentKind,
    /// 本籍 and 筆頭者 (Japanese residents).
    #[serde(default)]
    pub domicile: Option<String>,
    #[serde(default)]
    pub domicile_head: Option<String>,
    #[serde(default)]
    pub my_number: Option<String>,
    #[serde(default)]
    pub resident_code: Option<String>,
    /// 住民となった年月日; defaults to the effective date.
    #[serde(default)]
    pub resident_since: Option<String>,
    #[serde(default)]
    pub foreign: Option<ForeignInput>,
}

fn japanese() -> ResidentKind {
    ResidentKind::Japanese
}

/// The foreign-resident items of j20.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForeignInput {
    pub alphabet_name: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub alias_kana: Option<String>,
    pub nationality: String,
    pub residence_status: String,
    #[serde(default)]
    pub period_of_stay: Option<String>,
    #[serde(default)]
    pub stay_expires_on: Option<String>,
    #[serde(default)]
    pub card_number: Option<String>,
}

/// An address as entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressInput {
    pub address: String,
    #[serde(default)]
    pub annex: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
}

/// Where persons who enter or move go (j470): a new household they form, or an
/// existing one they join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HouseholdTarget {
    /// 全部: the persons form a new household at `address` (for 転居, the new address).
    New { address: AddressInput },
    /// 一部: the persons join an existing household and take its address.
    Join { household_number: String },
}

/// A person who stays a resident and moves between households, with the
/// 続柄 to the head of the household they end up in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberRelationship {
    pub addressee_number: String,
    pub relationship: String,
}

/// Corrected items (職権修正, 誤記修正). A field left out keeps its value; an
/// empty string clears an optional item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub name_kana: Option<String>,
    #[serde(default)]
    pub birth_date: Option<String>,
    #[serde(default)]
    pub sex: Option<Sex>,
    #[serde(default)]
    pub relationship: Option<String>,
    #[serde(default)]
    pub domicile: Option<String>,
    #[serde(default)]
    pub domicile_head: Option<String>,
    #[serde(default)]
    pub address_annex: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub my_number: Option<String>,
    #[serde(default)]
    pub resident_code: Option<String>,
    #[serde(default)]
    pub address_since: Option<String>,
    #[serde(default)]
    pub resident_since: Option<String>,
}

/// One change (異動), one of the reasons of j210.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeCommand {
    /// 国内転入 (j590): persons move in from another municipality.
    MoveIn {
        persons: Vec<NewPerson>,
        household: HouseholdTarget,
        /// 転入前住所
        previous_address: String,
    },
    /// 国外転入等: persons move in from abroad.
    MoveInFromAbroad {
        persons: Vec<NewPerson>,
        household: HouseholdTarget,
        previous_address: String,
    },
    /// 出生: a child is entered into an existing household.
    Birth {
        person: NewPerson,
        household_number: String,
    },
    /// 職権記載 (j750): an entry made ex officio.
    ExOfficioEntry {
        person: NewPerson,
        household: HouseholdTarget,
    },
    /// 転居: persons move within the municipality. When the whole household
    /// moves, `household` may be omitted and the household keeps its number.
    MoveWithin {
        persons: Vec<String>,
        address: AddressInput,
        #[serde(default)]
        household: Option<MoveWithinHousehold>,
    },
    /// 国内転出 (j650): persons leave for another municipality on a planned date.
    MoveOut {
        persons: Vec<String>,
        destination: AddressInput,
    },
    /// 国外転出 (j650): persons leave the country.
    MoveOutAbroad {
        persons: Vec<String>,
        destination: AddressInput,
    },
    /// 死亡
    Death { person: String },
    /// 世帯分離 (j720): persons leave their household and form a new one at the
    /// same address; `relationships` gives every one of them a 続柄, exactly one
    /// of them 世帯主.
    HouseholdSplit {
        relationships: Vec<MemberRelationship>,
    },
    /// 世帯合併 (j720): every member of `from_household` joins `into_household`.
    HouseholdMerge {
        from_household: String,
        into_household: String,
        relationships: Vec<MemberRelationship>,
    },
    /// 世帯変更 (j720): some members move to another existing household.
    HouseholdTransfer {
        into_household: String,
        relationships: Vec<MemberRelationship>,
    },
    /// 世帯主変更 (j720, j730): a member becomes head; the others get their new 続柄.
    HeadChange {
        household_number: String,
        new_head: String,
        relationships: Vec<MemberRelationship>,
    },
    /// 職権修正
    ExOfficioCorrection { person: String, patch: RecordPatch },
    /// 誤記修正
    ClericalCorrection { person: String, patch: RecordPatch },
    /// 職権消除
    ExOfficioRemoval { person: String },
    /// 異動の取消し: undoes an earlier change (by its change id).
    Cancel { change_id: i64 },
}

/// For a 転居 of part of a household: the movers form a new household, or join one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MoveWithinHousehold {
    /// The movers form a new household; every mover gets a 続柄.
    New {
        relationships: Vec<MemberRelationship>,
    },
    /// The movers join an existing household at the new address.
    Join {
        household_number: String,
        relationships: Vec<MemberRelationship>,
    },
}

/// A change as submitted: the command and what every change carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeRequest {
    #[serde(flatten)]
    pub meta: ChangeMeta,
    pub command: ChangeCommand,
}
