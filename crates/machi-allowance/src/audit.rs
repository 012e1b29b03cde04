//! The allowance system's access log: every sign-in, every read of a
//! claimant's or child's personal data, every claim entered and every
//! payment file made, in its own database, hash-chained with SHA-256
//! (`sha2`): each entry's hash covers its fields and the previous entry's
//! hash, so changing, inserting or removing an entry in the middle breaks
//! every hash after it ([`verify`], `machi allowance log verify`).
//!
//! An entry is written in the same transaction as the write it records
//! (a claim, a payment file); a read is logged before its data is shown,
//! and refused if the log cannot be written.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    SignIn,
    SignInFailed,
    SignInThrottled,
    SignOut,
    /// The work list and the claimants' list (names).
    ListRead,
    /// One claim: claimant, children, amounts.
    ClaimRead,
    /// A person looked up at the registry for a claim form.
    PersonRead,
    ClaimEntered,
    ChildAdded,
    SupportSet,
    WorkDone,
    /// A payment's lines shown (names and amounts), not yet a file.
    PaymentRead,
    /// A payment file made and recorded (approved).
    PaymentApproved,
    /// A recorded payment file downloaded.
    PaymentExported,
    AccountCreated,
    AccountChanged,
    /// An account changed its own password.
    PasswordChanged,
    /// A password change refused: the current password was wrong.
    PasswordChangeFailed,
    /// A supervisor issued a temporary password for another account.
    PasswordReset,
    /// The access log itself read.
    LogRead,
    /// A repayment of overpayments received (返還金の収納) recorded.
    RepaymentRecorded,
    /// A child living elsewhere added to a claim (別居監護, 大学生等の生計費
    /// 負担) by the clerk.
    ChildAddedApart,
    /// A child of a claim ended by the clerk's hand.
    ChildEnded,
    /// A claimant's 振込先口座 recorded or changed.
    BankAccountSet,
    /// A 返還通知書 issued (the overpayments demanded, the due date).
    NoticeIssued,
    /// A 返還通知書 shown for printing (after issuing, and each reprint).
    NoticePrinted,
    /// A recorded repayment cancelled as entered wrongly (with a reason).
    RepaymentCancelled,
    /// A 未支払請求 recorded: the unpaid allowance of a deceased claimant,
    /// claimed for the child (児童手当法第12条第1項, 施行規則第9条).
    UnpaidClaimRecorded,
}

const ALL: [Action; 28] = [
    Action::SignIn,
    Action::SignInFailed,
    Action::SignInThrottled,
    Action::SignOut,
    Action::ListRead,
    Action::ClaimRead,
    Action::PersonRead,
    Action::ClaimEntered,
    Action::ChildAdded,
    Action::SupportSet,
    Action::WorkDone,
    Action::PaymentRead,
    Action::PaymentApproved,
    Action::PaymentExported,
    Action::AccountCreated,
    Action::AccountChanged,
    Action::PasswordChanged,
    Action::PasswordChangeFailed,
    Action::PasswordReset,
    Action::LogRead,
    Action::RepaymentRecorded,
    Action::ChildAddedApart,
    Action::ChildEnded,
    Action::BankAccountSet,
    Action::NoticeIssued,
    Action::NoticePrinted,
    Action::RepaymentCancelled,
    Action::UnpaidClaimRecorded,
];

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::SignIn => "sign_in",
            Action::SignInFailed => "sign_in_failed",
            Action::SignInThrottled => "sign_in_throttled",
            Action::SignOut => "sign_out",
            Action::ListRead => "list_read",
            Action::ClaimRead => "claim_read",
            Action::PersonRead => "person_read",
            Action::ClaimEntered => "claim_entered",
            Action::ChildAdded => "child_added",
            Action::SupportSet => "support_set",
            Action::WorkDone => "work_done",
            Action::PaymentRead => "payment_read",
            Action::PaymentApproved => "payment_approved",
            Action::PaymentExported => "payment_exported",
            Action::AccountCreated => "account_created",
            Action::AccountChanged => "account_changed",
            Action::PasswordChanged => "password_changed",
            Action::PasswordChangeFailed => "password_change_failed",
            Action::PasswordReset => "password_reset",
            Action::LogRead => "log_read",
            Action::RepaymentRecorded => "repayment_recorded",
            Action::ChildAddedApart => "child_added_apart",
            Action::ChildEnded => "child_ended",
            Action::BankAccountSet => "bank_account_set",
            Action::NoticeIssued => "notice_issued",
            Action::NoticePrinted => "notice_printed",
            Action::RepaymentCancelled => "repayment_cancelled",
            Action::UnpaidClaimRecorded => "unpaid_claim_recorded",
        }
    }
    pub fn parse(s: &str) -> Option<Action> {
        ALL.into_iter().find(|a| a.code() == s)
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            Action::SignIn => "ログイン",
            Action::SignInFailed => "ログイン失敗",
            Action::SignInThrottled => "ログイン制限",
            Action::SignOut => "ログアウト",
            Action::ListRead => "業務一覧・受給者一覧の閲覧",
            Action::ClaimRead => "受給者・児童の情報の閲覧",
            Action::PersonRead => "住民記録の照会（請求者・児童）",
            Action::ClaimEntered => "認定請求の入力",
            Action::ChildAdded => "額改定請求の入力",
            Action::SupportSet => "生計費負担の確認",
            Action::WorkDone => "業務の処理済み",
            Action::PaymentRead => "支払明細の閲覧",
            Action::PaymentApproved => "支払ファイルの確定",
            Action::PaymentExported => "支払ファイルの出力",
            Action::AccountCreated => "職員アカウントの作成",
            Action::AccountChanged => "職員アカウントの変更",
            Action::PasswordChanged => "パスワードの変更",
            Action::PasswordChangeFailed => "パスワード変更の失敗（現在のパスワードの誤り）",
            Action::PasswordReset => "一時パスワードの発行",
            Action::LogRead => "アクセス記録の閲覧",
            Action::RepaymentRecorded => "過払の返還金の収納",
            Action::ChildAddedApart => "別居の児童の追加（額改定請求）",
            Action::ChildEnded => "児童の支給終了の入力（手入力）",
            Action::BankAccountSet => "振込先口座の登録・変更",
            Action::NoticeIssued => "返還通知書の発行",
            Action::NoticePrinted => "返還通知書の表示・印刷（再印刷を含む）",
            Action::RepaymentCancelled => "返還金の収納の取消し",
            Action::UnpaidClaimRecorded => "未支払請求の記録（受給者の死亡）",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            Action::SignIn => "signed in",
            Action::SignInFailed => "sign-in failed",
            Action::SignInThrottled => "sign-in throttled",
            Action::SignOut => "signed out",
            Action::ListRead => "work and claimant lists read",
            Action::ClaimRead => "claimant and children read",
            Action::PersonRead => "registry person looked up",
            Action::ClaimEntered => "claim entered",
            Action::ChildAdded => "increase claim entered",
            Action::SupportSet => "support confirmed",
            Action::WorkDone => "work item closed",
            Action::PaymentRead => "payment lines read",
            Action::PaymentApproved => "payment file approved",
            Action::PaymentExported => "payment file exported",
            Action::AccountCreated => "account created",
            Action::AccountChanged => "account changed",
            Action::PasswordChanged => "password changed",
            Action::PasswordChangeFailed => "password change refused (wrong current password)",
            Action::PasswordReset => "temporary password issued",
            Action::LogRead => "access log read",
            Action::RepaymentRecorded => "repayment of an overpayment recorded",
            Action::ChildAddedApart => "child living elsewhere added (increase claim)",
            Action::ChildEnded => "child ended by hand",
            Action::BankAccountSet => "bank account for payments recorded or changed",
            Action::NoticeIssued => "notice to return an overpayment issued",
            Action::NoticePrinted => {
                "notice to return an overpayment shown for printing (reprints too)"
            }
            Action::RepaymentCancelled => "recorded repayment cancelled",
            Action::UnpaidClaimRecorded => {
                "claim for the unpaid allowance of a deceased claimant recorded"
            }
        }
    }
}

/// Who did it, from where, to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The account's login ("" when the sign-in named no known account:
    /// then `subject` holds what was typed).
    pub account: String,
    /// The source address ("" when not over the network: the CLI).
    pub source: String,
    pub action: Action,
    /// Whose data: `claim:12`, `person:000000000123`, `month:2025-08`,
    /// `account:sato`, `run:3`.
    pub subject: String,
    /// A few words more (how many rows, which file), never personal data
    /// beyond the subject.
    pub detail: String,
}

impl Entry {
    pub fn new(account: &str, source: &str, action: Action, subject: impl Into<String>) -> Entry {
        Entry {
            account: account.to_string(),
            source: source.to_string(),
            action,
            subject: subject.into(),
            detail: String::new(),
        }
    }
    pub fn detail(mut self, d: impl Into<String>) -> Entry {
        self.detail = d.into();
        self
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub account: String,
    pub source: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry: SHA-256 of the JSON array of its sequence number,
/// its fields (`[at, account, source, action, subject, detail]`) and the
/// previous hash (JSON strings are unambiguous: no field can run into the
/// next).
pub fn entry_hash(seq: i64, fields: [&str; 6], prev_hash: &str) -> String {
    let [at, account, source, action, subject, detail] = fields;
    let canon = serde_json::json!([seq, at, account, source, action, subject, detail, prev_hash]);
    hex::encode(Sha256::digest(canon.to_string().as_bytes()))
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Appends `e` at `at` inside the caller's transaction (or connection);
/// returns its sequence number.
pub fn append(c: &Connection, e: &Entry, at: DateTime<Utc>) -> Result<i64, StoreError> {
    let last: Option<(i64, String)> = c
        .query_row(
            "SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let at = stamp(at);
    let hash = entry_hash(
        seq,
        [
            &at,
            &e.account,
            &e.source,
            e.action.code(),
            &e.subject,
            &e.detail,
        ],
        &prev,
    );
    c.execute(
        "INSERT INTO access_log (seq, at, account, source, action, subject, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![seq, at, e.account, e.source, e.action.code(), e.subject, e.detail, prev, hash],
    )?;
    Ok(seq)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Row, String)> {
    let at: String = r.get(1)?;
    Ok((
        Row {
            seq: r.get(0)?,
            at: DateTime::<Utc>::UNIX_EPOCH,
            account: r.get(2)?,
            source: r.get(3)?,
            action: r.get(4)?,
            subject: r.get(5)?,
            detail: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        },
        at,
    ))
}

fn parse_at(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("access log time {s}: {e}")))
}

/// The newest entries, newest first: at most `limit`, before sequence
/// `before` when given.
pub fn newest(c: &Connection, limit: i64, before: Option<i64>) -> Result<Vec<Row>, StoreError> {
    let mut st = c.prepare(
        "SELECT seq, at, account, source, action, subject, detail, prev_hash, hash FROM access_log WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = st
        .query_map(params![before.unwrap_or(i64::MAX), limit], row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(mut r, at)| {
            r.at = parse_at(&at)?;
            Ok(r)
        })
        .collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked.
    pub entries: i64,
    /// The first entry that does not verify, and why (None: the chain
    /// holds).
    pub broken: Option<(i64, String)>,
    /// The last entry's hash (to write down elsewhere: a chain cut short
    /// at its end verifies, so compare with a hash noted earlier).
    pub head: String,
}

/// Walks the whole chain from the first entry.
pub fn verify(c: &Connection) -> Result<Verified, StoreError> {
    let mut st = c.prepare(
        "SELECT seq, at, account, source, action, subject, detail, prev_hash, hash FROM access_log ORDER BY seq",
    )?;
    let mut rows = st.query([])?;
    let mut prev = GENESIS.to_string();
    let mut expect_seq = 1;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let (e, at) = row(r)?;
        n += 1;
        let broken = |why: &str| {
            Ok(Verified {
                entries: n,
                broken: Some((e.seq, why.to_string())),
                head: prev.clone(),
            })
        };
        if e.seq != expect_seq {
            return broken(&format!(
                "expected entry {expect_seq}: an entry was removed"
            ));
        }
        if e.prev_hash != prev {
            return broken("its previous hash is not the hash of the entry before");
        }
        let h = entry_hash(
            e.seq,
            [&at, &e.account, &e.source, &e.action, &e.subject, &e.detail],
            &e.prev_hash,
        );
        if h != e.hash {
            return broken("its content does not match its hash: it was changed");
        }
        prev = e.hash;
        expect_seq += 1;
    }
    Ok(Verified {
        entries: n,
        broken: None,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn the_chain_verifies_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.sqlite")).unwrap();
        for i in 0..5 {
            store
                .log(Entry::new(
                    "sato",
                    "192.0.2.1",
                    Action::ClaimRead,
                    format!("claim:{i}"),
                ))
                .await
                .unwrap();
        }
        let v = store.verify_log().await.unwrap();
        assert_eq!((v.entries, v.broken.clone()), (5, None));
        // A changed subject: entry 3 no longer matches its hash.
        store
            .run(|c| {
                c.execute(
                    "UPDATE access_log SET subject = 'claim:9' WHERE seq = 3",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let v = store.verify_log().await.unwrap();
        assert_eq!(v.broken.as_ref().map(|b| b.0), Some(3), "{v:?}");
        // Rehashing the changed entry does not help: the next one points
        // at the old hash.
        store
            .run(|c| {
                let (at, prev): (String, String) = c.query_row(
                    "SELECT at, prev_hash FROM access_log WHERE seq = 3",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let h = entry_hash(
                    3,
                    [&at, "sato", "192.0.2.1", "claim_read", "claim:9", ""],
                    &prev,
                );
                c.execute("UPDATE access_log SET hash = ?1 WHERE seq = 3", [h])?;
                Ok(())
            })
            .await
            .unwrap();
        let v = store.verify_log().await.unwrap();
        assert_eq!(v.broken.as_ref().map(|b| b.0), Some(4), "{v:?}");
        // A removed entry in the middle.
        let dir2 = tempfile::tempdir().unwrap();
        let s2 = Store::open(&dir2.path().join("b.sqlite")).unwrap();
        for _ in 0..3 {
            s2.log(Entry::new("sato", "", Action::SignIn, "account:sato"))
                .await
                .unwrap();
        }
        s2.run(|c| {
            c.execute("DELETE FROM access_log WHERE seq = 2", [])?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(s2.verify_log().await.unwrap().broken.map(|b| b.0), Some(3));
    }
}
