//! History rows (j200) and the two time axes machi adds to them: the
//! effective date (異動日, valid time) and the moment the row was recorded
//! (transaction time).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::error::ChangeError;
use super::plan::ChangePlan;
use super::reason::{ChangeReason, ReasonCategory};
use crate::dates::DateValue;
use crate::ids::{AddresseeNumber, HouseholdNumber};
use crate::model::{Removal, ResidentRecord, ResidentStatus};

/// The items j200 manages for each change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeInfo {
    /// The change (異動) that appended the row; one change may append rows
    /// for several persons.
    pub change_id: i64,
    /// 異動事由 (j210)
    pub reason: ChangeReason,
    /// 異動日 (j480). For a cancellation, the cancelled change's date.
    pub effective_date: DateValue,
    /// 処理日 (j480)
    pub processed_on: NaiveDate,
    /// 届出日 (j570)
    pub filed_on: Option<NaiveDate>,
    /// 入力場所 (j230)
    pub input_place: String,
    /// 入力端末 (j230)
    pub input_terminal: String,
    /// Transaction time: when the row was committed, in microseconds since
    /// the Unix epoch (UTC).
    pub recorded_at: i64,
    /// For 異動の取消し: the change it cancels.
    pub cancels: Option<i64>,
}

/// One history row (j200): 宛名番号 + 履歴番号, a full snapshot and its change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// 履歴番号: 1, 2, 3, ... per person.
    pub history_number: i64,
    pub record: ResidentRecord,
    pub change: ChangeInfo,
}

/// Which state to read: "on effective date D" and/or "as recorded at time T".
/// Both None is the current state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsOf {
    pub effective: Option<NaiveDate>,
    /// Microseconds since the Unix epoch.
    pub recorded_at: Option<i64>,
}

/// Picks the row that answers `as_of` from one person's history.
///
/// The registry as recorded at T is the rows committed by T; a change that a
/// cancellation committed by T undoes is left out. Of the rest, the state on
/// effective date D is the row with the latest 異動日 not after D (the later
/// 履歴番号 on a tie); without D it is the highest 履歴番号, as j200 says.
/// An unknown 異動日 (年月日不詳) sorts before every known one.
pub fn select_as_of(rows: &[HistoryRow], as_of: AsOf) -> Option<&HistoryRow> {
    let recorded = |r: &&HistoryRow| as_of.recorded_at.is_none_or(|t| r.change.recorded_at <= t);
    let visible: Vec<&HistoryRow> = rows.iter().filter(recorded).collect();
    let Some(d) = as_of.effective else {
        return visible.into_iter().max_by_key(|r| r.history_number);
    };
    let key = (d.year(), d.month(), d.day());
    let cancelled: Vec<i64> = visible.iter().filter_map(|r| r.change.cancels).collect();
    visible
        .into_iter()
        .filter(|r| !cancelled.contains(&r.change.change_id))
        .filter(|r| r.change.effective_date.sort_key().is_none_or(|k| k <= key))
        .max_by_key(|r| (r.change.effective_date.sort_key(), r.history_number))
}

use chrono::Datelike;

/// 異動の取消し: the rows that undo change `change_id`, from the histories of
/// the persons it touched. Each person's latest row must come from that change.
/// An entry (記載) is undone by 異動の取消し（減）, a removal (消除) by
/// 異動の取消し（増）, an amendment (修正) by 異動の取消し（修正）; the
/// restored row is the snapshot from before the change.
///
/// `household_histories` are the whole histories of everyone who was ever
/// in a household the change moved persons out of or into (see
/// [`households_of_change`]). If a later change moved anyone into or out of
/// such a household, or changed a member's row there, the household has
/// moved on: restoring an old snapshot into it would contradict it, so the
/// cancellation is refused until the later changes are cancelled first.
pub fn plan_cancellation(
    change_id: i64,
    histories: &BTreeMap<AddresseeNumber, Vec<HistoryRow>>,
    household_histories: &BTreeMap<AddresseeNumber, Vec<HistoryRow>>,
) -> Result<ChangePlan, ChangeError> {
    let households = households_of_change(change_id, histories);
    for (person, history) in household_histories {
        for (i, row) in history.iter().enumerate() {
            if row.change.change_id <= change_id {
                continue;
            }
            let before = i.checked_sub(1).and_then(|j| history.get(j));
            let touches = households.contains(&row.record.household_number)
                || before.is_some_and(|b| households.contains(&b.record.household_number));
            if touches {
                return Err(ChangeError::LaterChangesExist {
                    person: person.clone(),
                    change_id,
                });
            }
        }
    }
    let mut rows = Vec::new();
    let mut target: Option<(ChangeReason, DateValue)> = None;
    for (person, history) in histories {
        let Some(latest) = history.iter().max_by_key(|r| r.history_number) else {
            continue;
        };
        if !history.iter().any(|r| r.change.change_id == change_id) {
            continue;
        }
        if latest.change.change_id != change_id {
            return Err(ChangeError::LaterChangesExist {
                person: person.clone(),
                change_id,
            });
        }
        if latest.change.cancels.is_some() {
            return Err(ChangeError::NotCancellable(change_id));
        }
        let reason = match latest.change.reason.category() {
            ReasonCategory::Entry => ChangeReason::CancellationRemoval,
            ReasonCategory::Removal => ChangeReason::CancellationEntry,
            ReasonCategory::Amendment => ChangeReason::CancellationAmendment,
        };
        target = Some((reason, latest.change.effective_date.clone()));
        let previous = history
            .iter()
            .filter(|r| r.history_number < latest.history_number)
            .max_by_key(|r| r.history_number);
        let restored = match previous {
            Some(p) => p.record.clone(),
            None => {
                let mut r = latest.record.clone();
                r.status = ResidentStatus::EntryCancelled;
                r.removal = Some(Removal {
                    reason: ChangeReason::CancellationRemoval,
                    date: latest.change.effective_date.clone(),
                    destination: None,
                });
                r
            }
        };
        rows.push(restored);
    }
    let (reason, effective_date) = target.ok_or(ChangeError::ChangeNotFound(change_id))?;
    Ok(ChangePlan {
        reason,
        effective_date,
        filed_on: None,
        rows,
        notices: Vec::new(),
    })
}

/// The households a change moved persons out of or into: those of each
/// person's row from the change and of the row before it.
pub fn households_of_change(
    change_id: i64,
    histories: &BTreeMap<AddresseeNumber, Vec<HistoryRow>>,
) -> Vec<HouseholdNumber> {
    let mut out: Vec<HouseholdNumber> = Vec::new();
    for history in histories.values() {
        let Some(row) = history.iter().find(|r| r.change.change_id == change_id) else {
            continue;
        };
        let before = history
            .iter()
            .filter(|r| r.history_number < row.history_number)
            .max_by_key(|r| r.history_number);
        for h in std::iter::once(row).chain(before) {
            if !out.contains(&h.record.household_number) {
                out.push(h.record.household_number.clone());
            }
        }
    }
    out
}
