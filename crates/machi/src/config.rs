//! Configuration: from command-line options and environment variables.

use machi_domain::dates::{Era, EraTable};
use machi_domain::error::Localized;

/// The era master (j280): the standard eras plus any added by configuration,
/// each as `NAME:ABBREV:YYYY-MM-DD` (e.g. `新元号:N:2040-01-01`), separated by commas.
pub fn era_table(extra: &[String]) -> Result<EraTable, String> {
    let mut t = EraTable::standard();
    for spec in extra
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, abbrev, start] = parts.as_slice() else {
            return Err(format!(
                "era {spec:?}: expected NAME:ABBREV:YYYY-MM-DD / 元号は「名前:略号:開始日」で指定してください"
            ));
        };
        let mut chars = abbrev.chars();
        let (Some(a), None) = (chars.next(), chars.next()) else {
            return Err(format!(
                "era {spec:?}: the abbreviation must be one letter / 略号は1文字"
            ));
        };
        let start = chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d")
            .map_err(|e| format!("era {spec:?}: start date: {e}"))?;
        t = t
            .with_era(Era {
                name: name.to_string(),
                abbrev: a,
                start,
            })
            .map_err(|e| format!("{} / {}", e.message_en(), e.message_ja()))?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_era_added_by_configuration_is_used() {
        let t = era_table(&["新元号:N:2040-01-01".to_string()]).unwrap();
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(t.format_wareki(d("2040-01-01")), "新元号元年1月1日");
        assert_eq!(t.format_wareki(d("2039-12-31")), "令和21年12月31日");
    }

    #[test]
    fn a_bad_era_configuration_is_a_clear_error() {
        for bad in [
            "新元号:N",
            "新元号:NN:2040-01-01",
            "新元号:N:2040-13-01",
            "古い:K:2000-01-01",
        ] {
            assert!(era_table(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert_eq!(era_table(&[]).unwrap(), EraTable::standard());
    }
}
