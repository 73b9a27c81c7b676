//! The errors that end a push request, each with the HTTP status Loki answers with and, as its
//! `Display`, the exact response body text.

use crate::labels::LabelParseError;

/// Why a push request failed as a whole, or (for [`IngestError::Dropped`]) why part of it was
/// not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// `Content-Encoding` other than empty, `snappy`, `gzip` or `deflate`.
    #[error("Content-Encoding {} not supported", go_quote(.0))]
    UnsupportedEncoding(String),
    /// Body larger than `max_recv_msg_size` before decompression.
    #[error("request body too large: message size too large than max ({size} vs {max})")]
    BodyTooLarge {
        /// The body's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Body larger than `max_decompressed_size` after decompression. `size` is how far
    /// decompression got before stopping, so it is at most `max + 1` for streamed formats, or
    /// the size raw snappy declares. Text and 400 as in Loki up to 3.7 (`pkg/util/http.go`);
    /// Loki's main branch (PR #23864, not yet released) answers 413 and prefixes the text with
    /// `request body too large: `.
    #[error("decompressed message size too large than max ({size} vs {max})")]
    DecompressedTooLarge {
        /// How far decompression got.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The body could not be decoded; the text says what was wrong.
    #[error("{0}")]
    Decode(String),
    /// A stream's label text is larger than [`crate::labels::MAX_LABELS_TEXT_SIZE`].
    #[error("stream labels too large: {size} bytes, limit: {max} bytes")]
    LabelsTooLarge {
        /// The label text's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A stream's label text is not Prometheus series text.
    #[error("couldn't parse labels: {0}")]
    Labels(#[from] LabelParseError),
    /// The request holds no streams at all.
    #[error("error at least one valid stream is required for ingestion")]
    NoStreams,
    /// Some streams or entries were invalid and dropped; the valid rest was accepted. The text
    /// is Loki's grouped list of reasons (see [`crate::validate::Validated::dropped`]).
    #[error("{0}")]
    Dropped(String),
}

impl IngestError {
    /// The HTTP status Loki answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::BodyTooLarge { .. } | IngestError::LabelsTooLarge { .. } => 413,
            IngestError::NoStreams => 422,
            IngestError::UnsupportedEncoding(_)
            | IngestError::DecompressedTooLarge { .. }
            | IngestError::Decode(_)
            | IngestError::Labels(_)
            | IngestError::Dropped(_) => 400,
        }
    }
}

/// Go's `%q`, which is how Loki prints the rejected header value.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    // Writing into a String cannot fail.
    let _ = parquetry_model::labels::write_quoted(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_statuses() {
        let e = IngestError::UnsupportedEncoding("br".into());
        assert_eq!(e.to_string(), r#"Content-Encoding "br" not supported"#);
        assert_eq!(e.status(), 400);
        let e = IngestError::BodyTooLarge { size: 11, max: 10 };
        assert_eq!(
            e.to_string(),
            "request body too large: message size too large than max (11 vs 10)"
        );
        assert_eq!(e.status(), 413);
        let e = IngestError::DecompressedTooLarge { size: 11, max: 10 };
        assert_eq!(
            e.to_string(),
            "decompressed message size too large than max (11 vs 10)"
        );
        assert_eq!(e.status(), 400);
        assert_eq!(
            IngestError::LabelsTooLarge { size: 2, max: 1 }.status(),
            413
        );
        let e = IngestError::NoStreams;
        assert_eq!(
            e.to_string(),
            "error at least one valid stream is required for ingestion"
        );
        assert_eq!(e.status(), 422);
        assert_eq!(IngestError::Dropped("x".into()).status(), 400);
        assert_eq!(IngestError::Decode("x".into()).status(), 400);
    }
}
