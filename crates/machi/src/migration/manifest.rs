//! manifest.json: what an export contains, so an import can tell a complete
//! file from a truncated or altered one.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`super::layout::LAYOUT_VERSION`]
    pub layout: String,
    /// 団体コード of the exporting tenant.
    pub municipality_code: String,
    /// RFC 3339.
    pub exported_at: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    /// Data rows, header excluded.
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// SHA-256 and size of a file, streamed.
pub fn digest_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), total))
}

/// Writes manifest.json into `dir` for the layout files named in `files`
/// (with their data rows), digesting each. Errs with the path that failed.
pub fn write_manifest(
    dir: &Path,
    municipality_code: &str,
    exported_at: String,
    files: &[(&str, u64)],
) -> Result<Manifest, (std::path::PathBuf, std::io::Error)> {
    let mut entries = Vec::new();
    for (name, rows) in files {
        let path = dir.join(name);
        let (sha256, bytes) = digest_file(&path).map_err(|e| (path, e))?;
        entries.push(FileEntry {
            name: name.to_string(),
            rows: *rows,
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        layout: super::layout::LAYOUT_VERSION.to_string(),
        municipality_code: municipality_code.to_string(),
        exported_at,
        files: entries,
    };
    let path = dir.join(super::layout::MANIFEST_FILE);
    let json = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, json + "\n").map_err(|e| (path, e))?;
    Ok(manifest)
}
