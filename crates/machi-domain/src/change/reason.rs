//! 異動事由 (j210).

use serde::{Deserialize, Serialize};

/// Which way a change moves a record (j210's three groups plus cancellation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCategory {
    /// 記載の事由
    Entry,
    /// 消除の事由
    Removal,
    /// 修正の事由
    Amendment,
}

/// 異動事由 (j210). There is deliberately no 転居取消: a cancelled 転居 is an
/// [`ChangeReason::CancellationAmendment`] (j210 「実装しない機能」).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeReason {
    /// 国内転入
    MoveIn,
    /// 国外転入等
    MoveInFromAbroad,
    /// 出生
    Birth,
    /// 職権記載
    ExOfficioEntry,
    /// 異動の取消し（増）
    CancellationEntry,
    /// 国内転出
    MoveOut,
    /// 国外転出
    MoveOutAbroad,
    /// 死亡
    Death,
    /// 職権消除
    ExOfficioRemoval,
    /// 異動の取消し（減）
    CancellationRemoval,
    /// 転居
    MoveWithin,
    /// 職権修正
    ExOfficioCorrection,
    /// 誤記修正
    ClericalCorrection,
    /// 世帯分離
    HouseholdSplit,
    /// 世帯合併
    HouseholdMerge,
    /// 世帯変更
    HouseholdTransfer,
    /// 世帯主変更
    HeadChange,
    /// 異動の取消し（修正）
    CancellationAmendment,
}

impl ChangeReason {
    pub const ALL: [ChangeReason; 18] = [
        Self::MoveIn,
        Self::MoveInFromAbroad,
        Self::Birth,
        Self::ExOfficioEntry,
        Self::CancellationEntry,
        Self::MoveOut,
        Self::MoveOutAbroad,
        Self::Death,
        Self::ExOfficioRemoval,
        Self::CancellationRemoval,
        Self::MoveWithin,
        Self::ExOfficioCorrection,
        Self::ClericalCorrection,
        Self::HouseholdSplit,
        Self::HouseholdMerge,
        Self::HouseholdTransfer,
        Self::HeadChange,
        Self::CancellationAmendment,
    ];

    /// The name j210 uses.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::MoveIn => "国内転入",
            Self::MoveInFromAbroad => "国外転入等",
            Self::Birth => "出生",
            Self::ExOfficioEntry => "職権記載",
            Self::CancellationEntry => "異動の取消し（増）",
            Self::MoveOut => "国内転出",
            Self::MoveOutAbroad => "国外転出",
            Self::Death => "死亡",
            Self::ExOfficioRemoval => "職権消除",
            Self::CancellationRemoval => "異動の取消し（減）",
            Self::MoveWithin => "転居",
            Self::ExOfficioCorrection => "職権修正",
            Self::ClericalCorrection => "誤記修正",
            Self::HouseholdSplit => "世帯分離",
            Self::HouseholdMerge => "世帯合併",
            Self::HouseholdTransfer => "世帯変更",
            Self::HeadChange => "世帯主変更",
            Self::CancellationAmendment => "異動の取消し（修正）",
        }
    }

    /// The name in English, for the English UI.
    pub fn label_en(self) -> &'static str {
        match self {
            Self::MoveIn => "Move-in (domestic)",
            Self::MoveInFromAbroad => "Move-in from abroad",
            Self::Birth => "Birth",
            Self::ExOfficioEntry => "Ex officio entry",
            Self::CancellationEntry => "Cancellation (entry)",
            Self::MoveOut => "Move-out (domestic)",
            Self::MoveOutAbroad => "Move-out abroad",
            Self::Death => "Death",
            Self::ExOfficioRemoval => "Ex officio removal",
            Self::CancellationRemoval => "Cancellation (removal)",
            Self::MoveWithin => "Move within the municipality",
            Self::ExOfficioCorrection => "Ex officio correction",
            Self::ClericalCorrection => "Clerical correction",
            Self::HouseholdSplit => "Household split",
            Self::HouseholdMerge => "Household merge",
            Self::HouseholdTransfer => "Household transfer",
            Self::HeadChange => "Change of head",
            Self::CancellationAmendment => "Cancellation (amendment)",
        }
    }

    /// The snake_case code used in the API and the database.
    pub fn code(self) -> &'static str {
        match self {
            Self::MoveIn => "move_in",
            Self::MoveInFromAbroad => "move_in_from_abroad",
            Self::Birth => "birth",
            Self::ExOfficioEntry => "ex_officio_entry",
            Self::CancellationEntry => "cancellation_entry",
            Self::MoveOut => "move_out",
            Self::MoveOutAbroad => "move_out_abroad",
            Self::Death => "death",
            Self::ExOfficioRemoval => "ex_officio_removal",
            Self::CancellationRemoval => "cancellation_removal",
            Self::MoveWithin => "move_within",
            Self::ExOfficioCorrection => "ex_officio_correction",
            Self::ClericalCorrection => "clerical_correction",
            Self::HouseholdSplit => "household_split",
            Self::HouseholdMerge => "household_merge",
            Self::HouseholdTransfer => "household_transfer",
            Self::HeadChange => "head_change",
            Self::CancellationAmendment => "cancellation_amendment",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn category(self) -> ReasonCategory {
        match self {
            Self::MoveIn
            | Self::MoveInFromAbroad
            | Self::Birth
            | Self::ExOfficioEntry
            | Self::CancellationEntry => ReasonCategory::Entry,
            Self::MoveOut
            | Self::MoveOutAbroad
            | Self::Death
            | Self::ExOfficioRemoval
            | Self::CancellationRemoval => ReasonCategory::Removal,
            _ => ReasonCategory::Amendment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_no_move_within_cancellation_exists() {
        for r in ChangeReason::ALL {
            assert_eq!(ChangeReason::from_code(r.code()), Some(r));
        }
        assert!(ChangeReason::ALL.iter().all(|r| r.label_ja() != "転居取消"));
    }
}
