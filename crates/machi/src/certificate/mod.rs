//! Certificates as PDF (j1000–j1070): lays out a
//! [`machi_domain::certificate::Certificate`] on A4 pages with an embedded,
//! subset Japanese font.
//!
//! The content (items, order, omissions, 認証文) is decided in the domain
//! crate; this module only lays it out: the header (title, 「公用」, 発行番号
//! with its page, j1040) on every page, long text wrapped by the glyphs'
//! advances and continued on new pages so that nothing overflows (j1070),
//! the 認証文 and the seal box on the last page only (j1000, j1050), and on
//! every page the 照合番号 with where to check it and 「1 / 2」.
//!
//! [`Fonts::discover`] once at start-up, then [`render`] per issue.

mod pdf;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use machi_domain::certificate::Certificate;
use machi_domain::error::Localized;

/// The environment variable naming a TrueType/OpenType font file to use.
pub const FONT_ENV: &str = "MACHI_FONT";

/// The Debian package that provides the default fonts.
pub const FONT_PACKAGE: &str = "fonts-ipaexfont";

/// Where the Debian packages put the fonts, in order of preference: IPAex
/// 明朝 and ゴシック (`fonts-ipaexfont`), then IPAmj明朝
/// (`fonts-ipamj-mincho`, every MJ character and variation sequence).
pub const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/opentype/ipaexfont-mincho/ipaexm.ttf",
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/truetype/ipamj/ipamjm.ttf",
];

/// The IPAmj明朝 path: used as a fallback for the characters (MJ 文字,
/// variation sequences) the main font lacks.
const MJ_FONT_PATH: &str = "/usr/share/fonts/truetype/ipamj/ipamjm.ttf";

/// What the PDF shows about this issue besides the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueStamp {
    /// 発行番号 without its page part (j1040), e.g.
    /// [`machi_domain::certificate::IssueNumber`]'s text
    /// 「20200502 府中市 本庁1 プリンタ001 011」; each page appends 「1/2」.
    pub issue_number: String,
    /// The short 照合番号 the reader types on the verification page.
    pub verification_code: String,
    /// The municipality's verification page, e.g.
    /// `https://fuchu.example.lg.jp/verify`.
    pub verification_url: String,
}

/// A rendered certificate and what the renderer noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub pdf: Vec<u8>,
    pub pages: usize,
    /// Characters no font had a glyph for (未登録外字, j1070): the caller
    /// alerts the clerk before handing the certificate out.
    pub missing_chars: Vec<char>,
}

/// Renders a certificate to PDF bytes.
pub fn render(
    certificate: &Certificate,
    stamp: &IssueStamp,
    fonts: &Fonts,
) -> Result<Vec<u8>, PdfError> {
    render_report(certificate, stamp, fonts).map(|r| r.pdf)
}

/// Renders a certificate and reports page count and missing glyphs.
pub fn render_report(
    certificate: &Certificate,
    stamp: &IssueStamp,
    fonts: &Fonts,
) -> Result<Rendered, PdfError> {
    pdf::render(certificate, stamp, fonts)
}

/// Why a PDF could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF could not be written: {0}")]
    Pdf(String),
}

impl Localized for PdfError {
    fn code(&self) -> &'static str {
        "pdf_failed"
    }
    fn message_ja(&self) -> String {
        match self {
            Self::Pdf(e) => format!("PDF を作成できませんでした: {e}"),
        }
    }
    fn message_en(&self) -> String {
        self.to_string()
    }
}

// ---------------------------------------------------------------------------
// Fonts
// ---------------------------------------------------------------------------

/// One loaded font file.
#[derive(Clone)]
pub(crate) struct LoadedFont {
    pub(crate) path: PathBuf,
    pub(crate) data: Arc<Vec<u8>>,
    pub(crate) font: krilla::text::Font,
}

/// The Japanese fonts certificates are drawn with: a main font and, when
/// installed, IPAmj明朝 for the characters the main font lacks. Cheap to
/// clone; load once and share.
#[derive(Clone)]
pub struct Fonts {
    pub(crate) faces: Vec<LoadedFont>,
}

impl std::fmt::Debug for Fonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fonts")
            .field("paths", &self.paths())
            .finish()
    }
}

impl Fonts {
    /// Finds the fonts: the file named by `MACHI_FONT` if set (an error if it
    /// cannot be loaded: a configured font is never silently replaced), else
    /// the first of [`FONT_PATHS`] that loads; IPAmj明朝 is added as a
    /// fallback when installed.
    pub fn discover() -> Result<Self, FontError> {
        let configured = std::env::var_os(FONT_ENV).filter(|v| !v.is_empty());
        Self::discover_with(configured.as_deref().map(Path::new))
    }

    /// [`Fonts::discover`] with the value of `MACHI_FONT` given.
    pub fn discover_with(configured: Option<&Path>) -> Result<Self, FontError> {
        Self::discover_from(configured, &FONT_PATHS.map(Path::new))
    }

    fn discover_from(configured: Option<&Path>, candidates: &[&Path]) -> Result<Self, FontError> {
        let main = match configured {
            Some(path) => load(path)?,
            None => candidates
                .iter()
                .filter(|p| p.is_file())
                .find_map(|p| load(p).ok())
                .ok_or_else(|| FontError::NotFound {
                    searched: candidates.iter().map(|p| p.to_path_buf()).collect(),
                })?,
        };
        let mut faces = vec![main];
        let mj = Path::new(MJ_FONT_PATH);
        if faces.iter().all(|f| f.path != mj)
            && mj.is_file()
            && let Ok(f) = load(mj)
        {
            faces.push(f);
        }
        Ok(Fonts { faces })
    }

    /// Exactly one font file, no fallback.
    pub fn from_file(path: &Path) -> Result<Self, FontError> {
        Ok(Fonts {
            faces: vec![load(path)?],
        })
    }

    /// These files: the first is the main font, the others are used in turn
    /// for characters the ones before lack (e.g. IPAmj明朝 for MJ 文字).
    pub fn from_files(paths: &[&Path]) -> Result<Self, FontError> {
        let faces = paths
            .iter()
            .map(|p| load(p))
            .collect::<Result<Vec<_>, _>>()?;
        if faces.is_empty() {
            return Err(FontError::NotFound {
                searched: Vec::new(),
            });
        }
        Ok(Fonts { faces })
    }

    /// The files in use, main font first.
    pub fn paths(&self) -> Vec<&Path> {
        self.faces.iter().map(|f| f.path.as_path()).collect()
    }

    /// Size of the main font file in bytes.
    pub fn main_font_size(&self) -> usize {
        self.faces.first().map_or(0, |f| f.data.len())
    }
}

fn load(path: &Path) -> Result<LoadedFont, FontError> {
    let data = std::fs::read(path).map_err(|e| FontError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let data = Arc::new(data);
    let invalid = || FontError::NotAFont {
        path: path.to_path_buf(),
    };
    // Both the shaper and krilla must accept it.
    rustybuzz::Face::from_slice(&data, 0).ok_or_else(invalid)?;
    let font = krilla::text::Font::new(krilla::Data::from(data.clone()), 0).ok_or_else(invalid)?;
    Ok(LoadedFont {
        path: path.to_path_buf(),
        data,
        font,
    })
}

/// Why no usable font was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FontError {
    #[error(
        "no Japanese font found for certificates; searched {}. Install the Debian package \
         `{FONT_PACKAGE}` (apt-get install {FONT_PACKAGE}) or set {FONT_ENV} to a TrueType font file",
        shown(searched)
    )]
    NotFound { searched: Vec<PathBuf> },
    #[error("font file {} cannot be read ({reason}); check {FONT_ENV}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{} is not a TrueType/OpenType font; check {FONT_ENV}", path.display())]
    NotAFont { path: PathBuf },
}

fn shown(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Localized for FontError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "font_not_found",
            Self::Unreadable { .. } => "font_unreadable",
            Self::NotAFont { .. } => "font_invalid",
        }
    }
    fn message_ja(&self) -> String {
        match self {
            Self::NotFound { searched } => format!(
                "証明書用の日本語フォントが見つかりません。探した場所: {}。\
                 Debian パッケージ {FONT_PACKAGE} をインストールする（apt-get install {FONT_PACKAGE}）か、\
                 環境変数 {FONT_ENV} にフォントファイルのパスを設定してください。",
                shown(searched)
            ),
            Self::Unreadable { path, reason } => format!(
                "フォントファイル {} を読めません（{reason}）。{FONT_ENV} を確認してください。",
                path.display()
            ),
            Self::NotAFont { path } => format!(
                "{} は TrueType/OpenType フォントではありません。{FONT_ENV} を確認してください。",
                path.display()
            ),
        }
    }
    fn message_en(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests;
