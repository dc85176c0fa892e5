//! Getting the text out of an uploaded document.
//!
//! | content type | text |
//! |--------------|------|
//! | `text/plain` | the bytes, which must be UTF-8 (a byte-order mark is dropped) |
//! | `application/pdf` | the PDF's text layer, read by `pdf-extract` |
//! | `image/png`, `image/jpeg` | none: images are not read automatically |
//!
//! `pdf-extract` can panic on malformed or unusual files; the panic is caught with
//! [`std::panic::catch_unwind`] and reported as an unreadable PDF. (The default panic hook
//! still prints the panic message to stderr; it names no patient data.)

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Why a document's text could not be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// An image: a clinician must read it.
    #[error(
        "images are not analysed automatically; a clinician must review the image and enter its values"
    )]
    Image,
    /// A content type this analysis does not handle.
    #[error("unsupported content type '{0}'")]
    UnsupportedType(String),
    /// A text file that is not UTF-8.
    #[error("the text file is not valid UTF-8")]
    NotUtf8,
    /// A text file, or a PDF text layer, with nothing but whitespace.
    #[error("the document contains no text")]
    Empty,
    /// A PDF without a text layer, e.g. a scan.
    #[error("no text layer; scanned PDFs need manual review")]
    NoTextLayer,
    /// A PDF the parser could not read.
    #[error("could not read the PDF: {0}")]
    UnreadablePdf(String),
}

impl ExtractError {
    /// True for an image, which a person reads instead; every other error means the
    /// analysis failed (a scanned PDF included: its reason says it needs manual review).
    pub fn needs_review(&self) -> bool {
        matches!(self, ExtractError::Image)
    }
}

/// The media type without parameters, lowercase: "Text/Plain; charset=utf-8" -> "text/plain".
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The text of a document of `content_type`.
pub fn document_text(content_type: &str, bytes: &[u8]) -> Result<String, ExtractError> {
    match media_type(content_type).as_str() {
        "text/plain" => plain_text(bytes),
        "application/pdf" => pdf_text(bytes),
        "image/png" | "image/jpeg" => Err(ExtractError::Image),
        other => Err(ExtractError::UnsupportedType(other.to_owned())),
    }
}

fn plain_text(bytes: &[u8]) -> Result<String, ExtractError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| ExtractError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(text.to_owned())
}

fn pdf_text(bytes: &[u8]) -> Result<String, ExtractError> {
    // The header may be preceded by a little junk, which readers tolerate (ISO 32000-1
    // implementation note: within the first 1024 bytes).
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|window| window == b"%PDF-") {
        return Err(ExtractError::UnreadablePdf(
            "not a PDF file (no %PDF- header)".to_owned(),
        ));
    }
    let extracted = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(bytes)
    }));
    let text = match extracted {
        Ok(Ok(text)) => text,
        Ok(Err(error)) => return Err(ExtractError::UnreadablePdf(error.to_string())),
        Err(_) => {
            return Err(ExtractError::UnreadablePdf(
                "the PDF parser failed on this file".to_owned(),
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(ExtractError::NoTextLayer);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            document_text("text/plain; charset=utf-8", b"FSH 7 IU/L"),
            Ok("FSH 7 IU/L".to_owned())
        );
        assert_eq!(
            document_text("TEXT/PLAIN", b"\xEF\xBB\xBFAMH 1 ng/mL"),
            Ok("AMH 1 ng/mL".to_owned())
        );
        assert_eq!(
            document_text("image/png", b"\x89PNG"),
            Err(ExtractError::Image)
        );
        assert_eq!(
            document_text("image/jpeg", b"\xFF\xD8\xFF"),
            Err(ExtractError::Image)
        );
        assert_eq!(
            document_text("application/zip", b"PK"),
            Err(ExtractError::UnsupportedType("application/zip".to_owned()))
        );
    }

    #[test]
    fn text_must_be_utf8_and_not_empty() {
        assert_eq!(
            document_text("text/plain", b"AMH \xFF 1 ng/mL"),
            Err(ExtractError::NotUtf8)
        );
        assert_eq!(document_text("text/plain", b""), Err(ExtractError::Empty));
        assert_eq!(
            document_text("text/plain", b" \n\t\n"),
            Err(ExtractError::Empty)
        );
    }

    #[test]
    fn broken_pdfs_are_unreadable() {
        for bytes in [
            &b"this is not a pdf at all"[..],
            &b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer garbage"[..],
            &b"%PDF-1.4\n\x00\x01\x02\x03\xFF\xFE"[..],
        ] {
            match document_text("application/pdf", bytes) {
                Err(ExtractError::UnreadablePdf(reason)) => assert!(!reason.is_empty()),
                other => panic!("{bytes:?} gave {other:?}"),
            }
        }
    }

    /// A one-page PDF; with `text`, a text layer holding it.
    fn pdf(text: Option<&str>) -> Vec<u8> {
        use printpdf::{
            BuiltinFont, Mm, Op, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt,
            TextItem,
        };
        let mut ops = vec![Op::SaveGraphicsState, Op::RestoreGraphicsState];
        if let Some(text) = text {
            ops.extend([
                Op::StartTextSection,
                Op::SetTextCursor {
                    pos: Point::new(Mm(20.0), Mm(270.0)),
                },
                Op::SetFont {
                    font: PdfFontHandle::Builtin(BuiltinFont::Helvetica),
                    size: Pt(10.0),
                },
                Op::ShowText {
                    items: vec![TextItem::Text(text.to_owned())],
                },
                Op::EndTextSection,
            ]);
        }
        let page = PdfPage::new(Mm(210.0), Mm(297.0), ops);
        PdfDocument::new("fixture")
            .with_pages(vec![page])
            .save(&PdfSaveOptions::default(), &mut Vec::new())
    }

    #[test]
    fn pdf_text_layer() {
        let text = document_text(
            "application/pdf",
            &pdf(Some("Anti-Müllerian hormone 1.2 ng/mL")),
        );
        assert_eq!(text.unwrap().trim(), "Anti-Müllerian hormone 1.2 ng/mL");
    }

    #[test]
    fn pdf_without_text_layer() {
        assert_eq!(
            document_text("application/pdf", &pdf(None)),
            Err(ExtractError::NoTextLayer)
        );
        assert_eq!(
            ExtractError::NoTextLayer.to_string(),
            "no text layer; scanned PDFs need manual review"
        );
    }

    /// A hand-written one-page PDF whose font is `font_dict`.
    fn pdf_with_font(font_dict: &str) -> Vec<u8> {
        let content = "BT /F1 12 Tf 72 700 Td (AMH 1.2 ng/mL) Tj ET";
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
             /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
                .to_owned(),
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            ),
            font_dict.to_owned(),
        ];
        let mut out = String::from("%PDF-1.4\n");
        let mut offsets = Vec::new();
        for (index, object) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.push_str(&format!("{} 0 obj\n{object}\nendobj\n", index + 1));
        }
        let xref = out.len();
        out.push_str(&format!(
            "xref\n0 {}\n0000000000 65535 f \n",
            objects.len() + 1
        ));
        for offset in offsets {
            out.push_str(&format!("{offset:010} 00000 n \n"));
        }
        out.push_str(&format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        ));
        out.into_bytes()
    }

    #[test]
    fn pdf_parser_panics_are_caught() {
        // A sound font reads; malformed ones make pdf-extract 0.12 panic.
        let sound = pdf_with_font("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
        assert_eq!(
            document_text("application/pdf", &sound).unwrap().trim(),
            "AMH 1.2 ng/mL"
        );
        for font in [
            "<< /Type /Font /Subtype /Type0 /BaseFont /F /Encoding /Identity-H >>",
            "<< /Type /Font /Subtype /Type3 >>",
            "<< /Type /Font >>",
        ] {
            assert_eq!(
                document_text("application/pdf", &pdf_with_font(font)),
                Err(ExtractError::UnreadablePdf(
                    "the PDF parser failed on this file".to_owned()
                )),
                "font {font}"
            );
        }
    }

    #[test]
    fn truncated_pdfs_never_panic_out() {
        let bytes = pdf(Some("FSH 7.2 IU/L"));
        for len in (0..bytes.len()).step_by(97) {
            match document_text("application/pdf", &bytes[..len]) {
                Ok(_) | Err(ExtractError::UnreadablePdf(_) | ExtractError::NoTextLayer) => {}
                Err(other) => panic!("truncated at {len}: {other:?}"),
            }
        }
    }
}
