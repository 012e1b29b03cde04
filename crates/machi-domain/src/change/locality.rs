//! Where a 転居 may go (j560, j630): a move within the municipality
//! (住民基本台帳法 第23条) stays in the municipality that records it and
//! changes the address. A move to another municipality is a 転出 (j640–j670),
//! and a "move" to the address and 方書 the person already has changes
//! nothing (j630 allows the same 地番 only for another building).

/// The 47 都道府県, the first part of a full Japanese address.
pub const PREFECTURES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// The municipality (団体) that records a change: its prefecture and name,
/// e.g. 東京都 and 府中市.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Municipality {
    pub prefecture: String,
    pub name: String,
}

/// Where an address lies, as far as its text says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locality {
    /// It names this municipality (with or without the prefecture).
    Inside,
    /// It names no municipality (e.g. 「緑町三丁目5番地」): taken as inside.
    Unnamed,
    /// It names another prefecture or municipality; the part it names.
    Outside(String),
}

fn is_name_char(c: char) -> bool {
    !(c.is_ascii_digit()
        || ('０'..='９').contains(&c)
        || c.is_whitespace()
        || "一二三四五六七八九十丁目番地号-－ー".contains(c))
}

/// The leading municipality-like part of `s`: up to the first 市, 区 or 郡
/// within the first six characters, all of them name characters. 町 and 村
/// are left out: town names (町名) end in 町 too often.
fn leading_municipality(s: &str) -> Option<&str> {
    let mut len = 0;
    for (n, c) in s.chars().enumerate() {
        if n >= 6 || !is_name_char(c) {
            return None;
        }
        len += c.len_utf8();
        if n > 0 && matches!(c, '市' | '区' | '郡') {
            return Some(&s[..len]);
        }
    }
    None
}

impl Municipality {
    /// Where `address` lies relative to this municipality.
    pub fn locate(&self, address: &str) -> Locality {
        let a = address.trim_start_matches([' ', '　']);
        let name = self.name.trim();
        if name.is_empty() {
            return Locality::Unnamed;
        }
        let (rest, named_prefecture) = match PREFECTURES.iter().find(|p| a.starts_with(**p)) {
            Some(p) => {
                let own = self.prefecture.trim();
                if !own.is_empty() && *p != own {
                    return Locality::Outside((*p).to_string());
                }
                (&a[p.len()..], true)
            }
            None => (a, false),
        };
        if rest.starts_with(name) {
            return Locality::Inside;
        }
        // 「西多摩郡瑞穂町」: a county before a town or village.
        if let Some(county) = leading_municipality(rest).filter(|m| m.ends_with('郡'))
            && rest[county.len()..].starts_with(name)
        {
            return Locality::Inside;
        }
        match leading_municipality(rest) {
            Some(other) => Locality::Outside(format!(
                "{}{other}",
                if named_prefecture {
                    &a[..a.len() - rest.len()]
                } else {
                    ""
                }
            )),
            // After a prefecture a municipality must follow.
            None if named_prefecture => Locality::Outside(a[..a.len() - rest.len()].to_string()),
            None => Locality::Unnamed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuchu() -> Municipality {
        Municipality {
            prefecture: "東京都".into(),
            name: "府中市".into(),
        }
    }

    #[test]
    fn addresses_in_the_municipality() {
        let m = fuchu();
        assert_eq!(m.locate("東京都府中市緑町三丁目5番地"), Locality::Inside);
        assert_eq!(m.locate("府中市寿町"), Locality::Inside);
        assert_eq!(m.locate("緑町三丁目5番地"), Locality::Unnamed);
        assert_eq!(m.locate("松町８番地"), Locality::Unnamed);
        assert_eq!(m.locate("市場町一丁目"), Locality::Unnamed);
        let mizuho = Municipality {
            prefecture: "東京都".into(),
            name: "瑞穂町".into(),
        };
        assert_eq!(
            mizuho.locate("東京都西多摩郡瑞穂町箱根ケ崎1番地"),
            Locality::Inside
        );
    }

    #[test]
    fn addresses_elsewhere() {
        let m = fuchu();
        assert_eq!(
            m.locate("東京都調布市小島町一丁目1番地"),
            Locality::Outside("東京都調布市".into())
        );
        assert_eq!(
            m.locate("調布市小島町一丁目1番地"),
            Locality::Outside("調布市".into())
        );
        assert_eq!(
            m.locate("広島県府中市府川町1番地"),
            Locality::Outside("広島県".into())
        );
        assert_eq!(
            m.locate("東京都練馬区豊玉北六丁目12番1号"),
            Locality::Outside("東京都練馬区".into())
        );
        assert_eq!(
            m.locate("東京都緑町1番地"),
            Locality::Outside("東京都".into())
        );
    }
}
