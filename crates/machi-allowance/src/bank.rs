//! 振込先口座: the account the allowance is paid into (児童手当法第8条 —
//! the municipality pays the claimant; in practice by transfer to the
//! account the claimant names on the 認定請求書). A payment file line needs
//! one: a claim without an account is listed as 口座未登録 and its amount
//! is withheld (not transferred) until one is entered.

use machi_domain::error::Localized;
use machi_domain::names::Furigana;
use serde::Serialize;

/// 預金種目.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// 普通預金.
    Ordinary,
    /// 当座預金.
    Current,
}

impl AccountKind {
    pub fn code(self) -> &'static str {
        match self {
            AccountKind::Ordinary => "ordinary",
            AccountKind::Current => "current",
        }
    }
    pub fn parse(s: &str) -> Option<AccountKind> {
        match s.trim() {
            "ordinary" | "普通" => Some(AccountKind::Ordinary),
            "current" | "当座" => Some(AccountKind::Current),
            _ => None,
        }
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            AccountKind::Ordinary => "普通",
            AccountKind::Current => "当座",
        }
    }
}

/// A transfer account as checked: 金融機関コード (4 digits), 支店コード
/// (3 digits), 預金種目, 口座番号 (7 digits) and 口座名義 in katakana.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BankAccount {
    pub bank: String,
    pub branch: String,
    pub kind: AccountKind,
    pub number: String,
    pub holder: String,
}

/// The account as a clerk types it on a form (each field as text).
#[derive(Debug, Clone, Default)]
pub struct AccountInput<'a> {
    pub bank: &'a str,
    pub branch: &'a str,
    pub kind: &'a str,
    pub number: &'a str,
    pub holder: &'a str,
}

impl AccountInput<'_> {
    /// Whether nothing was typed (no account given).
    pub fn is_empty(&self) -> bool {
        [self.bank, self.branch, self.number, self.holder]
            .iter()
            .all(|s| s.trim().is_empty())
    }
}

/// Digits typed full- or half-width, with spaces and hyphens left out.
fn digits(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.trim().chars() {
        match c {
            '0'..='9' => out.push(c),
            '０'..='９' => out.push(char::from(b'0' + (c as u32 - '０' as u32) as u8)),
            ' ' | '\u{3000}' | '-' | 'ー' | '－' => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Why an account was refused: a code for the API (`invalid_bank_code`,
/// `invalid_branch_code`, `invalid_account_kind`,
/// `invalid_account_number`, `invalid_account_holder`) and the words, in
/// Japanese and English, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountError {
    pub code: &'static str,
    pub ja: String,
    pub en: String,
}

fn exact_digits(
    s: &str,
    n: usize,
    code: &'static str,
    what_ja: &str,
    what_en: &str,
) -> Result<String, AccountError> {
    match digits(s) {
        Some(d) if d.len() == n => Ok(d),
        Some(d) if d.is_empty() => Err(AccountError {
            code,
            ja: format!("{what_ja}を入力してください（数字{n}桁）。"),
            en: format!("Enter the {what_en} ({n} digits)."),
        }),
        _ => Err(AccountError {
            code,
            ja: format!(
                "{what_ja}は数字{n}桁で入力してください（入力：{}）。",
                s.trim()
            ),
            en: format!("The {what_en} must be {n} digits (typed: {}).", s.trim()),
        }),
    }
}

impl BankAccount {
    /// Checks each field; the error names the field, in Japanese and
    /// English. 口座番号 of fewer than 7 digits is refused (a bank's own
    /// shorter number is written with leading zeros, as on a 通帳).
    /// 口座名義 typed in hiragana or half-width katakana is turned into
    /// full-width katakana ([`Furigana::from_input`]).
    pub fn parse(i: &AccountInput<'_>) -> Result<BankAccount, (String, String)> {
        BankAccount::check(i).map_err(|e| (e.ja, e.en))
    }

    /// [`BankAccount::parse`] with the refusal's code (the pages and the
    /// API refuse alike).
    pub fn check(i: &AccountInput<'_>) -> Result<BankAccount, AccountError> {
        let bank = exact_digits(
            i.bank,
            4,
            "invalid_bank_code",
            "金融機関コード",
            "bank code",
        )?;
        let branch = exact_digits(
            i.branch,
            3,
            "invalid_branch_code",
            "支店コード",
            "branch code",
        )?;
        let kind = AccountKind::parse(i.kind).ok_or_else(|| AccountError {
            code: "invalid_account_kind",
            ja: "預金種目は「普通」か「当座」を選んでください。".to_string(),
            en: "Choose the account type: ordinary or current.".to_string(),
        })?;
        let number = exact_digits(
            i.number,
            7,
            "invalid_account_number",
            "口座番号",
            "account number",
        )?;
        let holder = i.holder.trim();
        if holder.is_empty() {
            return Err(AccountError {
                code: "invalid_account_holder",
                ja: "口座名義（カタカナ）を入力してください。".into(),
                en: "Enter the account holder's name in katakana.".into(),
            });
        }
        let holder = Furigana::from_input(holder).map_err(|e| AccountError {
            code: "invalid_account_holder",
            ja: format!("口座名義：{}", e.message_ja()),
            en: format!("account holder: {}", e.message_en()),
        })?;
        Ok(BankAccount {
            bank,
            branch,
            kind,
            number,
            holder: holder.as_ref().to_string(),
        })
    }

    /// The 口座番号 with all but its last 4 digits masked (`***4567`).
    pub fn masked_number(&self) -> String {
        let n = self.number.chars().count();
        let keep: String = self.number.chars().skip(n.saturating_sub(4)).collect();
        format!("{}{keep}", "*".repeat(n.saturating_sub(4)))
    }

    /// In words for a page: 「金融機関 0001 支店 123 普通 1234567 タカハシ　イチロウ」.
    pub fn words(&self) -> String {
        format!(
            "金融機関コード {}・支店コード {}・{} {}・{}",
            self.bank,
            self.branch,
            self.kind.label_ja(),
            self.number,
            self.holder
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(bank: &'a str, number: &'a str, holder: &'a str) -> AccountInput<'a> {
        AccountInput {
            bank,
            branch: "123",
            kind: "ordinary",
            number,
            holder,
        }
    }

    #[test]
    fn a_good_account_is_kept_and_hiragana_becomes_katakana() {
        let a = BankAccount::parse(&input("０００１", "1234567", "たかはし　いちろう")).unwrap();
        assert_eq!(a.bank, "0001");
        assert_eq!(a.number, "1234567");
        assert_eq!(a.holder, "タカハシ　イチロウ");
        assert_eq!(a.kind, AccountKind::Ordinary);
    }

    #[test]
    fn the_number_is_masked_but_for_its_last_four_digits_and_refusals_carry_a_code() {
        let a = BankAccount::parse(&input("0001", "1234567", "タカハシ")).unwrap();
        assert_eq!(a.masked_number(), "***4567");
        let codes: Vec<&str> = [
            input("12", "1234567", "タカハシ"),
            input("0001", "12345", "タカハシ"),
            input("0001", "1234567", "Takahashi"),
            input("0001", "1234567", ""),
        ]
        .iter()
        .map(|i| BankAccount::check(i).unwrap_err().code)
        .collect();
        assert_eq!(
            codes,
            vec![
                "invalid_bank_code",
                "invalid_account_number",
                "invalid_account_holder",
                "invalid_account_holder"
            ]
        );
        let mut i = input("0001", "1234567", "タカハシ");
        i.kind = "savings";
        assert_eq!(
            BankAccount::check(&i).unwrap_err().code,
            "invalid_account_kind"
        );
        i.kind = "ordinary";
        i.branch = "1";
        assert_eq!(
            BankAccount::check(&i).unwrap_err().code,
            "invalid_branch_code"
        );
    }

    #[test]
    fn each_field_is_checked_with_a_message_naming_it() {
        let e = BankAccount::parse(&input("12", "1234567", "タカハシ")).unwrap_err();
        assert!(
            e.0.contains("金融機関コード") && e.1.contains("bank code"),
            "{e:?}"
        );
        let e = BankAccount::parse(&input("0001", "12345", "タカハシ")).unwrap_err();
        assert!(
            e.0.contains("口座番号") && e.1.contains("account number"),
            "{e:?}"
        );
        let e = BankAccount::parse(&input("0001", "1234567", "Takahashi")).unwrap_err();
        assert!(e.0.contains("口座名義") && e.1.contains("holder"), "{e:?}");
        let mut i = input("0001", "1234567", "タカハシ");
        i.kind = "savings";
        let e = BankAccount::parse(&i).unwrap_err();
        assert!(e.0.contains("預金種目"), "{e:?}");
        i.kind = "current";
        i.branch = "12a";
        let e = BankAccount::parse(&i).unwrap_err();
        assert!(
            e.0.contains("支店コード") && e.1.contains("branch code"),
            "{e:?}"
        );
    }
}
