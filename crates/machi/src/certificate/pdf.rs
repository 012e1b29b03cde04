//! Layout and drawing. Text is shaped once with rustybuzz (the shaper krilla
//! itself uses), so the advances that decide line breaks are exactly the
//! ones drawn: a line never runs past its column (j1070).
//!
//! Coordinates are PDF points, origin top left, y downwards (krilla's).

use std::collections::BTreeSet;
use std::ops::Range;

use chrono::Datelike;
use krilla::Document;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::Stroke;
use krilla::surface::Surface;
use krilla::text::{GlyphId, KrillaGlyph};
use machi_domain::certificate::{Certificate, Item};

use super::{Fonts, IssueStamp, PdfError, Rendered};

// A4 in points.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN_X: f32 = 50.0;
const MARGIN_TOP: f32 = 40.0;
const MARGIN_BOTTOM: f32 = 36.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;

const TITLE_SIZE: f32 = 18.0;
const SMALL_SIZE: f32 = 8.0;
const LABEL_SIZE: f32 = 9.0;
const VALUE_SIZE: f32 = 10.5;
const LABEL_W: f32 = 118.0;
const GUTTER: f32 = 10.0;
const VALUE_X: f32 = MARGIN_X + LABEL_W + GUTTER;
const VALUE_W: f32 = PAGE_W - MARGIN_X - VALUE_X;
/// j1050: the seal is at most 25 mm square.
const SEAL: f32 = 70.0;

/// Line height for a font size.
fn leading(size: f32) -> f32 {
    size * 1.45
}

pub(super) fn render(
    cert: &Certificate,
    stamp: &IssueStamp,
    fonts: &Fonts,
) -> Result<Rendered, PdfError> {
    let mut shaper = Shaper::new(fonts);

    // Header and footer heights are the same on every page.
    let title = shaper.wrap(&cert.title, TITLE_SIZE, CONTENT_W - 80.0);
    let header_h = title.len() as f32 * leading(TITLE_SIZE) + leading(SMALL_SIZE) + 10.0;
    let verify = format!(
        "照合番号　{}　この証明書の内容は、{} で照合番号を入力して確認できます。",
        stamp.verification_code, stamp.verification_url
    );
    let verify_lines = shaper.wrap(&verify, SMALL_SIZE, CONTENT_W);
    let footer_h = verify_lines.len() as f32 * leading(SMALL_SIZE) + leading(9.0) + 10.0;

    let mut body = Body {
        shaper: &mut shaper,
        pages: vec![Vec::new()],
        y: MARGIN_TOP + header_h,
        top: MARGIN_TOP + header_h,
        bottom: PAGE_H - MARGIN_BOTTOM - footer_h,
        continuing: None,
    };
    body.lay_out(cert);
    let pages = body.pages;
    let total = pages.len();

    let mut doc = Document::new();
    let date = DateTime::new(u16::try_from(cert.issue_date.year()).unwrap_or(2000))
        .month(u8::try_from(cert.issue_date.month()).unwrap_or(1))
        .day(u8::try_from(cert.issue_date.day()).unwrap_or(1));
    doc.set_metadata(
        Metadata::new()
            .title(cert.title.clone())
            .language("ja".to_string())
            .creator("machi".to_string())
            .creation_date(date),
    );
    for (i, ops) in pages.iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
            .ok_or_else(|| PdfError::Pdf("bad page size".into()))?;
        let mut page = doc.start_page_with(settings);
        let mut surface = page.surface();
        let mut header = header_ops(&mut shaper, cert, stamp, &title, i + 1, total);
        header.extend(footer_ops(&mut shaper, &verify_lines, i + 1, total));
        for op in header.iter().chain(ops) {
            draw(&mut surface, fonts, op);
        }
        surface.finish();
        page.finish();
    }
    let pdf = doc.finish().map_err(|e| PdfError::Pdf(format!("{e:?}")))?;
    Ok(Rendered {
        pdf,
        pages: total,
        missing_chars: shaper.missing.into_iter().collect(),
    })
}

// ---------------------------------------------------------------------------
// Drawing operations
// ---------------------------------------------------------------------------

enum Op {
    /// A shaped line with its baseline's left end.
    Text {
        x: f32,
        y: f32,
        size: f32,
        line: Line,
    },
    Rule {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
    },
    Frame {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        width: f32,
    },
}

fn draw(surface: &mut Surface<'_>, fonts: &Fonts, op: &Op) {
    match op {
        Op::Text { x, y, size, line } => {
            for run in &line.runs {
                let Some(face) = fonts.faces.get(run.font) else {
                    continue;
                };
                surface.draw_glyphs(
                    Point::from_xy(x + run.x * size, *y),
                    &run.glyphs,
                    face.font.clone(),
                    &run.text,
                    *size,
                    false,
                );
            }
        }
        Op::Rule {
            x1,
            y1,
            x2,
            y2,
            width,
        } => {
            let mut pb = PathBuilder::new();
            pb.move_to(*x1, *y1);
            pb.line_to(*x2, *y2);
            stroke(surface, pb, *width);
        }
        Op::Frame { x, y, w, h, width } => {
            let mut pb = PathBuilder::new();
            pb.move_to(*x, *y);
            pb.line_to(x + w, *y);
            pb.line_to(x + w, y + h);
            pb.line_to(*x, y + h);
            pb.close();
            stroke(surface, pb, *width);
        }
    }
}

fn stroke(surface: &mut Surface<'_>, pb: PathBuilder, width: f32) {
    let Some(path) = pb.finish() else {
        return;
    };
    surface.set_fill(None);
    surface.set_stroke(Some(Stroke {
        width,
        ..Default::default()
    }));
    surface.draw_path(&path);
    // Text is filled black when neither is set.
    surface.set_stroke(None);
}

fn text_op(x: f32, top: f32, size: f32, line: Line) -> Op {
    Op::Text {
        x,
        y: baseline(top, size),
        size,
        line,
    }
}

/// The baseline of a line whose box starts at `top`.
fn baseline(top: f32, size: f32) -> f32 {
    top + (leading(size) - size) / 2.0 + size * 0.88
}

fn header_ops(
    shaper: &mut Shaper<'_>,
    cert: &Certificate,
    stamp: &IssueStamp,
    title: &[Line],
    page: usize,
    total: usize,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut y = MARGIN_TOP;
    for line in title {
        let x = MARGIN_X + (CONTENT_W - line.width * TITLE_SIZE) / 2.0;
        ops.push(text_op(x, y, TITLE_SIZE, line.clone()));
        y += leading(TITLE_SIZE);
    }
    // 「公用」 (j1060) in a frame at the top left.
    let mut mark_x = MARGIN_X;
    for mark in &cert.marks {
        let size = 11.0;
        for line in shaper.wrap(mark, size, 70.0).into_iter().take(1) {
            let w = line.width * size;
            ops.push(Op::Frame {
                x: mark_x,
                y: MARGIN_TOP,
                w: w + 8.0,
                h: leading(size) + 2.0,
                width: 0.8,
            });
            ops.push(text_op(mark_x + 4.0, MARGIN_TOP + 1.0, size, line));
            mark_x += w + 14.0;
        }
    }
    // 発行番号 with ページ数／総ページ数 (j1040).
    let number = format!("発行番号　{} {page}/{total}", stamp.issue_number);
    for line in shaper.wrap(&number, SMALL_SIZE, CONTENT_W) {
        let x = PAGE_W - MARGIN_X - line.width * SMALL_SIZE;
        ops.push(text_op(x, y, SMALL_SIZE, line));
        y += leading(SMALL_SIZE);
    }
    y += 4.0;
    ops.push(Op::Rule {
        x1: MARGIN_X,
        y1: y,
        x2: PAGE_W - MARGIN_X,
        y2: y,
        width: 1.0,
    });
    ops
}

fn footer_ops(shaper: &mut Shaper<'_>, verify: &[Line], page: usize, total: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let page_size = 9.0;
    let mut y = PAGE_H
        - MARGIN_BOTTOM
        - leading(page_size)
        - verify.len() as f32 * leading(SMALL_SIZE)
        - 4.0;
    ops.push(Op::Rule {
        x1: MARGIN_X,
        y1: y - 3.0,
        x2: PAGE_W - MARGIN_X,
        y2: y - 3.0,
        width: 0.5,
    });
    for line in verify {
        ops.push(text_op(MARGIN_X, y, SMALL_SIZE, line.clone()));
        y += leading(SMALL_SIZE);
    }
    y += 4.0;
    for line in shaper.wrap(&format!("{page} / {total}"), page_size, CONTENT_W) {
        let x = MARGIN_X + (CONTENT_W - line.width * page_size) / 2.0;
        ops.push(text_op(x, y, page_size, line));
    }
    ops
}

// ---------------------------------------------------------------------------
// The body: items, persons, history, 以下余白, 認証文
// ---------------------------------------------------------------------------

struct Body<'s, 'f> {
    shaper: &'s mut Shaper<'f>,
    pages: Vec<Vec<Op>>,
    /// Top of the next line on the current page.
    y: f32,
    top: f32,
    bottom: f32,
    /// The person whose block is being laid out, named again at the top of
    /// a page their block continues on.
    continuing: Option<String>,
}

impl Body<'_, '_> {
    fn push(&mut self, op: Op) {
        if let Some(page) = self.pages.last_mut() {
            page.push(op);
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = self.top;
        if let Some(name) = self.continuing.clone() {
            let size = LABEL_SIZE;
            let label = self.shaper.wrap("（前頁から続く）", size, LABEL_W);
            let value = self.shaper.wrap(&name, size, VALUE_W);
            if let (Some(l), Some(v)) = (label.into_iter().next(), value.into_iter().next()) {
                self.push(text_op(MARGIN_X, self.y, size, l));
                self.push(text_op(VALUE_X, self.y, size, v));
                self.y += leading(size);
            }
        }
    }

    /// Starts a new page unless `h` more points fit on this one (a block
    /// taller than a whole page starts at the top and is split by lines).
    fn ensure(&mut self, h: f32) {
        if self.y + h > self.bottom && self.y > self.top {
            self.new_page();
        }
    }

    fn rule(&mut self, width: f32) {
        self.push(Op::Rule {
            x1: MARGIN_X,
            y1: self.y,
            x2: PAGE_W - MARGIN_X,
            y2: self.y,
            width,
        });
    }

    fn lay_out(&mut self, cert: &Certificate) {
        self.y += 4.0;
        for item in &cert.common {
            self.item(item);
        }
        for (i, person) in cert.persons.iter().enumerate() {
            // Keep a person's first lines with their separator.
            self.continuing = None;
            self.ensure(4.0 + 2.0 * leading(VALUE_SIZE));
            if i > 0 || !cert.common.is_empty() {
                self.y += 2.0;
                self.rule(0.4);
                self.y += 4.0;
            }
            let name = person
                .items
                .iter()
                .find(|i| i.kind == machi_domain::certificate::ItemKind::Name);
            for item in &person.items {
                self.item(item);
                if self.continuing.is_none() {
                    self.continuing = name.map(|n| n.value.clone());
                }
            }
            let size = VALUE_SIZE - 1.0;
            for (j, line) in person.history.iter().enumerate() {
                let label = if j == 0 { "履歴" } else { "" };
                self.labelled_indented(label, &line.text(), size, size);
            }
        }
        self.continuing = None;
        self.y += 2.0;
        self.ensure(leading(VALUE_SIZE) + 4.0);
        self.rule(0.4);
        self.y += 4.0;
        // 以下余白 right after the last person.
        let end = self.shaper.wrap(&cert.end_mark, VALUE_SIZE, VALUE_W);
        for line in end {
            self.ensure(leading(VALUE_SIZE));
            self.push(text_op(VALUE_X, self.y, VALUE_SIZE, line));
            self.y += leading(VALUE_SIZE);
        }
        self.certification(cert);
    }

    fn item(&mut self, item: &Item) {
        self.labelled_indented(&item.label, &item.value, VALUE_SIZE, 0.0);
    }

    /// A label in the left column and a value wrapped in the right one, its
    /// second and later lines indented by `indent`; each row of lines goes
    /// to the next page when it does not fit.
    fn labelled_indented(&mut self, label: &str, value: &str, size: f32, indent: f32) {
        let labels = self.shaper.wrap(label, LABEL_SIZE, LABEL_W);
        let values = self.shaper.wrap(value, size, VALUE_W - indent);
        let lh = leading(size).max(leading(LABEL_SIZE));
        let rows = labels.len().max(values.len()).max(1);
        let mut labels = labels.into_iter();
        let mut values = values.into_iter();
        for row in 0..rows {
            self.ensure(lh);
            if let Some(l) = labels.next() {
                self.push(text_op(MARGIN_X, self.y, LABEL_SIZE, l));
            }
            if let Some(v) = values.next() {
                let x = if row == 0 { VALUE_X } else { VALUE_X + indent };
                self.push(text_op(x, self.y, size, v));
            }
            self.y += lh;
        }
    }

    /// 認証文, date, issuer and the seal box: on the last page only (j1000),
    /// kept together.
    fn certification(&mut self, cert: &Certificate) {
        let c = &cert.certification;
        let size = 11.0;
        let sentence = self.shaper.wrap(&c.sentence, size, CONTENT_W - 20.0);
        let date = self.shaper.wrap(&c.date, size, CONTENT_W - 20.0);
        let issuer_w = CONTENT_W - SEAL - 16.0;
        let issuer = self.shaper.wrap(&c.issuer, 12.0, issuer_w);
        // The seal text fills its box: shrink until it fits, grow the box
        // only if even the smallest size does not.
        let mut seal_size = 12.0;
        let mut seal = self.shaper.wrap(&c.seal_text, seal_size, SEAL - 8.0);
        while seal.len() as f32 * leading(seal_size) > SEAL - 8.0 && seal_size > 6.0 {
            seal_size -= 1.0;
            seal = self.shaper.wrap(&c.seal_text, seal_size, SEAL - 8.0);
        }
        let seal_h = (seal.len() as f32 * leading(seal_size) + 8.0).max(SEAL);
        let note = c
            .seal_note
            .as_deref()
            .map(|n| self.shaper.wrap(n, 7.0, SEAL + 40.0))
            .unwrap_or_default();
        let text_h = (sentence.len() + date.len()) as f32 * leading(size) + 12.0;
        let issuer_h = issuer.len() as f32 * leading(12.0);
        let block_h = 16.0 + text_h + issuer_h.max(seal_h) + note.len() as f32 * leading(7.0) + 4.0;
        self.ensure(block_h);
        self.y += 16.0;
        for line in sentence {
            self.push(text_op(MARGIN_X + 20.0, self.y, size, line));
            self.y += leading(size);
        }
        self.y += 12.0;
        for line in date {
            self.push(text_op(MARGIN_X + 20.0, self.y, size, line));
            self.y += leading(size);
        }
        let top = self.y;
        let seal_x = PAGE_W - MARGIN_X - SEAL;
        // The issuer's line sits against the seal, vertically centred.
        let mut y = top + (seal_h - issuer_h).max(0.0) / 2.0;
        for line in issuer {
            let x = seal_x - 8.0 - line.width * 12.0;
            self.push(text_op(x.max(MARGIN_X), y, 12.0, line));
            y += leading(12.0);
        }
        self.push(Op::Frame {
            x: seal_x,
            y: top,
            w: SEAL,
            h: seal_h,
            width: 1.2,
        });
        let seal_text_h = seal.len() as f32 * leading(seal_size);
        let mut y = top + (seal_h - seal_text_h) / 2.0;
        for line in seal {
            let x = seal_x + (SEAL - line.width * seal_size) / 2.0;
            self.push(text_op(x, y, seal_size, line));
            y += leading(seal_size);
        }
        self.y = top + issuer_h.max(seal_h) + 2.0;
        for line in note {
            let x = PAGE_W - MARGIN_X - line.width * 7.0;
            self.push(text_op(x, self.y, 7.0, line));
            self.y += leading(7.0);
        }
    }
}

// ---------------------------------------------------------------------------
// Shaping and line breaking
// ---------------------------------------------------------------------------

/// A run of glyphs from one font, ready for `draw_glyphs`: `text` is the
/// run's own text and the glyphs' ranges point into it.
#[derive(Clone)]
struct Run {
    font: usize,
    /// Offset from the line's start, in em.
    x: f32,
    text: String,
    glyphs: Vec<KrillaGlyph>,
}

/// One line of text, its width in em.
#[derive(Clone)]
struct Line {
    width: f32,
    runs: Vec<Run>,
}

/// A shaped glyph of a paragraph; advances in em.
#[derive(Clone)]
struct Shaped {
    font: usize,
    id: u32,
    advance: f32,
    x_offset: f32,
    y_offset: f32,
    /// Bytes of the paragraph this glyph's cluster covers.
    range: Range<usize>,
}

struct Shaper<'f> {
    faces: Vec<Option<rustybuzz::Face<'f>>>,
    missing: BTreeSet<char>,
}

impl<'f> Shaper<'f> {
    fn new(fonts: &'f Fonts) -> Self {
        Shaper {
            faces: fonts
                .faces
                .iter()
                .map(|f| rustybuzz::Face::from_slice(&f.data, 0))
                .collect(),
            missing: BTreeSet::new(),
        }
    }

    /// The font for a cluster: the first that has its glyph (and its
    /// variation sequence), else the first with the base character, else the
    /// main font (which then draws .notdef; the character is reported).
    fn font_for(&mut self, cluster: &str) -> usize {
        let mut chars = cluster.chars();
        let Some(base) = chars.next() else {
            return 0;
        };
        let selector = chars.find(|c| is_variation_selector(*c));
        let has = |face: &rustybuzz::Face<'_>| face.glyph_index(base).is_some();
        if let Some(vs) = selector
            && let Some(i) = self.faces.iter().position(|f| {
                f.as_ref()
                    .is_some_and(|f| f.glyph_variation_index(base, vs).is_some())
            })
        {
            return i;
        }
        if let Some(i) = self.faces.iter().position(|f| f.as_ref().is_some_and(has)) {
            return i;
        }
        if !base.is_whitespace() {
            self.missing.insert(base);
        }
        0
    }

    /// Shapes a paragraph: clusters go to the font that has them, each run of
    /// one font is shaped on its own.
    fn shape(&mut self, text: &str) -> Vec<Shaped> {
        let mut runs: Vec<(usize, Range<usize>)> = Vec::new();
        for cluster in clusters(text) {
            let font = self.font_for(text.get(cluster.clone()).unwrap_or(""));
            match runs.last_mut() {
                Some((f, r)) if *f == font && r.end == cluster.start => r.end = cluster.end,
                _ => runs.push((font, cluster)),
            }
        }
        let mut out = Vec::new();
        for (font, range) in runs {
            let Some(Some(face)) = self.faces.get(font) else {
                continue;
            };
            let upem = face.units_per_em().max(1) as f32;
            let mut buffer = rustybuzz::UnicodeBuffer::new();
            buffer.push_str(text.get(range.clone()).unwrap_or(""));
            buffer.set_direction(rustybuzz::Direction::LeftToRight);
            buffer.guess_segment_properties();
            let output = rustybuzz::shape(face, &[], buffer);
            let infos = output.glyph_infos();
            let positions = output.glyph_positions();
            let len = range.end - range.start;
            for (i, (info, pos)) in infos.iter().zip(positions).enumerate() {
                let start = info.cluster as usize;
                let end = infos
                    .iter()
                    .skip(i + 1)
                    .map(|n| n.cluster as usize)
                    .find(|c| *c != start)
                    .unwrap_or(len)
                    .min(len);
                if info.glyph_id == 0
                    && let Some(c) = text.get(range.start + start..range.start + end)
                {
                    self.missing
                        .extend(c.chars().filter(|c| !c.is_whitespace()));
                }
                out.push(Shaped {
                    font,
                    id: info.glyph_id,
                    advance: pos.x_advance as f32 / upem,
                    x_offset: pos.x_offset as f32 / upem,
                    y_offset: pos.y_offset as f32 / upem,
                    range: range.start + start..range.start + end.max(start),
                });
            }
        }
        out
    }

    /// Breaks `text` into lines no wider than `max` points at `size`.
    /// Breaks between CJK characters and at spaces, keeps 行頭禁則 and
    /// 行末禁則 characters with their neighbours, and breaks inside a word
    /// only when the word alone is wider than the line.
    fn wrap(&mut self, text: &str, size: f32, max: f32) -> Vec<Line> {
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let glyphs = self.shape(&text);
        // Group glyphs by cluster: (byte range, glyph indices, width in em).
        let mut units: Vec<(Range<usize>, Range<usize>, f32)> = Vec::new();
        for (i, g) in glyphs.iter().enumerate() {
            match units.last_mut() {
                Some((r, gi, w)) if r.start == g.range.start => {
                    gi.end = i + 1;
                    r.end = r.end.max(g.range.end);
                    *w += g.advance;
                }
                _ => units.push((g.range.clone(), i..i + 1, g.advance)),
            }
        }
        let max_em = if size > 0.0 { max / size } else { f32::MAX };
        let mut lines = Vec::new();
        let mut start = 0;
        while start < units.len() {
            // Skip spaces at the start of a line.
            while units.get(start).is_some_and(|u| is_blank(&text, &u.0)) {
                start += 1;
            }
            if start >= units.len() {
                break;
            }
            let mut width = 0.0;
            let mut end = start;
            let mut last_break = None;
            while let Some(u) = units.get(end) {
                if end > start && can_break(&text, &units[end - 1].0, &u.0) {
                    last_break = Some(end);
                }
                if width + u.2 > max_em && end > start {
                    break;
                }
                width += u.2;
                end += 1;
            }
            if end < units.len() {
                // Prefer the last break opportunity; else cut the word.
                if let Some(b) = last_break.filter(|b| *b > start) {
                    end = b;
                }
            }
            // Trailing spaces neither count nor show.
            let mut shown_end = end;
            while shown_end > start
                && units
                    .get(shown_end - 1)
                    .is_some_and(|u| is_blank(&text, &u.0))
            {
                shown_end -= 1;
            }
            if shown_end > start {
                lines.push(self.line(&text, &glyphs, &units[start..shown_end]));
            }
            start = end;
        }
        if lines.is_empty() {
            lines.push(Line {
                width: 0.0,
                runs: Vec::new(),
            });
        }
        lines
    }

    fn line(
        &self,
        text: &str,
        glyphs: &[Shaped],
        units: &[(Range<usize>, Range<usize>, f32)],
    ) -> Line {
        let mut runs: Vec<Run> = Vec::new();
        let mut x = 0.0;
        let mut current: Option<(usize, usize, f32, Vec<&Shaped>)> = None; // font, byte start, x, glyphs
        let flush = |cur: Option<(usize, usize, f32, Vec<&Shaped>)>, runs: &mut Vec<Run>| {
            if let Some((font, first, run_x, gs)) = cur {
                let byte_start = gs.iter().map(|g| g.range.start).min().unwrap_or(first);
                let byte_end = gs.iter().map(|g| g.range.end).max().unwrap_or(byte_start);
                let run_text = text.get(byte_start..byte_end).unwrap_or("").to_string();
                let glyphs = gs
                    .iter()
                    .map(|g| {
                        KrillaGlyph::new(
                            GlyphId::new(g.id),
                            g.advance,
                            g.x_offset,
                            g.y_offset,
                            0.0,
                            g.range.start.saturating_sub(byte_start)
                                ..g.range.end.saturating_sub(byte_start),
                            None,
                        )
                    })
                    .collect();
                runs.push(Run {
                    font,
                    x: run_x,
                    text: run_text,
                    glyphs,
                });
            }
        };
        for unit in units {
            for g in glyphs.get(unit.1.clone()).unwrap_or(&[]) {
                match &mut current {
                    Some((font, _, _, gs)) if *font == g.font => gs.push(g),
                    _ => {
                        flush(current.take(), &mut runs);
                        current = Some((g.font, g.range.start, x, vec![g]));
                    }
                }
                x += g.advance;
            }
        }
        flush(current, &mut runs);
        Line { width: x, runs }
    }
}

/// Whether the cluster at `range` is whitespace only.
fn is_blank(text: &str, range: &Range<usize>) -> bool {
    text.get(range.clone())
        .is_none_or(|s| s.chars().all(char::is_whitespace))
}

/// Byte ranges of the clusters of `text`: a character with the variation
/// selectors, combining marks and joiners that follow it.
fn clusters(text: &str) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut join_next = false;
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        let attaches = is_variation_selector(c)
            || matches!(
                c,
                '\u{0300}'..='\u{036F}' | '\u{3099}' | '\u{309A}' | '\u{200D}'
            );
        match out.last_mut() {
            Some(r) if attaches || join_next => r.end = end,
            _ => out.push(i..end),
        }
        join_next = c == '\u{200D}';
    }
    out
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Characters that may not start a line (行頭禁則).
const NO_START: &str = "、。，．,.）)」』】〕〉》］]｝}・：:；;！!？?ゝゞヽヾ々ーぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ";
/// Characters that may not end a line (行末禁則).
const NO_END: &str = "（(「『【〔〈《［[｛{";

/// Whether a line may break between the clusters `before` and `after`.
fn can_break(text: &str, before: &Range<usize>, after: &Range<usize>) -> bool {
    let (Some(b), Some(a)) = (
        text.get(before.clone()).and_then(|s| s.chars().next()),
        text.get(after.clone()).and_then(|s| s.chars().next()),
    ) else {
        return true;
    };
    if NO_START.contains(a) || NO_END.contains(b) {
        return false;
    }
    if b.is_whitespace() {
        return true;
    }
    if a.is_whitespace() {
        return false;
    }
    // Inside a run of Latin letters and digits (a word, a URL, a number)
    // there is no break; anywhere next to a CJK character there is.
    !(is_word_char(b) && is_word_char(a))
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_graphic() || matches!(c, '\u{00C0}'..='\u{024F}')
}

#[cfg(test)]
mod tests {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    use super::*;

    fn no_space(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    /// Every line fits its width (unless it is a single cluster wider than
    /// the width), and no character is lost or duplicated.
    #[test]
    fn wrapped_lines_fit_and_keep_every_character() {
        let fonts = Fonts::discover().expect("a Japanese font (apt-get install fonts-ipaexfont)");
        let shaper = std::cell::RefCell::new(Shaper::new(&fonts));
        let mut runner = TestRunner::new(Config {
            cases: 200,
            ..Config::default()
        });
        let input = (
            "[髙橋花子府中市宮西町二丁目、。「」（）ーァッabcXYZ0-9 　.:/-]{0,160}",
            4.0f32..300.0,
            6.0f32..20.0,
        );
        runner
            .run(&input, |(text, max, size)| {
                let lines = shaper.borrow_mut().wrap(&text, size, max);
                let mut joined = String::new();
                for line in &lines {
                    let glyphs: usize = line.runs.iter().map(|r| r.glyphs.len()).sum();
                    if glyphs > 1 && line.width * size > max + 0.01 {
                        return Err(TestCaseError::fail(format!(
                            "line of {} pt > {max} pt in {text:?}",
                            line.width * size
                        )));
                    }
                    for run in &line.runs {
                        joined.push_str(&run.text);
                    }
                }
                if no_space(&joined) != no_space(&text) {
                    return Err(TestCaseError::fail(format!("{joined:?} != {text:?}")));
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn breaks_follow_kinsoku_and_keep_words_whole() {
        let fonts = Fonts::discover().expect("a Japanese font (apt-get install fonts-ipaexfont)");
        let mut shaper = Shaper::new(&fonts);
        let text = |l: &Line| l.runs.iter().map(|r| r.text.as_str()).collect::<String>();
        // Ten characters of 10 pt per line: 「。」 may not start the next one.
        let lines = shaper.wrap("あいうえおかきくけこ。さしす", 10.0, 100.0);
        let texts: Vec<String> = lines.iter().map(text).collect();
        assert!(!texts[1].starts_with('。'), "{texts:?}");
        // A URL is not split while it fits on a line of its own.
        let lines = shaper.wrap(
            "確認先 https://fuchu.example.lg.jp/verify です",
            10.0,
            200.0,
        );
        let texts: Vec<String> = lines.iter().map(text).collect();
        assert!(
            texts
                .iter()
                .any(|t| t.contains("https://fuchu.example.lg.jp/verify")),
            "{texts:?}"
        );
    }
}
