//! Configuration: from command-line options and environment variables.

use std::path::{Path, PathBuf};

use machi_domain::dates::{Era, EraTable};
use machi_domain::error::Localized;

use crate::crypto::MasterKey;
use crate::store::DatabaseLocation;

/// The file a SQLite deployment without a configured key keeps its master
/// key in, beside the database.
pub const DEFAULT_KEY_FILE: &str = "master.key";

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `MACHI_MASTER_KEY`.
    Environment,
    /// `--master-key-file` / `MACHI_MASTER_KEY_FILE`, or the default file
    /// beside a SQLite database.
    File(PathBuf),
    /// The default file beside a SQLite database, created now.
    Created(PathBuf),
}

/// The master key (see [`crate::crypto`]), from, in this order:
/// - `env_key`, the value of `MACHI_MASTER_KEY`: 64 hexadecimal characters;
/// - `key_file` (`--master-key-file`): a file holding them;
/// - for SQLite only, `master.key` in the database's directory, created
///   (mode 0600) on the first start if the database does not exist yet, so
///   that `machi demo` runs on a fresh machine.
///
/// Both `env_key` and `key_file` at once is an error (which one wins would
/// be a guess), as is PostgreSQL without either, or an existing SQLite
/// database whose key file is missing (a new key would not open its data).
pub fn master_key(
    env_key: Option<&str>,
    key_file: Option<&Path>,
    database: &DatabaseLocation,
) -> Result<(MasterKey, KeySource), String> {
    let env_key = env_key.filter(|k| !k.trim().is_empty());
    match (env_key, key_file) {
        (Some(_), Some(_)) => Err(
            "both MACHI_MASTER_KEY and --master-key-file are set; give one / マスター鍵は環境変数かファイルのどちらか一方で指定してください"
                .to_string(),
        ),
        (Some(hex), None) => MasterKey::from_hex(hex)
            .map(|k| (k, KeySource::Environment))
            .map_err(|e| format!("MACHI_MASTER_KEY: {e}")),
        (None, Some(path)) => MasterKey::read_file(path)
            .map(|k| (k, KeySource::File(path.to_path_buf())))
            .map_err(|e| e.to_string()),
        (None, None) => match database {
            DatabaseLocation::Postgres(_) => Err(
                "PostgreSQL needs a master key: set MACHI_MASTER_KEY (64 hexadecimal characters, e.g. from `machi keygen`) or --master-key-file / PostgreSQL ではマスター鍵の指定が必要です"
                    .to_string(),
            ),
            DatabaseLocation::Sqlite(db) => {
                let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
                let path = dir.unwrap_or(Path::new(".")).join(DEFAULT_KEY_FILE);
                if path.exists() {
                    return MasterKey::read_file(&path)
                        .map(|k| (k, KeySource::File(path)))
                        .map_err(|e| e.to_string());
                }
                if std::fs::metadata(db).is_ok_and(|m| m.len() > 0) {
                    return Err(format!(
                        "the database {} exists but its master key {} does not: restore the key file, or set MACHI_MASTER_KEY or --master-key-file (a new key would not open its 個人番号) / 鍵ファイルがありません",
                        db.display(),
                        path.display()
                    ));
                }
                MasterKey::create_file(&path)
                    .map(|k| (k, KeySource::Created(path)))
                    .map_err(|e| e.to_string())
            }
        },
    }
}

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

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn the_master_key_comes_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let pg = DatabaseLocation::Postgres("postgres://db/machi".into());
        let (k, source) = master_key(Some(KEY), None, &pg).unwrap();
        assert_eq!((k.to_hex().as_str(), source), (KEY, KeySource::Environment));
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{KEY}\n")).unwrap();
        let (k, source) = master_key(Some(""), Some(&file), &pg).unwrap();
        assert_eq!(k.to_hex().as_str(), KEY);
        assert_eq!(source, KeySource::File(file.clone()));
        assert!(master_key(Some(KEY), Some(&file), &pg).is_err());
        assert!(
            master_key(None, None, &pg)
                .unwrap_err()
                .contains("MACHI_MASTER_KEY")
        );
        assert!(master_key(Some("00"), None, &pg).is_err());
        assert!(master_key(None, Some(&dir.path().join("missing")), &pg).is_err());
    }

    #[test]
    fn sqlite_without_a_key_creates_one_beside_a_new_database_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = DatabaseLocation::Sqlite(dir.path().join("data").join("demo.sqlite"));
        let key_path = dir.path().join("data").join(DEFAULT_KEY_FILE);
        let (created, source) = master_key(None, None, &db).unwrap();
        assert_eq!(source, KeySource::Created(key_path.clone()));
        let (again, source) = master_key(None, None, &db).unwrap();
        assert_eq!(source, KeySource::File(key_path.clone()));
        assert_eq!(created.to_hex(), again.to_hex());
        // An existing database whose key file went missing is refused.
        std::fs::write(dir.path().join("data").join("demo.sqlite"), b"data").unwrap();
        std::fs::remove_file(&key_path).unwrap();
        let err = master_key(None, None, &db).unwrap_err();
        assert!(err.contains("master.key"), "{err}");
        assert!(!key_path.exists());
    }

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
