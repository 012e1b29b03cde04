//! Names, furigana and the folded key used to search them (j180, j330, j340).
//!
//! A stored name is kept exactly as entered: no trimming and no Unicode
//! normalisation (even NFC would replace CJK compatibility ideographs such as
//! U+FA19 神 with their unified forms, and the 行政事務標準文字 rely on them,
//! on private-use characters and on ideographic variation sequences). Search
//! uses a separate, folded key computed by [`search_key`], applied to both the
//! stored text and the clerk's query.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::error::Localized;

/// Longest name or furigana accepted, in Unicode scalar values (variation
/// selectors count as characters).
pub const MAX_NAME_CHARS: usize = 100;

/// An invalid name or furigana.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    NameEmpty,
    #[error("the name is too long: {chars} characters, at most {max}")]
    NameTooLong { chars: usize, max: usize },
    /// `position` counts characters from 1.
    #[error("the name contains a control character U+{code_point:04X} at character {position}")]
    NameControlChar { position: usize, code_point: u32 },
    #[error("the furigana is empty")]
    FuriganaEmpty,
    #[error("the furigana is too long: {chars} characters, at most {max}")]
    FuriganaTooLong { chars: usize, max: usize },
    /// Hiragana where katakana is required; `suggestion` is the input in
    /// katakana, when that is valid furigana.
    #[error("furigana must be in katakana, not hiragana: {}{}", input.escape_debug(), suggest_en(suggestion))]
    FuriganaHiragana {
        input: String,
        suggestion: Option<String>,
    },
    /// Half-width katakana where full-width is required.
    #[error("furigana must be in full-width katakana, not half-width: {}{}", input.escape_debug(), suggest_en(suggestion))]
    FuriganaHalfWidth {
        input: String,
        suggestion: Option<String>,
    },
    #[error("furigana must be in katakana, not Latin letters: {}", input.escape_debug())]
    FuriganaLatin { input: String },
    #[error("furigana contains a character that is not katakana: {} in {}", char_label(*ch), input.escape_debug())]
    FuriganaInvalidChar { input: String, ch: char },
    #[error("furigana starts or ends with a space: {}", input.escape_debug())]
    FuriganaSpaceAtEdge { input: String },
    #[error("furigana contains no katakana: {}", input.escape_debug())]
    FuriganaNoKatakana { input: String },
}

fn suggest_en(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

fn suggest_ja(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("（例: {s}）"),
        None => String::new(),
    }
}

/// A character as a message shows it: itself, or its code point when it is
/// invisible (control, space, combining mark).
fn char_label(c: char) -> String {
    if c.is_control() || c.is_whitespace() || is_combining_or_selector(c) {
        format!("U+{:04X}", c as u32)
    } else {
        c.to_string()
    }
}

fn is_combining_or_selector(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{3099}'..='\u{309A}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{E0100}'..='\u{E01EF}'
        | '\u{200B}'..='\u{200F}')
}

impl Localized for NameError {
    fn code(&self) -> &'static str {
        match self {
            NameError::NameEmpty
            | NameError::NameTooLong { .. }
            | NameError::NameControlChar { .. } => "invalid_name",
            _ => "invalid_furigana",
        }
    }

    fn message_ja(&self) -> String {
        match self {
            NameError::NameEmpty => "氏名が入力されていません".to_string(),
            NameError::NameTooLong { chars, max } => {
                format!("氏名が長すぎます（{chars}文字、最大{max}文字）")
            }
            NameError::NameControlChar {
                position,
                code_point,
            } => format!(
                "氏名に使用できない制御文字が含まれています（{position}文字目、U+{code_point:04X}）"
            ),
            NameError::FuriganaEmpty => "フリガナが入力されていません".to_string(),
            NameError::FuriganaTooLong { chars, max } => {
                format!("フリガナが長すぎます（{chars}文字、最大{max}文字）")
            }
            NameError::FuriganaHiragana { input, suggestion } => format!(
                "フリガナはカタカナで入力してください（ひらがなが含まれています）{}: {}",
                suggest_ja(suggestion),
                input.escape_debug()
            ),
            NameError::FuriganaHalfWidth { input, suggestion } => format!(
                "フリガナは全角カタカナで入力してください（半角カタカナが含まれています）{}: {}",
                suggest_ja(suggestion),
                input.escape_debug()
            ),
            NameError::FuriganaLatin { input } => format!(
                "フリガナにアルファベットは使用できません。カタカナで入力してください: {}",
                input.escape_debug()
            ),
            NameError::FuriganaInvalidChar { input, ch } => format!(
                "フリガナに使用できない文字「{}」が含まれています。全角カタカナで入力してください: {}",
                char_label(*ch),
                input.escape_debug()
            ),
            NameError::FuriganaSpaceAtEdge { input } => format!(
                "フリガナの先頭または末尾に空白があります: {}",
                input.escape_debug()
            ),
            NameError::FuriganaNoKatakana { input } => format!(
                "フリガナにカタカナが含まれていません: {}",
                input.escape_debug()
            ),
        }
    }

    fn message_en(&self) -> String {
        self.to_string()
    }
}

// ---------------------------------------------------------------------------
// 氏名

/// 氏名 (or 旧氏, 通称) exactly as entered.
///
/// Never trimmed or normalised: compatibility ideographs (U+FA19 神),
/// ideographic variation sequences (base + U+E0100..U+E01EF) and private-use
/// characters (外字) are kept byte for byte. Rejected: empty or whitespace
/// only, control characters (and U+2028/U+2029 line separators), more than
/// [`MAX_NAME_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

impl PersonName {
    /// Validates and keeps `name` unchanged.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.chars().all(char::is_whitespace) {
            return Err(NameError::NameEmpty);
        }
        if let Some((i, c)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            return Err(NameError::NameControlChar {
                position: i + 1,
                code_point: c as u32,
            });
        }
        let chars = name.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(NameError::NameTooLong {
                chars,
                max: MAX_NAME_CHARS,
            });
        }
        Ok(PersonName(name))
    }

    /// The name exactly as entered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folded key for searching ([`search_key`]).
    pub fn search_key(&self) -> String {
        search_key(&self.0)
    }
}

impl FromStr for PersonName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        PersonName::new(s)
    }
}

impl TryFrom<String> for PersonName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        PersonName::new(s)
    }
}

impl From<PersonName> for String {
    fn from(n: PersonName) -> String {
        n.0
    }
}

impl AsRef<str> for PersonName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// フリガナ

/// フリガナ (j180): full-width katakana, kept exactly as entered.
///
/// Allowed: ァ..ヺ (U+30A1..U+30FA), ー (U+30FC), ヽ ヾ, and ASCII or
/// ideographic spaces between the parts of the name (not at either end).
/// Hiragana, half-width katakana and Latin letters are rejected with an error
/// that says so (and suggests the katakana form where there is one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Furigana(String);

fn is_furigana_katakana(c: char) -> bool {
    matches!(c, '\u{30A1}'..='\u{30FA}')
}

fn is_furigana_char(c: char) -> bool {
    is_furigana_katakana(c) || matches!(c, 'ー' | 'ヽ' | 'ヾ' | ' ' | '\u{3000}')
}

fn is_hiragana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}' | '\u{309D}'..='\u{309F}')
}

fn is_halfwidth_katakana(c: char) -> bool {
    matches!(c, '\u{FF65}'..='\u{FF9F}')
}

fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || matches!(c, 'Ａ'..='Ｚ' | 'ａ'..='ｚ')
        || (matches!(c, '\u{00C0}'..='\u{024F}') && c.is_alphabetic())
}

/// The input with hiragana turned into katakana and half-width katakana into
/// full-width, if that gives valid furigana.
fn katakana_suggestion(input: &str) -> Option<String> {
    let mut out = String::new();
    let mut half = String::new();
    for c in input.chars() {
        if is_halfwidth_katakana(c) {
            half.push(c);
            continue;
        }
        out.extend(half.nfkc());
        half.clear();
        out.push(hiragana_to_katakana(c));
    }
    out.extend(half.nfkc());
    Furigana::check(&out, false).ok().map(|()| out)
}

impl Furigana {
    /// Validates and keeps `kana` unchanged.
    pub fn new(kana: impl Into<String>) -> Result<Self, NameError> {
        let kana = kana.into();
        Self::validate(&kana)?;
        Ok(Furigana(kana))
    }

    /// フリガナ as a citizen types it on a form (j180): hiragana is turned
    /// into katakana and half-width katakana into full-width, then the
    /// result is validated as [`Furigana::new`] does (Latin letters, digits,
    /// symbols and spaces at either end are still refused). The registry's
    /// own entry keeps [`Furigana::new`], which refuses hiragana and says
    /// what it should be.
    pub fn from_input(kana: &str) -> Result<Self, NameError> {
        if kana
            .chars()
            .any(|c| is_hiragana(c) || is_halfwidth_katakana(c))
            && let Some(k) = katakana_suggestion(kana)
        {
            return Ok(Furigana(k));
        }
        Self::new(kana)
    }

    fn validate(kana: &str) -> Result<(), NameError> {
        Self::check(kana, true)
    }

    /// Validates; `suggest` says whether hiragana and half-width errors
    /// carry a katakana suggestion (not when checking a suggestion itself).
    fn check(kana: &str, suggest: bool) -> Result<(), NameError> {
        if kana.chars().all(char::is_whitespace) {
            return Err(NameError::FuriganaEmpty);
        }
        let chars = kana.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(NameError::FuriganaTooLong {
                chars,
                max: MAX_NAME_CHARS,
            });
        }
        let input = || kana.to_string();
        if kana.chars().any(is_hiragana) {
            return Err(NameError::FuriganaHiragana {
                input: input(),
                suggestion: suggest.then(|| katakana_suggestion(kana)).flatten(),
            });
        }
        if kana.chars().any(is_halfwidth_katakana) {
            return Err(NameError::FuriganaHalfWidth {
                input: input(),
                suggestion: suggest.then(|| katakana_suggestion(kana)).flatten(),
            });
        }
        if kana.chars().any(is_latin_letter) {
            return Err(NameError::FuriganaLatin { input: input() });
        }
        if let Some(ch) = kana.chars().find(|&c| !is_furigana_char(c)) {
            return Err(NameError::FuriganaInvalidChar { input: input(), ch });
        }
        let is_space = |c: char| c == ' ' || c == '\u{3000}';
        if kana.starts_with(is_space) || kana.ends_with(is_space) {
            return Err(NameError::FuriganaSpaceAtEdge { input: input() });
        }
        if !kana.chars().any(is_furigana_katakana) {
            return Err(NameError::FuriganaNoKatakana { input: input() });
        }
        Ok(())
    }

    /// The furigana exactly as entered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folded key for searching ([`search_key`]).
    pub fn search_key(&self) -> String {
        search_key(&self.0)
    }
}

impl FromStr for Furigana {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Furigana::new(s)
    }
}

impl TryFrom<String> for Furigana {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Furigana::new(s)
    }
}

impl From<Furigana> for String {
    fn from(f: Furigana) -> String {
        f.0
    }
}

impl AsRef<str> for Furigana {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Furigana {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// Search key (j330)

/// 異体字 → 標準字 pairs folded by [`search_key`], common in surnames and
/// given names (after the MJ 縮退マップ and j330's examples). Compatibility
/// ideographs (U+F900..U+FAFF) that have a canonical decomposition, such as
/// U+F9DC 隆 and U+FA10 塚, are folded by NFKC and are not listed; U+FA11 﨑
/// is a unified ideograph and is listed. No standard form is itself a variant.
pub const KANJI_VARIANTS: &[(char, char)] = &[
    ('髙', '高'),
    ('﨑', '崎'),
    ('嵜', '崎'),
    ('碕', '崎'),
    ('邊', '辺'),
    ('邉', '辺'),
    ('边', '辺'),
    ('齋', '斎'),
    ('斋', '斎'),
    ('齊', '斉'),
    ('𠮷', '吉'),
    ('濵', '浜'),
    ('濱', '浜'),
    ('滨', '浜'),
    ('德', '徳'),
    ('澤', '沢'),
    ('櫻', '桜'),
    ('廣', '広'),
    ('國', '国'),
    ('圀', '国'),
    ('藏', '蔵'),
    ('眞', '真'),
    ('實', '実'),
    ('惠', '恵'),
    ('冨', '富'),
    ('凜', '凛'),
    ('龍', '竜'),
    ('瀧', '滝'),
    ('嶋', '島'),
    ('嶌', '島'),
    ('峯', '峰'),
    ('舘', '館'),
    ('槇', '槙'),
    ('桒', '桑'),
    ('籘', '藤'),
    ('籐', '藤'),
    ('䕨', '藤'),
    ('邨', '村'),
    ('嶽', '岳'),
    ('穗', '穂'),
    ('榮', '栄'),
    ('黑', '黒'),
    ('淺', '浅'),
    ('壽', '寿'),
    ('戶', '戸'),
    ('彌', '弥'),
    ('圓', '円'),
    ('會', '会'),
    ('條', '条'),
    ('傳', '伝'),
    ('當', '当'),
    ('爲', '為'),
    ('與', '与'),
    ('萬', '万'),
    ('豐', '豊'),
    ('禮', '礼'),
    ('靜', '静'),
    ('增', '増'),
    ('關', '関'),
    ('鐵', '鉄'),
    ('瀨', '瀬'),
    ('渕', '淵'),
    ('埜', '野'),
    ('槗', '橋'),
    ('𡈽', '土'),
    ('曾', '曽'),
    ('從', '従'),
    ('檜', '桧'),
    ('螢', '蛍'),
    ('來', '来'),
    ('亞', '亜'),
    ('兒', '児'),
    ('廸', '迪'),
    ('靑', '青'),
    ('淸', '清'),
    ('龜', '亀'),
    ('鷗', '鴎'),
    ('鄕', '郷'),
    ('淨', '浄'),
    ('澁', '渋'),
    ('澀', '渋'),
    ('濟', '済'),
    ('聰', '聡'),
    ('彥', '彦'),
    ('昻', '昂'),
    ('晉', '晋'),
    ('莊', '荘'),
    ('巖', '巌'),
    ('寬', '寛'),
    ('驒', '騨'),
    ('團', '団'),
    ('縣', '県'),
    ('曉', '暁'),
    ('賴', '頼'),
    ('瑤', '瑶'),
    ('遙', '遥'),
    ('堯', '尭'),
    ('壯', '壮'),
    ('學', '学'),
];

/// The MJ 縮退マップ part of the fold (j330: 検索文字から、異体字や正字も包含
/// した検索): `variant<TAB>standard<TAB>rule` per line, 15,342 characters
/// outside JIS X 0208 with the JIS X 0208 character the map gives them.
/// Generated by `tools/mj-fold` from the MJ 縮退マップ (文字情報技術促進協議会
/// / IPA, CC BY-SA 2.1 JP) as the `jntajis` crate embeds it; licence and
/// attribution in `mj_fold.LICENSE.md` beside it.
pub const MJ_FOLD_TABLE: &str = include_str!("mj_fold.tsv");

/// The pairs of [`MJ_FOLD_TABLE`] (variant, standard), as written there.
pub fn mj_variants() -> impl Iterator<Item = (char, char)> {
    MJ_FOLD_TABLE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split('\t');
            let one = |s: Option<&str>| {
                let mut cs = s?.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => Some(c),
                    _ => None,
                }
            };
            Some((one(f.next())?, one(f.next())?))
        })
}

/// [`KANJI_VARIANTS`] and, for characters they do not list, the MJ pairs,
/// whose standard form is itself folded by the hand-made pairs where they
/// list it (㒊 → 澀 → 渋): every target is a fixed point.
static KANJI_FOLD: LazyLock<HashMap<char, char>> = LazyLock::new(|| {
    let mut fold: HashMap<char, char> = KANJI_VARIANTS.iter().copied().collect();
    for (v, s) in mj_variants() {
        let s = KANJI_VARIANTS
            .iter()
            .find(|&&(hv, _)| hv == s)
            .map_or(s, |&(_, hs)| hs);
        fold.entry(v).or_insert(s);
    }
    fold
});

fn hiragana_to_katakana(c: char) -> char {
    match c {
        '\u{3041}'..='\u{3096}' | '\u{309D}'..='\u{309E}' => {
            char::from_u32(c as u32 + 0x60).unwrap_or(c)
        }
        _ => c,
    }
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// ー and the characters typed in its place (j330: ー ― － ‐ ｰ -), after NFKC
/// (which turns － into - and ｰ into ー).
fn is_long_vowel_like(c: char) -> bool {
    matches!(
        c,
        'ー' | '―' | '‐' | '-' | '‑' | '‒' | '–' | '—' | '−' | 'ｰ' | '－'
    )
}

/// Kana that end in the vowel o, after folding.
fn is_o_row(c: char) -> bool {
    matches!(
        c,
        'オ' | 'コ' | 'ソ' | 'ト' | 'ノ' | 'ホ' | 'モ' | 'ヨ' | 'ロ'
    )
}

/// Folds one katakana (hiragana already converted) for j330's fuzzy search:
/// voiced and semi-voiced to plain (ヂ→ジ→シ, ヅ→ズ→ス), small to large,
/// ワ→ハ, ヲ→オ, ヰ→イ, ヱ→エ. `None` drops the character (combining and
/// spacing (semi-)voiced sound marks). ヴ is handled by the caller.
fn fold_kana(c: char) -> Option<char> {
    let folded = match c {
        'ガ' => 'カ',
        'ギ' => 'キ',
        'グ' => 'ク',
        'ゲ' => 'ケ',
        'ゴ' => 'コ',
        'ザ' => 'サ',
        'ジ' | 'ヂ' => 'シ',
        'ズ' | 'ヅ' => 'ス',
        'ゼ' => 'セ',
        'ゾ' => 'ソ',
        'ダ' => 'タ',
        'デ' => 'テ',
        'ド' => 'ト',
        'バ' | 'パ' | 'ヷ' => 'ハ',
        'ビ' | 'ピ' | 'ヸ' => 'ヒ',
        'ブ' | 'プ' => 'フ',
        'ベ' | 'ペ' | 'ヹ' => 'ヘ',
        'ボ' | 'ポ' | 'ヺ' => 'ホ',
        'ヾ' => 'ヽ',
        'ァ' => 'ア',
        'ィ' | 'ヰ' => 'イ',
        'ゥ' => 'ウ',
        'ェ' | 'ヱ' => 'エ',
        'ォ' | 'ヲ' => 'オ',
        'ッ' => 'ツ',
        'ャ' => 'ヤ',
        'ュ' => 'ユ',
        'ョ' => 'ヨ',
        'ワ' | 'ヮ' => 'ハ',
        'ヵ' => 'カ',
        'ヶ' => 'ケ',
        'ㇰ' => 'ク',
        'ㇱ' => 'シ',
        'ㇲ' => 'ス',
        'ㇳ' => 'ト',
        'ㇴ' => 'ヌ',
        'ㇵ' => 'ハ',
        'ㇶ' => 'ヒ',
        'ㇷ' => 'フ',
        'ㇸ' => 'ヘ',
        'ㇹ' => 'ホ',
        'ㇺ' => 'ム',
        'ㇻ' => 'ラ',
        'ㇼ' => 'リ',
        'ㇽ' => 'ル',
        'ㇾ' => 'レ',
        'ㇿ' => 'ロ',
        '\u{3099}' | '\u{309A}' | '\u{309B}' | '\u{309C}' => return None,
        other => other,
    };
    Some(folded)
}

/// One pass of the fold; [`search_key`] repeats it until nothing changes.
fn fold_once(s: &str) -> String {
    // Stage 1: NFKC, then per character: drop variation selectors, spaces and
    // the middle dot; lowercase; hiragana → katakana; kanji variants.
    let mut chars: Vec<char> = Vec::with_capacity(s.len());
    let mut stage1 = |c: char| {
        if is_variation_selector(c) || c.is_whitespace() || c == '・' {
            return;
        }
        if !has_lowercase_mapping(c) {
            chars.push(fold_kanji(hiragana_to_katakana(c)));
            return;
        }
        for lc in c.to_lowercase() {
            chars.push(fold_kanji(hiragana_to_katakana(lc)));
        }
    };
    // Most names and addresses are already in NFKC: the quick check says so
    // without decomposing and recomposing every character.
    if unicode_normalization::is_nfkc_quick(s.chars()) == unicode_normalization::IsNormalized::Yes {
        s.chars().for_each(&mut stage1);
    } else {
        s.nfkc().for_each(&mut stage1);
    }

    // Stage 2: kana fuzz, over the whole string (spaces are gone already).
    let mut out = String::with_capacity(chars.len() * 3);
    let mut last: Option<char> = None;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        let folded = if c == 'ヴ' {
            // ヴァ→バ, ヴィ→ビ, ヴェ→ベ, ヴォ→ボ, ヴ→ブ (then unvoiced).
            let next = chars.get(i).copied();
            let pair = match next {
                Some('ァ') => Some('ハ'),
                Some('ィ') => Some('ヒ'),
                Some('ェ') => Some('ヘ'),
                Some('ォ') => Some('ホ'),
                _ => None,
            };
            match pair {
                Some(p) => {
                    i += 1;
                    Some(p)
                }
                None => Some('フ'),
            }
        } else if is_long_vowel_like(c) {
            // The long vowel is ignored, except after an オ段 kana, where it
            // is the オ that ウ also becomes (キョーコ ≡ キョウコ ≡ キヨオコ).
            last.filter(|&l| is_o_row(l)).map(|_| 'オ')
        } else {
            fold_kana(c)
        };
        let Some(mut f) = folded else { continue };
        // From the second character: ウ after an オ段 kana reads as オ.
        if f == 'ウ' && last.is_some_and(is_o_row) {
            f = 'オ';
        }
        out.push(f);
        last = Some(f);
    }
    out
}

/// Whether `c` may change when lowercased. Kana, CJK ideographs and the
/// CJK symbols have no case: skipping `to_lowercase` for them (most of a
/// Japanese name or address) saves a table search per character.
fn has_lowercase_mapping(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_uppercase();
    }
    !matches!(c, '\u{3000}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{3FFFF}')
}

/// The standard form of a kanji variant ([`KANJI_VARIANTS`]), or `c`.
fn fold_kanji(c: char) -> char {
    // Every variant is a CJK ideograph: anything below U+3400 is not one.
    if (c as u32) < 0x3400 {
        return c;
    }
    KANJI_FOLD.get(&c).copied().unwrap_or(c)
}

/// The folded form used for name search (j330), for both the stored names
/// and furigana and the clerk's query; a person is found when the query's key
/// is contained in (or equal to) the stored key.
///
/// In order:
/// 1. NFKC: half-width katakana → full-width, full-width ASCII → ASCII,
///    CJK compatibility ideographs → unified (U+F9DC 隆, U+FA10 塚), ｰ → ー,
///    － → -, ideographic space → space.
/// 2. Variation selectors (IVS U+E0100.., SVS U+FE00..) are dropped, so a
///    variation sequence matches its base character.
/// 3. All whitespace and ・ are dropped (氏と名の間のスペースを無視).
/// 4. Lowercase; hiragana → katakana.
/// 5. 異体字 → 標準字 by [`KANJI_VARIANTS`] (髙→高, 﨑→崎, 邊→辺, ...).
/// 6. Kana fuzz: ヴァ→バ, ヴィ→ビ, ヴェ→ベ, ヴォ→ボ, ヴ→ブ; ヂ→ジ, ヅ→ズ;
///    then 濁点・半濁点 removed (ガ→カ, パ→ハ, ジ→シ); small kana → large
///    (ッ→ツ, ャ→ヤ, ァ→ア); ワ→ハ, ヲ→オ, ヰ→イ, ヱ→エ.
/// 7. Long vowel marks and their look-alikes (ー ― ‐ - − – —) are removed,
///    except directly after an オ段 kana, where they become オ.
/// 8. From the second character, ウ directly after an オ段 kana becomes オ.
///
/// Steps 7 and 8 together make サイトウ, サイトオ and サイトー one key, and
/// キョウコ, キヨウコ and キョーコ one key; ー after an オ段 kana becomes オ
/// rather than disappearing so that the following part of the name is not
/// changed (カトウ オサム keeps …オサム, so a search by 名 alone finds it).
///
/// Limits: the rule of step 8 is applied after the spaces are gone, so a given
/// name starting with ウ after a surname ending in an オ段 kana (カトウ ウメ →
/// カトオオメ) is not found by a search for the given name alone (ウメ). The
/// fold is applied until it is stable, so `search_key(search_key(s)) ==
/// search_key(s)`.
pub fn search_key(s: &str) -> String {
    let mut key = fold_once(s);
    if is_fixed_point(&key) {
        return key;
    }
    // One pass is stable for ordinary text; a removed character between a
    // base and a combining mark can let NFKC compose on the next pass.
    for _ in 0..8 {
        let next = fold_once(&key);
        if next == key {
            break;
        }
        key = next;
    }
    key
}

/// Whether another pass of [`fold_once`] leaves `key` (a pass's output) as
/// it is, decided character by character: ASCII lowercase letters and
/// digits, CJK unified ideographs that are no variant, and katakana the
/// kana fold keeps (not ヴ, and no ウ after an オ段 kana). Such text is
/// NFKC already and nothing in it composes, so every step of the fold keeps
/// it. Most folded names and addresses are such text: [`search_key`] skips
/// the pass that would only confirm it.
fn is_fixed_point(key: &str) -> bool {
    let mut last = None;
    for c in key.chars() {
        let fixed = match c {
            'a'..='z' | '0'..='9' => true,
            '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' => fold_kanji(c) == c,
            'ァ'..='ヶ' => {
                c != 'ヴ' && fold_kana(c) == Some(c) && !(c == 'ウ' && last.is_some_and(is_o_row))
            }
            _ => false,
        };
        if !fixed {
            return false;
        }
        last = Some(c);
    }
    true
}

/// Whether the query (after trimming) is only kana, long vowel marks and
/// spaces — hiragana, katakana or half-width katakana, with at least one kana
/// letter — so that the caller should search the furigana key.
pub fn is_kana_query(s: &str) -> bool {
    let t = s.trim();
    let mut has_kana = false;
    for c in t.chars() {
        let letter = matches!(c,
            '\u{3041}'..='\u{3096}'
            | '\u{30A1}'..='\u{30FA}'
            | '\u{31F0}'..='\u{31FF}'
            | '\u{FF66}'..='\u{FF6F}'
            | '\u{FF71}'..='\u{FF9D}');
        let other = matches!(c,
            '\u{3099}'..='\u{309E}'
            | '\u{30FB}'..='\u{30FE}'
            | '\u{FF65}'
            | '\u{FF70}'
            | '\u{FF9E}'..='\u{FF9F}')
            || is_long_vowel_like(c)
            || c.is_whitespace();
        if letter {
            has_kana = true;
        } else if !other {
            return false;
        }
    }
    has_kana
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(a: &str, b: &str) {
        assert_eq!(search_key(a), search_key(b), "{a} vs {b}");
    }

    #[test]
    fn search_key_equalities() {
        same("高橋", "髙橋");
        same("ｻｲﾄｳ", "サイトウ");
        same("サイトウ", "さいとう");
        same("サイトウ", "サイトオ");
        same("サイトウ", "サイトー");
        same("ワタナベ", "ワタナヘ");
        same("渡邊", "渡辺");
        same("渡邉", "渡辺");
        same("山崎", "山﨑");
        same("山崎", "山嵜");
        same("吉田", "𠮷田");
        same("濵田", "浜田");
        same("濱田", "浜田");
        same("德川", "徳川");
        same("齋藤", "斎藤");
        same("齊藤", "斉藤");
        same("ヂ", "ジ");
        same("ヅ", "ズ");
        same("キョウコ", "キヨウコ");
        same("キョウコ", "キョーコ");
        same("山田 太郎", "山田太郎");
        same("山田　太郎", "山田太郎");
        same("ヴァイオリン", "バイオリン");
        same("ヴィ", "ビ");
        same("ヴ", "ブ");
        same("ヲ", "オ");
        same("ヒ", "ピ");
        same("ッ", "ツ");
        same("ャュョ", "ヤユヨ");
        same("ﾊﾟﾝ", "パン");
        same("ガ", "カ");
        same("ＡＢＣ", "abc");
        same("隆", "\u{F9DC}");
        same("塚", "\u{FA10}");
        same("神", "\u{FA19}");
        same("葛\u{E0100}城", "葛城");
        same("澤田", "沢田");
        same("櫻井", "桜井");
        same("ー―－‐ｰ-", "");
        same("ジョン・スミス", "ジョン スミス");
    }

    #[test]
    fn search_key_values() {
        assert_eq!(search_key("サイトウ"), "サイトオ");
        assert_eq!(search_key("キョーコ"), "キヨオコ");
        assert_eq!(search_key("ワタナベ"), "ハタナヘ");
        assert_eq!(search_key("山田 太郎"), "山田太郎");
        // ウ at the start is never folded.
        assert_eq!(search_key("ウメ"), "ウメ");
        // ー after a non-オ段 kana is dropped.
        assert_eq!(search_key("ミキー"), "ミキ");
    }

    #[test]
    fn search_key_partial_match_finds_given_name() {
        let stored = search_key("カトウ オサム");
        assert!(stored.contains(&search_key("オサム")));
        assert!(stored.contains(&search_key("かとう")));
        let stored = search_key("髙橋 一郎");
        assert!(stored.contains(&search_key("高橋")));
        assert!(stored.contains(&search_key("一郎")));
    }

    #[test]
    fn kanji_table_is_consistent() {
        let sources: std::collections::HashSet<char> =
            KANJI_VARIANTS.iter().map(|&(v, _)| v).collect();
        assert_eq!(sources.len(), KANJI_VARIANTS.len(), "duplicate variant");
        for &(v, s) in KANJI_VARIANTS {
            assert_ne!(v, s);
            assert!(!sources.contains(&s), "{s} is both standard and variant");
            // The standard form survives NFKC; the variant reaches the table.
            assert_eq!(s.to_string().nfkc().collect::<String>(), s.to_string());
            assert_eq!(v.to_string().nfkc().collect::<String>(), v.to_string());
            assert_eq!(search_key(&v.to_string()), s.to_string());
        }
        assert!(KANJI_VARIANTS.len() >= 60);
    }

    #[test]
    fn mj_table_folds_every_variant_to_a_fixed_point() {
        let pairs: Vec<(char, char)> = mj_variants().collect();
        assert!(pairs.len() > 15_000, "{}", pairs.len());
        let sources: std::collections::HashSet<char> = pairs.iter().map(|&(v, _)| v).collect();
        assert_eq!(sources.len(), pairs.len(), "duplicate variant");
        for &(v, s) in &pairs {
            assert_ne!(v, s);
            assert!(!sources.contains(&s), "{s} is both standard and variant");
            assert_eq!(v.to_string().nfkc().collect::<String>(), v.to_string());
            let key = search_key(&v.to_string());
            assert_eq!(key, search_key(&s.to_string()), "{v} {s}");
            assert_eq!(search_key(&key), key);
            assert_eq!(key.chars().count(), 1);
        }
        // The hand-made pairs agree with the map where both list a character.
        for &(v, s) in KANJI_VARIANTS {
            if let Some(&(_, m)) = pairs.iter().find(|&&(mv, _)| mv == v) {
                assert_eq!(search_key(&m.to_string()), s.to_string(), "{v}");
            }
        }
        // j330's examples: 辺 finds 𨘢, and chains end at the common form.
        assert_eq!(search_key("𨘢"), "辺");
        assert_eq!(search_key("㒊"), "渋");
        assert_eq!(search_key("髙橋"), "高橋");
    }

    #[test]
    fn kana_queries() {
        assert!(is_kana_query("さいとう"));
        assert!(is_kana_query(" サイトウ　タロウ "));
        assert!(is_kana_query("ｻｲﾄｳ"));
        assert!(is_kana_query("キョーコ"));
        assert!(is_kana_query("ﾊﾟﾝ"));
        assert!(!is_kana_query(""));
        assert!(!is_kana_query("   "));
        assert!(!is_kana_query("ーー"));
        assert!(!is_kana_query("斎藤"));
        assert!(!is_kana_query("サイトウ太郎"));
        assert!(!is_kana_query("smith"));
    }

    #[test]
    fn person_name_is_kept_exactly() {
        let kami = "\u{FA19}田";
        let n = PersonName::new(kami).unwrap();
        assert_eq!(n.as_str().as_bytes(), kami.as_bytes());
        let ivs = "葛\u{E0100}飾 花子";
        let n: PersonName = ivs.parse().unwrap();
        assert_eq!(n.as_str().as_bytes(), ivs.as_bytes());
        let pua = "\u{E000}山";
        assert_eq!(PersonName::new(pua).unwrap().as_str(), pua);
        // Not trimmed either.
        assert_eq!(PersonName::new(" 山田 ").unwrap().as_str(), " 山田 ");
        // serde keeps it too.
        let json = serde_json::to_string(&PersonName::new(kami).unwrap()).unwrap();
        let back: PersonName = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_str().as_bytes(), kami.as_bytes());
        assert_eq!(back.search_key(), "神田");
    }

    #[test]
    fn person_name_rejections() {
        for bad in ["", " ", "\u{3000}\u{3000}", "\n"] {
            assert_eq!(PersonName::new(bad), Err(NameError::NameEmpty), "{bad:?}");
        }
        let e = PersonName::new("山田\u{0007}").unwrap_err();
        assert_eq!(
            e,
            NameError::NameControlChar {
                position: 3,
                code_point: 7
            }
        );
        assert_eq!(e.code(), "invalid_name");
        assert!(e.message_ja().contains("氏名"));
        assert!(PersonName::new("山田\n太郎").is_err());
        assert!(PersonName::new("あ".repeat(100)).is_ok());
        assert!(matches!(
            PersonName::new("あ".repeat(101)),
            Err(NameError::NameTooLong { chars: 101, .. })
        ));
        assert!(serde_json::from_str::<PersonName>("\"\"").is_err());
    }

    #[test]
    fn furigana_acceptance() {
        for ok in [
            "ヤマダ タロウ",
            "ヤマダ　タロウ",
            "サトウ",
            "ヴァン ダイク",
            "キョーコ",
            "ササキ ヽ",
            "ヲノ",
            "スミス ジョン ポール",
        ] {
            let f = Furigana::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(f.as_str(), ok);
        }
        let f: Furigana = serde_json::from_str("\"ヤマダ　ハナコ\"").unwrap();
        assert_eq!(f.search_key(), "ヤマタハナコ");
    }

    #[test]
    fn furigana_rejections() {
        let e = Furigana::new("やまだ たろう").unwrap_err();
        assert_eq!(
            e,
            NameError::FuriganaHiragana {
                input: "やまだ たろう".into(),
                suggestion: Some("ヤマダ タロウ".into())
            }
        );
        assert_eq!(e.code(), "invalid_furigana");
        assert!(e.message_ja().contains("カタカナ"));
        assert!(e.message_ja().contains("ヤマダ タロウ"));

        let e = Furigana::new("ﾔﾏﾀﾞ ﾀﾛｳ").unwrap_err();
        assert_eq!(
            e,
            NameError::FuriganaHalfWidth {
                input: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
                suggestion: Some("ヤマダ タロウ".into())
            }
        );
        assert!(e.message_ja().contains("半角"));

        assert!(matches!(
            Furigana::new("Yamada"),
            Err(NameError::FuriganaLatin { .. })
        ));
        assert!(matches!(
            Furigana::new("ＹＡＭＡＤＡ"),
            Err(NameError::FuriganaLatin { .. })
        ));
        assert!(matches!(
            Furigana::new("山田"),
            Err(NameError::FuriganaInvalidChar { ch: '山', .. })
        ));
        assert!(matches!(
            Furigana::new("ヤマダ\tタロウ"),
            Err(NameError::FuriganaInvalidChar { ch: '\t', .. })
        ));
        assert!(matches!(
            Furigana::new(" ヤマダ"),
            Err(NameError::FuriganaSpaceAtEdge { .. })
        ));
        assert!(matches!(
            Furigana::new("ヤマダ　"),
            Err(NameError::FuriganaSpaceAtEdge { .. })
        ));
        assert!(matches!(
            Furigana::new("ーー"),
            Err(NameError::FuriganaNoKatakana { .. })
        ));
        for empty in ["", " ", "\u{3000}"] {
            assert_eq!(Furigana::new(empty), Err(NameError::FuriganaEmpty));
        }
        assert!(matches!(
            Furigana::new("ア".repeat(101)),
            Err(NameError::FuriganaTooLong { chars: 101, .. })
        ));
        assert!(Furigana::new("ア".repeat(100)).is_ok());
        assert!(serde_json::from_str::<Furigana>("\"やまだ\"").is_err());
        // ゟ (hiragana digraph) has no katakana form: no suggestion, no loop.
        assert_eq!(
            Furigana::new("ゟ"),
            Err(NameError::FuriganaHiragana {
                input: "ゟ".into(),
                suggestion: None
            })
        );
    }

    /// The fold as first written (NFKC and `to_lowercase` on every
    /// character): the reference the faster [`fold_once`] must agree with.
    fn fold_once_reference(s: &str) -> String {
        // Stage 1: NFKC, then per character: drop variation selectors, spaces and
        // the middle dot; lowercase; hiragana → katakana; kanji variants.
        let mut chars: Vec<char> = Vec::with_capacity(s.len());
        for c in s.nfkc() {
            if is_variation_selector(c) || c.is_whitespace() || c == '・' {
                continue;
            }
            for lc in c.to_lowercase() {
                let k = hiragana_to_katakana(lc);
                chars.push(KANJI_FOLD.get(&k).copied().unwrap_or(k));
            }
        }

        // Stage 2: kana fuzz, over the whole string (spaces are gone already).
        let mut out = String::with_capacity(chars.len() * 3);
        let mut last: Option<char> = None;
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            let folded = if c == 'ヴ' {
                // ヴァ→バ, ヴィ→ビ, ヴェ→ベ, ヴォ→ボ, ヴ→ブ (then unvoiced).
                let next = chars.get(i).copied();
                let pair = match next {
                    Some('ァ') => Some('ハ'),
                    Some('ィ') => Some('ヒ'),
                    Some('ェ') => Some('ヘ'),
                    Some('ォ') => Some('ホ'),
                    _ => None,
                };
                match pair {
                    Some(p) => {
                        i += 1;
                        Some(p)
                    }
                    None => Some('フ'),
                }
            } else if is_long_vowel_like(c) {
                // The long vowel is ignored, except after an オ段 kana, where it
                // is the オ that ウ also becomes (キョーコ ≡ キョウコ ≡ キヨオコ).
                last.filter(|&l| is_o_row(l)).map(|_| 'オ')
            } else {
                fold_kana(c)
            };
            let Some(mut f) = folded else { continue };
            // From the second character: ウ after an オ段 kana reads as オ.
            if f == 'ウ' && last.is_some_and(is_o_row) {
                f = 'オ';
            }
            out.push(f);
            last = Some(f);
        }
        out
    }

    #[test]
    fn the_shortcuts_of_the_fast_fold_hold() {
        // No character the fold skips lowercasing for has a lowercase form.
        for c in ('\u{80}'..='\u{3FFFF}').filter(|&c| !has_lowercase_mapping(c)) {
            assert!(c.to_lowercase().eq([c]), "{c:?}");
        }
        // Every variant is at or above U+3400.
        assert!(KANJI_VARIANTS.iter().all(|&(v, _)| v as u32 >= 0x3400));
    }

    proptest! {
        #[test]
        fn the_fast_fold_agrees_with_the_reference(s in any::<String>()) {
            prop_assert_eq!(fold_once(&s), fold_once_reference(&s));
        }

        #[test]
        fn the_fast_fold_agrees_with_the_reference_on_names(s in "[ぁ-ゖァ-ヿｦ-ﾟ゛゜\u{3099}\u{309A} 　・\\-―‐－a-zA-ZＡ-Ｚａ-ｚ０-９あ-ん一-龥豈-﫿㐀-䶵髙﨑邊齋𠮷\u{E0100}\u{FE00}\u{0301}\u{0300}ÀÉΣΑİẞ℃㈱①ⅰ]{0,24}") {
            prop_assert_eq!(fold_once(&s), fold_once_reference(&s));
        }

        #[test]
        fn what_is_taken_for_a_fixed_point_is_one(
            s in "[ぁ-ゖァ-ヿｦ-ﾟ゛゜\u{3099}\u{309A} 　・\\-―‐－a-zA-ZＡ-Ｚａ-ｚ０-９0-9あ-ん一-龥豈-﫿㐀-䶵髙﨑邊齋𠮷\u{E0100}\u{FE00}\u{0301}ÀΣİ℃㈱①ⅰ]{0,24}",
            t in "[a-z0-9ァ-ヶ一-龥㐀-䶵髙﨑邊齋]{0,24}",
            u in any::<String>(),
        ) {
            for k in [fold_once(&s), fold_once(&u), t.clone()] {
                if is_fixed_point(&k) {
                    prop_assert_eq!(fold_once(&k), k);
                }
            }
        }

        #[test]
        fn search_key_is_idempotent(s in any::<String>()) {
            let k = search_key(&s);
            prop_assert_eq!(search_key(&k), k);
        }

        #[test]
        fn search_key_is_idempotent_on_kana(s in "[ぁ-ゖァ-ヺーｦ-ﾟ゛゜\u{3099}\u{309A} 　・\\-―‐－a-zA-Zあ-ん髙﨑邊齋\u{E0100}\u{0301}]{0,24}") {
            let k = search_key(&s);
            prop_assert_eq!(search_key(&k), k.clone());
            prop_assert!(!k.contains(' '));
            prop_assert!(!k.contains('ー'));
        }

        #[test]
        fn name_parsers_never_panic(s in any::<String>()) {
            for e in [PersonName::new(s.clone()).err(), Furigana::new(s.clone()).err()].into_iter().flatten() {
                let _ = (e.code(), e.message_ja(), e.message_en());
            }
            let _ = is_kana_query(&s);
        }

        #[test]
        fn valid_person_names_round_trip(s in "\\PC{1,100}") {
            if let Ok(n) = PersonName::new(s.clone()) {
                prop_assert_eq!(n.as_str(), s.as_str());
                let json = serde_json::to_string(&n).unwrap();
                prop_assert_eq!(serde_json::from_str::<PersonName>(&json).unwrap(), n);
            }
        }
    }
}

#[cfg(test)]
mod from_input_tests {
    use super::*;

    #[test]
    fn a_citizens_hiragana_becomes_katakana_latin_is_still_refused() {
        assert_eq!(
            Furigana::from_input("かくう　はなこ").unwrap().as_str(),
            "カクウ　ハナコ"
        );
        assert_eq!(
            Furigana::from_input("ｶｸｳ ﾀﾛｳ").unwrap().as_str(),
            "カクウ タロウ"
        );
        assert_eq!(
            Furigana::from_input("カクウ ハナコ").unwrap().as_str(),
            "カクウ ハナコ"
        );
        assert!(Furigana::from_input("kakuu hanako").is_err());
        assert!(Furigana::from_input("かくう taro").is_err());
        assert!(Furigana::from_input(" かくう").is_err());
        // The registry's own entry still refuses hiragana.
        assert!(matches!(
            Furigana::new("かくう"),
            Err(NameError::FuriganaHiragana { .. })
        ));
    }
}
