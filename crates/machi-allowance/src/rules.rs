//! The rules of 児童手当 (child allowance) in force since 1 October 2024:
//! 児童手当法 (昭和46年法律第73号) as amended by 子ども・子育て支援法等の一部を
//! 改正する法律 (令和6年法律第47号), applying to the allowance for October
//! 2024 onward (first paid in December 2024). Pure: no I/O, no clock.
//!
//! | rule | source |
//! |---|---|
//! | 児童 = a person until the first 31 March on or after reaching 18 | 第3条第1項 |
//! | no income limit (the former 所得制限 and 特例給付 were abolished) | 令和6年法律第47号 (former 第5条) |
//! | ¥15,000 a month for a child under 3, ¥10,000 from then on; ¥30,000 for the third child and later | 第6条第1項 |
//! | a child born on the 1st of a month is under 3 until 3 years from birth have passed (so ¥15,000 through the month of the third birthday for everyone) | 第6条第1項 (括弧書) |
//! | the rank counts children up to the first 31 March on or after reaching 22 whom the claimant supports (監護に相当する日常生活上の世話及び必要な保護, 生計費の負担) | 第6条第1項 (第三子以降算定額算定対象者) |
//! | a child living apart from the claimant counts and is paid like one in the household when the claimant cares for the child and shares a livelihood (別居監護: 監護し、かつ、生計を同じくする; the law asks for no common household) | 第4条第1項第1号 |
//! | paid from the month after the claim (認定請求); within 15 days of a birth or a move-in, from the month after that event | 第8条第2項, 第3項 |
//! | ends with the month in which the entitlement ceases (death, move-out: the planned move-out date) | 第8条第2項 |
//! | an increase (a further child) from the month after the 額改定請求 (15-day rule alike); a reduction from the month after the event | 第9条第1項–第3項 |
//! | paid six times a year, in February, April, June, August, October and December, each time for the two months before | 第8条第4項 |
//! | when the entitlement ends (消滅: death, move-out), the months due and not yet paid may be paid in a month that is not a payment month | 第8条第4項ただし書 |
//! | 過去分: a month whose payment month has passed unpaid or underpaid (a claim approved late, an increase reaching back) is paid in the next payment, never twice | 第8条第4項 (本文・ただし書「前支払期月に支払うべきであつた児童手当」) |
//! | 公務員 are paid by their employer, not by the municipality | 第17条 |
//!
//! Reaching an age: 年齢計算ニ関スル法律 (明治35年法律第50号) and 民法第143条:
//! one reaches age n at the end of the day before the n-th birthday (a
//! person born on 29 February reaches it on 28 February of a common year).

use chrono::{Datelike, Days, NaiveDate};
use serde::{Deserialize, Serialize};

/// The first month the amended rules apply to (令和6年10月分).
pub const RULES_FROM: YearMonth = YearMonth {
    year: 2024,
    month: 10,
};

/// ¥ a month for a child under 3 (第6条第1項).
pub const UNDER_THREE: i64 = 15_000;
/// ¥ a month for a child from 3 to the end of the fiscal year of 18 (第6条第1項).
pub const THREE_AND_OVER: i64 = 10_000;
/// ¥ a month for the third and later child (第6条第1項).
pub const THIRD_AND_LATER: i64 = 30_000;

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct YearMonth {
    pub year: i32,
    pub month: u32,
}

impl YearMonth {
    pub fn new(year: i32, month: u32) -> Option<YearMonth> {
        (1..=12)
            .contains(&month)
            .then_some(YearMonth { year, month })
    }
    pub fn of(d: NaiveDate) -> YearMonth {
        YearMonth {
            year: d.year(),
            month: d.month(),
        }
    }
    pub fn next(self) -> YearMonth {
        self.plus(1)
    }
    pub fn plus(self, n: i32) -> YearMonth {
        let i = self.year * 12 + self.month as i32 - 1 + n;
        YearMonth {
            year: i.div_euclid(12),
            month: i.rem_euclid(12) as u32 + 1,
        }
    }
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid month")
    }
    /// `YYYY-MM`.
    pub fn iso(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
    /// `2025-06` (also `2025-6`).
    pub fn parse(s: &str) -> Option<YearMonth> {
        let (y, m) = s.trim().split_once('-')?;
        YearMonth::new(y.parse().ok()?, m.parse().ok()?)
    }
}

/// The n-th anniversary of `birth`; 29 February in a common year falls on
/// 1 March (民法第143条第2項ただし書: the period ends with the month's last
/// day, so the age is reached on 28 February, the day before 1 March).
pub fn anniversary(birth: NaiveDate, n: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(birth.year() + n, birth.month(), birth.day())
        .unwrap_or_else(|| NaiveDate::from_ymd_opt(birth.year() + n, 3, 1).expect("1 March exists"))
}

/// The day on which a person born on `birth` reaches age `n`: the day
/// before the n-th birthday (年齢計算ニ関スル法律, 民法第143条).
pub fn reaches_age(birth: NaiveDate, n: i32) -> NaiveDate {
    anniversary(birth, n) - Days::new(1)
}

/// The first 31 March on or after `d`.
pub fn first_march_31(d: NaiveDate) -> NaiveDate {
    let y = if d.month() <= 3 {
        d.year()
    } else {
        d.year() + 1
    };
    NaiveDate::from_ymd_opt(y, 3, 31).expect("31 March exists")
}

/// The last day on which a child is a 児童 (第3条第1項): the first 31 March
/// on or after reaching 18.
pub fn child_until(birth: NaiveDate) -> NaiveDate {
    first_march_31(reaches_age(birth, 18))
}

/// The last day on which a child supported by the claimant counts towards
/// the rank (第6条第1項, 第三子以降算定額算定対象者): the first 31 March on or
/// after reaching 22.
pub fn counted_until(birth: NaiveDate) -> NaiveDate {
    first_march_31(reaches_age(birth, 22))
}

/// The last month of ¥15,000 (第6条第1項: 3歳に満たない児童; born on the 1st:
/// until 3 years from birth have passed): the month of the third birthday.
pub fn last_under_three_month(birth: NaiveDate) -> YearMonth {
    if birth.day() == 1 {
        // Reaching 3 falls in the month before; the proviso extends it to
        // the day three years from birth.
        YearMonth::of(anniversary(birth, 3))
    } else {
        YearMonth::of(reaches_age(birth, 3))
    }
}

/// The first month paid for a claim (or an increase) made on `claimed_on`
/// (第8条第2項: the month after the claim); when the claim follows a birth
/// or a move-in on `event_on` within 15 days (counted from the day after
/// the event), the month after the event (第8条第3項, 第9条第2項).
pub fn first_paid_month(claimed_on: NaiveDate, event_on: Option<NaiveDate>) -> (YearMonth, bool) {
    let normal = YearMonth::of(claimed_on).next();
    if let Some(ev) = event_on
        && ev <= claimed_on
        && claimed_on <= ev + Days::new(15)
    {
        let special = YearMonth::of(ev).next();
        if special < normal {
            return (special, true);
        }
    }
    (normal, false)
}

/// The payment month of the allowance for `m` (第8条第4項): the even month
/// after it; each payment covers the two months before it.
pub fn payment_month(m: YearMonth) -> YearMonth {
    if m.month.is_multiple_of(2) {
        m.plus(2)
    } else {
        m.plus(1)
    }
}

/// The two months one payment month pays, or None if `p` is not a payment
/// month (February, April, June, August, October, December).
pub fn months_paid_in(p: YearMonth) -> Option<[YearMonth; 2]> {
    p.month.is_multiple_of(2).then(|| [p.plus(-2), p.plus(-1)])
}

/// One child of a claim as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub key: String,
    pub birth: NaiveDate,
    /// The first month this child counts (the claim's first month, or the
    /// month after a 額改定請求 for a child added later).
    pub from: YearMonth,
    /// The day the child left the claimant (death, move-out, no longer in
    /// their care): counted through that month, reduced from the next
    /// (第9条第3項).
    pub left_on: Option<NaiveDate>,
    /// 18–22: the claimant supports the child (監護相当・生計費の負担), so
    /// the child counts towards the rank.
    pub supported: bool,
    /// Why the child is on the claim ([`Basis`]).
    pub basis: Basis,
}

/// Why a child is on a claim: the claimant's household as the registry
/// shows it, or entered by the clerk for a child living elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// In the claimant's household (住民記録の世帯): 監護・生計同一 is
    /// presumed from living together (第4条第1項第1号).
    Household,
    /// 別居監護: a 児童 (up to the fiscal year of 18) living apart — with
    /// grandparents, in a dormitory — whom the claimant cares for (監護)
    /// and with whom they share a livelihood (生計を同じくする). Counted and
    /// paid like a child in the household (第4条第1項第1号: the law asks for
    /// 監護 and 生計同一, not a common household).
    SeparateCare,
    /// 大学生等の生計費負担: a child past the fiscal year of 18 and up to the
    /// fiscal year of 22 (a university student living away) to whom the
    /// claimant gives the care that stands for 監護 (監護に相当する日常生活上の
    /// 世話及び必要な保護) and whose living costs they bear (生計費の負担):
    /// not paid, counted towards the rank of the younger children
    /// (第6条第1項, 第三子以降算定額算定対象者).
    StudentSupport,
}

impl Basis {
    pub fn code(self) -> &'static str {
        match self {
            Basis::Household => "household",
            Basis::SeparateCare => "separate_care",
            Basis::StudentSupport => "student_support",
        }
    }
    pub fn parse(s: &str) -> Option<Basis> {
        [Basis::Household, Basis::SeparateCare, Basis::StudentSupport]
            .into_iter()
            .find(|b| b.code() == s)
    }
    /// A short label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Basis::Household => "同一世帯",
            Basis::SeparateCare => "別居監護",
            Basis::StudentSupport => "大学生等の生計費負担",
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            Basis::Household => "same household",
            Basis::SeparateCare => "living apart, in the claimant's care",
            Basis::StudentSupport => "student supported by the claimant",
        }
    }
    /// The basis in words, with its article.
    pub fn explain_ja(self) -> &'static str {
        match self {
            Basis::Household => {
                "受給者と同じ世帯で監護し、生計を同じくしている（児童手当法第4条第1項第1号）"
            }
            Basis::SeparateCare => {
                "別居監護：別居しているが、受給者が監護し、生計を同じくしている18歳年度末までの児童（児童手当法第4条第1項第1号）"
            }
            Basis::StudentSupport => {
                "大学生等の生計費負担：18歳年度末後22歳年度末までの子で、受給者が監護に相当する日常生活上の世話及び必要な保護をし、生計費を負担している。支給対象外、第3子以降の数え方に含む（児童手当法第6条第1項）"
            }
        }
    }
    pub fn explain_en(self) -> &'static str {
        match self {
            Basis::Household => {
                "in the claimant's household, in their care and sharing their livelihood (Art. 4(1)(i))"
            }
            Basis::SeparateCare => {
                "living apart, but in the claimant's care and sharing their livelihood, up to the fiscal year of 18 (Art. 4(1)(i))"
            }
            Basis::StudentSupport => {
                "past the fiscal year of 18 and up to that of 22, cared for and with living costs borne by the claimant: not paid, counted towards the rank (Art. 6(1))"
            }
        }
    }
}

/// A claim (認定) as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The first month paid ([`first_paid_month`]).
    pub from: YearMonth,
    /// The day the entitlement ceased (the claimant's death or move-out:
    /// the planned move-out date): paid through that month (第8条第2項).
    pub ended_on: Option<NaiveDate>,
    pub children: Vec<Child>,
}

/// Why a child's amount for a month is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// ¥15,000: under 3, through the month of the third birthday.
    UnderThree,
    /// ¥10,000: from the month after the third birthday to the end of the
    /// fiscal year of 18.
    ThreeAndOver,
    /// ¥30,000: the third or a later child.
    ThirdAndLater,
    /// ¥0: past the fiscal year of 18 but supported up to the fiscal year
    /// of 22; counts towards the rank of the younger children.
    CountedOnly,
}

impl Rule {
    pub fn amount(self) -> i64 {
        match self {
            Rule::UnderThree => UNDER_THREE,
            Rule::ThreeAndOver => THREE_AND_OVER,
            Rule::ThirdAndLater => THIRD_AND_LATER,
            Rule::CountedOnly => 0,
        }
    }
    /// The rule as a clerk explains it, with its article.
    pub fn explain_ja(self) -> &'static str {
        match self {
            Rule::UnderThree => "3歳の誕生月まで 月額15,000円（児童手当法第6条第1項）",
            Rule::ThreeAndOver => {
                "3歳の誕生月の翌月から18歳に達する日以後の最初の3月31日まで 月額10,000円（児童手当法第3条第1項・第6条第1項）"
            }
            Rule::ThirdAndLater => {
                "第3子以降 月額30,000円（22歳に達する日以後の最初の3月31日までの養育する子を数える。児童手当法第6条第1項）"
            }
            Rule::CountedOnly => {
                "18歳年度末を過ぎ22歳年度末までの子：支給対象外、第3子以降の数え方にのみ含む（児童手当法第6条第1項）"
            }
        }
    }
    pub fn explain_en(self) -> &'static str {
        match self {
            Rule::UnderThree => {
                "¥15,000 a month through the month of the third birthday (Art. 6(1))"
            }
            Rule::ThreeAndOver => {
                "¥10,000 a month from then to the first 31 March on or after the day of reaching 18 (Arts. 3(1), 6(1))"
            }
            Rule::ThirdAndLater => {
                "¥30,000 a month for the third and later child, counting supported children up to the first 31 March on or after the day of reaching 22 (Art. 6(1))"
            }
            Rule::CountedOnly => {
                "not paid: past the fiscal year of 18, counted towards the rank up to the fiscal year of 22 (Art. 6(1))"
            }
        }
    }
}

/// One child's line in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildMonth {
    pub key: String,
    /// 1 = 第1子 (the eldest counted that month).
    pub rank: usize,
    pub amount: i64,
    pub rule: Rule,
    /// Why the child is on the claim (shown with the amount).
    pub basis: Basis,
}

/// The entitlement for one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Month {
    pub month: YearMonth,
    pub total: i64,
    pub children: Vec<ChildMonth>,
    /// The month in which this month's allowance is paid.
    pub paid_in: YearMonth,
}

/// Whether the child counts in month `m` at all (in the claim, not yet
/// left, a 児童 or a supported child up to 22).
fn counts(c: &Child, m: YearMonth) -> bool {
    // Never before the month after the birth (a claim or increase is made
    // for a child already born: 第7条, 第9条).
    if m < c.from || m <= YearMonth::of(c.birth) {
        return false;
    }
    if let Some(left) = c.left_on
        && m > YearMonth::of(left)
    {
        return false;
    }
    let supported = c.supported || c.basis == Basis::StudentSupport;
    m <= YearMonth::of(child_until(c.birth))
        || (supported && m <= YearMonth::of(counted_until(c.birth)))
}

/// The entitlement for month `m`, or None when nothing is due (before the
/// claim's first month or the amended rules, after its end, or no child).
pub fn month(claim: &Claim, m: YearMonth) -> Option<Month> {
    if m < claim.from || m < RULES_FROM {
        return None;
    }
    if let Some(end) = claim.ended_on
        && m > YearMonth::of(end)
    {
        return None;
    }
    let mut counted: Vec<&Child> = claim.children.iter().filter(|c| counts(c, m)).collect();
    // Eldest first; same birthday (twins): a stable order by key.
    counted.sort_by(|a, b| a.birth.cmp(&b.birth).then_with(|| a.key.cmp(&b.key)));
    let children: Vec<ChildMonth> = counted
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let rank = i + 1;
            let rule = if m > YearMonth::of(child_until(c.birth)) {
                Rule::CountedOnly
            } else if rank >= 3 {
                Rule::ThirdAndLater
            } else if m <= last_under_three_month(c.birth) {
                Rule::UnderThree
            } else {
                Rule::ThreeAndOver
            };
            ChildMonth {
                key: c.key.clone(),
                rank,
                amount: rule.amount(),
                rule,
                basis: c.basis,
            }
        })
        .collect();
    let total: i64 = children.iter().map(|c| c.amount).sum();
    if total == 0 {
        return None;
    }
    Some(Month {
        month: m,
        total,
        children,
        paid_in: payment_month(m),
    })
}

/// The entitlement for every month from `from` through `to`.
pub fn months(claim: &Claim, from: YearMonth, to: YearMonth) -> Vec<Month> {
    let mut out = Vec::new();
    let mut m = from;
    while m <= to {
        if let Some(x) = month(claim, m) {
            out.push(x);
        }
        m = m.next();
    }
    out
}

/// The amount paid in payment month `p` ([`months_paid_in`]); zero if `p`
/// is not a payment month.
pub fn payment(claim: &Claim, p: YearMonth) -> (i64, Vec<Month>) {
    let Some(ms) = months_paid_in(p) else {
        return (0, Vec::new());
    };
    let lines: Vec<Month> = ms.iter().filter_map(|m| month(claim, *m)).collect();
    (lines.iter().map(|l| l.total).sum(), lines)
}

/// Why a month is in a payment file: the regular payment in a payment
/// month, or the special payment when the entitlement ended.
///
/// 児童手当法第8条第4項: 「児童手当は、毎年二月、四月、六月、八月、十月及び
/// 十二月の六期に、それぞれの前月までの分を支払う。ただし、前支払期月に支払う
/// べきであつた児童手当又は支給すべき事由が消滅した場合におけるその期の児童
/// 手当は、その支払期月でない月であつても、支払うものとする。」 (the six
/// payment months since 令和6年法律第47号; the proviso is unchanged). The
/// ただし書 was read in the text before that amendment (「二月、六月及び十月の
/// 三期」); the amended 本文 was not read in an official copy, only the even
/// months and two months a time as municipalities publish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayRule {
    /// 定例払: in a payment month, the two months before (第8条第4項本文).
    Regular,
    /// 消滅時の随時払: the entitlement ended; the months of the current
    /// period not yet paid, paid at once (第8条第4項ただし書).
    OnEnd,
    /// 過去分 (未払い分): a month whose regular payment month has passed
    /// while it was not paid, or paid less than is now due (a claim
    /// approved late, a 額改定 reaching back), paid in the next regular
    /// payment file; only the difference, and only once. Never a file's
    /// own rule, only a line's in a regular file. 児童手当法第8条第4項:
    /// 本文 (the payment months) and ただし書 「前支払期月に支払うべきで
    /// あつた児童手当…は、その支払期月でない月であつても、支払うものとする」.
    Arrears,
    /// 還付: an overpayment whose reduction was undone (the event behind
    /// it cancelled) after part of it was withheld (内払調整, 第13条) or
    /// repaid: what was kept back is 児童手当 due for months that have
    /// passed, so, like a 過去分, it is paid in the next regular payment
    /// file (第8条第4項), into the claimant's account, once. Never a
    /// file's own rule, only a line's in a regular file; never recorded
    /// as a month paid.
    Refund,
    /// 未支払（児童手当法第12条第1項）: the claimant died; what was not paid
    /// to them yet (the months through the month of death: 消滅時の随時払
    /// or a regular file made after the death) is paid not into the dead
    /// claimant's account but to the child (「当該…児童であつた者にその
    /// 未支払の児童手当を支払うことができる」), into the account named on a
    /// 未支払請求 (児童手当法施行規則第9条). Without one the line is held
    /// (未支払請求待ち). Never a file's own rule, only a line's; the months
    /// it pays are recorded as paid, once.
    Unpaid,
}

impl PayRule {
    pub fn code(self) -> &'static str {
        match self {
            PayRule::Regular => "regular",
            PayRule::OnEnd => "on_end",
            PayRule::Arrears => "arrears",
            PayRule::Refund => "refund",
            PayRule::Unpaid => "unpaid",
        }
    }
    pub fn parse(s: &str) -> Option<PayRule> {
        match s {
            "regular" => Some(PayRule::Regular),
            "on_end" => Some(PayRule::OnEnd),
            "arrears" => Some(PayRule::Arrears),
            "refund" => Some(PayRule::Refund),
            "unpaid" => Some(PayRule::Unpaid),
            _ => None,
        }
    }
    pub fn explain_ja(self) -> &'static str {
        match self {
            PayRule::Regular => "定例払：支払期月に前月までの2か月分（児童手当法第8条第4項本文）",
            PayRule::OnEnd => {
                "消滅時の随時払：死亡・転出で受給資格が消滅したため、未払の月分を支払期月でない月にも支払う（児童手当法第8条第4項ただし書）"
            }
            PayRule::Arrears => {
                "過去分：支払期月を過ぎても支払われていない月分・差額（遅れて認定された請求、さかのぼる増額）を次の支払で支払う（児童手当法第8条第4項）"
            }
            PayRule::Refund => {
                "還付：過払の原因となった異動が取り消されたため、支払から差し引いた額・返還を受けた額（内払調整：児童手当法第13条）を支払うべき手当として次の定例払で支払う（児童手当法第8条第4項）"
            }
            PayRule::Unpaid => {
                "未支払：受給者が死亡したため、まだ支払っていない月分を亡くなった受給者の口座ではなく、未支払請求を受けて児童（児童であつた者）に、請求で指定された口座へ支払う（児童手当法第12条第1項）"
            }
        }
    }
    pub fn explain_en(self) -> &'static str {
        match self {
            PayRule::Regular => {
                "regular payment: in a payment month, the two months before (Art. 8(4))"
            }
            PayRule::OnEnd => {
                "special payment on the end of the entitlement (death, move-out): the unpaid months, paid outside the payment months (Art. 8(4) proviso)"
            }
            PayRule::Arrears => {
                "arrears: months (or the part of them) whose payment month passed unpaid — a claim approved late, an increase reaching back — paid in the next payment (Art. 8(4))"
            }
            PayRule::Refund => {
                "refund: the event behind an overpayment was undone after part of it was withheld (Art. 13) or repaid; that allowance is paid in the next regular payment (Art. 8(4))"
            }
            PayRule::Unpaid => {
                "unpaid allowance of a deceased claimant: not paid into the dead claimant's account but to the child, into the account named on a claim for it (Art. 12(1))"
            }
        }
    }
}

/// The first month whose regular payment month is `r` or later: the months
/// a special payment made in month `r` may cover (earlier months belong to
/// a payment month already past).
pub fn first_month_not_yet_due(r: YearMonth) -> YearMonth {
    if r.month.is_multiple_of(2) {
        r.plus(-2)
    } else {
        r.plus(-1)
    }
}

/// One month in a payment file: the entitlement, the part of it this file
/// pays (all of it, or what an earlier file did not pay) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Due {
    pub month: Month,
    pub amount: i64,
    pub rule: PayRule,
}

/// The months of `claim` a payment file pays, each in full only once:
/// `paid` holds what earlier files paid for each month (yen).
///
/// - [`PayRule::Regular`] in payment month `r`: the two months before
///   ([`months_paid_in`]) not paid yet (第8条第4項本文); and, as
///   [`PayRule::Arrears`] (過去分), every earlier month whose payment
///   month is `arrears_from` or later and before `r` with less paid than
///   is due now — the difference (第8条第4項ただし書: 前支払期月に支払う
///   べきであつた児童手当). `arrears_from` is the first payment month whose
///   file this system made: months before it were paid (or not) before
///   the system kept payment records, and are not reopened (None: this is
///   the first file, so no arrears).
/// - [`PayRule::OnEnd`] on day `on` (any month, `r` = its month): only a
///   claim whose entitlement ended on or before `on`; every month from
///   [`first_month_not_yet_due`]`(r)` through the month of the end that is
///   not paid yet (第8条第2項: paid through the month of the end; 第8条第4項
///   ただし書: paid although `r` is not a payment month). The next regular
///   file then skips them; older arrears of the claim come in that file.
/// - [`PayRule::Arrears`] is never a file's rule: nothing.
///
/// A month now due less than was paid (a reduction reaching back, 過払)
/// gives nothing here: see [`overpaid_months`] and [`offset`].
pub fn due_months(
    claim: &Claim,
    rule: PayRule,
    on: NaiveDate,
    paid: &std::collections::BTreeMap<YearMonth, i64>,
    arrears_from: Option<YearMonth>,
) -> Vec<Due> {
    let r = YearMonth::of(on);
    let unpaid = |m: Month, rule: PayRule| {
        let amount = m.total - paid.get(&m.month).copied().unwrap_or(0);
        (amount > 0).then_some(Due {
            month: m,
            amount,
            rule,
        })
    };
    match rule {
        PayRule::Regular => {
            let Some([a, z]) = months_paid_in(r) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            if let Some(first) = arrears_from {
                // Months whose payment month p satisfies first <= p < r.
                let from = first.plus(-2).max(claim.from).max(RULES_FROM);
                out.extend(
                    months(claim, from, a.plus(-1))
                        .into_iter()
                        .filter(|m| payment_month(m.month) >= first)
                        .filter_map(|m| unpaid(m, PayRule::Arrears)),
                );
            }
            out.extend(
                months(claim, a, z)
                    .into_iter()
                    .filter(|m| !paid.contains_key(&m.month))
                    .filter_map(|m| unpaid(m, PayRule::Regular)),
            );
            out
        }
        PayRule::OnEnd => match claim.ended_on {
            Some(end) if end <= on => months(claim, first_month_not_yet_due(r), YearMonth::of(end))
                .into_iter()
                .filter(|m| !paid.contains_key(&m.month))
                .filter_map(|m| unpaid(m, PayRule::OnEnd))
                .collect(),
            _ => Vec::new(),
        },
        PayRule::Arrears | PayRule::Refund | PayRule::Unpaid => Vec::new(),
    }
}

/// Why a month already paid is now due less than was paid (過払).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reduction {
    /// The entitlement ceased (the claimant died or moved out) on `on`:
    /// nothing is due after the month of `on` (第8条第2項).
    Ended { on: NaiveDate },
    /// A child left the claimant (death, move-out, no longer in care) on
    /// `on`: the amount is reduced from the month after (第9条第3項).
    ChildLeft { key: String, on: NaiveDate },
    /// Otherwise the amount now due by 第6条第1項 (a child no longer
    /// counted towards the rank, e.g. 生計費の負担 no longer confirmed).
    Recomputed,
}

impl Reduction {
    /// In words, with the article (the child's name filled in by `name`).
    pub fn explain_ja(&self, name: &dyn Fn(&str) -> String) -> String {
        match self {
            Reduction::Ended { .. } => {
                "受給資格の消滅（死亡・転出）：消滅した月の翌月分からは支給されない（児童手当法第8条第2項）".into()
            }
            Reduction::ChildLeft { key, .. } => format!(
                "{}が受給者の監護を離れた：その翌月分から減額（児童手当法第9条第3項）",
                name(key)
            ),
            Reduction::Recomputed => {
                "額の計算のし直し：第3子以降の数え方が変わった（児童手当法第6条第1項）".into()
            }
        }
    }
    pub fn explain_en(&self) -> &'static str {
        match self {
            Reduction::Ended { .. } => {
                "the entitlement ended (death, move-out): nothing is due from the month after (Art. 8(2))"
            }
            Reduction::ChildLeft { .. } => {
                "a child left the claimant's care: reduced from the month after (Art. 9(3))"
            }
            Reduction::Recomputed => "the amount recomputed: the rank changed (Art. 6(1))",
        }
    }
    /// The day of the event behind it, if any.
    pub fn on(&self) -> Option<NaiveDate> {
        match self {
            Reduction::Ended { on } | Reduction::ChildLeft { on, .. } => Some(*on),
            Reduction::Recomputed => None,
        }
    }
}

/// One month paid more than is now due: an overpayment (過払) to recover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overpaid {
    pub month: YearMonth,
    /// What payment files paid for the month, in all.
    pub paid: i64,
    /// What is due for it now ([`month`]; 0 when nothing is).
    pub due: i64,
    /// The part not recorded as an overpayment before: `paid - due -
    /// recorded`.
    pub amount: i64,
    pub reduction: Reduction,
    /// The month's lines as now due (the rule of each child's amount).
    pub now: Vec<ChildMonth>,
}

/// Why month `m` is due less than a full claim would give: the first
/// cause the claim records (the end of the entitlement, else the earliest
/// child who left before `m`), else a recomputation.
fn reduction_of(claim: &Claim, m: YearMonth) -> Reduction {
    if let Some(end) = claim.ended_on
        && m > YearMonth::of(end)
    {
        return Reduction::Ended { on: end };
    }
    claim
        .children
        .iter()
        .filter_map(|c| c.left_on.map(|l| (l, c)))
        .filter(|(l, c)| {
            m > YearMonth::of(*l)
                && counts(
                    &Child {
                        left_on: None,
                        ..(*c).clone()
                    },
                    m,
                )
        })
        .min_by_key(|(l, c)| (*l, c.key.clone()))
        .map_or(Reduction::Recomputed, |(on, c)| Reduction::ChildLeft {
            key: c.key.clone(),
            on,
        })
}

/// The overpayments of `claim`: each month for which payment files paid
/// (`paid`, yen in all) more than is due now, less what was already
/// recorded as overpaid for it (`recorded`), with the reason and the rule
/// of what is due now. An event that arrives after the months it affects
/// were paid (a death, a move-out, a child leaving the household) reduces
/// the entitlement for them: 児童手当法第8条第2項 (the entitlement ends
/// with the month of the event) and 第9条第3項 (a reduction from the month
/// after the event). A month due more than paid gives nothing here: that
/// is a 過去分 ([`due_months`]).
pub fn overpaid_months(
    claim: &Claim,
    paid: &std::collections::BTreeMap<YearMonth, i64>,
    recorded: &std::collections::BTreeMap<YearMonth, i64>,
) -> Vec<Overpaid> {
    paid.iter()
        .filter_map(|(m, p)| {
            let now = month(claim, *m);
            let due = now.as_ref().map_or(0, |x| x.total);
            let amount = p - due - recorded.get(m).copied().unwrap_or(0);
            (amount > 0).then(|| Overpaid {
                month: *m,
                paid: *p,
                due,
                amount,
                reduction: reduction_of(claim, *m),
                now: now.map(|x| x.children).unwrap_or_default(),
            })
        })
        .collect()
}

/// How an overpayment is settled.
///
/// 児童手当法第13条（支払の調整）: a payment made although no 児童手当 was
/// to be paid (「児童手当を支給すべきでないにもかかわらず」), and the part not
/// reduced of a payment for the months from the month after a cause of
/// reduction (「減額して改定すべき事由が生じたにもかかわらず」), may be
/// treated as an internal payment of the 児童手当 payable later (「その後に
/// 支払うべき児童手当の内払とみなすことができる」). (Wording read in a
/// third-party copy of the article, not in e-Gov; 児童手当法 knows no
/// 支給停止, so the earlier quote here, 「支給を停止すべき事由」, was wrong:
/// see docs/notes/wt-law13.md.)
/// What the next payment file cannot absorb is claimed back from the
/// recipient (返還請求; 民法第703条 不当利得; 第14条 applies only to
/// payments obtained by deceit, 不正利得, and is not used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// 内払調整待ち: to be withheld from the claimant's next payment file
    /// (第13条).
    AwaitingOffset,
    /// 返還請求: the next payment file could not absorb it (or none came:
    /// the entitlement ended); the remaining amount is to be paid back.
    Demanded,
    /// 精算済: withheld or repaid in full.
    Settled,
    /// 取消し: the reduction was undone before anything was recovered
    /// (the event behind it cancelled in the registry): nothing is owed.
    Cancelled,
    /// 還付: the reduction was undone after part of it was withheld or
    /// repaid; what was recovered beyond what is owed now is the
    /// claimant's (児童手当 due under 第8条 that was kept back).
    Refund,
}

impl Recovery {
    /// The state of an overpayment of `amount`, `cancelled` of it undone,
    /// `collected` of it withheld from payment files or repaid so far,
    /// `demanded` once a payment file left part of it unabsorbed.
    pub fn of(amount: i64, cancelled: i64, collected: i64, demanded: bool) -> Recovery {
        let owed = (amount - cancelled).max(0);
        if collected > owed {
            Recovery::Refund
        } else if owed == 0 {
            Recovery::Cancelled
        } else if collected >= owed {
            Recovery::Settled
        } else if demanded {
            Recovery::Demanded
        } else {
            Recovery::AwaitingOffset
        }
    }
    pub fn label_ja(self) -> &'static str {
        match self {
            Recovery::AwaitingOffset => "次の支払で内払調整（児童手当法第13条）",
            Recovery::Demanded => "返還請求（次の支払で差し引ききれなかった額）",
            Recovery::Settled => "精算済み（支払から差し引いた、または返還を受けた）",
            Recovery::Cancelled => "取消し（原因となった異動が取り消された）",
            Recovery::Refund => {
                "還付が必要（原因となった異動が取り消されたが、すでに差し引いた・返還を受けた額がある）"
            }
        }
    }
    pub fn label_en(self) -> &'static str {
        match self {
            Recovery::AwaitingOffset => "to be withheld from the next payment (Art. 13)",
            Recovery::Demanded => "to be paid back (the next payment could not absorb it)",
            Recovery::Settled => "settled (withheld from a payment or repaid)",
            Recovery::Cancelled => "cancelled (the event behind it was undone)",
            Recovery::Refund => {
                "to be refunded (the event was undone after part was withheld or repaid)"
            }
        }
    }
}

/// The recorded overpayments to cancel because the claim, as it stands,
/// was overpaid less for their month than they say: the reduction behind
/// them was undone (a move-out or death cancelled in the registry as
/// made in error, so the entitlement never ended under 第8条第2項 nor the
/// amount fell under 第9条第3項; or a clerk confirmed again a child's
/// support). `recorded` holds (id, month, yen still owed by the record),
/// oldest first; for each month, what they hold above what is overpaid
/// now (`paid` less what is due now, never below 0) is cancelled, newest
/// record first. Returns (id, yen) to cancel.
pub fn cancelled_overpayments(
    claim: &Claim,
    paid: &std::collections::BTreeMap<YearMonth, i64>,
    recorded: &[(i64, YearMonth, i64)],
) -> Vec<(i64, i64)> {
    let months: std::collections::BTreeSet<YearMonth> = recorded.iter().map(|r| r.1).collect();
    let mut out = Vec::new();
    for m in months {
        let due = month(claim, m).map_or(0, |x| x.total);
        let over_now = (paid.get(&m).copied().unwrap_or(0) - due).max(0);
        let held: i64 = recorded
            .iter()
            .filter(|r| r.1 == m)
            .map(|r| r.2.max(0))
            .sum();
        let mut excess = held - over_now;
        for (id, _, owed) in recorded.iter().filter(|r| r.1 == m).rev() {
            if excess <= 0 {
                break;
            }
            let take = (*owed).max(0).min(excess);
            if take > 0 {
                out.push((*id, take));
                excess -= take;
            }
        }
    }
    out
}

/// 内払調整 (第13条): how much of each outstanding overpayment (id,
/// remaining yen; oldest first) a payment of `payable` yen absorbs. The
/// total never exceeds `payable` nor what is outstanding; the oldest is
/// settled first.
pub fn offset(payable: i64, outstanding: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut left = payable.max(0);
    let mut out = Vec::new();
    for (id, remaining) in outstanding {
        if left == 0 {
            break;
        }
        let take = (*remaining).max(0).min(left);
        if take > 0 {
            out.push((*id, take));
            left -= take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn ym(y: i32, m: u32) -> YearMonth {
        YearMonth::new(y, m).unwrap()
    }
    fn child(key: &str, birth: NaiveDate, from: YearMonth) -> Child {
        Child {
            key: key.into(),
            birth,
            from,
            left_on: None,
            supported: false,
            basis: Basis::Household,
        }
    }
    fn one(birth: NaiveDate, from: YearMonth) -> Claim {
        Claim {
            from,
            ended_on: None,
            children: vec![child("a", birth, from)],
        }
    }
    fn rule_of(c: &Claim, m: YearMonth, key: &str) -> Option<Rule> {
        month(c, m)?
            .children
            .into_iter()
            .find(|x| x.key == key)
            .map(|x| x.rule)
    }

    #[test]
    fn reaching_an_age_is_the_day_before_the_birthday() {
        assert_eq!(reaches_age(d(2020, 6, 15), 3), d(2023, 6, 14));
        assert_eq!(reaches_age(d(2020, 6, 1), 3), d(2023, 5, 31));
        // 29 February: reached on 28 February of a common year.
        assert_eq!(reaches_age(d(2020, 2, 29), 3), d(2023, 2, 28));
        assert_eq!(reaches_age(d(2020, 2, 29), 4), d(2024, 2, 28));
    }

    #[test]
    fn under_three_through_the_month_of_the_third_birthday() {
        let c = one(d(2022, 6, 15), ym(2024, 10));
        assert_eq!(rule_of(&c, ym(2025, 6), "a"), Some(Rule::UnderThree));
        assert_eq!(rule_of(&c, ym(2025, 7), "a"), Some(Rule::ThreeAndOver));
        // Born on the 2nd: reaches 3 on the 1st of the birthday month.
        let c = one(d(2022, 6, 2), ym(2024, 10));
        assert_eq!(rule_of(&c, ym(2025, 6), "a"), Some(Rule::UnderThree));
        assert_eq!(rule_of(&c, ym(2025, 7), "a"), Some(Rule::ThreeAndOver));
    }

    #[test]
    fn born_on_the_first_keeps_fifteen_thousand_in_the_birthday_month() {
        // Reaches 3 on 31 May 2025, but 3 years from birth pass only in
        // June: June is still ¥15,000 (第6条第1項 括弧書).
        let c = one(d(2022, 6, 1), ym(2024, 10));
        assert_eq!(last_under_three_month(d(2022, 6, 1)), ym(2025, 6));
        assert_eq!(rule_of(&c, ym(2025, 5), "a"), Some(Rule::UnderThree));
        assert_eq!(rule_of(&c, ym(2025, 6), "a"), Some(Rule::UnderThree));
        assert_eq!(rule_of(&c, ym(2025, 7), "a"), Some(Rule::ThreeAndOver));
    }

    #[test]
    fn april_first_birthdays_belong_to_the_earlier_school_year() {
        // Born 1 April 2007: reaches 18 on 31 March 2025, the end of that
        // fiscal year: paid through March 2025 only.
        assert_eq!(child_until(d(2007, 4, 1)), d(2025, 3, 31));
        let c = one(d(2007, 4, 1), ym(2024, 10));
        assert!(month(&c, ym(2025, 3)).is_some());
        assert!(month(&c, ym(2025, 4)).is_none());
        // Born 2 April 2007: reaches 18 on 1 April 2025: through March 2026.
        assert_eq!(child_until(d(2007, 4, 2)), d(2026, 3, 31));
        let c = one(d(2007, 4, 2), ym(2024, 10));
        assert_eq!(month(&c, ym(2026, 3)).unwrap().total, 10_000);
        assert!(month(&c, ym(2026, 4)).is_none());
        // 22: born 1 April 2003 counts through March 2025.
        assert_eq!(counted_until(d(2003, 4, 1)), d(2025, 3, 31));
        assert_eq!(counted_until(d(2003, 4, 2)), d(2026, 3, 31));
    }

    #[test]
    fn explanations_word_the_age_limits_as_the_law_does() {
        // 児童手当法第3条第1項: 「十八歳に達する日以後の最初の三月三十一日」. A
        // child born on 1 April reaches 18 on a 31 March, which is itself
        // the last day: 「達した後の最初の3月31日」 would read as a year later.
        let three = Rule::ThreeAndOver.explain_ja();
        assert!(
            three.contains("18歳に達する日以後の最初の3月31日"),
            "{three}"
        );
        let third = Rule::ThirdAndLater.explain_ja();
        assert!(
            third.contains("22歳に達する日以後の最初の3月31日"),
            "{third}"
        );
        for r in [Rule::ThreeAndOver, Rule::ThirdAndLater] {
            assert!(!r.explain_ja().contains("達した後"));
            assert!(r.explain_en().contains("on or after the day of reaching"));
        }
    }

    #[test]
    fn third_child_counts_supported_children_up_to_22() {
        let from = ym(2024, 10);
        let mut student = child("s", d(2004, 5, 10), from); // 20 in 2024
        student.supported = true;
        let c = Claim {
            from,
            ended_on: None,
            children: vec![
                student.clone(),
                child("h", d(2008, 7, 1), from),  // high school
                child("b", d(2024, 1, 20), from), // baby
            ],
        };
        let m = month(&c, ym(2024, 12)).unwrap();
        let ranks: Vec<(&str, usize, i64, Rule)> = m
            .children
            .iter()
            .map(|x| (x.key.as_str(), x.rank, x.amount, x.rule))
            .collect();
        assert_eq!(
            ranks,
            vec![
                ("s", 1, 0, Rule::CountedOnly),
                ("h", 2, 10_000, Rule::ThreeAndOver),
                ("b", 3, 30_000, Rule::ThirdAndLater),
            ]
        );
        assert_eq!(m.total, 40_000);
        // Without the support, the baby is the second child: ¥15,000.
        let mut unsupported = c.clone();
        unsupported.children[0].supported = false;
        let m = month(&unsupported, ym(2024, 12)).unwrap();
        assert_eq!(m.total, 25_000);
        assert_eq!(m.children[1].rank, 2);
        // After March 2027 neither the student (22 in May 2026) nor the
        // high-school child (18 in July 2026, unsupported) counts: the baby
        // (3 in January 2027) is the first child from April 2027, ¥30,000
        // falls to ¥10,000.
        assert_eq!(counted_until(d(2004, 5, 10)), d(2027, 3, 31));
        assert_eq!(rule_of(&c, ym(2027, 3), "b"), Some(Rule::ThirdAndLater));
        assert_eq!(rule_of(&c, ym(2027, 4), "b"), Some(Rule::ThreeAndOver));
        assert_eq!(month(&c, ym(2027, 4)).unwrap().children[0].rank, 1);
    }

    #[test]
    fn fifteen_day_rule_after_a_birth_or_a_move_in() {
        // Born 25 January; the 15th day after is 9 February.
        let birth = d(2025, 1, 25);
        assert_eq!(
            first_paid_month(d(2025, 2, 9), Some(birth)),
            (ym(2025, 2), true)
        );
        assert_eq!(
            first_paid_month(d(2025, 2, 10), Some(birth)),
            (ym(2025, 3), false)
        );
        // Claimed in the same month: the month after, no special rule needed.
        assert_eq!(
            first_paid_month(d(2025, 1, 31), Some(birth)),
            (ym(2025, 2), false)
        );
        // No event: the month after the claim.
        assert_eq!(first_paid_month(d(2025, 1, 1), None), (ym(2025, 2), false));
        // A move-in on 31 March, claimed 15 April: from April.
        assert_eq!(
            first_paid_month(d(2025, 4, 15), Some(d(2025, 3, 31))),
            (ym(2025, 4), true)
        );
    }

    #[test]
    fn end_with_the_month_of_the_event_reductions_from_the_next() {
        let from = ym(2024, 10);
        let mut c = Claim {
            from,
            ended_on: None,
            children: vec![
                child("a", d(2015, 5, 5), from),
                child("b", d(2018, 5, 5), from),
                child("c", d(2023, 5, 5), from),
            ],
        };
        assert_eq!(month(&c, ym(2025, 1)).unwrap().total, 10_000 * 2 + 30_000);
        // The eldest moves away on 10 February: still counted in February,
        // the others move up from March.
        c.children[0].left_on = Some(d(2025, 2, 10));
        assert_eq!(month(&c, ym(2025, 2)).unwrap().total, 50_000);
        assert_eq!(month(&c, ym(2025, 3)).unwrap().total, 10_000 + 15_000);
        // The claimant moves out on 20 June (planned date): June is paid,
        // July is not.
        c.ended_on = Some(d(2025, 6, 20));
        assert!(month(&c, ym(2025, 6)).is_some());
        assert!(month(&c, ym(2025, 7)).is_none());
    }

    #[test]
    fn six_payments_a_year_each_for_the_two_months_before() {
        assert_eq!(payment_month(ym(2024, 10)), ym(2024, 12));
        assert_eq!(payment_month(ym(2024, 11)), ym(2024, 12));
        assert_eq!(payment_month(ym(2024, 12)), ym(2025, 2));
        assert_eq!(payment_month(ym(2025, 1)), ym(2025, 2));
        assert_eq!(
            months_paid_in(ym(2025, 2)),
            Some([ym(2024, 12), ym(2025, 1)])
        );
        assert_eq!(months_paid_in(ym(2025, 3)), None);
        let c = one(d(2024, 3, 3), ym(2024, 10));
        assert_eq!(payment(&c, ym(2024, 12)).0, 30_000);
        assert_eq!(payment(&c, ym(2025, 1)).0, 0);
    }

    #[test]
    fn nothing_before_the_amended_rules_or_the_claim() {
        let c = one(d(2024, 3, 3), ym(2024, 6));
        assert!(month(&c, ym(2024, 9)).is_none());
        assert!(month(&c, ym(2024, 10)).is_some());
        let c = one(d(2024, 3, 3), ym(2025, 2));
        assert!(month(&c, ym(2025, 1)).is_none());
    }

    #[test]
    fn a_child_added_later_counts_from_its_own_month() {
        let from = ym(2024, 10);
        let c = Claim {
            from,
            ended_on: None,
            children: vec![
                child("a", d(2015, 5, 5), from),
                child("b", d(2025, 3, 20), ym(2025, 4)),
            ],
        };
        assert_eq!(month(&c, ym(2025, 3)).unwrap().total, 10_000);
        assert_eq!(month(&c, ym(2025, 4)).unwrap().total, 25_000);
        // A child never counts in or before the month of birth.
        let early = Claim {
            from,
            ended_on: None,
            children: vec![child("b", d(2025, 3, 20), from)],
        };
        assert!(month(&early, ym(2025, 3)).is_none());
        assert_eq!(month(&early, ym(2025, 4)).unwrap().total, 15_000);
    }

    #[test]
    fn a_hand_added_older_sibling_living_apart_makes_the_baby_the_third_child() {
        // The household: a child of 10 and a baby; the eldest (15) lives
        // with the grandparents, cared for by the claimant (別居監護),
        // added by a 額改定請求 on 10 July 2025.
        let from = ym(2024, 10);
        let (added, special) = first_paid_month(d(2025, 7, 10), None);
        assert_eq!((added, special), (ym(2025, 8), false));
        let mut eldest = child("e", d(2010, 4, 15), added);
        eldest.basis = Basis::SeparateCare;
        let c = Claim {
            from,
            ended_on: None,
            children: vec![
                child("m", d(2015, 5, 5), from),
                child("b", d(2025, 1, 20), from),
                eldest.clone(),
            ],
        };
        // Through July (the month of the request) the baby is second.
        let july = month(&c, ym(2025, 7)).unwrap();
        assert_eq!(july.total, 25_000);
        assert_eq!(rule_of(&c, ym(2025, 7), "b"), Some(Rule::UnderThree));
        assert!(!july.children.iter().any(|x| x.key == "e"));
        // From August (the month after the request, 第9条第1項) the eldest
        // is first and paid, the baby third: ¥30,000.
        let aug = month(&c, ym(2025, 8)).unwrap();
        let ranks: Vec<(&str, usize, i64, Basis)> = aug
            .children
            .iter()
            .map(|x| (x.key.as_str(), x.rank, x.amount, x.basis))
            .collect();
        assert_eq!(
            ranks,
            vec![
                ("e", 1, 10_000, Basis::SeparateCare),
                ("m", 2, 10_000, Basis::Household),
                ("b", 3, 30_000, Basis::Household),
            ]
        );
        assert_eq!(aug.total, 50_000);
        // Within 15 days of a move (第9条第2項, 第8条第3項): from the month
        // after the event instead.
        assert_eq!(
            first_paid_month(d(2025, 7, 10), Some(d(2025, 6, 30))),
            (ym(2025, 7), true)
        );
        // Ended by hand on 15 November (監護をやめた): counted through
        // November, reduced from December (第9条第3項).
        let mut ended = c.clone();
        ended.children[2].left_on = Some(d(2025, 11, 15));
        assert_eq!(month(&ended, ym(2025, 11)).unwrap().total, 50_000);
        assert_eq!(rule_of(&ended, ym(2025, 12), "b"), Some(Rule::UnderThree));
        assert_eq!(month(&ended, ym(2025, 12)).unwrap().total, 25_000);
        // 別居監護 alone does not count past the fiscal year of 18 (March
        // 2029 for the eldest): then only with 生計費の負担.
        assert!(rule_of(&c, ym(2029, 4), "e").is_none());
        let mut later = c.clone();
        later.children[2].supported = true;
        assert_eq!(rule_of(&later, ym(2029, 4), "e"), Some(Rule::CountedOnly));
        assert_eq!(rule_of(&later, ym(2029, 4), "b"), Some(Rule::ThirdAndLater));
    }

    #[test]
    fn a_student_supported_elsewhere_counts_to_22_and_is_never_paid() {
        // 20 in 2025, at university in another town; the claimant bears
        // the living costs (大学生等の生計費負担), added from September 2025.
        let from = ym(2024, 10);
        let mut student = child("s", d(2005, 6, 10), ym(2025, 9));
        student.basis = Basis::StudentSupport;
        let c = Claim {
            from,
            ended_on: None,
            children: vec![
                student,
                child("h", d(2012, 8, 1), from),
                child("b", d(2021, 2, 2), from),
            ],
        };
        assert_eq!(month(&c, ym(2025, 8)).unwrap().total, 20_000);
        let sep = month(&c, ym(2025, 9)).unwrap();
        assert_eq!(sep.children[0].rule, Rule::CountedOnly);
        assert_eq!(sep.children[0].amount, 0);
        assert_eq!(sep.children[0].basis, Basis::StudentSupport);
        assert_eq!(sep.total, 40_000);
        // The basis itself stands for the support: counted to the end of
        // the fiscal year of 22 (31 March 2028), not after.
        assert_eq!(counted_until(d(2005, 6, 10)), d(2028, 3, 31));
        assert_eq!(rule_of(&c, ym(2028, 3), "b"), Some(Rule::ThirdAndLater));
        assert_eq!(rule_of(&c, ym(2028, 4), "b"), Some(Rule::ThreeAndOver));
        assert!(rule_of(&c, ym(2028, 4), "s").is_none());
        for b in [Basis::Household, Basis::SeparateCare, Basis::StudentSupport] {
            assert_eq!(Basis::parse(b.code()), Some(b));
            assert!(b.explain_ja().contains("児童手当法第"));
        }
        assert_eq!(Basis::parse("other"), None);
    }

    #[test]
    fn year_month_arithmetic() {
        assert_eq!(ym(2024, 12).next(), ym(2025, 1));
        assert_eq!(ym(2025, 1).plus(-2), ym(2024, 11));
        assert_eq!(YearMonth::parse("2025-6"), Some(ym(2025, 6)));
        assert_eq!(YearMonth::parse("2025-13"), None);
        assert_eq!(first_march_31(d(2025, 3, 31)), d(2025, 3, 31));
        assert_eq!(first_march_31(d(2025, 4, 1)), d(2026, 3, 31));
    }
    #[test]
    fn a_special_payment_on_the_end_pays_the_unpaid_months_once() {
        use std::collections::BTreeMap;
        let from = ym(2024, 10);
        let mut c = one(d(2015, 5, 5), from);
        // Not ended: nothing to pay specially.
        assert!(due_months(&c, PayRule::OnEnd, d(2025, 9, 10), &BTreeMap::new(), None).is_empty());
        // The claimant dies on 5 September 2025: paid through September.
        c.ended_on = Some(d(2025, 9, 5));
        // Before the death, nothing yet.
        assert!(due_months(&c, PayRule::OnEnd, d(2025, 9, 4), &BTreeMap::new(), None).is_empty());
        // On 10 September (not a payment month): August and September,
        // the months the October payment would have paid.
        let due = due_months(&c, PayRule::OnEnd, d(2025, 9, 10), &BTreeMap::new(), None);
        assert_eq!(
            due.iter().map(|m| m.month.month).collect::<Vec<_>>(),
            vec![ym(2025, 8), ym(2025, 9)]
        );
        // Once paid, neither the October file nor another special one
        // pays them again.
        let paid: BTreeMap<YearMonth, i64> =
            due.iter().map(|m| (m.month.month, m.amount)).collect();
        // (The October file is the first this system makes: no 過去分.)
        assert!(due_months(&c, PayRule::Regular, d(2025, 10, 1), &paid, None).is_empty());
        assert!(due_months(&c, PayRule::OnEnd, d(2025, 9, 20), &paid, None).is_empty());
        // Unpaid, the October file pays them in the regular way.
        assert_eq!(
            due_months(&c, PayRule::Regular, d(2025, 10, 1), &BTreeMap::new(), None).len(),
            2
        );
        // A regular file in an odd month pays nothing.
        assert!(due_months(&c, PayRule::Regular, d(2025, 9, 1), &BTreeMap::new(), None).is_empty());
        // In an even month the special payment covers that month's period.
        assert_eq!(first_month_not_yet_due(ym(2025, 10)), ym(2025, 8));
        assert_eq!(first_month_not_yet_due(ym(2025, 9)), ym(2025, 8));
    }

    #[test]
    fn arrears_are_paid_in_the_next_file_once_and_only_the_difference() {
        use std::collections::BTreeMap;
        // A claim made in July 2025 (paid from August) but approved only
        // after the October file was made: August and September missed
        // their payment month.
        let c = one(d(2015, 5, 5), ym(2025, 8));
        let none = BTreeMap::new();
        let dec = due_months(
            &c,
            PayRule::Regular,
            d(2025, 12, 1),
            &none,
            Some(ym(2025, 8)),
        );
        assert_eq!(
            dec.iter()
                .map(|x| (x.month.month, x.amount, x.rule))
                .collect::<Vec<_>>(),
            vec![
                (ym(2025, 8), 10_000, PayRule::Arrears),
                (ym(2025, 9), 10_000, PayRule::Arrears),
                (ym(2025, 10), 10_000, PayRule::Regular),
                (ym(2025, 11), 10_000, PayRule::Regular),
            ]
        );
        // The first file this system makes reopens nothing before it.
        let first = due_months(&c, PayRule::Regular, d(2025, 12, 1), &none, None);
        assert_eq!(first.len(), 2);
        // Months whose payment month is before the first file: not reopened.
        let later = due_months(
            &c,
            PayRule::Regular,
            d(2025, 12, 1),
            &none,
            Some(ym(2025, 12)),
        );
        assert_eq!(later.len(), 2);
        // Once paid, the February file pays none of them again.
        let mut paid: BTreeMap<YearMonth, i64> =
            dec.iter().map(|x| (x.month.month, x.amount)).collect();
        let feb = due_months(
            &c,
            PayRule::Regular,
            d(2026, 2, 1),
            &paid,
            Some(ym(2025, 8)),
        );
        assert_eq!(
            feb.iter()
                .map(|x| (x.month.month, x.rule))
                .collect::<Vec<_>>(),
            vec![
                (ym(2025, 12), PayRule::Regular),
                (ym(2026, 1), PayRule::Regular)
            ]
        );
        // An increase reaching back (a younger child added from October
        // after the December file): the difference only, as 過去分.
        let mut more = c.clone();
        more.children.push(child("b", d(2025, 9, 20), ym(2025, 10)));
        let feb = due_months(
            &more,
            PayRule::Regular,
            d(2026, 2, 1),
            &paid,
            Some(ym(2025, 8)),
        );
        assert_eq!(
            feb.iter()
                .map(|x| (x.month.month, x.amount, x.rule))
                .collect::<Vec<_>>(),
            vec![
                (ym(2025, 10), 15_000, PayRule::Arrears),
                (ym(2025, 11), 15_000, PayRule::Arrears),
                (ym(2025, 12), 25_000, PayRule::Regular),
                (ym(2026, 1), 25_000, PayRule::Regular),
            ]
        );
        for x in &feb {
            *paid.entry(x.month.month).or_default() += x.amount;
        }
        assert!(
            due_months(
                &more,
                PayRule::Regular,
                d(2026, 4, 1),
                &paid,
                Some(ym(2025, 8))
            )
            .iter()
            .all(|x| x.rule == PayRule::Regular)
        );
        // A reduction reaching back pays nothing (and recovers nothing).
        let fewer = one(d(2015, 5, 5), ym(2025, 12));
        assert!(
            due_months(
                &fewer,
                PayRule::Regular,
                d(2026, 2, 1),
                &paid,
                Some(ym(2025, 8))
            )
            .is_empty()
        );
        // Arrears is never a file's own rule.
        assert!(
            due_months(
                &c,
                PayRule::Arrears,
                d(2025, 12, 1),
                &none,
                Some(ym(2025, 8))
            )
            .is_empty()
        );
    }

    fn paid_as_due(
        c: &Claim,
        from: YearMonth,
        to: YearMonth,
    ) -> std::collections::BTreeMap<YearMonth, i64> {
        months(c, from, to)
            .into_iter()
            .map(|m| (m.month, m.total))
            .collect()
    }

    #[test]
    fn an_undone_reduction_cancels_its_overpayments_and_a_second_one_records_anew() {
        // Two children, paid June to September 2025 in full; the younger
        // leaves on 20 May: June to September overpaid.
        let from = ym(2024, 5);
        let full = Claim {
            from,
            ended_on: None,
            children: vec![
                child("a", d(2019, 5, 10), from),
                child("b", d(2022, 6, 1), from),
            ],
        };
        let paid: std::collections::BTreeMap<YearMonth, i64> = (6..=9)
            .map(|m| (ym(2025, m), month(&full, ym(2025, m)).unwrap().total))
            .collect();
        let mut left = full.clone();
        left.children[1].left_on = Some(d(2025, 5, 20));
        let over = overpaid_months(&left, &paid, &Default::default());
        assert_eq!(over.len(), 4);
        let recorded: Vec<(i64, YearMonth, i64)> = over
            .iter()
            .enumerate()
            .map(|(i, o)| (i as i64 + 1, o.month, o.amount))
            .collect();
        // As it stands, nothing to cancel.
        assert!(cancelled_overpayments(&left, &paid, &recorded).is_empty());
        // The move-out cancelled: every record cancelled in full.
        let cancel = cancelled_overpayments(&full, &paid, &recorded);
        assert_eq!(
            cancel,
            recorded.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>()
        );
        // Left in August instead: only June and July cancelled.
        let mut later = full.clone();
        later.children[1].left_on = Some(d(2025, 7, 31));
        let cancel = cancelled_overpayments(&later, &paid, &recorded);
        assert_eq!(cancel, vec![(1, recorded[0].2), (2, recorded[1].2)]);
        // Two records for one month: the newer one goes first.
        let two = vec![(1, ym(2025, 8), 5_000), (2, ym(2025, 8), 5_000)];
        let half = std::collections::BTreeMap::from([(ym(2025, 8), 25_000)]);
        // Due 20,000 now: 5,000 overpaid, 10,000 recorded, 5,000 cancelled.
        assert_eq!(cancelled_overpayments(&full, &half, &two), vec![(2, 5_000)]);
        // States: cancelled before anything was recovered, refund after.
        assert_eq!(Recovery::of(10_000, 10_000, 0, false), Recovery::Cancelled);
        assert_eq!(Recovery::of(10_000, 10_000, 3_000, true), Recovery::Refund);
        assert_eq!(Recovery::of(10_000, 4_000, 6_000, true), Recovery::Settled);
        assert_eq!(Recovery::of(10_000, 0, 6_000, true), Recovery::Demanded);
        assert_eq!(Recovery::of(10_000, 0, 0, false), Recovery::AwaitingOffset);
    }

    #[test]
    fn a_death_reported_after_payment_makes_the_later_months_overpaid() {
        // Two children (2019, 2023), claim from 令和6年10月; paid through
        // 令和7年1月 (the December and February files). The claimant died
        // on 20 November 2024, reported after both files.
        let mut c = Claim {
            from: ym(2024, 10),
            ended_on: None,
            children: vec![
                child("a", d(2019, 5, 5), ym(2024, 10)),
                child("b", d(2023, 7, 7), ym(2024, 10)),
            ],
        };
        let paid = paid_as_due(&c, ym(2024, 10), ym(2025, 1));
        assert_eq!(paid.values().sum::<i64>(), 4 * 25_000);
        let none = std::collections::BTreeMap::new();
        assert!(overpaid_months(&c, &paid, &none).is_empty());
        c.ended_on = Some(d(2024, 11, 20));
        let over = overpaid_months(&c, &paid, &none);
        // November is still due (through the month of the end); December
        // and January were overpaid in full.
        assert_eq!(
            over.iter()
                .map(|o| (o.month, o.paid, o.due, o.amount))
                .collect::<Vec<_>>(),
            vec![
                (ym(2024, 12), 25_000, 0, 25_000),
                (ym(2025, 1), 25_000, 0, 25_000)
            ]
        );
        assert!(over.iter().all(|o| o.reduction
            == Reduction::Ended {
                on: d(2024, 11, 20)
            }));
        assert!(over[0].now.is_empty());
        // Recorded once: nothing new the second time.
        let recorded: std::collections::BTreeMap<_, _> =
            over.iter().map(|o| (o.month, o.amount)).collect();
        assert!(overpaid_months(&c, &paid, &recorded).is_empty());
    }

    #[test]
    fn a_third_child_leaving_late_reduces_by_the_difference_with_the_rule() {
        // Three children; the eldest (the first counted) moves out on
        // 3 December 2024, reported after the February file: from January
        // the two younger are 1st and 2nd (¥10,000 + ¥15,000), not
        // 2nd and 3rd (¥10,000 + ¥30,000).
        let mut c = Claim {
            from: ym(2024, 10),
            ended_on: None,
            children: vec![
                child("a", d(2012, 4, 10), ym(2024, 10)),
                child("b", d(2016, 9, 9), ym(2024, 10)),
                child("c", d(2024, 2, 2), ym(2024, 10)),
            ],
        };
        assert_eq!(
            month(&c, ym(2025, 1)).unwrap().total,
            10_000 + 10_000 + 30_000
        );
        let paid = paid_as_due(&c, ym(2024, 10), ym(2025, 1));
        c.children[0].left_on = Some(d(2024, 12, 3));
        let over = overpaid_months(&c, &paid, &Default::default());
        assert_eq!(over.len(), 1);
        let o = &over[0];
        assert_eq!(
            (o.month, o.paid, o.due, o.amount),
            (ym(2025, 1), 50_000, 25_000, 25_000)
        );
        assert_eq!(
            o.reduction,
            Reduction::ChildLeft {
                key: "a".into(),
                on: d(2024, 12, 3)
            }
        );
        // The rule of what is due now: 第1子 ¥10,000, 第2子 (under 3) ¥15,000.
        assert_eq!(
            o.now
                .iter()
                .map(|x| (x.key.as_str(), x.rank, x.rule))
                .collect::<Vec<_>>(),
            vec![("b", 1, Rule::ThreeAndOver), ("c", 2, Rule::UnderThree)]
        );
        let words = o.reduction.explain_ja(&|k| format!("児童{k}"));
        assert!(
            words.contains("児童a") && words.contains("第9条第3項"),
            "{words}"
        );
    }

    #[test]
    fn a_refund_is_a_lines_rule_never_a_files_and_reads_back() {
        for r in [
            PayRule::Regular,
            PayRule::OnEnd,
            PayRule::Arrears,
            PayRule::Refund,
        ] {
            assert_eq!(PayRule::parse(r.code()), Some(r));
        }
        // No month is ever due under the rule of a refund: what a refund
        // pays comes from the overpayments, not from the months.
        let c = one(d(2015, 5, 5), ym(2024, 10));
        let none = std::collections::BTreeMap::new();
        assert!(due_months(&c, PayRule::Refund, d(2025, 12, 1), &none, None).is_empty());
        // Once refunded, an overpayment is what it was before it was
        // withheld: cancelled in full, nothing collected, nothing owed.
        assert_eq!(
            Recovery::of(15_000, 15_000, 15_000 - 15_000, true),
            Recovery::Cancelled
        );
    }

    #[test]
    fn offsets_take_the_oldest_first_and_never_more_than_paid_or_owed() {
        assert_eq!(
            offset(50_000, &[(1, 20_000), (2, 40_000)]),
            vec![(1, 20_000), (2, 30_000)]
        );
        assert_eq!(
            offset(10_000, &[(1, 20_000), (2, 40_000)]),
            vec![(1, 10_000)]
        );
        assert_eq!(offset(0, &[(1, 20_000)]), vec![]);
        assert_eq!(offset(99_000, &[]), vec![]);
        assert_eq!(Recovery::of(20_000, 0, 20_000, false), Recovery::Settled);
        assert_eq!(
            Recovery::of(20_000, 0, 5_000, false),
            Recovery::AwaitingOffset
        );
        assert_eq!(Recovery::of(20_000, 0, 5_000, true), Recovery::Demanded);
        assert_eq!(Recovery::of(20_000, 0, 20_000, true), Recovery::Settled);
    }

    /// A small deterministic generator (no dependency): xorshift.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Properties over 2,000 random claims, payments and late events:
    /// the overpaid amounts are exactly the months paid above what is due
    /// now; recording them leaves nothing; a month whose entitlement did
    /// not fall is never overpaid; an offset absorbs min(payable, owed).
    #[test]
    fn overpayments_and_offsets_hold_their_properties_on_random_claims() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let n = 1 + g.next(4) as usize;
            let children: Vec<Child> = (0..n)
                .map(|i| {
                    let birth = d(
                        2007 + g.next(18) as i32,
                        1 + g.next(12) as u32,
                        1 + g.next(28) as u32,
                    );
                    Child {
                        key: format!("k{i}"),
                        birth,
                        from: ym(2024, 10),
                        left_on: None,
                        supported: g.next(2) == 0,
                        basis: Basis::Household,
                    }
                })
                .collect();
            let before = Claim {
                from: ym(2024, 10),
                ended_on: None,
                children,
            };
            let paid = paid_as_due(&before, ym(2024, 10), ym(2026, 3));
            let mut after = before.clone();
            let event = d(2024, 10, 1) + Days::new(g.next(540));
            let kind = g.next(3);
            match kind {
                0 => after.ended_on = Some(event),
                1 => {
                    let i = g.next(n as u64) as usize;
                    after.children[i].left_on = Some(event);
                }
                _ => {
                    let i = g.next(n as u64) as usize;
                    after.children[i].supported = false;
                }
            }
            let over = overpaid_months(&after, &paid, &Default::default());
            for (m, p) in &paid {
                let due = month(&after, *m).map_or(0, |x| x.total);
                let o = over.iter().find(|o| o.month == *m);
                assert_eq!(
                    o.map_or(0, |o| o.amount),
                    (p - due).max(0),
                    "{m:?} {after:?}"
                );
                if let Some(o) = o {
                    assert_eq!(o.paid - o.due, o.amount);
                    // The cause names the event and is not later than the month.
                    if let Some(on) = o.reduction.on() {
                        assert!(YearMonth::of(on) < *m);
                    }
                }
            }
            // A death, move-out or child leaving: months through the
            // event's month keep their amount.
            if kind < 2 {
                assert!(over.iter().all(|o| o.month > YearMonth::of(event)));
            }
            let recorded = over.iter().map(|o| (o.month, o.amount)).collect();
            assert!(overpaid_months(&after, &paid, &recorded).is_empty());
            // Offsetting against a random payment.
            let owed: Vec<(i64, i64)> = over
                .iter()
                .enumerate()
                .map(|(i, o)| (i as i64, o.amount))
                .collect();
            let total_owed: i64 = owed.iter().map(|x| x.1).sum();
            let payable = g.next(200_000) as i64;
            let taken = offset(payable, &owed);
            let sum: i64 = taken.iter().map(|x| x.1).sum();
            assert_eq!(sum, payable.min(total_owed));
            for (id, t) in &taken {
                assert!(*t > 0 && *t <= owed[*id as usize].1);
            }
        }
    }
}
