//! The allowance system's own database: one SQLite file (never the
//! registry's). Everything it knows of residents came through the
//! registry's API; what it decided (claims, children, work items) is its
//! own. Each event is applied in one transaction together with the cursor
//! and the event's id, so a redelivered event changes nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::accounts::{self, Account, Role};
use crate::audit::{self, Entry};
use crate::bank::{AccountKind, BankAccount};
use crate::rules::{self, PayRule, YearMonth};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cursor (tenant TEXT PRIMARY KEY, after_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS feed_start (tenant TEXT PRIMARY KEY, started_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY,
    claimant TEXT NOT NULL,
    claimant_name TEXT NOT NULL,
    household TEXT NOT NULL,
    claimed_on TEXT NOT NULL,
    event_on TEXT,
    public_servant INTEGER NOT NULL,
    ended_on TEXT,
    end_reason TEXT,
    entered_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claim_children (
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    child TEXT NOT NULL,
    name TEXT NOT NULL,
    birth TEXT NOT NULL,
    requested_on TEXT NOT NULL,
    event_on TEXT,
    supported INTEGER NOT NULL DEFAULT 0,
    left_on TEXT,
    left_reason TEXT,
    PRIMARY KEY (claim_id, child)
);
-- A child's earlier periods on a claim (児童手当法第9条): a child who
-- left (転出, 死亡 …, counted through that month) and came back is added
-- again by a new 額改定請求; the period before is kept here, the row of
-- claim_children holds the current one.
CREATE TABLE IF NOT EXISTS claim_child_spells (
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    child TEXT NOT NULL,
    requested_on TEXT NOT NULL,
    event_on TEXT,
    left_on TEXT NOT NULL,
    left_reason TEXT,
    left_change INTEGER
);
CREATE INDEX IF NOT EXISTS claim_child_spells_claim ON claim_child_spells (claim_id, child);
CREATE TABLE IF NOT EXISTS work_items (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    person TEXT NOT NULL,
    person_name TEXT NOT NULL,
    household TEXT NOT NULL,
    event_on TEXT,
    claim_id INTEGER,
    done INTEGER NOT NULL DEFAULT 0,
    UNIQUE (event_id, kind, person)
);
CREATE TABLE IF NOT EXISTS accounts (
    login TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    login TEXT NOT NULL,
    source TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures (login, source, at);
CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures (at);
CREATE TABLE IF NOT EXISTS access_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    account TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_runs (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    made_on TEXT NOT NULL,
    pay_month TEXT NOT NULL,
    made_at TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    total INTEGER NOT NULL,
    lines INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS paid_months (
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    month TEXT NOT NULL,
    claimant TEXT NOT NULL,
    amount INTEGER NOT NULL,
    rule TEXT NOT NULL,
    run_id INTEGER NOT NULL REFERENCES payment_runs(id),
    PRIMARY KEY (claim_id, month)
);
CREATE TABLE IF NOT EXISTS paid_differences (
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    month TEXT NOT NULL,
    claimant TEXT NOT NULL,
    amount INTEGER NOT NULL,
    rule TEXT NOT NULL,
    run_id INTEGER NOT NULL REFERENCES payment_runs(id),
    PRIMARY KEY (claim_id, month, run_id)
);
CREATE TABLE IF NOT EXISTS recoveries (
    id INTEGER PRIMARY KEY,
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    month TEXT NOT NULL,
    paid INTEGER NOT NULL,
    due INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    reduction TEXT NOT NULL,
    found_at TEXT NOT NULL,
    event_id TEXT,
    demanded_run INTEGER REFERENCES payment_runs(id)
);
CREATE INDEX IF NOT EXISTS recoveries_claim ON recoveries (claim_id, month);
CREATE TABLE IF NOT EXISTS recovery_offsets (
    recovery_id INTEGER NOT NULL REFERENCES recoveries(id),
    run_id INTEGER NOT NULL REFERENCES payment_runs(id),
    amount INTEGER NOT NULL,
    PRIMARY KEY (recovery_id, run_id)
);
CREATE TABLE IF NOT EXISTS recovery_cancellations (
    id INTEGER PRIMARY KEY,
    recovery_id INTEGER NOT NULL REFERENCES recoveries(id),
    amount INTEGER NOT NULL,
    at TEXT NOT NULL,
    event_id TEXT
);
CREATE INDEX IF NOT EXISTS recovery_cancellations_recovery ON recovery_cancellations (recovery_id);
CREATE TABLE IF NOT EXISTS repayments (
    id INTEGER PRIMARY KEY,
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    amount INTEGER NOT NULL,
    received_on TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repayment_parts (
    repayment_id INTEGER NOT NULL REFERENCES repayments(id),
    recovery_id INTEGER NOT NULL REFERENCES recoveries(id),
    amount INTEGER NOT NULL,
    PRIMARY KEY (repayment_id, recovery_id)
);
CREATE TABLE IF NOT EXISTS repayment_cancellations (
    repayment_id INTEGER PRIMARY KEY REFERENCES repayments(id),
    reason TEXT NOT NULL,
    cancelled_by TEXT NOT NULL,
    cancelled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recovery_refunds (
    recovery_id INTEGER NOT NULL REFERENCES recoveries(id),
    run_id INTEGER NOT NULL REFERENCES payment_runs(id),
    amount INTEGER NOT NULL,
    PRIMARY KEY (recovery_id, run_id)
);
CREATE TABLE IF NOT EXISTS recovery_notices (
    id INTEGER PRIMARY KEY,
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    amount INTEGER NOT NULL,
    parts TEXT NOT NULL,
    issued_on TEXT NOT NULL,
    due_on TEXT NOT NULL,
    addressee_name TEXT NOT NULL,
    postal_code TEXT,
    address TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    nonce TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS recovery_notices_claim ON recovery_notices (claim_id);
CREATE TABLE IF NOT EXISTS unpaid_claims (
    id INTEGER PRIMARY KEY,
    claim_id INTEGER NOT NULL UNIQUE REFERENCES claims(id),
    child TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    requester_kana TEXT NOT NULL,
    bank_code TEXT NOT NULL,
    branch_code TEXT NOT NULL,
    account_kind TEXT NOT NULL,
    account_number TEXT NOT NULL,
    account_holder TEXT NOT NULL,
    requested_on TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
";

/// What is still to be recovered of an overpayment, in SQL over the row
/// `recoveries`: its amount less what was cancelled, withheld and repaid
/// (a repayment cancelled as entered wrongly does not count), plus what
/// was refunded of it (還付).
const REMAINING_SQL: &str = "(recoveries.amount \
    - (SELECT COALESCE(SUM(x.amount), 0) FROM recovery_cancellations x WHERE x.recovery_id = recoveries.id) \
    - (SELECT COALESCE(SUM(o.amount), 0) FROM recovery_offsets o WHERE o.recovery_id = recoveries.id) \
    - (SELECT COALESCE(SUM(p.amount), 0) FROM repayment_parts p WHERE p.recovery_id = recoveries.id \
        AND p.repayment_id NOT IN (SELECT repayment_id FROM repayment_cancellations)) \
    + (SELECT COALESCE(SUM(f.amount), 0) FROM recovery_refunds f WHERE f.recovery_id = recoveries.id))";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("background task: {0}")]
    Task(String),
}

/// The database (one connection: SQLite serialises writes anyway).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// The moment overpayments are recorded as found ([`Store::now`]):
    /// the wall clock, or a fixed one a test sets ([`Store::set_now`]).
    clock: Arc<Mutex<Option<chrono::DateTime<chrono::Utc>>>>,
}

/// A work item kind (what the event means for the allowance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// A birth into a household without a claim: a claim may be due.
    BirthClaim,
    /// A birth into a claimant's household: a 額改定請求 may be due.
    BirthIncrease,
    /// A child moved in: a claim may be due.
    MoveInClaim,
    /// The claimant moved out or died: the entitlement ended.
    ClaimEnded,
    /// A child of a claim moved out or died: reduced from the next month.
    ChildLeft,
    /// A household change concerning a claim: check care and livelihood.
    HouseholdCheck,
    /// A child who joined the claimant's household from another household
    /// (世帯変更 …) after the 請求日 of a claim entered late: not on the
    /// claim; a 額改定請求 may be due (児童手当法第9条第1項). (A birth or a
    /// move-in raises [`WorkKind::BirthIncrease`] or
    /// [`WorkKind::MoveInClaim`] for the claim, as the worker does.)
    ChildJoined,
    /// A cancellation or correction concerning a claim: check it.
    CorrectionCheck,
    /// The registry hides a person of a running claim (the claimant or a
    /// child still counted) from this system: a support measure (支援措置,
    /// j440) covers them, so their changes (転出, 世帯の異動 …) no longer
    /// reach it. Nothing is guessed from the last data read: the clerk
    /// confirms the facts with the person at the counter (or with the
    /// registry's 支援措置 officer) and ends or keeps the child by hand.
    RecordHidden,
    /// An overpayment cancelled after part of it was withheld or repaid:
    /// that part is to be paid back to the claimant (還付).
    RefundDue,
    /// A 児童手当認定請求 filed online and approved for this system in the
    /// registry's inbox: the clerk checks it and enters the claim, with
    /// the day it was received as 請求日 (児童手当法第7条・第8条第2項).
    OnlineClaim,
}

impl WorkKind {
    pub fn code(self) -> &'static str {
        match self {
            WorkKind::BirthClaim => "birth_claim",
            WorkKind::BirthIncrease => "birth_increase",
            WorkKind::MoveInClaim => "move_in_claim",
            WorkKind::ClaimEnded => "claim_ended",
            WorkKind::ChildLeft => "child_left",
            WorkKind::HouseholdCheck => "household_check",
            WorkKind::ChildJoined => "child_joined",
            WorkKind::CorrectionCheck => "correction_check",
            WorkKind::RecordHidden => "record_hidden",
            WorkKind::RefundDue => "refund_due",
            WorkKind::OnlineClaim => "online_claim",
        }
    }
    pub fn parse(s: &str) -> Option<WorkKind> {
        [
            WorkKind::BirthClaim,
            WorkKind::BirthIncrease,
            WorkKind::MoveInClaim,
            WorkKind::ClaimEnded,
            WorkKind::ChildLeft,
            WorkKind::HouseholdCheck,
            WorkKind::ChildJoined,
            WorkKind::CorrectionCheck,
            WorkKind::RecordHidden,
            WorkKind::RefundDue,
            WorkKind::OnlineClaim,
        ]
        .into_iter()
        .find(|k| k.code() == s)
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            WorkKind::BirthClaim => "出生：認定請求が必要な可能性",
            WorkKind::BirthIncrease => "出生：額改定請求が必要な可能性",
            WorkKind::MoveInClaim => "転入：認定請求が必要な可能性",
            WorkKind::ClaimEnded => "受給者の転出・死亡：受給資格消滅（その月分まで）",
            WorkKind::ChildLeft => "児童の転出・死亡：翌月分から減額",
            WorkKind::HouseholdCheck => "世帯の異動：監護・生計同一の確認",
            WorkKind::ChildJoined => "請求日の後に世帯に加わった児童：額改定請求が必要な可能性",
            WorkKind::CorrectionCheck => "異動の取消し・修正：内容の確認",
            WorkKind::RecordHidden => {
                "支援措置のため住民記録の異動が届かない：窓口で世帯と監護の状況を確認"
            }
            WorkKind::RefundDue => "過払の取消し：受給者への還付が必要",
            WorkKind::OnlineClaim => "電子申請の認定請求：内容を確認して入力",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            WorkKind::BirthClaim => "Birth: a claim may be due",
            WorkKind::BirthIncrease => "Birth: an increase claim may be due",
            WorkKind::MoveInClaim => "Move-in: a claim may be due",
            WorkKind::ClaimEnded => {
                "Claimant moved out or died: entitlement ended (paid through that month)"
            }
            WorkKind::ChildLeft => "Child moved out or died: reduced from the next month",
            WorkKind::HouseholdCheck => "Household change: check care and livelihood",
            WorkKind::ChildJoined => {
                "A child joined the household after the claim date: an increase claim may be due"
            }
            WorkKind::CorrectionCheck => "Cancellation or correction: check",
            WorkKind::RecordHidden => {
                "A support measure hides this person's registry changes: confirm the household and care at the counter"
            }
            WorkKind::RefundDue => "Overpayment cancelled: a refund to the claimant is due",
            WorkKind::OnlineClaim => "Claim filed online: check it and enter it",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkItem {
    pub id: i64,
    pub event_id: String,
    pub kind: WorkKind,
    pub person: String,
    pub person_name: String,
    pub household: String,
    pub event_on: Option<NaiveDate>,
    pub claim_id: Option<i64>,
    pub done: bool,
    /// Yen the item is about ([`WorkKind::RefundDue`]: to pay back).
    pub amount: Option<i64>,
    /// The online filing it is about ([`WorkKind::OnlineClaim`]): the
    /// registry's filing number and the 受付番号.
    pub filing: Option<(i64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildRow {
    pub child: String,
    pub name: String,
    pub birth: NaiveDate,
    pub requested_on: NaiveDate,
    pub event_on: Option<NaiveDate>,
    pub supported: bool,
    pub left_on: Option<NaiveDate>,
    pub left_reason: Option<String>,
    /// Why the child is on the claim: the claimant's household, or added
    /// by the clerk for a child living elsewhere ([`rules::Basis`]).
    pub basis: rules::Basis,
    /// Added by hand: the day from which the basis holds (監護・生計費の
    /// 負担を始めた日); None for a child of the household.
    pub since: Option<NaiveDate>,
    /// Whether `child` is a 宛名番号 of this municipality's registry
    /// (false: a child living in another municipality, entered by name
    /// and birth date; `child` is then this system's own key).
    pub registered: bool,
    /// Ended by a clerk (not by a registry event): the clerk's login.
    pub ended_by: Option<String>,
    /// Earlier periods on this claim, oldest first: the child left
    /// (counted through the month of `left_on`) and was added again by a
    /// new 額改定請求 (児童手当法第9条第1項・第3項). The fields above are
    /// the current period.
    pub earlier: Vec<Spell>,
}

/// An earlier, closed period of a child on a claim ([`ChildRow::earlier`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spell {
    pub requested_on: NaiveDate,
    pub event_on: Option<NaiveDate>,
    pub left_on: NaiveDate,
    pub left_reason: Option<String>,
}

/// A child living elsewhere, added to a running claim by the clerk (a 額改定
/// 請求 for 別居監護 or 大学生等の生計費負担).
#[derive(Debug, Clone)]
pub struct ApartChild {
    /// The 宛名番号 (a child of this municipality, read from the registry),
    /// or None for a child not resident here (entered by hand).
    pub addressee: Option<String>,
    pub name: String,
    pub birth: NaiveDate,
    pub basis: rules::Basis,
    /// The day from which the basis holds.
    pub since: NaiveDate,
    /// The day of the 額改定請求.
    pub requested_on: NaiveDate,
    /// The 15-day rule applies (第9条第2項, 第8条第3項): `since` is the
    /// event (a move, an unavoidable reason) it counts from.
    pub fifteen_day_rule: bool,
}

/// Why a child was not added or ended (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildRefused {
    NoClaim,
    ClaimEnded,
    /// The child is on the claim already (or was, and ended).
    AlreadyOnClaim {
        ended: bool,
    },
    /// A registry child counted in another running claim.
    OtherClaim,
    /// No such child on the claim.
    NotOnClaim,
    /// The child has ended already.
    AlreadyEnded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimRow {
    pub id: i64,
    pub claimant: String,
    pub claimant_name: String,
    pub household: String,
    pub claimed_on: NaiveDate,
    pub event_on: Option<NaiveDate>,
    pub public_servant: bool,
    pub ended_on: Option<NaiveDate>,
    pub end_reason: Option<String>,
    pub children: Vec<ChildRow>,
    /// 振込先口座 (None: 口座未登録; the claim is held out of payment files).
    /// Never serialized as it is: the API shows it masked.
    #[serde(skip)]
    pub account: Option<BankAccount>,
    /// The online filing it was entered from (the registry's number).
    pub filing: Option<i64>,
}

impl ClaimRow {
    /// The claim as the rules see it.
    pub fn rules(&self) -> rules::Claim {
        let (from, _) = rules::first_paid_month(self.claimed_on, self.event_on);
        rules::Claim {
            from,
            ended_on: self.ended_on,
            // A child who left and came back is one rules' child per
            // period: never counted between the month they left and the
            // month after the new 額改定請求 (第9条).
            children: self
                .children
                .iter()
                .flat_map(|c| {
                    let child = |requested_on, event_on, left_on| rules::Child {
                        key: c.child.clone(),
                        birth: c.birth,
                        from: rules::first_paid_month(requested_on, event_on).0.max(from),
                        left_on,
                        supported: c.supported,
                        basis: c.basis,
                    };
                    c.earlier
                        .iter()
                        .map(move |s| child(s.requested_on, s.event_on, Some(s.left_on)))
                        .chain(std::iter::once(child(
                            c.requested_on,
                            c.event_on,
                            c.left_on,
                        )))
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }
    /// The first month paid and whether the 15-day rule gave it.
    pub fn first_month(&self) -> (YearMonth, bool) {
        rules::first_paid_month(self.claimed_on, self.event_on)
    }
}

/// A new claim as a clerk enters it.
#[derive(Debug, Clone)]
pub struct NewClaim {
    pub claimant: String,
    pub claimant_name: String,
    pub household: String,
    pub claimed_on: NaiveDate,
    pub event_on: Option<NaiveDate>,
    pub public_servant: bool,
    pub children: Vec<(String, String, NaiveDate)>,
    pub entered_by: String,
    /// 振込先口座 as entered on the claim form (None: not given yet).
    pub account: Option<BankAccount>,
    /// The online filing it is entered from.
    pub filing: Option<i64>,
}

/// One line of a payment file: a claimant and the months paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentLine {
    pub claim_id: i64,
    pub claimant: String,
    pub claimant_name: String,
    pub amount: i64,
    pub months: Vec<String>,
    /// What this file pays for each of `months` (the whole month, or the
    /// difference to an earlier payment).
    pub amounts: Vec<i64>,
    /// [`PayRule::Regular`] or [`PayRule::Arrears`] (過去分) in a regular
    /// file, [`PayRule::OnEnd`] in a special one.
    pub rule: PayRule,
    /// 内払調整 (児童手当法第13条): the part of `amount` withheld against
    /// the claim's overpayments; the transfer is `amount - offset`.
    pub offset: i64,
    /// The account it is transferred to (None: 口座未登録 — such a line is
    /// never in a file: it is held, and stays due, until an account is
    /// entered; a file made before accounts were kept shows none).
    pub account: Option<BankAccount>,
}

/// An overpayment (過払) recorded for one month of a claim, and how far it
/// is recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryRow {
    pub id: i64,
    pub claim_id: i64,
    pub month: YearMonth,
    /// What was paid for the month and what is due now.
    pub paid: i64,
    pub due: i64,
    /// Overpaid: to be recovered.
    pub amount: i64,
    pub reduction: rules::Reduction,
    pub found_at: chrono::DateTime<chrono::Utc>,
    /// The registry event that revealed it (None: a clerk's change).
    pub event_id: Option<String>,
    /// Withheld from payment files so far (第13条), by file: (run, yen).
    pub offsets: Vec<(i64, i64)>,
    /// The payment file after which the rest became a 返還請求.
    pub demanded_run: Option<i64>,
    /// Cancelled because the reduction was undone (the event behind it
    /// cancelled in the registry, or a clerk's correction), yen in all.
    pub cancelled: i64,
    /// Repayments received from the claimant, by receipt: (repayment id,
    /// day received, yen). A repayment cancelled as entered wrongly is
    /// not here.
    pub repaid: Vec<(i64, NaiveDate, i64)>,
    /// Paid back to the claimant (還付) by payment files, by file: (run,
    /// yen).
    pub refunds: Vec<(i64, i64)>,
}

impl RecoveryRow {
    /// Withheld from payment files.
    pub fn offset(&self) -> i64 {
        self.offsets.iter().map(|o| o.1).sum()
    }
    /// Repaid by the claimant.
    pub fn repaid_total(&self) -> i64 {
        self.repaid.iter().map(|r| r.2).sum()
    }
    /// Paid back to the claimant (還付).
    pub fn refunded(&self) -> i64 {
        self.refunds.iter().map(|r| r.1).sum()
    }
    /// Recovered and kept: withheld and repaid, less what was refunded.
    pub fn collected(&self) -> i64 {
        self.offset() + self.repaid_total() - self.refunded()
    }
    /// Overpaid as things stand: the amount less what was cancelled.
    pub fn owed(&self) -> i64 {
        (self.amount - self.cancelled).max(0)
    }
    /// Still to be recovered (withheld or repaid).
    pub fn remaining(&self) -> i64 {
        (self.owed() - self.collected()).max(0)
    }
    /// Recovered beyond what is owed now (the reduction was undone after
    /// part of it was withheld or repaid) and not refunded yet: to be paid
    /// back to the claimant.
    pub fn refund_due(&self) -> i64 {
        (self.collected() - self.owed()).max(0)
    }
    pub fn state(&self) -> rules::Recovery {
        rules::Recovery::of(
            self.amount,
            self.cancelled,
            self.collected(),
            self.demanded_run.is_some(),
        )
    }
}

/// A repayment of overpayments received from a claimant (返還金の収納).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repayment {
    pub id: i64,
    pub claim_id: i64,
    pub amount: i64,
    pub received_on: NaiveDate,
    pub recorded_by: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// Cancelled as entered wrongly (収納の取消し): the reason, the
    /// clerk and when. A cancelled repayment counts for nothing.
    pub cancelled: Option<RepaymentCancellation>,
}

/// Why and by whom a recorded repayment was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepaymentCancellation {
    pub reason: String,
    pub by: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Why a repayment was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepaymentRefused {
    /// Nothing of the claim is to be recovered.
    NothingOwed,
    /// More than what is to be recovered (`owed`, yen).
    MoreThanOwed { owed: i64 },
    /// Received before the overpayment it would settle was found (on
    /// `found_on`, in Japan): nothing was owed then.
    BeforeFound { found_on: NaiveDate },
}

/// A 未支払請求 (児童手当法第12条第1項, 施行規則第9条): the claimant died
/// with allowance not yet paid; it is paid to the child (児童であつた者),
/// into the account the claim names (the child's, or a guardian's for the
/// child). One per claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnpaidClaim {
    pub id: i64,
    pub claim_id: i64,
    /// The child it is paid to (宛名番号 or the key of a child living
    /// elsewhere), one of the claim's children.
    pub child: String,
    /// 請求者: the child, or the person acting for the child.
    pub requester_name: String,
    pub requester_kana: String,
    #[serde(skip)]
    pub account: BankAccount,
    /// 請求日.
    pub requested_on: NaiveDate,
    pub recorded_by: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// A 未支払請求 as the clerk enters it (each field checked already).
#[derive(Debug, Clone)]
pub struct NewUnpaidClaim {
    pub child: String,
    pub requester_name: String,
    pub requester_kana: String,
    pub account: BankAccount,
    pub requested_on: NaiveDate,
}

/// Why a 未支払請求 was not recorded (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpaidRefused {
    /// No such claim.
    NoClaim,
    /// The claim did not end by the claimant's death.
    NotDeceased,
    /// The child is not one of the claim's children paid for (a
    /// 大学生等 only counted is not: no allowance was due for them).
    NotOnClaim,
    /// A 未支払請求 is recorded for this claim already.
    AlreadyRecorded,
}

/// The end reason a claim ended by the claimant's death carries
/// ([`crate::worker::departure`]).
pub const DEATH: &str = "死亡";

/// Why a repayment was not cancelled (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRefused {
    /// No such repayment of this claim.
    NoRepayment,
    /// Cancelled already.
    AlreadyCancelled,
}

/// A 返還通知書 (notice to return an overpayment) as issued: what it
/// demanded, from whom at which address, and by when. Printed again
/// from this record, as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub id: i64,
    pub claim_id: i64,
    /// Yen to return, in all.
    pub amount: i64,
    /// The overpayments it demands: (recovery id, yen still owed of it
    /// when issued).
    pub parts: Vec<(i64, i64)>,
    pub issued_on: NaiveDate,
    /// 納付期限.
    pub due_on: NaiveDate,
    /// The claimant's name and address as the registry showed them when
    /// the notice was issued.
    pub name: String,
    pub postal_code: Option<String>,
    pub address: String,
    pub issued_by: String,
    pub issued_at: chrono::DateTime<chrono::Utc>,
}

/// What the clerk issues a notice with.
#[derive(Debug, Clone)]
pub struct NewNotice {
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub name: String,
    pub postal_code: Option<String>,
    pub address: String,
}

/// Why a notice was not issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeRefused {
    /// Nothing of the claim is a 返還請求.
    NothingDemanded,
}

/// An online filing a claim was entered from, as its work item recorded
/// it: the registry's number, the 受付番号 and the day it was received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilingRef {
    pub filing_id: i64,
    pub receipt: String,
    pub received_on: Option<NaiveDate>,
}

/// A payment file made and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRun {
    pub id: i64,
    pub rule: PayRule,
    /// The day it was made for (a regular one: the payment month's 1st).
    pub made_on: NaiveDate,
    /// The month it is paid in.
    pub pay_month: YearMonth,
    pub made_at: chrono::DateTime<chrono::Utc>,
    pub approved_by: String,
    pub total: i64,
    pub lines: i64,
}

/// A person as the registry's API showed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub addressee_number: String,
    pub name: String,
    pub birth: Option<NaiveDate>,
    pub household: String,
    pub relationship: String,
    pub resident: bool,
    /// 消除事由 and its date (転出: the planned move-out date).
    pub removal: Option<(String, Option<NaiveDate>)>,
}

fn date(s: Option<String>) -> Result<Option<NaiveDate>, StoreError> {
    s.map(|s| {
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map_err(|e| StoreError::Corrupt(format!("{s}: {e}")))
    })
    .transpose()
}

fn req_date(s: String) -> Result<NaiveDate, StoreError> {
    date(Some(s)).map(|d| d.expect("some"))
}

/// A name compared for sameness: spaces (half- or full-width) left out.
fn fold_name(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn iso(d: Option<NaiveDate>) -> Option<String> {
    d.map(|d| d.format("%Y-%m-%d").to_string())
}

/// Adds `column` to `table` unless it is there already (a column added
/// after the first release).
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<(), StoreError> {
    let has: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Task(format!("{dir:?}: {e}")))?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Added after the first release: an account given a temporary
        // password must choose its own at the next sign-in.
        let has_must_change: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('accounts') WHERE name = 'must_change'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has_must_change {
            conn.execute_batch(
                "ALTER TABLE accounts ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        // Added after the first release: the registry change that ended a
        // claim or took a child away (its `change_id`), so that a 異動の
        // 取消し undoes exactly what the cancelled change did. Rows from
        // before have none and are never undone by the worker (the clerk
        // gets a work item instead).
        add_column(&conn, "claims", "end_change", "INTEGER")?;
        add_column(&conn, "claim_children", "left_change", "INTEGER")?;
        // The form a repayment was recorded from (its one-time key): a
        // resubmitted form records nothing twice.
        add_column(&conn, "repayments", "nonce", "TEXT")?;
        // What a work item is about in yen (a refund due).
        add_column(&conn, "work_items", "amount", "INTEGER")?;
        // The online filing a work item is about (a 児童手当認定請求 filed
        // on the citizen portal and approved for this system): the
        // registry's filing number and the citizen's 受付番号.
        add_column(&conn, "work_items", "filing_id", "INTEGER")?;
        add_column(&conn, "work_items", "receipt", "TEXT")?;
        // A child living elsewhere added by the clerk (別居監護, 大学生等の
        // 生計費負担) and a child ended by hand: rows from before are
        // children of the claimant's household, identified by 宛名番号.
        add_column(
            &conn,
            "claim_children",
            "basis",
            "TEXT NOT NULL DEFAULT 'household'",
        )?;
        add_column(&conn, "claim_children", "basis_since", "TEXT")?;
        add_column(
            &conn,
            "claim_children",
            "registered",
            "INTEGER NOT NULL DEFAULT 1",
        )?;
        add_column(&conn, "claim_children", "ended_by", "TEXT")?;
        conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS repayments_nonce ON repayments (nonce)",
        )?;
        // The claimant's 振込先口座 (金融機関コード, 支店コード, 預金種目,
        // 口座番号, 口座名義): claims from before have none, and are held
        // out of payment files (口座未登録) until the clerk enters one.
        for column in [
            "bank_code",
            "branch_code",
            "account_kind",
            "account_number",
            "account_holder",
        ] {
            add_column(&conn, "claims", column, "TEXT")?;
        }
        // The online filing the claim was entered from (the registry's
        // filing number): its page shows what was filed.
        add_column(&conn, "claims", "filing_id", "INTEGER")?;
        // The account each line of a payment file was paid into, as it was
        // when the file was approved (a later change of account does not
        // rewrite a file made).
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS run_accounts (
                run_id INTEGER NOT NULL REFERENCES payment_runs(id),
                claim_id INTEGER NOT NULL REFERENCES claims(id),
                bank_code TEXT NOT NULL,
                branch_code TEXT NOT NULL,
                account_kind TEXT NOT NULL,
                account_number TEXT NOT NULL,
                account_holder TEXT NOT NULL,
                PRIMARY KEY (run_id, claim_id)
            )",
        )?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            clock: Arc::default(),
        })
    }

    /// Fixes the moment this store records an overpayment as found (a
    /// test's clock, matching the pages' "today"); None: the wall clock.
    pub fn set_now(&self, now: Option<chrono::DateTime<chrono::Utc>>) {
        if let Ok(mut c) = self.clock.lock() {
            *c = now;
        }
    }

    /// Now, by [`Store::set_now`]'s clock or the wall clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock
            .lock()
            .ok()
            .and_then(|c| *c)
            .unwrap_or_else(chrono::Utc::now)
    }

    /// Runs `f` on the connection off the async threads.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| StoreError::Task("connection lock poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub async fn cursor(&self, tenant: &str) -> Result<i64, StoreError> {
        let t = tenant.to_string();
        self.run(move |c| {
            Ok(
                c.query_row("SELECT after_seq FROM cursor WHERE tenant = ?1", [t], |r| {
                    r.get(0)
                })
                .optional()?
                .unwrap_or(0),
            )
        })
        .await
    }

    /// The day this system began to read the tenant's feed: a change the
    /// registry recorded before it is history this system did not see
    /// happen; one recorded since is live, however late the worker reads
    /// it (an outage must not lose a work item). Recorded as `today` the
    /// first time it is asked.
    pub async fn feed_started_on(
        &self,
        tenant: &str,
        today: NaiveDate,
    ) -> Result<NaiveDate, StoreError> {
        let t = tenant.to_string();
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO feed_start (tenant, started_on) VALUES (?1, ?2)",
                rusqlite::params![t, today.to_string()],
            )?;
            let d: String = c.query_row(
                "SELECT started_on FROM feed_start WHERE tenant = ?1",
                [&t],
                |r| r.get(0),
            )?;
            d.parse()
                .map_err(|_| StoreError::Task(format!("feed start {d:?} is not a date")))
        })
        .await
    }

    pub async fn claims(&self) -> Result<Vec<ClaimRow>, StoreError> {
        self.run(|c| claims_where(c, "1 = 1", [])).await
    }

    pub async fn claim(&self, id: i64) -> Result<Option<ClaimRow>, StoreError> {
        self.run(move |c| Ok(claims_where(c, "id = ?1", [id])?.into_iter().next()))
            .await
    }

    pub async fn work_items(&self, open_only: bool) -> Result<Vec<WorkItem>, StoreError> {
        self.run(move |c| work_items(c, open_only)).await
    }

    pub async fn work_item(&self, id: i64) -> Result<Option<WorkItem>, StoreError> {
        self.run(move |c| Ok(work_items(c, false)?.into_iter().find(|w| w.id == id)))
            .await
    }

    pub async fn close_work_item(&self, id: i64, log: Entry) -> Result<bool, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE work_items SET done = 1 WHERE id = ?1 AND done = 0",
                [id],
            )?;
            if n > 0 {
                audit::append(&tx, &log, chrono::Utc::now())?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    // -------------------------------------------------------------- log

    /// Appends one access-log entry (a read, a sign-in).
    pub async fn log(&self, e: Entry) -> Result<i64, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = audit::append(&tx, &e, chrono::Utc::now())?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// The newest access-log entries, newest first.
    pub async fn log_rows(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<audit::Row>, StoreError> {
        self.run(move |c| audit::newest(c, limit, before)).await
    }

    /// Checks the whole access-log chain.
    pub async fn verify_log(&self) -> Result<audit::Verified, StoreError> {
        self.run(|c| audit::verify(c)).await
    }

    // -------------------------------------------------------------- accounts

    /// Creates an account; false if the login exists.
    pub async fn create_account(
        &self,
        login: &str,
        name: &str,
        role: Role,
        password_hash: String,
        log: Entry,
    ) -> Result<bool, StoreError> {
        let (l, n) = (login.to_string(), name.to_string());
        self.run(move |c| {
            let tx = c.transaction()?;
            let k = tx.execute(
                "INSERT OR IGNORE INTO accounts (login, display_name, role, password_hash, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![l, n, role.code(), password_hash, chrono::Utc::now().to_rfc3339(), log.account],
            )?;
            if k > 0 {
                audit::append(&tx, &log, chrono::Utc::now())?;
            }
            tx.commit()?;
            Ok(k > 0)
        })
        .await
    }

    /// Every account, by login.
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.run(|c| {
            let mut st = c.prepare(
                "SELECT login, display_name, role, disabled, must_change FROM accounts ORDER BY login",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, bool>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(login, display_name, role, disabled, must_change)| {
                    Ok(Account {
                        role: Role::parse(&role)
                            .ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
                        login,
                        display_name,
                        disabled,
                        must_change,
                    })
                })
                .collect()
        })
        .await
    }

    /// The account and its password hash.
    pub async fn account(&self, login: &str) -> Result<Option<(Account, String)>, StoreError> {
        let l = login.to_string();
        self.run(move |c| {
            let r = c
                .query_row(
                    "SELECT login, display_name, role, disabled, password_hash, must_change FROM accounts WHERE login = ?1",
                    [l],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, bool>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, bool>(5)?,
                        ))
                    },
                )
                .optional()?;
            r.map(|(login, display_name, role, disabled, hash, must_change)| {
                Ok((
                    Account {
                        role: Role::parse(&role)
                            .ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
                        login,
                        display_name,
                        disabled,
                        must_change,
                    },
                    hash,
                ))
            })
            .transpose()
        })
        .await
    }

    /// Sets an account's password hash (Argon2id, [`accounts::hash_password`])
    /// and whether it must be changed at the next sign-in (a temporary one
    /// from a supervisor's reset), in one transaction with its access-log
    /// entry. False: no such account.
    pub async fn set_password(
        &self,
        login: &str,
        password_hash: String,
        must_change: bool,
        log: Entry,
    ) -> Result<bool, StoreError> {
        let l = login.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE accounts SET password_hash = ?2, must_change = ?3 WHERE login = ?1",
                params![l, password_hash, must_change],
            )?;
            if n == 0 {
                return Ok(false);
            }
            // Earlier failures no longer say anything about this password.
            tx.execute("DELETE FROM login_failures WHERE login = ?1", [&l])?;
            audit::append(&tx, &log, chrono::Utc::now())?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Changes an account's role and whether it is disabled; false if no
    /// such account. Refused (false) if it would leave no enabled
    /// supervisor.
    pub async fn set_account(
        &self,
        login: &str,
        role: Role,
        disabled: bool,
        log: Entry,
    ) -> Result<Result<(), &'static str>, StoreError> {
        let l = login.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE accounts SET role = ?2, disabled = ?3 WHERE login = ?1",
                params![l, role.code(), disabled],
            )?;
            if n == 0 {
                return Ok(Err("no_account"));
            }
            let supervisors: i64 = tx.query_row(
                "SELECT COUNT(*) FROM accounts WHERE role = 'supervisor' AND disabled = 0",
                [],
                |r| r.get(0),
            )?;
            if supervisors == 0 {
                return Ok(Err("last_supervisor"));
            }
            audit::append(&tx, &log, chrono::Utc::now())?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    /// Wall 3 of [`accounts`]: admits a sign-in attempt for `login` from
    /// `source` (counted now, before the password is checked; its row id
    /// is returned to take it back), or the seconds to wait.
    pub async fn admit_login(
        &self,
        login: &str,
        source: &str,
        now: i64,
    ) -> Result<Result<i64, u64>, StoreError> {
        let (l, src) = (login.to_string(), source.to_string());
        let window = accounts::ACCOUNT_WINDOW.as_secs() as i64;
        self.run(move |c| {
            let tx = c.transaction()?;
            // Failures older than the window count for no one (all
            // logins: typed unknown logins do not pile up).
            tx.execute(
                "DELETE FROM login_failures WHERE at <= ?1",
                params![now - window],
            )?;
            let (n, oldest): (i64, Option<i64>) = tx.query_row(
                "SELECT COUNT(*), MIN(at) FROM login_failures WHERE login = ?1 AND source = ?2",
                params![l, src],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if n >= accounts::MAX_ACCOUNT_FAILURES {
                let left = oldest.unwrap_or(now) + window - now;
                return Ok(Err(left.max(1) as u64));
            }
            tx.execute(
                "INSERT INTO login_failures (login, source, at) VALUES (?1, ?2, ?3)",
                params![l, src, now],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Ok(id))
        })
        .await
    }

    /// The attempt proved right: not a failure.
    pub async fn take_back_login(&self, attempt: i64) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute("DELETE FROM login_failures WHERE rowid = ?1", [attempt])?;
            Ok(())
        })
        .await
    }

    // -------------------------------------------------------------- payments

    /// What a payment file of `rule` made on `on` would pay now (nothing
    /// recorded): every claim paid by the municipality (not 公務員), the
    /// months due and not paid by an earlier file ([`rules::due_months`]).
    pub async fn due(&self, rule: PayRule, on: NaiveDate) -> Result<Vec<PaymentLine>, StoreError> {
        self.run(move |c| Ok(due_lines_offset(c, rule, on)?.0))
            .await
    }

    /// What a payment file of `rule` made on `on` holds out because the
    /// claim has no 振込先口座 (口座未登録): not paid by it, due still.
    pub async fn held(&self, rule: PayRule, on: NaiveDate) -> Result<Vec<PaymentLine>, StoreError> {
        self.run(move |c| Ok(due_lines_offset(c, rule, on)?.2))
            .await
    }

    /// The overpayments (過払) recorded for a claim, oldest first.
    pub async fn recoveries(&self, claim_id: i64) -> Result<Vec<RecoveryRow>, StoreError> {
        self.run(move |c| recoveries_where(c, "claim_id = ?1", [claim_id]))
            .await
    }

    /// Every overpayment not settled yet (内払調整待ち and 返還請求).
    pub async fn open_recoveries(&self) -> Result<Vec<RecoveryRow>, StoreError> {
        self.run(|c| {
            Ok(recoveries_where(c, "1 = 1", [])?
                .into_iter()
                .filter(|r| r.remaining() > 0)
                .collect())
        })
        .await
    }

    /// Makes a payment file and records every month it pays, in one
    /// transaction with its access-log entry, so the next file does not
    /// pay them again. Returns the run (None: nothing was due).
    pub async fn approve_payment(
        &self,
        rule: PayRule,
        on: NaiveDate,
        log: Entry,
    ) -> Result<Option<PaymentRun>, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let (lines, taken, _held) = due_lines_offset(&tx, rule, on)?;
            if lines.is_empty() {
                return Ok(None);
            }
            let refunds = refunds_due(&tx)?;
            let pay_month = YearMonth::of(on);
            // What is transferred: each line less its 内払調整.
            let total: i64 = lines.iter().map(|l| l.amount - l.offset).sum();
            let at = chrono::Utc::now();
            tx.execute(
                "INSERT INTO payment_runs (rule, made_on, pay_month, made_at, approved_by, total, lines) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![rule.code(), iso(Some(on)), pay_month.iso(), at.to_rfc3339(), log.account, total, lines.len() as i64],
            )?;
            let id = tx.last_insert_rowid();
            for l in &lines {
                if let Some(a) = &l.account {
                    tx.execute(
                        "INSERT OR IGNORE INTO run_accounts (run_id, claim_id, bank_code, branch_code, account_kind, account_number, account_holder) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![id, l.claim_id, a.bank, a.branch, a.kind.code(), a.number, a.holder],
                    )?;
                }
                if l.rule == PayRule::Refund {
                    // 還付: recorded against each overpayment (never as a
                    // month paid), so no later file pays it again; the
                    // clerk's work item for it is done.
                    for (recovery, _, amount) in refunds.get(&l.claim_id).into_iter().flatten() {
                        tx.execute(
                            "INSERT INTO recovery_refunds (recovery_id, run_id, amount) VALUES (?1, ?2, ?3)",
                            params![recovery, id, amount],
                        )?;
                    }
                    tx.execute(
                        "UPDATE work_items SET done = 1 WHERE done = 0 AND kind = ?1 AND claim_id = ?2",
                        params![WorkKind::RefundDue.code(), l.claim_id],
                    )?;
                    continue;
                }
                for (m, amount) in l.months.iter().zip(&l.amounts) {
                    // The first payment of a month goes to paid_months,
                    // whose primary key (claim, month) refuses a second;
                    // a later difference (過去分) to paid_differences, one
                    // per file.
                    let first = tx
                        .query_row(
                            "SELECT 1 FROM paid_months WHERE claim_id = ?1 AND month = ?2",
                            params![l.claim_id, m],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_none();
                    let table = if first { "paid_months" } else { "paid_differences" };
                    tx.execute(
                        &format!("INSERT INTO {table} (claim_id, month, claimant, amount, rule, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                        params![l.claim_id, m, l.claimant, amount, l.rule.code(), id],
                    )?;
                }
            }
            // 内払調整 (第13条): what this file withholds from each
            // overpayment; then what it could not absorb becomes a 返還請求
            // — for the claims this file paid (their payment came and
            // could not absorb it), and after a regular file also for the
            // claims that have ended (no regular payment follows). Never
            // for a claim this file did not pay: a second file of the same
            // month for another claimant leaves its overpayment to be
            // withheld from its own next payment.
            for (recovery, amount) in &taken {
                tx.execute(
                    "INSERT INTO recovery_offsets (recovery_id, run_id, amount) VALUES (?1, ?2, ?3)",
                    params![recovery, id, amount],
                )?;
            }
            let open = format!("demanded_run IS NULL AND {REMAINING_SQL} > 0");
            match rule {
                PayRule::Regular => {
                    tx.execute(
                        &format!("UPDATE recoveries SET demanded_run = ?1 WHERE {open} AND claim_id IN (SELECT claim_id FROM paid_months WHERE run_id = ?1 UNION SELECT claim_id FROM paid_differences WHERE run_id = ?1 UNION SELECT id FROM claims WHERE ended_on IS NOT NULL)"),
                        params![id],
                    )?;
                }
                _ => {
                    tx.execute(
                        &format!("UPDATE recoveries SET demanded_run = ?1 WHERE {open} AND claim_id IN (SELECT claim_id FROM paid_months WHERE run_id = ?1 UNION SELECT claim_id FROM paid_differences WHERE run_id = ?1)"),
                        params![id],
                    )?;
                }
            }
            let withheld: i64 = taken.iter().map(|t| t.1).sum();
            let refunded: i64 = lines
                .iter()
                .filter(|l| l.rule == PayRule::Refund)
                .map(|l| l.amount)
                .sum();
            let mut log = log;
            log.subject = format!("run:{id}");
            log.detail = format!("{}件 {}", lines.len(), crate::web::yen(total));
            if withheld > 0 {
                log.detail
                    .push_str(&format!("（内払調整 {}）", crate::web::yen(withheld)));
            }
            if refunded > 0 {
                log.detail
                    .push_str(&format!("（うち還付 {}）", crate::web::yen(refunded)));
            }
            audit::append(&tx, &log, at)?;
            tx.commit()?;
            Ok(Some(PaymentRun {
                id,
                rule,
                made_on: on,
                pay_month,
                made_at: at,
                approved_by: log.account.clone(),
                total,
                lines: lines.len() as i64,
            }))
        })
        .await
    }

    /// Every payment file made, newest first.
    pub async fn payment_runs(&self) -> Result<Vec<PaymentRun>, StoreError> {
        self.run(|c| runs_where(c, "1 = 1", [])).await
    }

    pub async fn payment_run(&self, id: i64) -> Result<Option<PaymentRun>, StoreError> {
        self.run(move |c| Ok(runs_where(c, "id = ?1", [id])?.into_iter().next()))
            .await
    }

    /// The lines of a recorded payment file, by claim.
    pub async fn run_lines(&self, id: i64) -> Result<Vec<PaymentLine>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare(
                "SELECT p.claim_id, p.claimant, c.claimant_name, p.month, p.amount, p.rule FROM (SELECT * FROM paid_months UNION ALL SELECT * FROM paid_differences) p JOIN claims c ON c.id = p.claim_id WHERE p.run_id = ?1 ORDER BY p.claim_id, p.rule = 'regular', p.month",
            )?;
            let rows = st
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out: Vec<PaymentLine> = Vec::new();
            for (claim_id, claimant, name, month, amount, rule) in rows {
                let rule = PayRule::parse(&rule)
                    .ok_or_else(|| StoreError::Corrupt(format!("pay rule {rule}")))?;
                match out.last_mut() {
                    Some(l) if l.claim_id == claim_id && l.rule == rule => {
                        l.amount += amount;
                        l.months.push(month);
                        l.amounts.push(amount);
                    }
                    _ => out.push(PaymentLine {
                        claim_id,
                        claimant,
                        claimant_name: name,
                        amount,
                        months: vec![month],
                        amounts: vec![amount],
                        rule,
                        offset: 0,
                        account: None,
                    }),
                }
            }
            let mut st = c.prepare(
                "SELECT r.claim_id, SUM(o.amount) FROM recovery_offsets o JOIN recoveries r ON r.id = o.recovery_id WHERE o.run_id = ?1 GROUP BY r.claim_id",
            )?;
            let withheld: HashMap<i64, i64> = st
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            spread_offsets(&mut out, &withheld);
            // 還付 lines: one per claim, by overpayment.
            let mut st = c.prepare(
                "SELECT r.claim_id, c.claimant, c.claimant_name, r.month, f.amount FROM recovery_refunds f JOIN recoveries r ON r.id = f.recovery_id JOIN claims c ON c.id = r.claim_id WHERE f.run_id = ?1 ORDER BY r.claim_id, r.id",
            )?;
            let refunds = st
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut refund_lines: Vec<PaymentLine> = Vec::new();
            for (claim_id, claimant, name, month, amount) in refunds {
                match refund_lines.last_mut() {
                    Some(l) if l.claim_id == claim_id => {
                        l.amount += amount;
                        l.months.push(month);
                        l.amounts.push(amount);
                    }
                    _ => refund_lines.push(PaymentLine {
                        claim_id,
                        claimant,
                        claimant_name: name,
                        amount,
                        months: vec![month],
                        amounts: vec![amount],
                        rule: PayRule::Refund,
                        offset: 0,
                        account: None,
                    }),
                }
            }
            out.extend(refund_lines);
            // By claim, each claim's lines in their order (sort is stable).
            out.sort_by_key(|l| l.claim_id);
            let mut st = c.prepare(
                "SELECT claim_id, bank_code, branch_code, account_kind, account_number, account_holder FROM run_accounts WHERE run_id = ?1",
            )?;
            let accounts: HashMap<i64, Option<BankAccount>> = st
                .query_map([id], |r| Ok((r.get(0)?, account_of(r, 1)?)))?
                .collect::<Result<_, _>>()?;
            for l in &mut out {
                l.account = accounts.get(&l.claim_id).cloned().flatten();
            }
            Ok(out)
        })
        .await
    }

    /// The months of a claim already in a payment file, with amount, rule
    /// and file.
    pub async fn paid_months(
        &self,
        claim_id: i64,
    ) -> Result<Vec<(YearMonth, i64, PayRule, i64)>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare(
                "SELECT month, amount, rule, run_id FROM (SELECT * FROM paid_months UNION ALL SELECT * FROM paid_differences) WHERE claim_id = ?1 ORDER BY month, run_id",
            )?;
            let rows = st
                .query_map([claim_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(m, a, r, run)| {
                    Ok((
                        YearMonth::parse(&m)
                            .ok_or_else(|| StoreError::Corrupt(format!("month {m}")))?,
                        a,
                        PayRule::parse(&r)
                            .ok_or_else(|| StoreError::Corrupt(format!("pay rule {r}")))?,
                        run,
                    ))
                })
                .collect()
        })
        .await
    }

    pub async fn add_claim(&self, n: NewClaim, log: Entry) -> Result<i64, StoreError> {
        self.add_claim_then(n, log, |_| Vec::new()).await
    }

    /// [`Store::add_claim`], then, in the same transaction, the effects
    /// `then` gives for the claim as stored (a claim entered late: what
    /// the registry's changes since the 請求日 did to it, as the worker
    /// applies them to a running claim). Work items it raises carry the
    /// event id `claim:{id}`.
    pub async fn add_claim_then(
        &self,
        n: NewClaim,
        log: Entry,
        then: impl FnOnce(&ClaimRow) -> Vec<Effect> + Send + 'static,
    ) -> Result<i64, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO claims (claimant, claimant_name, household, claimed_on, event_on, public_servant, entered_by, filing_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![n.claimant, n.claimant_name, n.household, iso(Some(n.claimed_on)), iso(n.event_on), n.public_servant, n.entered_by, n.filing],
            )?;
            let id = tx.last_insert_rowid();
            if let Some(a) = &n.account {
                write_account(&tx, id, a)?;
            }
            for (child, name, birth) in &n.children {
                tx.execute(
                    "INSERT INTO claim_children (claim_id, child, name, birth, requested_on, event_on) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, child, name, iso(Some(*birth)), iso(Some(n.claimed_on)), iso(n.event_on)],
                )?;
            }
            tx.execute(
                "UPDATE work_items SET done = 1, claim_id = ?1 WHERE done = 0 AND household = ?2 AND kind IN ('birth_claim', 'move_in_claim', 'online_claim')",
                params![id, n.household],
            )?;
            if let Some(claim) = claims_where(&tx, "id = ?1", [id])?.pop() {
                let event = format!("claim:{id}");
                for e in then(&claim) {
                    e.apply(&tx, &event)?;
                }
            }
            let mut log = log;
            log.subject = format!("claim:{id}");
            audit::append(&tx, &log, chrono::Utc::now())?;
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Records (or changes) a claim's 振込先口座, with its access-log entry
    /// in the same transaction. False: no such claim.
    pub async fn set_bank_account(
        &self,
        claim_id: i64,
        account: BankAccount,
        log: Entry,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let exists = tx.query_row(
                "SELECT COUNT(*) FROM claims WHERE id = ?1",
                [claim_id],
                |r| r.get::<_, i64>(0),
            )? > 0;
            if !exists {
                return Ok(false);
            }
            write_account(&tx, claim_id, &account)?;
            audit::append(&tx, &log, chrono::Utc::now())?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Records a 未支払請求 (児童手当法第12条第1項) for a claim ended by the
    /// claimant's death, with its access-log entry in the same
    /// transaction; the next payment file pays what was held into its
    /// account. Refused (nothing written) for a claim not ended by a
    /// death, a child not on the claim, or a claim that has one already.
    pub async fn record_unpaid_claim(
        &self,
        claim_id: i64,
        n: NewUnpaidClaim,
        log: Entry,
    ) -> Result<Result<i64, UnpaidRefused>, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(claim) = claims_where(&tx, "id = ?1", [claim_id])?.pop() else {
                return Ok(Err(UnpaidRefused::NoClaim));
            };
            if claim.ended_on.is_none() || claim.end_reason.as_deref() != Some(DEATH) {
                return Ok(Err(UnpaidRefused::NotDeceased));
            }
            if !claim.children.iter().any(|x| x.child == n.child && x.basis != rules::Basis::StudentSupport) {
                return Ok(Err(UnpaidRefused::NotOnClaim));
            }
            if unpaid_claim_of(&tx, claim_id)?.is_some() {
                return Ok(Err(UnpaidRefused::AlreadyRecorded));
            }
            let at = chrono::Utc::now();
            let a = &n.account;
            tx.execute(
                "INSERT INTO unpaid_claims (claim_id, child, requester_name, requester_kana, bank_code, branch_code, account_kind, account_number, account_holder, requested_on, recorded_by, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![claim_id, n.child, n.requester_name, n.requester_kana, a.bank, a.branch, a.kind.code(), a.number, a.holder, iso(Some(n.requested_on)), log.account, at.to_rfc3339()],
            )?;
            let id = tx.last_insert_rowid();
            audit::append(&tx, &log, at)?;
            tx.commit()?;
            Ok(Ok(id))
        })
        .await
    }

    /// The 未支払請求 recorded for a claim, if any.
    pub async fn unpaid_claim(&self, claim_id: i64) -> Result<Option<UnpaidClaim>, StoreError> {
        self.run(move |c| unpaid_claim_of(c, claim_id)).await
    }

    /// A 額改定請求: a child added to a running claim; the work item of
    /// the child's birth, move-in or joining the household is done.
    pub async fn add_child(
        &self,
        claim_id: i64,
        child: (String, String, NaiveDate),
        requested_on: NaiveDate,
        event_on: Option<NaiveDate>,
        log: Entry,
    ) -> Result<bool, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            // A child of the household who left this claim (転出, 死亡 …)
            // and came back: the period before is kept, and the child is
            // counted again from this 額改定請求 (児童手当法第9条第1項),
            // never for the months away. Only a child who left before
            // this request can come back by it.
            let back = tx
                .execute(
                    "INSERT INTO claim_child_spells (claim_id, child, requested_on, event_on, left_on, left_reason, left_change) \
                     SELECT claim_id, child, requested_on, event_on, left_on, left_reason, left_change FROM claim_children \
                     WHERE claim_id = ?1 AND child = ?2 AND left_on IS NOT NULL AND left_on < ?3 AND registered = 1 AND basis = 'household'",
                    params![claim_id, child.0, iso(Some(requested_on))],
                )?;
            if back > 0 {
                tx.execute(
                    "UPDATE claim_children SET requested_on = ?3, event_on = ?4, left_on = NULL, left_reason = NULL, left_change = NULL, ended_by = NULL WHERE claim_id = ?1 AND child = ?2",
                    params![claim_id, child.0, iso(Some(requested_on)), iso(event_on)],
                )?;
            }
            let n = back
                + tx.execute(
                    "INSERT OR IGNORE INTO claim_children (claim_id, child, name, birth, requested_on, event_on) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![claim_id, child.0, child.1, iso(Some(child.2)), iso(Some(requested_on)), iso(event_on)],
                )?;
            tx.execute(
                "UPDATE work_items SET done = 1 WHERE done = 0 AND claim_id = ?1 AND person = ?2 AND kind IN ('birth_increase', 'move_in_claim', 'child_joined')",
                params![claim_id, child.0],
            )?;
            if n > 0 {
                audit::append(&tx, &log, chrono::Utc::now())?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    pub async fn set_supported(
        &self,
        claim_id: i64,
        child: String,
        supported: bool,
        log: Entry,
    ) -> Result<bool, StoreError> {
        let found_at = self.now();
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE claim_children SET supported = ?3 WHERE claim_id = ?1 AND child = ?2",
                params![claim_id, child, supported],
            )?;
            if n > 0 {
                record_overpayments(&tx, claim_id, None, found_at)?;
                audit::append(&tx, &log, chrono::Utc::now())?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    /// Adds a child living elsewhere to a running claim (a 額改定請求 for
    /// 別居監護 or 大学生等の生計費負担), in one transaction with its
    /// access-log entry. Refused, writing nothing, when the claim is
    /// unknown or ended, the child is on it already (the same 宛名番号, or
    /// the same name and birth date), or a registry child is counted in
    /// another running claim. Returns the child's key.
    pub async fn add_apart_child(
        &self,
        claim_id: i64,
        a: ApartChild,
        log: Entry,
    ) -> Result<Result<String, ChildRefused>, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(claim) = claims_where(&tx, "id = ?1", [claim_id])?.pop() else {
                return Ok(Err(ChildRefused::NoClaim));
            };
            if claim.ended_on.is_some() {
                return Ok(Err(ChildRefused::ClaimEnded));
            }
            let same_name = |x: &ChildRow| {
                x.birth == a.birth && fold_name(&x.name) == fold_name(&a.name)
            };
            if let Some(x) = claim.children.iter().find(|x| {
                a.addressee.as_deref() == Some(x.child.as_str()) || same_name(x)
            }) {
                return Ok(Err(ChildRefused::AlreadyOnClaim {
                    ended: x.left_on.is_some(),
                }));
            }
            if let Some(addr) = &a.addressee {
                let elsewhere: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM claim_children k JOIN claims c ON c.id = k.claim_id WHERE k.child = ?1 AND k.left_on IS NULL AND c.ended_on IS NULL AND c.id <> ?2",
                    params![addr, claim_id],
                    |r| r.get(0),
                )?;
                if elsewhere > 0 {
                    return Ok(Err(ChildRefused::OtherClaim));
                }
            }
            let key = match &a.addressee {
                Some(addr) => addr.clone(),
                None => {
                    // This system's own key for a child with no 宛名番号
                    // here: never shown on a page.
                    let n: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM claim_children WHERE claim_id = ?1 AND registered = 0",
                        [claim_id],
                        |r| r.get(0),
                    )?;
                    format!("outside-{claim_id}-{}", n + 1)
                }
            };
            tx.execute(
                "INSERT INTO claim_children (claim_id, child, name, birth, requested_on, event_on, supported, basis, basis_since, registered) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    claim_id,
                    key,
                    a.name,
                    iso(Some(a.birth)),
                    iso(Some(a.requested_on)),
                    iso(a.fifteen_day_rule.then_some(a.since)),
                    a.basis == rules::Basis::StudentSupport,
                    a.basis.code(),
                    iso(Some(a.since)),
                    a.addressee.is_some(),
                ],
            )?;
            // Months already paid may now be due more (過去分, paid by the
            // next regular file); nothing is reduced by an addition.
            let mut log = log;
            log.subject = format!("claim:{claim_id}");
            audit::append(&tx, &log, chrono::Utc::now())?;
            tx.commit()?;
            Ok(Ok(key))
        })
        .await
    }

    /// Ends a child of a claim by the clerk's hand (監護・生計同一でなくなった,
    /// 生計費の負担をやめた, 死亡, 国外に転出): counted through the month of
    /// `on`, reduced from the next (児童手当法第9条第3項). Months already
    /// paid for after it become overpayments (過払), in the same
    /// transaction as the change and its access-log entry.
    pub async fn end_child(
        &self,
        claim_id: i64,
        child: String,
        on: NaiveDate,
        reason: String,
        log: Entry,
    ) -> Result<Result<(), ChildRefused>, StoreError> {
        let found_at = self.now();
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(claim) = claims_where(&tx, "id = ?1", [claim_id])?.pop() else {
                return Ok(Err(ChildRefused::NoClaim));
            };
            let Some(row) = claim.children.iter().find(|x| x.child == child) else {
                return Ok(Err(ChildRefused::NotOnClaim));
            };
            if row.left_on.is_some() {
                return Ok(Err(ChildRefused::AlreadyEnded));
            }
            tx.execute(
                "UPDATE claim_children SET left_on = ?3, left_reason = ?4, left_change = NULL, ended_by = ?5 WHERE claim_id = ?1 AND child = ?2 AND left_on IS NULL",
                params![claim_id, child, iso(Some(on)), reason, log.account],
            )?;
            record_overpayments(&tx, claim_id, None, found_at)?;
            let mut log = log;
            log.subject = format!("claim:{claim_id}");
            audit::append(&tx, &log, chrono::Utc::now())?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    /// Whether `event_id` was applied already.
    pub async fn applied(&self, event_id: &str) -> Result<bool, StoreError> {
        let id = event_id.to_string();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM applied WHERE event_id = ?1",
                [id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }

    /// Applies one event's effects, its id and the cursor in one
    /// transaction; an event applied before changes nothing.
    pub async fn apply(
        &self,
        tenant: &str,
        seq: i64,
        event_id: &str,
        kind: &str,
        effects: Vec<Effect>,
    ) -> Result<bool, StoreError> {
        let (t, id, kind) = (tenant.to_string(), event_id.to_string(), kind.to_string());
        let found_at = self.now();
        self.run(move |c| {
            let tx = c.transaction()?;
            let seen = tx
                .query_row("SELECT 1 FROM applied WHERE event_id = ?1", [&id], |_| Ok(()))
                .optional()?
                .is_some();
            if !seen {
                for e in &effects {
                    e.apply(&tx, &id)?;
                }
                // A late event may reduce months already paid (過払), or
                // undo the reduction that made them overpaid.
                let mut touched: Vec<i64> = effects
                    .iter()
                    .filter_map(|e| match e {
                        Effect::EndClaim { claim_id, .. }
                        | Effect::ChildLeft { claim_id, .. }
                        | Effect::Reinstate { claim_id }
                        | Effect::ChildBack { claim_id, .. } => Some(*claim_id),
                        Effect::Work { .. } | Effect::OnlineClaim { .. } => None,
                    })
                    .collect();
                touched.sort_unstable();
                touched.dedup();
                for claim in touched {
                    record_overpayments(&tx, claim, Some(&id), found_at)?;
                }
                tx.execute("INSERT INTO applied (event_id, seq, type) VALUES (?1, ?2, ?3)", params![id, seq, kind])?;
            }
            tx.execute(
                "INSERT INTO cursor (tenant, after_seq) VALUES (?1, ?2) ON CONFLICT (tenant) DO UPDATE SET after_seq = MAX(after_seq, excluded.after_seq)",
                params![t, seq],
            )?;
            tx.commit()?;
            Ok(!seen)
        })
        .await
    }

    /// The claims whose claimant `person`'s entitlement ended, or from
    /// which the child `person` left, each with the registry change that
    /// did it (None: a row from before that was recorded, or an end a
    /// clerk entered). What a 異動の取消し may undo, if it cancels that
    /// very change.
    pub async fn claims_ended_for(
        &self,
        person: &str,
    ) -> Result<Vec<(ClaimRow, Option<i64>)>, StoreError> {
        let p = person.to_string();
        self.run(move |c| {
            let claims = claims_where(
                c,
                "(claimant = ?1 AND ended_on IS NOT NULL) OR id IN (SELECT claim_id FROM claim_children WHERE child = ?1 AND left_on IS NOT NULL)",
                [&p],
            )?;
            let mut out = Vec::with_capacity(claims.len());
            for claim in claims {
                let by: Option<i64> = if claim.claimant == p && claim.ended_on.is_some() {
                    c.query_row(
                        "SELECT end_change FROM claims WHERE id = ?1",
                        [claim.id],
                        |r| r.get(0),
                    )?
                } else {
                    c.query_row(
                        "SELECT left_change FROM claim_children WHERE claim_id = ?1 AND child = ?2",
                        params![claim.id, p],
                        |r| r.get(0),
                    )?
                };
                out.push((claim, by));
            }
            Ok(out)
        })
        .await
    }

    /// Records a repayment of overpayments received from the claimant of
    /// `claim_id` (返還金の収納) on `received_on`: applied to the claim's
    /// overpayments still to be recovered, oldest first, in one
    /// transaction with its access-log entry. Refused (nothing written)
    /// when nothing is owed or the amount is more than is owed. `nonce`
    /// is the one-time key of the form it came from: a form submitted
    /// again (a double click, a reload, a retry after a lost answer)
    /// returns the repayment recorded the first time and writes nothing.
    pub async fn record_repayment(
        &self,
        claim_id: i64,
        amount: i64,
        received_on: NaiveDate,
        nonce: &str,
        log: Entry,
    ) -> Result<Result<Repayment, RepaymentRefused>, StoreError> {
        let nonce = nonce.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            if let Some(done) = repayments_where(&tx, "nonce = ?1", [&nonce])?.pop() {
                return Ok(Ok(done));
            }
            let open_rows: Vec<RecoveryRow> = recoveries_where(&tx, "claim_id = ?1", [claim_id])?
                .into_iter()
                .filter(|r| r.remaining() > 0)
                .collect();
            let open: Vec<(i64, i64)> = open_rows.iter().map(|r| (r.id, r.remaining())).collect();
            let owed: i64 = open.iter().map(|o| o.1).sum();
            if owed == 0 {
                return Ok(Err(RepaymentRefused::NothingOwed));
            }
            // Nothing was owed before the first overpayment still open was
            // found: a day received before it is a wrong date.
            if let Some(found_on) = open_rows
                .iter()
                .map(|r| r.found_at.with_timezone(&machi_domain::dates::jst()).date_naive())
                .min()
                && received_on < found_on
            {
                return Ok(Err(RepaymentRefused::BeforeFound { found_on }));
            }
            if amount > owed {
                return Ok(Err(RepaymentRefused::MoreThanOwed { owed }));
            }
            let at = chrono::Utc::now();
            tx.execute(
                "INSERT INTO repayments (claim_id, amount, received_on, recorded_by, recorded_at, nonce) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![claim_id, amount, iso(Some(received_on)), log.account, at.to_rfc3339(), nonce],
            )?;
            let id = tx.last_insert_rowid();
            for (recovery, part) in rules::offset(amount, &open) {
                tx.execute(
                    "INSERT INTO repayment_parts (repayment_id, recovery_id, amount) VALUES (?1, ?2, ?3)",
                    params![id, recovery, part],
                )?;
            }
            let mut log = log;
            log.subject = format!("claim:{claim_id}");
            // The caller's detail names the day received (in 和暦).
            log.detail = format!(
                "{} {}（収納番号 {id}）",
                crate::web::yen(amount),
                log.detail
            );
            audit::append(&tx, &log, at)?;
            tx.commit()?;
            Ok(Ok(Repayment {
                id,
                claim_id,
                amount,
                received_on,
                recorded_by: log.account,
                recorded_at: at,
                cancelled: None,
            }))
        })
        .await
    }

    /// The repayments received for a claim, oldest first.
    pub async fn repayments(&self, claim_id: i64) -> Result<Vec<Repayment>, StoreError> {
        self.run(move |c| repayments_where(c, "claim_id = ?1", [claim_id]))
            .await
    }

    /// Cancels a repayment recorded wrongly (返還金の収納の取消し: a wrong
    /// amount, a payment that bounced), with the clerk's reason, in one
    /// transaction with its access-log entry: it no longer counts, so what
    /// it settled of the claim's overpayments is outstanding again (a
    /// 返還請求 stays one). Refused when the claim has no such repayment
    /// or it was cancelled already; the repayment is kept, marked.
    pub async fn cancel_repayment(
        &self,
        claim_id: i64,
        repayment_id: i64,
        reason: &str,
        log: Entry,
    ) -> Result<Result<Repayment, CancelRefused>, StoreError> {
        let reason = reason.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            let Some(r) = repayments_where(
                &tx,
                "id = ?1 AND claim_id = ?2",
                params![repayment_id, claim_id],
            )?
            .pop() else {
                return Ok(Err(CancelRefused::NoRepayment));
            };
            if r.cancelled.is_some() {
                return Ok(Err(CancelRefused::AlreadyCancelled));
            }
            let at = chrono::Utc::now();
            tx.execute(
                "INSERT INTO repayment_cancellations (repayment_id, reason, cancelled_by, cancelled_at) VALUES (?1, ?2, ?3, ?4)",
                params![repayment_id, reason, log.account, at.to_rfc3339()],
            )?;
            let mut log = log;
            log.subject = format!("claim:{claim_id}");
            log.detail = format!(
                "収納番号 {repayment_id} {} 取消し（理由：{reason}）",
                crate::web::yen(r.amount)
            );
            audit::append(&tx, &log, at)?;
            tx.commit()?;
            Ok(Ok(Repayment {
                cancelled: Some(RepaymentCancellation {
                    reason,
                    by: log.account,
                    at,
                }),
                ..r
            }))
        })
        .await
    }

    /// Issues a 返還通知書 for what of the claim is a 返還請求 now (every
    /// overpayment in state [`rules::Recovery::Demanded`], for what is
    /// still owed of it), in one transaction with its access-log entry.
    /// `nonce` is the form's one-time key: the same form sent again
    /// returns the notice issued the first time and writes nothing.
    pub async fn issue_notice(
        &self,
        claim_id: i64,
        n: NewNotice,
        nonce: &str,
        log: Entry,
    ) -> Result<Result<Notice, NoticeRefused>, StoreError> {
        let nonce = nonce.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            if let Some(done) = notices_where(&tx, "nonce = ?1", [&nonce])?.pop() {
                return Ok(Ok(done));
            }
            let parts: Vec<(i64, i64)> = recoveries_where(&tx, "claim_id = ?1", [claim_id])?
                .iter()
                .filter(|r| r.state() == rules::Recovery::Demanded)
                .map(|r| (r.id, r.remaining()))
                .collect();
            let amount: i64 = parts.iter().map(|p| p.1).sum();
            if amount == 0 {
                return Ok(Err(NoticeRefused::NothingDemanded));
            }
            let at = chrono::Utc::now();
            let parts_json =
                serde_json::to_string(&parts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO recovery_notices (claim_id, amount, parts, issued_on, due_on, addressee_name, postal_code, address, issued_by, issued_at, nonce) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![claim_id, amount, parts_json, iso(Some(n.issued_on)), iso(Some(n.due_on)), n.name, n.postal_code, n.address, log.account, at.to_rfc3339(), nonce],
            )?;
            let id = tx.last_insert_rowid();
            let mut log = log;
            log.subject = format!("claim:{claim_id}");
            // The caller's detail names the due date (in 和暦).
            log.detail = format!(
                "通知番号 {id} {} {}",
                crate::web::yen(amount),
                log.detail
            );
            audit::append(&tx, &log, at)?;
            tx.commit()?;
            Ok(Ok(Notice {
                id,
                claim_id,
                amount,
                parts,
                issued_on: n.issued_on,
                due_on: n.due_on,
                name: n.name,
                postal_code: n.postal_code,
                address: n.address,
                issued_by: log.account,
                issued_at: at,
            }))
        })
        .await
    }

    /// The 返還通知書 a form with one-time key `nonce` issued for the
    /// claim, if it was sent before.
    pub async fn notice_by_nonce(
        &self,
        claim_id: i64,
        nonce: &str,
    ) -> Result<Option<Notice>, StoreError> {
        let nonce = nonce.to_string();
        self.run(move |c| {
            Ok(notices_where(c, "claim_id = ?1 AND nonce = ?2", params![claim_id, nonce])?.pop())
        })
        .await
    }

    /// The 返還通知書 issued for a claim, oldest first.
    pub async fn notices(&self, claim_id: i64) -> Result<Vec<Notice>, StoreError> {
        self.run(move |c| notices_where(c, "claim_id = ?1", [claim_id]))
            .await
    }

    /// One 返還通知書 of a claim.
    pub async fn notice(&self, claim_id: i64, id: i64) -> Result<Option<Notice>, StoreError> {
        self.run(move |c| {
            Ok(
                notices_where(c, "claim_id = ?1 AND id = ?2", params![claim_id, id])?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    /// The online filing a claim was entered from, as its work item
    /// recorded it (None: entered at the counter, or from before filings
    /// were kept).
    pub async fn claim_filing(&self, claim_id: i64) -> Result<Option<FilingRef>, StoreError> {
        self.run(move |c| {
            let r = c
                .query_row(
                    "SELECT w.filing_id, w.receipt, w.event_on FROM claims c JOIN work_items w ON w.filing_id = c.filing_id AND w.kind = 'online_claim' WHERE c.id = ?1 ORDER BY w.id LIMIT 1",
                    [claim_id],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    },
                )
                .optional()?;
            r.map(|(filing_id, receipt, on)| {
                Ok(FilingRef {
                    filing_id,
                    receipt: receipt.unwrap_or_default(),
                    received_on: date(on)?,
                })
            })
            .transpose()
        })
        .await
    }

    /// The claims (with children) and work items of running claims whose
    /// claimant or child is `person` (open claims only).
    pub async fn claims_of_person(&self, person: &str) -> Result<Vec<ClaimRow>, StoreError> {
        let p = person.to_string();
        self.run(move |c| {
            claims_where(
                c,
                "ended_on IS NULL AND (claimant = ?1 OR id IN (SELECT claim_id FROM claim_children WHERE child = ?1))",
                [p],
            )
        })
        .await
    }

    pub async fn claims_of_household(&self, household: &str) -> Result<Vec<ClaimRow>, StoreError> {
        let h = household.to_string();
        self.run(move |c| claims_where(c, "ended_on IS NULL AND household = ?1", [h]))
            .await
    }

    /// Every table's rows as text, ordered: what a fault-free run is
    /// compared with.
    pub async fn snapshot(&self) -> Result<Vec<String>, StoreError> {
        self.run(|c| {
            let mut out = Vec::new();
            for (t, order) in [
                ("claims", "id"),
                ("claim_children", "claim_id, child"),
                ("work_items", "event_id, kind, person"),
                ("applied", "seq"),
            ] {
                let mut st = c.prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))?;
                let n = st.column_count();
                let rows = st.query_map([], |r| {
                    let mut s = format!("{t}:");
                    for i in 0..n {
                        let v: rusqlite::types::Value = r.get(i)?;
                        s.push_str(&format!(" {v:?}"));
                    }
                    Ok(s)
                })?;
                for r in rows {
                    out.push(r?);
                }
            }
            Ok(out)
        })
        .await
    }
}

/// What one event does to the allowance's data.
#[derive(Debug, Clone)]
pub enum Effect {
    /// A 児童手当認定請求 filed online (the registry's filing `filing_id`,
    /// 受付番号 `receipt`) by `person`, received on `received_on`.
    OnlineClaim {
        person: String,
        person_name: String,
        household: String,
        received_on: NaiveDate,
        filing_id: i64,
        receipt: String,
    },
    Work {
        kind: WorkKind,
        person: String,
        person_name: String,
        household: String,
        event_on: Option<NaiveDate>,
        claim_id: Option<i64>,
    },
    /// The claimant died or moved out: paid through the month of `on`.
    /// `change`: the registry change that did it (its `change_id`), kept
    /// so that only a cancellation of that change reinstates the claim.
    EndClaim {
        claim_id: i64,
        on: NaiveDate,
        reason: String,
        change: Option<i64>,
    },
    /// A child died or moved out: counted through the month of `on`.
    /// `change` as for [`Effect::EndClaim`].
    ChildLeft {
        claim_id: i64,
        child: String,
        on: NaiveDate,
        reason: String,
        change: Option<i64>,
    },
    /// The claimant's move-out or death was cancelled in the registry
    /// (異動の取消し): the entitlement never ended; running again.
    Reinstate { claim_id: i64 },
    /// A child's move-out or death was cancelled in the registry: counted
    /// again as before.
    ChildBack { claim_id: i64, child: String },
}

impl Effect {
    fn apply(&self, tx: &rusqlite::Transaction<'_>, event_id: &str) -> Result<(), StoreError> {
        match self {
            Effect::Work {
                kind,
                person,
                person_name,
                household,
                event_on,
                claim_id,
            } => {
                // The same work for the same claim, still open, is not
                // raised twice: a claim entered late raises what the
                // changes since its 請求日 mean for it, and a worker behind
                // the registry may then read those changes too.
                if claim_id.is_some()
                    && tx
                        .query_row(
                            "SELECT 1 FROM work_items WHERE done = 0 AND kind = ?1 AND person = ?2 AND claim_id = ?3 AND event_on IS ?4",
                            params![kind.code(), person, claim_id, iso(*event_on)],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some()
                {
                    return Ok(());
                }
                tx.execute(
                    "INSERT OR IGNORE INTO work_items (event_id, kind, person, person_name, household, event_on, claim_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![event_id, kind.code(), person, person_name, household, iso(*event_on), claim_id],
                )?;
            }
            Effect::OnlineClaim {
                person,
                person_name,
                household,
                received_on,
                filing_id,
                receipt,
            } => {
                tx.execute(
                    "INSERT OR IGNORE INTO work_items (event_id, kind, person, person_name, household, event_on, filing_id, receipt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![event_id, WorkKind::OnlineClaim.code(), person, person_name, household, iso(Some(*received_on)), filing_id, receipt],
                )?;
            }
            Effect::EndClaim {
                claim_id,
                on,
                reason,
                change,
            } => {
                tx.execute(
                    "UPDATE claims SET ended_on = ?2, end_reason = ?3, end_change = ?4 WHERE id = ?1 AND ended_on IS NULL",
                    params![claim_id, iso(Some(*on)), reason, change],
                )?;
            }
            Effect::ChildLeft {
                claim_id,
                child,
                on,
                reason,
                change,
            } => {
                tx.execute(
                    "UPDATE claim_children SET left_on = ?3, left_reason = ?4, left_change = ?5 WHERE claim_id = ?1 AND child = ?2 AND left_on IS NULL",
                    params![claim_id, child, iso(Some(*on)), reason, change],
                )?;
            }
            Effect::Reinstate { claim_id } => {
                tx.execute(
                    "UPDATE claims SET ended_on = NULL, end_reason = NULL, end_change = NULL WHERE id = ?1",
                    params![claim_id],
                )?;
            }
            Effect::ChildBack { claim_id, child } => {
                tx.execute(
                    "UPDATE claim_children SET left_on = NULL, left_reason = NULL, left_change = NULL WHERE claim_id = ?1 AND child = ?2",
                    params![claim_id, child],
                )?;
            }
        }
        Ok(())
    }
}

fn due_lines(c: &Connection, rule: PayRule, on: NaiveDate) -> Result<Vec<PaymentLine>, StoreError> {
    let claims = claims_where(c, "public_servant = 0", [])?;
    // 過去分 reach back to the first regular file this system made.
    let arrears_from: Option<String> = c.query_row(
        "SELECT MIN(pay_month) FROM payment_runs WHERE rule = 'regular'",
        [],
        |r| r.get(0),
    )?;
    let arrears_from = arrears_from.and_then(|m| YearMonth::parse(&m));
    let mut st = c.prepare(
        "SELECT month, SUM(amount) FROM (SELECT claim_id, month, amount FROM paid_months UNION ALL SELECT claim_id, month, amount FROM paid_differences) WHERE claim_id = ?1 GROUP BY month",
    )?;
    // 還付 is paid in regular files only (see [`PayRule::Refund`]).
    let refunds = if rule == PayRule::Regular {
        refunds_due(c)?
    } else {
        HashMap::new()
    };
    let mut out = Vec::new();
    for cl in claims {
        let paid = st
            .query_map([cl.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(m, a)| Some((YearMonth::parse(&m)?, a)))
            .collect();
        let due = rules::due_months(&cl.rules(), rule, on, &paid, arrears_from);
        // The claimant died (児童手当法第12条第1項): what is due is not
        // paid into the dead claimant's account but, as one 未支払 line,
        // into the account of the 未支払請求; without one it is held
        // (account None: 未支払請求待ち).
        let dead = cl.end_reason.as_deref() == Some(DEATH) && cl.ended_on.is_some_and(|e| e <= on);
        let account = if dead {
            unpaid_claim_of(c, cl.id)?.map(|u| u.account)
        } else {
            cl.account.clone()
        };
        let line = |rule: PayRule, months: Vec<String>, amounts: Vec<i64>| PaymentLine {
            claim_id: cl.id,
            claimant: cl.claimant.clone(),
            claimant_name: cl.claimant_name.clone(),
            amount: amounts.iter().sum(),
            months,
            amounts,
            rule,
            offset: 0,
            account: account.clone(),
        };
        let of = |ms: &[&rules::Due]| {
            (
                ms.iter().map(|m| m.month.month.iso()).collect::<Vec<_>>(),
                ms.iter().map(|m| m.amount).collect::<Vec<_>>(),
            )
        };
        if dead {
            let mut ms: Vec<&rules::Due> = due.iter().collect();
            ms.sort_by_key(|m| m.month.month);
            let (months, amounts) = of(&ms);
            if amounts.iter().sum::<i64>() > 0 {
                out.push(line(PayRule::Unpaid, months, amounts));
            }
        } else {
            // One line per claim and rule: 過去分 first, then the period's.
            for r in [PayRule::Arrears, PayRule::Regular, PayRule::OnEnd] {
                let ms: Vec<&rules::Due> = due.iter().filter(|d| d.rule == r).collect();
                let (months, amounts) = of(&ms);
                if amounts.iter().sum::<i64>() > 0 {
                    out.push(line(r, months, amounts));
                }
            }
        }
        if let Some(rf) = refunds.get(&cl.id) {
            out.push(line(
                PayRule::Refund,
                rf.iter().map(|x| x.1.iso()).collect(),
                rf.iter().map(|x| x.2).collect(),
            ));
        }
    }
    Ok(out)
}

/// What one claim is refunded (還付), by overpayment: (recovery id, its
/// month, yen).
type Refunds = HashMap<i64, Vec<(i64, YearMonth, i64)>>;

/// The refunds (還付) due, by claim: each overpayment recovered (withheld
/// or repaid) beyond what is owed now — the reduction behind it was
/// undone — less what a payment file refunded of it already.
fn refunds_due(c: &Connection) -> Result<Refunds, StoreError> {
    let mut out: Refunds = HashMap::new();
    for r in recoveries_where(c, "1 = 1", [])? {
        let y = r.refund_due();
        if y > 0 {
            out.entry(r.claim_id).or_default().push((r.id, r.month, y));
        }
    }
    Ok(out)
}

/// What a payment file withholds from each overpayment: (recovery id, yen).
type Withheld = Vec<(i64, i64)>;

/// The lines of a payment file with 内払調整 (児童手当法第13条): each
/// claim's outstanding overpayments (not yet a 返還請求; oldest first) are
/// withheld from what the file pays the claim ([`rules::offset`]).
/// Returns the lines (their `offset` set) and what each overpayment gives
/// up: (recovery id, yen).
/// Lines of a claim without an account (口座未登録) are held out: not in
/// the file, not recorded as paid, nothing withheld from them; they are
/// returned third and stay due for a later file.
fn due_lines_offset(
    c: &Connection,
    rule: PayRule,
    on: NaiveDate,
) -> Result<(Vec<PaymentLine>, Withheld, Vec<PaymentLine>), StoreError> {
    let (mut lines, held): (Vec<PaymentLine>, Vec<PaymentLine>) = due_lines(c, rule, on)?
        .into_iter()
        .partition(|l| l.account.is_some());
    let mut payable: Vec<(i64, i64)> = Vec::new();
    // A refund is paid in full: nothing is withheld from it.
    for l in lines.iter().filter(|l| l.rule != PayRule::Refund) {
        match payable.iter_mut().find(|p| p.0 == l.claim_id) {
            Some(p) => p.1 += l.amount,
            None => payable.push((l.claim_id, l.amount)),
        }
    }
    let outstanding = recoveries_where(c, "demanded_run IS NULL", [])?;
    let mut taken = Vec::new();
    let mut withheld: HashMap<i64, i64> = HashMap::new();
    for (claim, pay) in payable {
        let owed: Vec<(i64, i64)> = outstanding
            .iter()
            .filter(|r| r.claim_id == claim && r.remaining() > 0)
            .map(|r| (r.id, r.remaining()))
            .collect();
        for (id, t) in rules::offset(pay, &owed) {
            *withheld.entry(claim).or_default() += t;
            taken.push((id, t));
        }
    }
    spread_offsets(&mut lines, &withheld);
    Ok((lines, taken, held))
}

/// Sets each claim's withheld total on its lines, first lines first.
fn spread_offsets(lines: &mut [PaymentLine], withheld: &HashMap<i64, i64>) {
    let mut left = withheld.clone();
    for l in lines.iter_mut().filter(|l| l.rule != PayRule::Refund) {
        if let Some(w) = left.get_mut(&l.claim_id) {
            let t = (*w).min(l.amount);
            l.offset = t;
            *w -= t;
        }
    }
}

fn recoveries_where<P: rusqlite::Params>(
    c: &Connection,
    cond: &str,
    p: P,
) -> Result<Vec<RecoveryRow>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, claim_id, month, paid, due, amount, reduction, found_at, event_id, demanded_run FROM recoveries WHERE {cond} ORDER BY id"
    ))?;
    let raw = st
        .query_map(p, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<i64>>(9)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut offsets = c.prepare(
        "SELECT run_id, amount FROM recovery_offsets WHERE recovery_id = ?1 ORDER BY run_id",
    )?;
    let mut cancelled = c.prepare(
        "SELECT COALESCE(SUM(amount), 0) FROM recovery_cancellations WHERE recovery_id = ?1",
    )?;
    let mut repaid = c.prepare(
        "SELECT p.repayment_id, r.received_on, p.amount FROM repayment_parts p JOIN repayments r ON r.id = p.repayment_id WHERE p.recovery_id = ?1 AND p.repayment_id NOT IN (SELECT repayment_id FROM repayment_cancellations) ORDER BY p.repayment_id",
    )?;
    let mut refunds = c.prepare(
        "SELECT run_id, amount FROM recovery_refunds WHERE recovery_id = ?1 ORDER BY run_id",
    )?;
    let mut out = Vec::new();
    for (id, claim_id, month, paid, due, amount, reduction, found_at, event_id, demanded_run) in raw
    {
        out.push(RecoveryRow {
            id,
            claim_id,
            month: YearMonth::parse(&month)
                .ok_or_else(|| StoreError::Corrupt(format!("month {month}")))?,
            paid,
            due,
            amount,
            reduction: serde_json::from_str(&reduction)
                .map_err(|e| StoreError::Corrupt(format!("reduction {reduction}: {e}")))?,
            found_at: chrono::DateTime::parse_from_rfc3339(&found_at)
                .map_err(|e| StoreError::Corrupt(format!("found_at {found_at}: {e}")))?
                .with_timezone(&chrono::Utc),
            event_id,
            offsets: offsets
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?,
            demanded_run,
            cancelled: cancelled.query_row([id], |r| r.get(0))?,
            repaid: repaid
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|(id, on, a)| Ok((id, req_date(on)?, a)))
                .collect::<Result<_, StoreError>>()?,
            refunds: refunds
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

/// Brings the overpayments (過払) recorded for claim `claim_id` in line
/// with the claim as it stands, in the transaction that changed it:
/// every month paid more than is due now ([`rules::overpaid_months`]) and
/// not recorded yet is recorded; a month recorded as overpaid by more than
/// it is now (the event behind the reduction was cancelled in the
/// registry, or a clerk's correction restored a child) has the excess
/// cancelled, newest record first ([`rules::cancelled_overpayments`]), so
/// nothing more of it is withheld (第13条) or claimed back. Running it
/// twice changes nothing.
fn record_overpayments(
    tx: &rusqlite::Transaction<'_>,
    claim_id: i64,
    event_id: Option<&str>,
    found_at: chrono::DateTime<chrono::Utc>,
) -> Result<usize, StoreError> {
    let Some(claim) = claims_where(tx, "id = ?1", [claim_id])?.pop() else {
        return Ok(0);
    };
    let paid: std::collections::BTreeMap<YearMonth, i64> = {
        let mut st = tx.prepare(
            "SELECT month, SUM(amount) FROM (SELECT claim_id, month, amount FROM paid_months UNION ALL SELECT claim_id, month, amount FROM paid_differences) WHERE claim_id = ?1 GROUP BY month",
        )?;
        let rows = st
            .query_map([claim_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .filter_map(|(m, a)| Some((YearMonth::parse(&m)?, a)))
            .collect()
    };
    if paid.is_empty() {
        return Ok(0);
    }
    let existing = recoveries_where(tx, "claim_id = ?1", [claim_id])?;
    let rules_claim = claim.rules();
    let at = found_at.to_rfc3339();
    let owed: Vec<(i64, YearMonth, i64)> =
        existing.iter().map(|r| (r.id, r.month, r.owed())).collect();
    let cancel = rules::cancelled_overpayments(&rules_claim, &paid, &owed);
    let mut first_cancellation = None;
    for (id, amount) in &cancel {
        tx.execute(
            "INSERT INTO recovery_cancellations (recovery_id, amount, at, event_id) VALUES (?1, ?2, ?3, ?4)",
            params![id, amount, at, event_id],
        )?;
        if first_cancellation.is_none() {
            first_cancellation = Some(tx.last_insert_rowid());
        }
    }
    // Cancelled after part was withheld or repaid: the clerk is told what
    // is to be paid back to the claimant, in all, as things stand now.
    if let Some(first) = first_cancellation {
        let refund: i64 = recoveries_where(tx, "claim_id = ?1", [claim_id])?
            .iter()
            .map(|r| r.refund_due())
            .sum();
        if refund > 0 {
            let key = event_id.map_or_else(|| format!("cancellation:{first}"), str::to_string);
            tx.execute(
                "INSERT OR IGNORE INTO work_items (event_id, kind, person, person_name, household, event_on, claim_id, amount) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)",
                params![key, WorkKind::RefundDue.code(), claim.claimant, claim.claimant_name, claim.household, claim_id, refund],
            )?;
        }
    }
    let mut recorded: std::collections::BTreeMap<YearMonth, i64> = Default::default();
    for (id, m, o) in &owed {
        let c: i64 = cancel.iter().filter(|x| x.0 == *id).map(|x| x.1).sum();
        *recorded.entry(*m).or_default() += o - c;
    }
    let over = rules::overpaid_months(&rules_claim, &paid, &recorded);
    for o in &over {
        let reduction =
            serde_json::to_string(&o.reduction).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO recoveries (claim_id, month, paid, due, amount, reduction, found_at, event_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![claim_id, o.month.iso(), o.paid, o.due, o.amount, reduction, at, event_id],
        )?;
    }
    Ok(over.len() + cancel.len())
}

fn notices_where<P: rusqlite::Params>(
    c: &Connection,
    cond: &str,
    p: P,
) -> Result<Vec<Notice>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, claim_id, amount, parts, issued_on, due_on, addressee_name, postal_code, address, issued_by, issued_at FROM recovery_notices WHERE {cond} ORDER BY id"
    ))?;
    let rows = st
        .query_map(p, |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ),
                (r.get::<_, String>(4)?, r.get::<_, String>(5)?),
                (
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, String>(8)?,
                ),
                (r.get::<_, String>(9)?, r.get::<_, String>(10)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(
                (id, claim_id, amount, parts),
                (issued_on, due_on),
                (name, postal_code, address),
                (by, at),
            )| {
                Ok(Notice {
                    id,
                    claim_id,
                    amount,
                    parts: serde_json::from_str(&parts)
                        .map_err(|e| StoreError::Corrupt(format!("notice parts {parts}: {e}")))?,
                    issued_on: req_date(issued_on)?,
                    due_on: req_date(due_on)?,
                    name,
                    postal_code,
                    address,
                    issued_by: by,
                    issued_at: chrono::DateTime::parse_from_rfc3339(&at)
                        .map_err(|e| StoreError::Corrupt(format!("{at}: {e}")))?
                        .with_timezone(&chrono::Utc),
                })
            },
        )
        .collect()
}

fn runs_where<P: rusqlite::Params>(
    c: &Connection,
    cond: &str,
    p: P,
) -> Result<Vec<PaymentRun>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, rule, made_on, pay_month, made_at, approved_by, total, lines FROM payment_runs WHERE {cond} ORDER BY id DESC"
    ))?;
    let rows = st
        .query_map(p, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(id, rule, made_on, pay_month, made_at, by, total, lines)| {
                Ok(PaymentRun {
                    id,
                    rule: PayRule::parse(&rule)
                        .ok_or_else(|| StoreError::Corrupt(format!("pay rule {rule}")))?,
                    made_on: req_date(made_on)?,
                    pay_month: YearMonth::parse(&pay_month)
                        .ok_or_else(|| StoreError::Corrupt(format!("month {pay_month}")))?,
                    made_at: chrono::DateTime::parse_from_rfc3339(&made_at)
                        .map_err(|e| StoreError::Corrupt(format!("{made_at}: {e}")))?
                        .with_timezone(&chrono::Utc),
                    approved_by: by,
                    total,
                    lines,
                })
            },
        )
        .collect()
}

fn repayments_where<P: rusqlite::Params>(
    c: &Connection,
    cond: &str,
    p: P,
) -> Result<Vec<Repayment>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, claim_id, amount, received_on, recorded_by, recorded_at, x.reason, x.cancelled_by, x.cancelled_at FROM repayments LEFT JOIN repayment_cancellations x ON x.repayment_id = repayments.id WHERE {cond} ORDER BY id"
    ))?;
    let rows = st
        .query_map(p, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                (
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let time = |at: &str| {
        chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| StoreError::Corrupt(format!("{at}: {e}")))
    };
    rows.into_iter()
        .map(|(id, claim_id, amount, on, by, at, x)| {
            Ok(Repayment {
                id,
                claim_id,
                amount,
                received_on: req_date(on)?,
                recorded_by: by,
                recorded_at: time(&at)?,
                cancelled: match x {
                    (Some(reason), Some(by), Some(at)) => Some(RepaymentCancellation {
                        reason,
                        by,
                        at: time(&at)?,
                    }),
                    _ => None,
                },
            })
        })
        .collect()
}

fn claims_where<P: rusqlite::Params>(
    c: &Connection,
    cond: &str,
    p: P,
) -> Result<Vec<ClaimRow>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, claimant, claimant_name, household, claimed_on, event_on, public_servant, ended_on, end_reason, bank_code, branch_code, account_kind, account_number, account_holder, filing_id FROM claims WHERE {cond} ORDER BY id"
    ))?;
    let raw = st
        .query_map(p, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                (account_of(r, 9)?, r.get::<_, Option<i64>>(14)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for (
        id,
        claimant,
        claimant_name,
        household,
        claimed_on,
        event_on,
        ps,
        ended_on,
        end_reason,
        (account, filing),
    ) in raw
    {
        let mut cs = c.prepare(
            "SELECT child, name, birth, requested_on, event_on, supported, left_on, left_reason, basis, basis_since, registered, ended_by FROM claim_children WHERE claim_id = ?1 ORDER BY birth, child",
        )?;
        let rows = cs
            .query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    (
                        r.get::<_, String>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, bool>(10)?,
                        r.get::<_, Option<String>>(11)?,
                    ),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut children = Vec::new();
        for (child, name, birth, req, ev, supported, left, left_reason, extra) in rows {
            let (basis, since, registered, ended_by) = extra;
            let mut sp = c.prepare_cached(
                "SELECT requested_on, event_on, left_on, left_reason FROM claim_child_spells WHERE claim_id = ?1 AND child = ?2 ORDER BY requested_on, rowid",
            )?;
            let spells = sp
                .query_map(params![id, child], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut earlier = Vec::with_capacity(spells.len());
            for (req, ev, left, reason) in spells {
                earlier.push(Spell {
                    requested_on: req_date(req)?,
                    event_on: date(ev)?,
                    left_on: req_date(left)?,
                    left_reason: reason,
                });
            }
            children.push(ChildRow {
                earlier,
                basis: rules::Basis::parse(&basis)
                    .ok_or_else(|| StoreError::Corrupt(format!("basis {basis}")))?,
                since: date(since)?,
                registered,
                ended_by,
                child,
                name,
                birth: req_date(birth)?,
                requested_on: req_date(req)?,
                event_on: date(ev)?,
                supported,
                left_on: date(left)?,
                left_reason,
            });
        }
        out.push(ClaimRow {
            id,
            claimant,
            claimant_name,
            household,
            claimed_on: req_date(claimed_on)?,
            event_on: date(event_on)?,
            public_servant: ps,
            ended_on: date(ended_on)?,
            end_reason,
            children,
            account,
            filing,
        });
    }
    Ok(out)
}

/// The account in columns `at..at + 5` of a row (bank, branch, kind,
/// number, holder); None when any is missing.
/// The 未支払請求 of a claim (see [`UnpaidClaim`]).
fn unpaid_claim_of(c: &Connection, claim_id: i64) -> Result<Option<UnpaidClaim>, StoreError> {
    let row = c
        .query_row(
            "SELECT id, child, requester_name, requester_kana, bank_code, branch_code, account_kind, account_number, account_holder, requested_on, recorded_by, recorded_at FROM unpaid_claims WHERE claim_id = ?1",
            [claim_id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    account_of(r, 4)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, String>(11)?,
                ))
            },
        )
        .optional()?;
    let Some((id, child, requester_name, requester_kana, account, on, by, at)) = row else {
        return Ok(None);
    };
    Ok(Some(UnpaidClaim {
        id,
        claim_id,
        child,
        requester_name,
        requester_kana,
        account: account
            .ok_or_else(|| StoreError::Corrupt(format!("unpaid claim {id}: account")))?,
        requested_on: req_date(on)?,
        recorded_by: by,
        recorded_at: chrono::DateTime::parse_from_rfc3339(&at)
            .map_err(|e| StoreError::Corrupt(format!("recorded_at {at}: {e}")))?
            .with_timezone(&chrono::Utc),
    }))
}

fn account_of(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<BankAccount>> {
    let bank: Option<String> = r.get(at)?;
    let branch: Option<String> = r.get(at + 1)?;
    let kind: Option<String> = r.get(at + 2)?;
    let number: Option<String> = r.get(at + 3)?;
    let holder: Option<String> = r.get(at + 4)?;
    Ok(
        match (
            bank,
            branch,
            kind.as_deref().and_then(AccountKind::parse),
            number,
            holder,
        ) {
            (Some(bank), Some(branch), Some(kind), Some(number), Some(holder)) => {
                Some(BankAccount {
                    bank,
                    branch,
                    kind,
                    number,
                    holder,
                })
            }
            _ => None,
        },
    )
}

fn write_account(c: &Connection, claim_id: i64, a: &BankAccount) -> Result<(), StoreError> {
    c.execute(
        "UPDATE claims SET bank_code = ?2, branch_code = ?3, account_kind = ?4, account_number = ?5, account_holder = ?6 WHERE id = ?1",
        params![claim_id, a.bank, a.branch, a.kind.code(), a.number, a.holder],
    )?;
    Ok(())
}

fn work_items(c: &Connection, open_only: bool) -> Result<Vec<WorkItem>, StoreError> {
    let mut st = c.prepare(&format!(
        "SELECT id, event_id, kind, person, person_name, household, event_on, claim_id, done, amount, filing_id, receipt FROM work_items {} ORDER BY id",
        if open_only { "WHERE done = 0" } else { "" }
    ))?;
    let raw = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, Option<i64>>(9)?,
                r.get::<_, Option<i64>>(10)?
                    .zip(r.get::<_, Option<String>>(11)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(
            |(
                id,
                event_id,
                kind,
                person,
                person_name,
                household,
                ev,
                claim_id,
                done,
                amount,
                filing,
            )| {
                Ok(WorkItem {
                    id,
                    event_id,
                    kind: WorkKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("work kind {kind}")))?,
                    person,
                    person_name,
                    household,
                    event_on: date(ev)?,
                    claim_id,
                    done,
                    amount,
                    filing,
                })
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A claim entered late applies a departure since its 請求日 by the
    /// worker's own rule, in its own transaction; the same departure read
    /// later from the feed changes nothing and raises no second work item.
    #[tokio::test]
    async fn a_late_claims_departure_is_the_workers_and_is_not_raised_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.sqlite")).unwrap();
        let n = NewClaim {
            claimant: "100".into(),
            claimant_name: "架空　太郎".into(),
            household: "H1".into(),
            claimed_on: d("2025-04-10"),
            event_on: None,
            public_servant: false,
            children: vec![
                ("101".into(), "架空　一郎".into(), d("2014-07-01")),
                ("102".into(), "架空　二郎".into(), d("2019-05-10")),
            ],
            entered_by: "tanto".into(),
            account: None,
            filing: None,
        };
        let left = |c: &ClaimRow| {
            crate::worker::departure_effects(c, "101", d("2025-08-20"), "転出", Some(7))
        };
        let id = store
            .add_claim_then(
                n,
                Entry::new("tanto", "", audit::Action::ClaimEntered, ""),
                left,
            )
            .await
            .unwrap();
        let claim = store.claim(id).await.unwrap().unwrap();
        let ichiro = &claim.children[0];
        assert_eq!(ichiro.left_on, Some(d("2025-08-20")));
        assert_eq!(ichiro.left_reason.as_deref(), Some("転出"));
        assert!(claim.children[1].left_on.is_none());
        let work = store.work_items(true).await.unwrap();
        assert_eq!(work.len(), 1);
        assert_eq!(
            (work[0].kind, work[0].claim_id, work[0].event_id.as_str()),
            (
                WorkKind::ChildLeft,
                Some(id),
                format!("claim:{id}").as_str()
            )
        );
        // The move-out event, read by a worker behind the registry.
        assert!(
            store
                .apply("13208", 5, "ev-5", "move_out", left(&claim))
                .await
                .unwrap()
        );
        assert_eq!(store.claim(id).await.unwrap().unwrap(), claim);
        assert_eq!(store.work_items(true).await.unwrap(), work);
    }

    /// 児童手当法第9条: a child who left a running claim (転出) and came
    /// back is added again by a new 額改定請求; the period before is kept,
    /// the months away are never counted, and a request dated on or
    /// before the day the child left adds nothing.
    #[tokio::test]
    async fn a_child_back_after_leaving_counts_by_periods_never_for_the_months_away() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.sqlite")).unwrap();
        let n = NewClaim {
            claimant: "100".into(),
            claimant_name: "架空　太郎".into(),
            household: "H1".into(),
            claimed_on: d("2025-04-10"),
            event_on: None,
            public_servant: false,
            children: vec![
                ("101".into(), "架空　一郎".into(), d("2014-07-01")),
                ("102".into(), "架空　二郎".into(), d("2019-05-10")),
            ],
            entered_by: "tanto".into(),
            account: None,
            filing: None,
        };
        let log = || Entry::new("tanto", "", audit::Action::ChildAdded, "");
        let id = store
            .add_claim_then(n, log(), |c: &ClaimRow| {
                crate::worker::departure_effects(c, "102", d("2025-06-20"), "転出", Some(3))
            })
            .await
            .unwrap();
        let child = ("102".to_string(), "架空　二郎".to_string(), d("2019-05-10"));
        // On the day he left: nothing added.
        assert!(
            !store
                .add_child(id, child.clone(), d("2025-06-20"), None, log())
                .await
                .unwrap()
        );
        assert!(
            store
                .add_child(
                    id,
                    child.clone(),
                    d("2025-09-12"),
                    Some(d("2025-09-05")),
                    log()
                )
                .await
                .unwrap()
        );
        let c = store.claim(id).await.unwrap().unwrap();
        let jiro = c.children.iter().find(|x| x.child == "102").unwrap();
        assert_eq!(jiro.left_on, None);
        assert_eq!(jiro.requested_on, d("2025-09-12"));
        assert_eq!(
            jiro.earlier,
            vec![Spell {
                requested_on: d("2025-04-10"),
                event_on: None,
                left_on: d("2025-06-20"),
                left_reason: Some("転出".into()),
            }]
        );
        let r = c.rules();
        let total = |y, m| rules::month(&r, YearMonth::new(y, m).unwrap()).map(|x| x.total);
        assert_eq!(total(2025, 6), Some(20_000));
        for m in 7..=9 {
            assert_eq!(total(2025, m), Some(10_000), "2025-{m}");
        }
        assert_eq!(total(2025, 10), Some(20_000));
        // Added again (a double submit): nothing more.
        assert!(
            !store
                .add_child(id, child, d("2025-09-13"), None, log())
                .await
                .unwrap()
        );
        assert_eq!(store.claim(id).await.unwrap().unwrap(), c);
    }

    /// A database made before children living elsewhere existed (the
    /// first release's tables, no added columns) opens, its children read
    /// as the household's, and a child living elsewhere can be added.
    #[tokio::test]
    async fn a_database_from_before_children_living_elsewhere_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute(
                "INSERT INTO claims (id, claimant, claimant_name, household, claimed_on, public_servant, entered_by) VALUES (1, '100', '架空　太郎', 'H1', '2024-04-10', 0, 'tanto')",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO claim_children (claim_id, child, name, birth, requested_on) VALUES (1, '101', '架空　二郎', '2016-05-10', '2024-04-10')",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        // Opening again adds nothing twice.
        drop(store);
        let store = Store::open(&path).unwrap();
        let claim = store.claim(1).await.unwrap().unwrap();
        let ch = &claim.children[0];
        assert_eq!(ch.basis, rules::Basis::Household);
        assert!(ch.registered);
        assert_eq!((ch.since, ch.ended_by.as_deref()), (None, None));
        let log = || Entry::new("tanto", "", audit::Action::ChildAddedApart, "");
        let apart = ApartChild {
            addressee: None,
            name: "架空　一子".into(),
            birth: d("2005-06-10"),
            basis: rules::Basis::StudentSupport,
            since: d("2025-04-01"),
            requested_on: d("2025-08-05"),
            fifteen_day_rule: false,
        };
        let key = store
            .add_apart_child(1, apart.clone(), log())
            .await
            .unwrap()
            .unwrap();
        // The same child again (spaces aside), and no such claim: refused.
        let mut again = apart.clone();
        again.name = "架空 一子".into();
        assert_eq!(
            store.add_apart_child(1, again, log()).await.unwrap(),
            Err(ChildRefused::AlreadyOnClaim { ended: false })
        );
        assert_eq!(
            store.add_apart_child(9, apart, log()).await.unwrap(),
            Err(ChildRefused::NoClaim)
        );
        let claim = store.claim(1).await.unwrap().unwrap();
        let added = claim.children.iter().find(|c| c.child == key).unwrap();
        assert!(!added.registered && added.supported);
        assert_eq!(added.since, Some(d("2025-04-01")));
        let r = claim.rules();
        let s = r.children.iter().find(|c| c.key == key).unwrap();
        assert_eq!(s.from, YearMonth::new(2025, 9).unwrap());
        // Ended by hand: counted through October, the end recorded once.
        let end = || Entry::new("tanto", "", audit::Action::ChildEnded, "");
        assert_eq!(
            store
                .end_child(
                    1,
                    key.clone(),
                    d("2025-10-20"),
                    "生計費の負担をやめた".into(),
                    end()
                )
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            store
                .end_child(
                    1,
                    key.clone(),
                    d("2025-10-20"),
                    "生計費の負担をやめた".into(),
                    end()
                )
                .await
                .unwrap(),
            Err(ChildRefused::AlreadyEnded)
        );
        let claim = store.claim(1).await.unwrap().unwrap();
        let ended = claim.children.iter().find(|c| c.child == key).unwrap();
        assert_eq!(ended.left_on, Some(d("2025-10-20")));
        assert_eq!(ended.ended_by.as_deref(), Some("tanto"));
        let rows = store.log_rows(10, None).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["child_ended", "child_added_apart"]
        );
    }
}
