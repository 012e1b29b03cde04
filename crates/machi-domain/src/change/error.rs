//! Why a change is refused.

use crate::error::Localized;
use crate::ids::{AddresseeNumber, HouseholdNumber};

/// A change refused by validation; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// One input field is invalid; `field` is its path in the request.
    #[error("{field}: {message_en}")]
    Field {
        field: String,
        code: &'static str,
        message_ja: String,
        message_en: String,
    },
    #[error("a required item is missing: {0}")]
    Missing(String),
    #[error("the change names no person")]
    NoPersons,
    #[error("person {0} is named twice")]
    DuplicatePerson(AddresseeNumber),
    #[error("no person with addressee number {0}")]
    PersonNotFound(AddresseeNumber),
    #[error("person {0} is not a resident (status: {1})")]
    NotAResident(AddresseeNumber, &'static str),
    #[error("person {0} is already a resident")]
    AlreadyResident(AddresseeNumber),
    #[error("no household with number {0}")]
    HouseholdNotFound(HouseholdNumber),
    #[error("household {0} already has a head")]
    HouseholdHasHead(HouseholdNumber),
    #[error("the effective date {0} is after the processing date (j480)")]
    EffectiveDateInFuture(String),
    #[error("the filing date {0} is after the processing date")]
    FiledInFuture(String),
    #[error(
        "the head leaves household {household} and {remaining} members remain: change the head first (j490), or confirm to leave the household without a head"
    )]
    HeadChangeRequired {
        household: HouseholdNumber,
        remaining: usize,
    },
    #[error("exactly one person must be 世帯主 of the new household, found {0}")]
    HeadCount(usize),
    #[error("person {0} is not a member of household {1}")]
    NotAMember(AddresseeNumber, HouseholdNumber),
    #[error("a 続柄 is missing for person {0}")]
    RelationshipMissing(AddresseeNumber),
    #[error("persons must come from one household")]
    MixedHouseholds,
    #[error("the change would leave household {0} as it is: use the matching change instead")]
    WholeHousehold(HouseholdNumber),
    #[error("source and target household are the same: {0}")]
    SameHousehold(HouseholdNumber),
    #[error("households {0} and {1} are not at the same address (j720)")]
    DifferentAddress(HouseholdNumber, HouseholdNumber),
    #[error("the correction changes nothing")]
    NothingToCorrect,
    #[error("{0}")]
    KindMismatch(&'static str),
    #[error("no change with id {0}")]
    ChangeNotFound(i64),
    #[error("person {person} has later changes than change {change_id}: cancel those first")]
    LaterChangesExist {
        person: AddresseeNumber,
        change_id: i64,
    },
    #[error("change {0} is a cancellation or already cancelled, and cannot be cancelled")]
    NotCancellable(i64),
    #[error("a person with the same {0} is already a resident ({1})")]
    DuplicateIdentity(&'static str, AddresseeNumber),
    /// 転居 (j560, j630) to an address in another municipality: a 転出.
    #[error(
        "{address} is not in {municipality}: a move to another municipality is a move-out (転出), not a move within (転居)"
    )]
    OutsideMunicipality {
        address: String,
        municipality: String,
    },
    /// 転出 (j650) to an address in the municipality itself: a 転居.
    #[error(
        "{address} is in {municipality}: a move inside the municipality is a move within (転居), not a move-out (転出)"
    )]
    InsideMunicipality {
        address: String,
        municipality: String,
    },
    /// 転居 (j630) to the address and 方書 the person already has.
    #[error(
        "person {0} already lives at this address: a move within needs a new address or building (j630); to form or join a household at the same address use a household split or transfer"
    )]
    SameAddress(AddresseeNumber),
}

impl ChangeError {
    pub(crate) fn field(field: impl Into<String>, e: &dyn Localized) -> Self {
        ChangeError::Field {
            field: field.into(),
            code: e.code(),
            message_ja: e.message_ja(),
            message_en: e.message_en(),
        }
    }
}

impl Localized for ChangeError {
    fn code(&self) -> &'static str {
        match self {
            Self::Field { code, .. } => code,
            Self::Missing(_) => "missing_item",
            Self::NoPersons => "no_persons",
            Self::DuplicatePerson(_) => "duplicate_person",
            Self::PersonNotFound(_) => "person_not_found",
            Self::NotAResident(..) => "not_a_resident",
            Self::AlreadyResident(_) => "already_resident",
            Self::HouseholdNotFound(_) => "household_not_found",
            Self::HouseholdHasHead(_) => "household_has_head",
            Self::EffectiveDateInFuture(_) => "effective_date_in_future",
            Self::FiledInFuture(_) => "filed_on_in_future",
            Self::HeadChangeRequired { .. } => "head_change_required",
            Self::HeadCount(_) => "head_count",
            Self::NotAMember(..) => "not_a_member",
            Self::RelationshipMissing(_) => "relationship_missing",
            Self::MixedHouseholds => "mixed_households",
            Self::WholeHousehold(_) => "whole_household",
            Self::SameHousehold(_) => "same_household",
            Self::DifferentAddress(..) => "different_address",
            Self::NothingToCorrect => "nothing_to_correct",
            Self::KindMismatch(_) => "kind_mismatch",
            Self::ChangeNotFound(_) => "change_not_found",
            Self::LaterChangesExist { .. } => "later_changes_exist",
            Self::NotCancellable(_) => "not_cancellable",
            Self::DuplicateIdentity(..) => "duplicate_identity",
            Self::OutsideMunicipality { .. } => "outside_municipality",
            Self::InsideMunicipality { .. } => "inside_municipality",
            Self::SameAddress(_) => "same_address",
        }
    }

    fn message_ja(&self) -> String {
        match self {
            Self::Field {
                field, message_ja, ..
            } => format!("{field}: {message_ja}"),
            Self::Missing(f) => format!("必須項目「{f}」が入力されていません。"),
            Self::NoPersons => "異動者が指定されていません。".into(),
            Self::DuplicatePerson(a) => format!("宛名番号 {a} が重複して指定されています。"),
            Self::PersonNotFound(a) => format!("宛名番号 {a} の住民は存在しません。"),
            Self::NotAResident(a, s) => format!("宛名番号 {a} の方は住民ではありません（{s}）。"),
            Self::AlreadyResident(a) => format!("宛名番号 {a} の方はすでに住民です。"),
            Self::HouseholdNotFound(h) => format!("世帯番号 {h} の世帯は存在しません。"),
            Self::HouseholdHasHead(h) => format!("世帯番号 {h} の世帯にはすでに世帯主がいます。"),
            Self::EffectiveDateInFuture(d) => {
                format!(
                    "異動日 {d} が処理日より後です。転出以外は処理日以前の日を入力してください（j480）。"
                )
            }
            Self::FiledInFuture(d) => format!("届出日 {d} が処理日より後です。"),
            Self::HeadChangeRequired {
                household,
                remaining,
            } => format!(
                "世帯主が世帯番号 {household} の世帯からいなくなり、世帯員が{remaining}人残ります。先に世帯主変更を行ってください（j490）。世帯主不在のまま処理する場合は確認のうえ指定してください。"
            ),
            Self::HeadCount(n) => {
                format!("新しい世帯の世帯主はちょうど1人にしてください（指定: {n}人）。")
            }
            Self::NotAMember(a, h) => {
                format!("宛名番号 {a} の方は世帯番号 {h} の世帯員ではありません。")
            }
            Self::RelationshipMissing(a) => {
                format!("宛名番号 {a} の方の続柄が指定されていません。")
            }
            Self::MixedHouseholds => "異動者は同じ世帯から選んでください。".into(),
            Self::WholeHousehold(h) => {
                format!("世帯番号 {h} の世帯全員が対象です。該当する別の異動で処理してください。")
            }
            Self::SameHousehold(h) => format!("異動元と異動先が同じ世帯（{h}）です。"),
            Self::DifferentAddress(a, b) => {
                format!(
                    "世帯 {a} と世帯 {b} は住所が異なります。世帯変更等と住所変更は同時に行えません（j720）。"
                )
            }
            Self::NothingToCorrect => "修正する項目がありません。".into(),
            Self::KindMismatch(m) => format!("住民種別に合わない項目です: {m}"),
            Self::ChangeNotFound(id) => format!("異動 {id} は存在しません。"),
            Self::LaterChangesExist { person, change_id } => format!(
                "宛名番号 {person} の方には異動 {change_id} より後の異動があります。後の異動から取り消してください。"
            ),
            Self::NotCancellable(id) => {
                format!("異動 {id} は取消しまたは取消し済みのため、取り消せません。")
            }
            Self::DuplicateIdentity(what, a) => {
                format!("同じ{what}の住民がすでに記録されています（宛名番号 {a}）。")
            }
            Self::OutsideMunicipality {
                address,
                municipality,
            } => format!(
                "「{address}」は{municipality}の住所ではありません。他の市区町村への引越しは転居ではなく転出（国内転出）で処理してください。"
            ),
            Self::InsideMunicipality {
                address,
                municipality,
            } => format!(
                "「{address}」は{municipality}内の住所です。同じ市区町村の中での引越しは転出ではなく転居で処理してください。"
            ),
            Self::SameAddress(a) => format!(
                "宛名番号 {a} の方は転居先と同じ住所・方書にすでに住んでいます。転居には新しい住所または方書が必要です。同じ住所で世帯を分ける・移る場合は世帯分離・世帯変更で処理してください。"
            ),
        }
    }

    fn message_en(&self) -> String {
        self.to_string()
    }
}
