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
