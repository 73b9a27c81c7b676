//! Turning a push body into a [`PushRequest`]: size limits, `Content-Encoding`, the choice
//! between JSON and snappy-compressed protobuf, and protobuf conversion (JSON bodies are
//! parsed in the private `json` module).
//!
//! Every decompression is streamed and bounded, so a small hostile body (a "zip bomb") costs
//! at most about `max_decompressed_size` bytes and the time to produce them, however far it
//! would inflate:
//!
//! * gzip and deflate output is read through `Read::take(limit + 1)` into a buffer that grows
//!   by doubling but never past the limit (for protobuf, whose inflated bytes are still
//!   snappy-compressed, never past `max_recv_msg_size` either, as in Loki). JSON that outgrows
//!   [`JSON_BUFFERED_MAX`] has its syntax checked from the stream while it is buffered, so
//!   garbage fails at its first bad byte rather than after filling the buffer.
//! * Framed snappy is read like gzip.
//! * Raw snappy declares its length up front; that is checked against the limit and against
//!   what the input could possibly expand to before anything is allocated.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufReader, Read};

use bytes::Bytes;
use parquetry_model::ByteString;
use parquetry_model::config::DistributorConfig;
use serde::de::IgnoredAny;

use crate::error::IngestError;
use crate::json::{self, Version};
use crate::proto::lenient;
use crate::push::{Entry, InvalidUtf8, PushRequest, PushStream};

/// The size limits applied while decoding a body (Loki's `distributor` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest body accepted as received, before any decompression.
    pub max_recv_msg_size: u64,
    /// Largest body accepted after decompression (gzip, deflate or snappy). 0 means 50 ×
    /// `max_recv_msg_size`, as in Loki; see [`DecodeLimits::decompressed_limit`].
    pub max_decompressed_size: u64,
}

impl DecodeLimits {
    /// The decompressed-size limit in force. Loki's config validation turns an unset (0)
    /// `max_decompressed_size` into 50 × `max_recv_msg_size`, so a 0 here must not mean
    /// "unlimited" (a bomb) nor "nothing" (every compressed push refused).
    pub fn decompressed_limit(&self) -> u64 {
        if self.max_decompressed_size == 0 {
            self.max_recv_msg_size.saturating_mul(50)
        } else {
            self.max_decompressed_size
        }
    }

    /// Refuses a body larger than `max_recv_msg_size` as received.
    pub fn check_received(&self, body: &[u8]) -> Result<(), IngestError> {
        if body.len() as u64 > self.max_recv_msg_size {
            return Err(IngestError::BodyTooLarge {
                size: body.len() as u64,
                max: self.max_recv_msg_size,
            });
        }
        Ok(())
    }
}

impl From<&DistributorConfig> for DecodeLimits {
    fn from(c: &DistributorConfig) -> Self {
        DecodeLimits {
            max_recv_msg_size: c.max_recv_msg_size.0,
            max_decompressed_size: c.max_decompressed_size.0,
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::from(&DistributorConfig::default())
    }
}

/// The first bytes of a framed (streaming-format) snappy body: the stream identifier chunk.
const SNAPPY_FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Compressed JSON up to this size after decompression is just buffered and parsed. Past it,
/// its syntax is checked as it streams in, an extra pass (serde_json's reader is about three
/// times slower than its slice parser) that agents' batches of a few MiB never pay, and that
/// holds a garbage bomb to this much memory however large the limit.
const JSON_BUFFERED_MAX: u64 = 8 << 20;

/// Raw snappy expands at most 64 bytes per 3-byte copy tag, under 22 per input byte. A header
/// declaring more than that is corrupt, and is refused before the decoder allocates for it.
const SNAPPY_MAX_EXPANSION: u64 = 22;

/// Read size while buffering a decompressed stream.
const READ_CHUNK: usize = 64 << 10;

/// Decodes a push body.
///
/// * `content_type`, `content_encoding`: the request headers, if present.
/// * `v1_path`: whether the request path contains `/loki/api/v1`; selects v1 over v0 JSON.
///
/// `Content-Encoding` must be absent, empty, `snappy`, `gzip` or `deflate` (raw DEFLATE, or
/// zlib-wrapped, which is sniffed). A media type of `application/json` selects JSON; anything
/// else, including no `Content-Type` at all, selects snappy-compressed protobuf (block format,
/// or the framed format, recognised by its stream identifier).
///
/// Protobuf text fields that are not valid UTF-8 are repaired, counted in
/// [`PushRequest::invalid_utf8`] and logged once per push.
pub fn decode_push(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    v1_path: bool,
    limits: &DecodeLimits,
) -> Result<PushRequest, IngestError> {
    limits.check_received(body)?;
    let format = if is_json(content_type) {
        Format::Json(if v1_path { Version::V1 } else { Version::V0 })
    } else {
        Format::Protobuf
    };
    match content_encoding.unwrap_or("") {
        "" => decode_uncompressed(body, false, format, limits),
        "snappy" => decode_uncompressed(body, true, format, limits),
        "gzip" => decode_compressed(Inflate::Gzip, body, format, limits)
            .map_err(|f| f.into_error(Inflate::Gzip)),
        "deflate" => decode_deflate(body, format, limits),
        other => Err(IngestError::UnsupportedEncoding(other.to_string())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json(Version),
    Protobuf,
}

/// Whether the media type, parameters stripped, is `application/json` (case-insensitive).
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mt| mt.trim().eq_ignore_ascii_case("application/json"))
}

/// A body without gzip or deflate: it is at most `max_recv_msg_size` already, and only the
/// snappy step can grow it.
fn decode_uncompressed(
    body: &[u8],
    snappy_encoding: bool,
    format: Format,
    limits: &DecodeLimits,
) -> Result<PushRequest, IngestError> {
    let max = limits.decompressed_limit();
    match format {
        Format::Json(version) => {
            let body = unsnappy_json(body, snappy_encoding, max)?;
            json::decode_slice(&body, version).map_err(|e| json::parse_error(&e, version))
        }
        Format::Protobuf => decode_protobuf(unsnappy(body, max)?.into()),
    }
}

/// Loki treats `Content-Encoding: snappy` as a no-op for JSON, so plain JSON must pass. A body
/// that cannot be JSON but is snappy data is decompressed as a courtesy to misconfigured
/// shippers; anything else goes to the JSON parser unchanged and fails there with its message.
fn unsnappy_json(
    body: &[u8],
    snappy_encoding: bool,
    max: u64,
) -> Result<Cow<'_, [u8]>, IngestError> {
    let looks_like_json = body
        .iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_none_or(|&c| c == b'{');
    if snappy_encoding && !looks_like_json {
        match unsnappy(body, max) {
            Ok(v) => return Ok(Cow::Owned(v)),
            Err(e @ IngestError::DecompressedTooLarge { .. }) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(Cow::Borrowed(body))
}

/// The decompressors of `Content-Encoding: gzip` and `deflate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inflate {
    Gzip,
    Zlib,
    Deflate,
}

impl Inflate {
    fn name(self) -> &'static str {
        match self {
            Inflate::Gzip => "gzip",
            Inflate::Zlib => "zlib",
            Inflate::Deflate => "deflate",
        }
    }

    /// A decompressing reader over `body`. Each keeps a fixed window and buffers, whatever the
    /// stream claims about itself.
    fn reader(self, body: &[u8]) -> Box<dyn Read + '_> {
        match self {
            // Multi-member, like Go's gzip reader: concatenated gzip files are one body.
            Inflate::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(body)),
            Inflate::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(body)),
            Inflate::Deflate => Box::new(flate2::bufread::DeflateDecoder::new(body)),
        }
    }
}

/// Why a compressed body failed: the decompressor itself, or what came out of it.
#[derive(Debug)]
enum Failure {
    Inflate(io::Error),
    Body(IngestError),
}

impl Failure {
    fn into_error(self, how: Inflate) -> IngestError {
        match self {
            Failure::Inflate(e) => {
                IngestError::Decode(format!("failed to decompress {} body: {e}", how.name()))
            }
            Failure::Body(e) => e,
        }
    }

    fn is_size_limit(&self) -> bool {
        matches!(
            self,
            Failure::Body(IngestError::BodyTooLarge { .. })
                | Failure::Body(IngestError::DecompressedTooLarge { .. })
        )
    }
}

impl From<IngestError> for Failure {
    fn from(e: IngestError) -> Self {
        Failure::Body(e)
    }
}

/// Go's `compress/flate` (what Loki uses) reads raw DEFLATE, but many HTTP clients send zlib
/// for `deflate`, so a valid zlib header selects zlib, falling back to raw if that fails.
fn decode_deflate(
    body: &[u8],
    format: Format,
    limits: &DecodeLimits,
) -> Result<PushRequest, IngestError> {
    if has_zlib_header(body) {
        let zlib_failure = match decode_compressed(Inflate::Zlib, body, format, limits) {
            Ok(r) => return Ok(r),
            Err(f) if f.is_size_limit() => return Err(f.into_error(Inflate::Zlib)),
            Err(f) => f,
        };
        return match decode_compressed(Inflate::Deflate, body, format, limits) {
            Ok(r) => Ok(r),
            Err(raw_failure) => Err(match zlib_failure {
                // zlib inflated fine up to the content's own error: that error is the answer,
                // not raw DEFLATE's complaint about a zlib header.
                Failure::Body(e) => e,
                Failure::Inflate(_) => raw_failure.into_error(Inflate::Deflate),
            }),
        };
    }
    decode_compressed(Inflate::Deflate, body, format, limits)
        .map_err(|f| f.into_error(Inflate::Deflate))
}

/// RFC 1950: method 8 (deflate), window ≤ 32 KiB, no preset dictionary, header checksum.
fn has_zlib_header(b: &[u8]) -> bool {
    match b {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && flg & 0x20 == 0
                && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

fn decode_compressed(
    how: Inflate,
    body: &[u8],
    format: Format,
    limits: &DecodeLimits,
) -> Result<PushRequest, Failure> {
    decode_inflated(how.reader(body).as_mut(), format, limits)
}

/// Decodes what a decompressor produces, reading no more of it than the limits allow.
fn decode_inflated(
    r: &mut dyn Read,
    format: Format,
    limits: &DecodeLimits,
) -> Result<PushRequest, Failure> {
    let max = limits.decompressed_limit();
    match format {
        Format::Json(version) => decode_json_stream(r, version, max),
        Format::Protobuf => {
            // Loki reads the inflated bytes as the snappy-compressed message, which may be at
            // most `max_recv_msg_size` (413 `message size too large`); only its snappy
            // step is held to the decompressed limit. Whichever limit is smaller stops the read.
            let recv = limits.max_recv_msg_size;
            let cap = recv.min(max);
            let inflated = read_capped(r, cap.saturating_add(1)).map_err(Failure::Inflate)?;
            let size = inflated.len() as u64;
            if size > cap {
                return Err(Failure::Body(if recv <= max {
                    IngestError::BodyTooLarge { size, max: recv }
                } else {
                    IngestError::DecompressedTooLarge { size, max }
                }));
            }
            Ok(decode_protobuf(unsnappy(&inflated, max)?.into())?)
        }
    }
}

/// Parses JSON out of a decompressor, stopping it one byte past `max`. The body is always
/// parsed from a buffer (much faster than serde_json's reader); past [`JSON_BUFFERED_MAX`] its
/// syntax is first checked from the stream while it is buffered, so garbage fails at its first
/// bad byte, as in Loki, whose JSON decoder reads the decompressor directly.
fn decode_json_stream(
    r: &mut dyn Read,
    version: Version,
    max: u64,
) -> Result<PushRequest, Failure> {
    let stop = max.saturating_add(1);
    let cap = usize::try_from(stop).unwrap_or(usize::MAX);
    let mut limited = r.take(stop);
    let too_large = |size: usize| {
        Failure::Body(IngestError::DecompressedTooLarge {
            size: size as u64,
            max,
        })
    };
    let parse = |buf: &[u8]| {
        json::decode_slice(buf, version).map_err(|e| Failure::Body(json::parse_error(&e, version)))
    };

    let head_cap = usize::try_from(JSON_BUFFERED_MAX).map_or(cap, |h| h.min(cap));
    let head = read_capped(&mut limited, head_cap as u64).map_err(Failure::Inflate)?;
    if head.len() < head_cap {
        return parse(&head);
    }
    if head.len() == cap {
        return Err(too_large(cap));
    }

    let mut buffering = Buffering {
        inner: &mut limited,
        buf: head,
        pos: 0,
        cap,
    };
    // `IgnoredAny` keeps nothing, not even long strings, so this check costs no memory beyond
    // the buffer; it reads on to the end of the input to refuse trailing garbage.
    let checked = serde_json::from_reader::<_, IgnoredAny>(BufReader::with_capacity(
        READ_CHUNK,
        &mut buffering,
    ));
    let buf = buffering.buf;
    if buf.len() == cap {
        return Err(too_large(cap));
    }
    match checked {
        Ok(_) => parse(&buf),
        Err(e) if e.is_io() => Err(Failure::Inflate(io::Error::from(e))),
        // What was buffered runs past the offending byte, so parsing it reports the error a
        // whole-body parse would (an earlier content error, if any, comes first there too).
        Err(e) => Err(match parse(&buf) {
            Err(first) => first,
            Ok(_) => Failure::Body(json::parse_error(&e, version)),
        }),
    }
}

/// A reader that hands out a growing buffer and refills it from `inner`, keeping every byte,
/// so that one pass both checks a body and buffers it.
struct Buffering<'a> {
    inner: &'a mut dyn Read,
    buf: Vec<u8>,
    /// How much of `buf` has been handed out.
    pos: usize,
    /// The most `buf` may hold.
    cap: usize,
}

impl Read for Buffering<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() && read_more(self.inner, &mut self.buf, self.cap)? == 0 {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads `r` to its end or until `cap` bytes, whichever comes first.
fn read_capped(r: &mut dyn Read, cap: u64) -> io::Result<Vec<u8>> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    while read_more(r, &mut out, cap)? > 0 {}
    Ok(out)
}

/// Appends one read of `r` to `buf`, at most [`READ_CHUNK`] bytes and never past `cap`, and
/// returns how many bytes came (0 at the end of `r`, or once `buf` is full). `buf` doubles as
/// it fills but never reserves past `cap`, and nothing is reserved from a size the input
/// claims, so memory follows what was actually produced.
fn read_more(r: &mut dyn Read, buf: &mut Vec<u8>, cap: usize) -> io::Result<usize> {
    let start = buf.len();
    let want = cap.saturating_sub(start).min(READ_CHUNK);
    if want == 0 {
        return Ok(0);
    }
    if buf.capacity() - start < want {
        let target = buf.capacity().saturating_mul(2).max(start + want).min(cap);
        buf.reserve_exact(target - start);
    }
    buf.resize(start + want, 0);
    loop {
        match r.read(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
}

/// Undoes the snappy compression of a protobuf body: framed if it starts with the stream
/// identifier, block format otherwise. The output is held to `max` bytes.
fn unsnappy(body: &[u8], max: u64) -> Result<Vec<u8>, IngestError> {
    if body.starts_with(SNAPPY_FRAMED_MAGIC) {
        let mut r = snap::read::FrameDecoder::new(body);
        let out = read_capped(&mut r, max.saturating_add(1)).map_err(|e| {
            IngestError::Decode(format!("failed to decompress framed snappy body: {e}"))
        })?;
        if out.len() as u64 > max {
            return Err(IngestError::DecompressedTooLarge {
                size: out.len() as u64,
                max,
            });
        }
        return Ok(out);
    }
    unsnappy_block(body, max)
}

/// Decompresses a block-format snappy `body`, held to `max` bytes.
fn unsnappy_block(body: &[u8], max: u64) -> Result<Vec<u8>, IngestError> {
    let len = snap::raw::decompress_len(body).map_err(|e| snappy_error(&e))? as u64;
    // Loki's check, reporting the declared size as Loki does.
    if len > max {
        return Err(IngestError::DecompressedTooLarge { size: len, max });
    }
    // The output is allocated at the declared length before a byte of data is read, so a
    // forged header under the limit would still cost up to 4 GiB; no valid body can claim
    // that much.
    let possible = (body.len() as u64).saturating_mul(SNAPPY_MAX_EXPANSION);
    if len > possible {
        return Err(snappy_error(format_args!(
            "snappy: corrupt input (header declares {len} decompressed bytes, more than {} \
             compressed bytes can hold)",
            body.len()
        )));
    }
    let mut out = vec![0; len as usize];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut out)
        .map_err(|e| snappy_error(&e))?;
    out.truncate(n);
    Ok(out)
}

fn snappy_error(e: impl fmt::Display) -> IngestError {
    IngestError::Decode(format!(
        "failed to decode push body as snappy-compressed protobuf ({e}); protobuf bodies must \
         be snappy-compressed, and JSON bodies need Content-Type: application/json"
    ))
}

/// Decodes a protobuf `PushRequest`. Lines and metadata come out as slices of `raw` (valid
/// UTF-8 is checked, not copied): the entries of a push share its one buffer, where a `String`
/// per field cost an allocation, a copy and a free on another thread for each.
fn decode_protobuf(raw: Bytes) -> Result<PushRequest, IngestError> {
    let msg = <lenient::PushRequest as prost::Message>::decode(raw)
        .map_err(|e| IngestError::Decode(format!("failed to decode protobuf PushRequest: {e}")))?;
    let mut invalid = InvalidUtf8::default();
    // The first stream with a repaired field, for the log line.
    let mut first_invalid: Option<String> = None;
    let mut streams = Vec::with_capacity(msg.streams.len());
    for (si, s) in msg.streams.into_iter().enumerate() {
        let before = invalid.total();
        let labels = repair_utf8(s.labels, &mut invalid.labels);
        let mut entries = Vec::with_capacity(s.entries.len());
        for (ei, e) in s.entries.into_iter().enumerate() {
            let ts_ns = proto_ts_ns(e.timestamp, si, ei)?;
            // One slot more than sent: validation appends `detected_level` to nearly every
            // entry.
            let mut structured_metadata = Vec::with_capacity(e.structured_metadata.len() + 1);
            for p in e.structured_metadata {
                structured_metadata.push((
                    repair_text(p.name, &mut invalid.structured_metadata),
                    repair_text(p.value, &mut invalid.structured_metadata),
                ));
            }
            entries.push(Entry {
                ts_ns,
                line: repair_text(e.line, &mut invalid.lines),
                structured_metadata,
            });
        }
        if first_invalid.is_none() && invalid.total() > before {
            first_invalid = Some(labels.clone());
        }
        streams.push(PushStream { labels, entries });
    }
    if let Some(stream) = first_invalid {
        tracing::warn!(
            stream = %clip(&stream, 256),
            labels = invalid.labels,
            lines = invalid.lines,
            structured_metadata = invalid.structured_metadata,
            "protobuf push held invalid UTF-8; each invalid byte was replaced with U+FFFD"
        );
    }
    Ok(PushRequest {
        streams,
        invalid_utf8: invalid,
    })
}

/// [`repair_utf8`] for a field that stays in the body's buffer when it is valid.
fn repair_text(v: Bytes, count: &mut usize) -> ByteString {
    // The clone is a reference count: the failed check consumes its argument.
    match ByteString::try_from(v.clone()) {
        Ok(s) => s,
        Err(_) => {
            *count += 1;
            repair_lossy(&v).into()
        }
    }
}

/// Makes protobuf text valid UTF-8, counting the fields that needed it.
///
/// Loki's gogo-proto structs take strings unchecked, so what it does with invalid bytes is seen
/// at the edges, and this reproduces each edge: its query API encodes lines with jsoniter's
/// HTML-escaping writer, which prints every byte that does not start a valid sequence as
/// `\ufffd` (one per byte, as Go decodes, unlike Rust's `from_utf8_lossy`, which merges a
/// broken sequence into one); its distributor turns U+FFFD in structured metadata values into
/// a space (done in [`crate::validate()`], for every format, as there); and its label parser,
/// Prometheus', refuses U+FFFD in a stream's labels with `invalid UTF-8 rune` (done in
/// [`crate::labels::parse_labels`]). Storing the raw bytes instead would put invalid UTF-8 in
/// Parquet string columns, which readers may refuse.
fn repair_utf8(v: Vec<u8>, count: &mut usize) -> String {
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => {
            *count += 1;
            repair_lossy(e.as_bytes())
        }
    }
}

/// `b` with each byte that does not start a valid UTF-8 sequence replaced by U+FFFD.
fn repair_lossy(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    out
}

/// At most `max` bytes of `s`, cut at a character boundary, for log lines.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `0001-01-01T00:00:00Z` in Unix seconds: the lower bound of a valid protobuf timestamp.
const MIN_PROTO_SECONDS: i64 = -62_135_596_800;
/// `10000-01-01T00:00:00Z` in Unix seconds: the exclusive upper bound.
const MAX_PROTO_SECONDS: i64 = 253_402_300_800;

/// A missing timestamp is the zero value (the epoch), as in Loki's non-nullable Go field.
fn proto_ts_ns(
    ts: Option<lenient::Timestamp>,
    stream: usize,
    entry: usize,
) -> Result<i64, IngestError> {
    let ts = ts.unwrap_or_default();
    if !(MIN_PROTO_SECONDS..MAX_PROTO_SECONDS).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(IngestError::Decode(format!(
            "invalid timestamp in stream {stream} entry {entry}: seconds {} nanos {}; seconds must \
             lie in [0001-01-01, 10000-01-01) and nanos in [0, 1000000000)",
            ts.seconds, ts.nanos
        )));
    }
    Ok(ts
        .seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos)))
        .unwrap_or(if ts.seconds < 0 { i64::MIN } else { i64::MAX }))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::Write;
    use std::rc::Rc;

    use super::*;
    use crate::proto;
    use prost::Message;

    /// One stream `{a="b"}` with one entry at 1700000000s + 5ns, line `hi`, metadata `k=v`,
    /// encoded by hand from the field numbers (tag byte = field << 3 | wire type).
    const GOLDEN: &[u8] = &[
        0x0a, 0x21, // PushRequest.streams (1, LEN) 33 bytes
        0x0a, 0x07, b'{', b'a', b'=', b'"', b'b', b'"', b'}', // StreamAdapter.labels (1, LEN)
        0x12, 0x16, // StreamAdapter.entries (2, LEN) 22 bytes
        0x0a, 0x08, // EntryAdapter.timestamp (1, LEN) 8 bytes
        0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06, // Timestamp.seconds (1, VARINT) 1700000000
        0x10, 0x05, // Timestamp.nanos (2, VARINT) 5
        0x12, 0x02, b'h', b'i', // EntryAdapter.line (2, LEN)
        0x1a, 0x06, // EntryAdapter.structuredMetadata (3, LEN) 6 bytes
        0x0a, 0x01, b'k', // LabelPairAdapter.name (1, LEN)
        0x12, 0x01, b'v', // LabelPairAdapter.value (2, LEN)
    ];

    fn golden_model() -> PushRequest {
        PushRequest {
            streams: vec![PushStream {
                labels: r#"{a="b"}"#.into(),
                entries: vec![Entry {
                    ts_ns: 1_700_000_000_000_000_005,
                    line: "hi".into(),
                    structured_metadata: vec![("k".into(), "v".into())],
                }],
            }],
            ..PushRequest::default()
        }
    }

    fn golden_struct() -> proto::PushRequest {
        proto::PushRequest {
            streams: vec![proto::StreamAdapter {
                labels: r#"{a="b"}"#.into(),
                entries: vec![proto::EntryAdapter {
                    timestamp: Some(proto::Timestamp::from_unix_nanos(1_700_000_000_000_000_005)),
                    line: "hi".into(),
                    structured_metadata: vec![proto::LabelPairAdapter {
                        name: "k".into(),
                        value: "v".into(),
                    }],
                    parsed: vec![],
                }],
                hash: 0,
            }],
            format: String::new(),
        }
    }

    fn snappy(b: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(b).unwrap()
    }

    fn framed(b: &[u8]) -> Vec<u8> {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(b).unwrap();
        w.into_inner().unwrap()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        w.write_all(b).unwrap();
        w.finish().unwrap()
    }

    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(b).unwrap();
        w.finish().unwrap()
    }

    fn raw_deflate(b: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(b).unwrap();
        w.finish().unwrap()
    }

    const PB: Option<&str> = Some("application/x-protobuf");
    const JSON: Option<&str> = Some("application/json");

    fn dec(body: &[u8], ct: Option<&str>, ce: Option<&str>) -> Result<PushRequest, IngestError> {
        decode_push(body, ct, ce, true, &DecodeLimits::default())
    }

    fn err(body: &[u8], ct: Option<&str>, ce: Option<&str>) -> (u16, String) {
        let e = dec(body, ct, ce).unwrap_err();
        (e.status(), e.to_string())
    }

    #[test]
    fn golden_bytes_match_the_field_numbers() {
        assert_eq!(golden_struct().encode_to_vec(), GOLDEN);
        assert_eq!(dec(&snappy(GOLDEN), PB, None).unwrap(), golden_model());
        let back = proto::PushRequest::decode(GOLDEN).unwrap();
        assert_eq!(back, golden_struct());
    }

    #[test]
    fn ignored_fields_are_skipped() {
        let mut req = golden_struct();
        req.format = "loki".into();
        req.streams[0].hash = 12345;
        req.streams[0].entries[0].parsed = vec![proto::LabelPairAdapter {
            name: "p".into(),
            value: "q".into(),
        }];
        let body = snappy(&req.encode_to_vec());
        assert_eq!(dec(&body, PB, None).unwrap(), golden_model());
    }

    #[test]
    fn snappy_variants_and_content_types() {
        let raw = snappy(GOLDEN);
        for ct in [
            PB,
            None,
            Some(""),
            Some("text/plain"),
            Some("application/json-seq"),
        ] {
            assert_eq!(dec(&raw, ct, None).unwrap(), golden_model(), "{ct:?}");
        }
        // Vector: protobuf with Content-Encoding: snappy, a no-op before the snappy step.
        assert_eq!(dec(&raw, PB, Some("snappy")).unwrap(), golden_model());
        assert_eq!(dec(&raw, PB, Some("")).unwrap(), golden_model());
        assert_eq!(dec(&framed(GOLDEN), PB, None).unwrap(), golden_model());
        // gzip, then snappy, then protobuf.
        assert_eq!(dec(&gzip(&raw), PB, Some("gzip")).unwrap(), golden_model());
        assert_eq!(
            dec(&zlib(&raw), PB, Some("deflate")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&raw_deflate(&raw), PB, Some("deflate")).unwrap(),
            golden_model()
        );
    }

    #[test]
    fn each_body_decodes_alone_and_its_fields_share_its_buffer() {
        let mut big = golden_struct();
        big.streams[0].entries[0].line = "x".repeat(100_000);
        big.streams[0].labels = "{a=\"a longer label set than the golden one\"}".into();
        let big_model = dec(&snappy(&big.encode_to_vec()), PB, None).unwrap();
        assert_eq!(big_model.streams[0].entries[0].line.len(), 100_000);
        assert_eq!(dec(&snappy(GOLDEN), PB, None).unwrap(), golden_model());
        // A body that fails leaves the next one unharmed.
        let mut broken = snappy(GOLDEN);
        let last = broken.len() - 1;
        broken[last] ^= 0xff;
        let _ = dec(&broken, PB, None);
        assert_eq!(dec(&snappy(GOLDEN), PB, None).unwrap(), golden_model());
        // Lines and metadata are slices of the decompressed body, not copies of their own.
        let decoded = dec(&snappy(GOLDEN), PB, None).unwrap();
        let entries = decoded.streams.iter().flat_map(|s| &s.entries);
        let mut fields = 0;
        for e in entries {
            let metadata = e.structured_metadata.iter().flat_map(|(n, v)| [n, v]);
            for f in std::iter::once(&e.line).chain(metadata) {
                assert!(!f.as_bytes().is_unique(), "{f:?} was copied");
                fields += 1;
            }
        }
        assert!(fields > 2);
    }

    const V1: &str =
        r#"{"streams":[{"stream":{"a":"b"},"values":[["1700000000000000005","hi",{"k":"v"}]]}]}"#;

    #[test]
    fn json_with_every_encoding() {
        for ct in [
            JSON,
            Some("Application/JSON; charset=utf-8"),
            Some(" application/json ;x=y"),
        ] {
            assert_eq!(
                dec(V1.as_bytes(), ct, None).unwrap(),
                golden_model(),
                "{ct:?}"
            );
        }
        assert_eq!(
            dec(&gzip(V1.as_bytes()), JSON, Some("gzip")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&zlib(V1.as_bytes()), JSON, Some("deflate")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&raw_deflate(V1.as_bytes()), JSON, Some("deflate")).unwrap(),
            golden_model()
        );
        // snappy is a no-op for JSON in Loki; snappy-compressed JSON is accepted as a courtesy.
        assert_eq!(
            dec(V1.as_bytes(), JSON, Some("snappy")).unwrap(),
            golden_model()
        );
        assert_eq!(
            dec(&snappy(V1.as_bytes()), JSON, Some("snappy")).unwrap(),
            golden_model()
        );
    }

    #[test]
    fn v1_json_details() {
        let body = r#"{"streams":[
            {"stream":{"app":"web","env":"prod"},"values":[["1","a"],null,["2","b",{"t":"x"},"extra"],["3","c",null]],"unknown":1},
            {"values":null},
            {"stream":{"x.y":"q\"\\","n":"1","n":"2"},"values":[]}
        ],"other":true}"#;
        let r = dec(body.as_bytes(), JSON, None).unwrap();
        assert_eq!(r.streams.len(), 3);
        assert_eq!(r.streams[0].labels, r#"{app="web", env="prod"}"#);
        let e = &r.streams[0].entries;
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].ts_ns, &*e[0].line), (1, "a"));
        assert_eq!(e[1].structured_metadata, vec![("t".into(), "x".into())]);
        assert!(e[2].structured_metadata.is_empty());
        assert_eq!(r.streams[1].labels, "{}");
        assert!(r.streams[1].entries.is_empty());
        // A repeated name keeps its last value; odd names are quoted so they parse back.
        assert_eq!(r.streams[2].labels, r#"{n="2", "x.y"="q\"\\"}"#);
        let l = crate::parse_labels(&r.streams[2].labels).unwrap();
        assert_eq!(l.get("x.y"), Some("q\"\\"));

        assert!(
            dec(br#"{"streams":null}"#, JSON, None)
                .unwrap()
                .streams
                .is_empty()
        );
        assert!(dec(b"{}", JSON, None).unwrap().streams.is_empty());
    }

    #[test]
    fn v1_json_errors() {
        let cases = [
            (
                r#"{"streams":[{"stream":{},"values":[[1700000000000000000,"x"]]}]}"#,
                "invalid type: integer `1700000000000000000`, expected a string holding integer Unix nanoseconds",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1.5","x"]]}]}"#,
                r#"invalid timestamp "1.5": expected a string holding integer Unix nanoseconds"#,
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1",5]]}]}"#,
                "invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1","x",{"k":1}]]}]}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1","x",["k"]]]}]}"#,
                "expected a structured metadata object of string values",
            ),
            (
                r#"{"streams":[{"stream":{"a":1},"values":[]}]}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[["1"]]}]}"#,
                "invalid length 1",
            ),
            (
                r#"{"streams":[{"stream":{},"values":{}}]}"#,
                "expected an array of [timestamp, line] entries",
            ),
            (
                r#"{"streams":[{"stream":{},"values":[{"ts":"1"}]}]}"#,
                "expected an entry array",
            ),
            (
                "{not json",
                "failed to parse push body as v1 JSON: key must be a string at line 1 column 2",
            ),
            (
                "",
                "failed to parse push body as v1 JSON: EOF while parsing a value",
            ),
        ];
        for (body, want) in cases {
            let (status, text) = err(body.as_bytes(), JSON, None);
            assert_eq!(status, 400, "{body}");
            assert!(
                text.starts_with("failed to parse push body as v1 JSON: "),
                "{text}"
            );
            assert!(text.contains(want), "{body}: {text}");
        }
    }

    #[test]
    fn v0_json() {
        let body = r#"{"streams":[{"labels":"{app=\"web\"}","entries":[
            {"ts":"2023-11-14T22:13:20.000000001Z","line":"a"},
            {"ts":"2023-11-14T23:13:20+01:00","line":"b"},
            null]}]}"#;
        let r = decode_push(body.as_bytes(), JSON, None, false, &DecodeLimits::default()).unwrap();
        assert_eq!(r.streams[0].labels, r#"{app="web"}"#);
        let e = &r.streams[0].entries;
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].ts_ns, &*e[0].line), (1_700_000_000_000_000_001, "a"));
        assert_eq!(e[1].ts_ns, 1_700_000_000_000_000_000);

        let bad = r#"{"streams":[{"labels":"{}","entries":[{"ts":"yesterday","line":"a"}]}]}"#;
        let e =
            decode_push(bad.as_bytes(), JSON, None, false, &DecodeLimits::default()).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string().starts_with(
                r#"failed to parse push body as v0 JSON: invalid timestamp "yesterday""#
            ),
            "{e}"
        );
        let missing = r#"{"streams":[{"labels":"{}","entries":[{"line":"a"}]}]}"#;
        let e = decode_push(
            missing.as_bytes(),
            JSON,
            None,
            false,
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `ts`"), "{e}");
    }

    #[test]
    fn unsupported_encoding() {
        assert_eq!(
            err(b"x", PB, Some("br")),
            (400, r#"Content-Encoding "br" not supported"#.into())
        );
        assert_eq!(
            err(b"x", PB, Some("GZIP")),
            (400, r#"Content-Encoding "GZIP" not supported"#.into())
        );
    }

    #[test]
    fn body_size_limit() {
        let limits = DecodeLimits {
            max_recv_msg_size: 10,
            max_decompressed_size: 100,
        };
        let e = decode_push(&[0u8; 11], PB, None, true, &limits).unwrap_err();
        assert_eq!(e.status(), 413);
        assert_eq!(
            e.to_string(),
            "request body too large: message size too large than max (11 vs 10)"
        );
        assert!(decode_push(&snappy(b""), PB, None, true, &limits).is_ok());
    }

    const MIB: usize = 1 << 20;

    /// A body source that counts how much of the body a decompressor pulled, readable after
    /// the decompressor has been dropped.
    struct Counting<'a> {
        inner: &'a [u8],
        read: Rc<Cell<usize>>,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    fn counting(inner: &[u8]) -> (Counting<'_>, Rc<Cell<usize>>) {
        let read = Rc::new(Cell::new(0));
        (
            Counting {
                inner,
                read: read.clone(),
            },
            read,
        )
    }

    /// `n` MiB of zeros as `n` concatenated gzip members of 1 MiB, about 1 KiB each.
    fn gzip_zeros(n: usize) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        w.write_all(&vec![0u8; MIB]).unwrap();
        w.finish().unwrap().repeat(n)
    }

    /// `n` MiB of zeros as raw DEFLATE, or zlib, without compressing `n` MiB: after a sync
    /// flush the next 1 MiB compresses to blocks that only copy earlier zeros, so repeating
    /// them stays valid.
    fn deflate_zeros(n: usize, zlib: bool) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress};
        let mut c = Compress::new(Compression::best(), false);
        let zeros = vec![0u8; MIB];
        let mut step = |input: &[u8], flush| {
            let before = c.total_in();
            let mut out = Vec::with_capacity(MIB);
            c.compress_vec(input, &mut out, flush).unwrap();
            assert_eq!(c.total_in() - before, input.len() as u64);
            out
        };
        let first = step(&zeros, FlushCompress::Sync);
        let block = step(&zeros, FlushCompress::Sync);
        let tail = step(&[], FlushCompress::Finish);
        let mut out = if zlib { vec![0x78, 0x01] } else { vec![] };
        out.extend_from_slice(&first);
        for _ in 1..n {
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&tail);
        if zlib {
            // Adler-32 of zeros: the byte sum stays 1, the sum of sums grows by 1 per byte.
            let sums = (n * MIB % 65_521) as u32;
            out.extend_from_slice(&(sums << 16 | 1).to_be_bytes());
        }
        out
    }

    /// A valid v1 prefix opening a line that `n` MiB of `a` then fill: JSON that only the
    /// size limit can stop.
    fn gzip_string_bomb(n: usize) -> Vec<u8> {
        let mut out = gzip(br#"{"streams":[{"stream":{"app":"bomb"},"values":[["1",""#);
        out.extend(gzip(&vec![b'a'; MIB]).repeat(n));
        out
    }

    fn limits(max_decompressed_size: usize) -> DecodeLimits {
        DecodeLimits {
            max_recv_msg_size: 100 << 20,
            max_decompressed_size: max_decompressed_size as u64,
        }
    }

    fn too_large(size: usize, max: usize) -> String {
        format!("decompressed message size too large than max ({size} vs {max})")
    }

    #[test]
    fn limits_default_to_the_configuration_defaults() {
        let d = DecodeLimits::default();
        assert_eq!(d.max_recv_msg_size, 104_857_600);
        assert_eq!(d.max_decompressed_size, 104_857_600);
        assert_eq!(d.decompressed_limit(), 104_857_600);
        let unset = DecodeLimits {
            max_recv_msg_size: 10,
            max_decompressed_size: 0,
        };
        assert_eq!(unset.decompressed_limit(), 500);
    }

    #[test]
    fn bomb_builders_inflate_to_zeros() {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&gzip_zeros(3)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.len() == 3 * MIB && out.iter().all(|&b| b == 0));
        out.clear();
        flate2::read::DeflateDecoder::new(&deflate_zeros(3, false)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.len() == 3 * MIB && out.iter().all(|&b| b == 0));
        out.clear();
        flate2::read::ZlibDecoder::new(&deflate_zeros(3, true)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.len() == 3 * MIB && out.iter().all(|&b| b == 0));
        assert!(gzip_zeros(1024).len() < 2 * MIB);
        assert!(deflate_zeros(1024, true).len() < 2 * MIB);
    }

    #[test]
    fn gzip_bomb_stops_one_byte_past_the_limit() {
        // 1 GiB of zeros in about 1 MB. The decoder must stop one byte past the 1 MiB limit,
        // having pulled a sliver of the body through the decompressor, whatever the format.
        let bomb = gzip_zeros(1024);
        for format in [Format::Json(Version::V1), Format::Protobuf] {
            let (src, read) = counting(&bomb);
            let mut r = flate2::read::MultiGzDecoder::new(src);
            let e = decode_inflated(&mut r, format, &limits(MIB))
                .unwrap_err()
                .into_error(Inflate::Gzip);
            assert_eq!((e.status(), e.to_string()), (400, too_large(MIB + 1, MIB)));
            assert!(
                read.get() * 10 < bomb.len(),
                "{format:?}: read {} of {} bytes",
                read.get(),
                bomb.len()
            );
        }
        let e = decode_push(&bomb, JSON, Some("gzip"), true, &limits(MIB)).unwrap_err();
        assert_eq!((e.status(), e.to_string()), (400, too_large(MIB + 1, MIB)));
    }

    #[test]
    fn deflate_bombs_stop_one_byte_past_the_limit() {
        for zlib in [false, true] {
            let bomb = deflate_zeros(1024, zlib);
            for format in [Format::Json(Version::V1), Format::Protobuf] {
                let (src, read) = counting(&bomb);
                let mut r: Box<dyn Read> = if zlib {
                    Box::new(flate2::read::ZlibDecoder::new(src))
                } else {
                    Box::new(flate2::read::DeflateDecoder::new(src))
                };
                let e = decode_inflated(r.as_mut(), format, &limits(MIB))
                    .unwrap_err()
                    .into_error(Inflate::Deflate);
                assert_eq!(e.to_string(), too_large(MIB + 1, MIB), "zlib {zlib}");
                assert!(
                    read.get() * 10 < bomb.len(),
                    "zlib {zlib} {format:?}: read {} of {} bytes",
                    read.get(),
                    bomb.len()
                );
            }
            for ct in [PB, JSON] {
                let e = decode_push(&bomb, ct, Some("deflate"), true, &limits(MIB)).unwrap_err();
                assert_eq!((e.status(), e.to_string()), (400, too_large(MIB + 1, MIB)));
            }
        }
    }

    #[test]
    fn json_bombs_past_the_buffer_are_parsed_from_the_stream() {
        // Under Loki's default limit a zero bomb is far from any size error, but it is garbage
        // from its first byte: once it outgrows the buffer the parser reads it from the stream
        // and fails there, a few MiB into a GiB.
        let bomb = gzip_zeros(1024);
        let (src, read) = counting(&bomb);
        let mut r = flate2::read::MultiGzDecoder::new(src);
        let e = decode_inflated(&mut r, Format::Json(Version::V1), &DecodeLimits::default())
            .unwrap_err()
            .into_error(Inflate::Gzip);
        assert_eq!(
            (e.status(), e.to_string()),
            (
                400,
                "failed to parse push body as v1 JSON: expected value at line 1 column 1".into()
            )
        );
        assert!(read.get() * 10 < bomb.len(), "read {}", read.get());

        // A large body's errors read as a small body's: the first error, with its position.
        let big_line = "x".repeat(JSON_BUFFERED_MAX as usize);
        for body in [
            format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["1","{big_line}"]]}}]}} x"#),
            format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["1","{big_line}"]]}}"#),
            format!(r#"{{"streams":[{{"stream":{{"a":1}},"values":[["1","{big_line}"]]}}]}} x"#),
        ] {
            let plain = dec(body.as_bytes(), JSON, None).unwrap_err().to_string();
            let e = dec(&gzip(body.as_bytes()), JSON, Some("gzip")).unwrap_err();
            assert_eq!((e.status(), e.to_string()), (400, plain));
        }

        // Valid JSON holding one endless line: only the limit stops it, past the buffer too.
        let limit = 2 * JSON_BUFFERED_MAX as usize;
        let bomb = gzip_string_bomb(64);
        let e = decode_push(&bomb, JSON, Some("gzip"), true, &limits(limit)).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (400, too_large(limit + 1, limit))
        );
    }

    #[test]
    fn inflated_protobuf_is_held_to_max_recv_msg_size() {
        // Loki reads what gzip yields as the snappy-compressed message, which is held to
        // max_recv_msg_size (and a 0 decompressed limit means 50 times that).
        let limits = DecodeLimits {
            max_recv_msg_size: MIB as u64,
            max_decompressed_size: 0,
        };
        let e = decode_push(&gzip_zeros(64), PB, Some("gzip"), true, &limits).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (
                413,
                "request body too large: message size too large than max (1048577 vs 1048576)"
                    .into()
            )
        );
    }

    #[test]
    fn framed_snappy_bomb_stops_one_byte_past_the_limit() {
        let bomb = framed(&vec![0u8; 64 * MIB]);
        let e = decode_push(&bomb, PB, None, true, &limits(MIB)).unwrap_err();
        assert_eq!((e.status(), e.to_string()), (400, too_large(MIB + 1, MIB)));
        let e = decode_push(&bomb, JSON, Some("snappy"), true, &limits(MIB)).unwrap_err();
        assert_eq!(e.to_string(), too_large(MIB + 1, MIB));
    }

    #[test]
    fn raw_snappy_headers_are_checked_before_allocating() {
        // Over the limit: Loki's message, with the size the header declares.
        let e = decode_push(
            &[0x80, 0x80, 0x80, 0x80, 0x04],
            PB,
            None,
            true,
            &limits(1000),
        )
        .unwrap_err();
        assert_eq!((e.status(), e.to_string()), (400, too_large(1 << 30, 1000)));
        let e = decode_push(&snappy(&[0u8; 5000]), PB, None, true, &limits(1000)).unwrap_err();
        assert_eq!(e.to_string(), too_large(5000, 1000));
        // Under Loki's 5000 MiB limit, almost 4 GiB declared by five bytes: impossible, so
        // refused as corrupt without the decoder's up-front allocation.
        let e = decode_push(
            &[0xfe, 0xff, 0xff, 0xff, 0x0f],
            PB,
            None,
            true,
            &limits(5000 << 20),
        )
        .unwrap_err();
        let (s, t) = (e.status(), e.to_string());
        assert_eq!(s, 400);
        assert!(
            t.starts_with(
                "failed to decode push body as snappy-compressed protobuf (snappy: corrupt input \
                 (header declares 4294967294 decompressed bytes, more than 5 compressed bytes can \
                 hold)); "
            ),
            "{t}"
        );
        // The bound sits exactly at 22 bytes out per byte in: 64 bytes may declare 1408.
        let body = |declared: u16| {
            let mut b = vec![0x80 | (declared & 0x7f) as u8, (declared >> 7) as u8];
            b.resize(64, 0);
            b
        };
        let (_, t) = err(&body(1409), PB, None);
        assert!(t.contains("header declares 1409 decompressed bytes"), "{t}");
        let (_, t) = err(&body(1408), PB, None);
        assert!(!t.contains("header declares"), "{t}");
        // Real snappy's best case stays under the bound.
        let zeros = snappy(&vec![0u8; 4 * MIB]);
        assert!(zeros.len() as u64 * SNAPPY_MAX_EXPANSION >= 4 * MIB as u64);
        assert_eq!(
            dec(&zeros, PB, None).unwrap_err().to_string(),
            "failed to decode protobuf PushRequest: failed to decode Protobuf message: invalid tag \
             value: 0"
        );
    }

    #[test]
    fn bodies_right_at_the_limit_pass() {
        let json_body = |line_len: usize| {
            format!(
                r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["1","{}"]]}}]}}"#,
                "x".repeat(line_len)
            )
            .into_bytes()
        };
        // Buffered and streamed JSON.
        for line_len in [1000, JSON_BUFFERED_MAX as usize + 1000] {
            let body = json_body(line_len);
            let n = body.len();
            for (enc, compressed) in [
                ("gzip", gzip(&body)),
                ("deflate", zlib(&body)),
                ("deflate", raw_deflate(&body)),
            ] {
                let r = decode_push(&compressed, JSON, Some(enc), true, &limits(n)).unwrap();
                assert_eq!(r.streams[0].entries[0].line.len(), line_len);
                let e =
                    decode_push(&compressed, JSON, Some(enc), true, &limits(n - 1)).unwrap_err();
                assert_eq!(e.to_string(), too_large(n, n - 1), "{enc} {line_len}");
            }
        }
        // Protobuf: the limit is on the protobuf's own size, whatever wraps it.
        let mut req = golden_struct();
        req.streams[0].entries[0].line = "x".repeat(100_000);
        let raw = req.encode_to_vec();
        let n = raw.len();
        for (enc, body) in [
            (None, snappy(&raw)),
            (None, framed(&raw)),
            (Some("snappy"), snappy(&raw)),
            (Some("gzip"), gzip(&snappy(&raw))),
            (Some("gzip"), gzip(&framed(&raw))),
            (Some("deflate"), zlib(&snappy(&raw))),
            (Some("deflate"), raw_deflate(&framed(&raw))),
        ] {
            let r = decode_push(&body, PB, enc, true, &limits(n)).unwrap();
            assert_eq!(r.streams[0].entries[0].line.len(), 100_000, "{enc:?}");
            let e = decode_push(&body, PB, enc, true, &limits(n - 1)).unwrap_err();
            assert_eq!(e.to_string(), too_large(n, n - 1), "{enc:?}");
        }
    }

    #[test]
    fn read_capped_never_reserves_past_its_cap() {
        for cap in [0, 1, 1000, READ_CHUNK + 1, 3 * MIB + 7] {
            let v = read_capped(&mut io::repeat(7), cap as u64).unwrap();
            assert_eq!(v.len(), cap);
            assert!(v.capacity() <= cap.max(8), "{cap}: {}", v.capacity());
        }
        let short = vec![1u8; 5 * MIB];
        let v = read_capped(&mut &short[..], u64::MAX).unwrap();
        assert_eq!(v, short);
    }

    #[test]
    fn decoder_failures_say_what_was_wrong() {
        let (s, t) = err(b"\xff\xff\xff\xff\xff\xff", PB, None);
        assert_eq!(s, 400);
        assert!(
            t.starts_with("failed to decode push body as snappy-compressed protobuf (snappy: "),
            "{t}"
        );
        assert!(t.contains("Content-Type: application/json"), "{t}");
        // Valid snappy, broken protobuf (a LEN field running past the end).
        let (s, t) = err(&snappy(b"\x0a\x10\x0a"), PB, None);
        assert_eq!(s, 400);
        assert!(
            t.starts_with("failed to decode protobuf PushRequest: "),
            "{t}"
        );
        let (s, t) = err(b"not gzip", PB, Some("gzip"));
        assert_eq!(s, 400);
        assert!(t.starts_with("failed to decompress gzip body: "), "{t}");
        let (s, t) = err(b"\xff\xff\xff", PB, Some("deflate"));
        assert_eq!(s, 400);
        assert!(t.starts_with("failed to decompress deflate body: "), "{t}");
        let mut bad_frame = framed(b"hello world");
        let n = bad_frame.len();
        bad_frame[n - 1] ^= 0xff;
        let (s, t) = err(&bad_frame, PB, None);
        assert_eq!(s, 400);
        assert!(
            t.starts_with("failed to decompress framed snappy body: "),
            "{t}"
        );
    }

    fn one_entry(ts: Option<proto::Timestamp>, line: &[u8]) -> Vec<u8> {
        // Built with the lenient mirror so the line may hold invalid UTF-8.
        let req = lenient::PushRequest {
            streams: vec![lenient::StreamAdapter {
                labels: b"{a=\"b\"}".to_vec(),
                entries: vec![lenient::EntryAdapter {
                    timestamp: ts,
                    line: line.to_vec().into(),
                    structured_metadata: vec![],
                }],
            }],
        };
        snappy(&req.encode_to_vec())
    }

    #[test]
    fn protobuf_timestamps() {
        let ts = |seconds, nanos| Some(proto::Timestamp { seconds, nanos });
        let ok = |t| dec(&one_entry(t, b"x"), PB, None).map(|r| r.streams[0].entries[0].ts_ns);
        assert_eq!(ok(None).unwrap(), 0);
        assert_eq!(ok(ts(-1, 999_999_999)).unwrap(), -1);
        assert_eq!(ok(ts(MIN_PROTO_SECONDS, 0)).unwrap(), i64::MIN);
        assert_eq!(
            ok(ts(MAX_PROTO_SECONDS - 1, 999_999_999)).unwrap(),
            i64::MAX
        );
        for (s, n) in [
            (MIN_PROTO_SECONDS - 1, 0),
            (MAX_PROTO_SECONDS, 0),
            (0, -1),
            (0, 1_000_000_000),
        ] {
            let e = ok(ts(s, n)).unwrap_err();
            assert_eq!(e.status(), 400);
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid timestamp in stream 0 entry 0: seconds {s} nanos {n}; seconds must \
                     lie in [0001-01-01, 10000-01-01) and nanos in [0, 1000000000)"
                )
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_byte_by_byte_and_counted() {
        let r = dec(&one_entry(None, b"caf\xe9"), PB, None).unwrap();
        assert_eq!(r.streams[0].entries[0].line, "caf\u{fffd}");
        // One U+FFFD per byte that starts no valid sequence, as Go decodes and Loki's query
        // API prints: a cut-off emoji is three, where from_utf8_lossy would make one.
        let r = dec(
            &one_entry(None, b"\xf0\x9f\x98!\xed\xa0\x80\xc0\xaf"),
            PB,
            None,
        )
        .unwrap();
        assert_eq!(
            r.streams[0].entries[0].line,
            format!("{}!{}", "\u{fffd}".repeat(3), "\u{fffd}".repeat(5))
        );
        assert_eq!(
            r.invalid_utf8,
            InvalidUtf8 {
                labels: 0,
                lines: 1,
                structured_metadata: 0
            }
        );
        // A literal U+FFFD is valid text, left alone and not counted.
        let r = dec(&one_entry(None, "ok \u{fffd}".as_bytes()), PB, None).unwrap();
        assert_eq!(r.streams[0].entries[0].line, "ok \u{fffd}");
        assert_eq!(r.invalid_utf8.total(), 0);
    }

    #[test]
    fn invalid_utf8_ends_up_as_in_loki() {
        let now = 1_700_000_000_000_000_000;
        let body = |labels: &[u8], name: &[u8], value: &[u8]| {
            let req = lenient::PushRequest {
                streams: vec![lenient::StreamAdapter {
                    labels: labels.to_vec(),
                    entries: vec![lenient::EntryAdapter {
                        timestamp: Some(proto::Timestamp::from_unix_nanos(now)),
                        line: b"line \xff".to_vec().into(),
                        structured_metadata: vec![lenient::LabelPairAdapter {
                            name: name.to_vec().into(),
                            value: value.to_vec().into(),
                        }],
                    }],
                }],
            };
            snappy(&req.encode_to_vec())
        };
        let limits = parquetry_model::Limits {
            discover_log_levels: false,
            ..parquetry_model::Limits::default()
        };

        // Line: U+FFFD per byte. Structured metadata value: a space per byte, as Loki's
        // distributor sanitizes it; counted both as invalid UTF-8 and as sanitized.
        let r = dec(&body(br#"{app="a"}"#, b"k", b"v\xff\xfe1"), PB, None).unwrap();
        assert_eq!(
            r.invalid_utf8,
            InvalidUtf8 {
                labels: 0,
                lines: 1,
                structured_metadata: 1
            }
        );
        let v = crate::validate(r, &limits, now).unwrap();
        let e = &v.streams[0].entries[0];
        assert_eq!(e.line, "line \u{fffd}");
        assert_eq!(e.structured_metadata, vec![("k".into(), "v  1".into())]);
        assert_eq!(v.invalid_utf8.total(), 2);
        assert_eq!(v.sanitized_structured_metadata, 1);

        // Labels: the whole push is refused with Prometheus' lexer error, as Loki refuses it.
        let r = dec(&body(b"{app=\"caf\xe9\"}", b"k", b"v"), PB, None).unwrap();
        assert_eq!(r.invalid_utf8.labels, 1);
        let e = crate::validate(r, &limits, now).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (
                400,
                "couldn't parse labels: 1:6: parse error: invalid UTF-8 rune".into()
            )
        );
    }

    #[test]
    fn timestamp_split() {
        let t = proto::Timestamp::from_unix_nanos(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_999_999));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid = snappy(GOLDEN);
        for round in 0..2000 {
            let len = (next() % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 {
                // Mutations of a valid body reach deeper into the decoders.
                body = valid.clone();
                let i = (next() as usize) % body.len();
                body[i] = next() as u8;
            }
            for (ct, ce) in [
                (PB, None),
                (JSON, None),
                (PB, Some("gzip")),
                (PB, Some("deflate")),
            ] {
                let _ = dec(&body, ct, ce);
                let _ = decode_push(&body, ct, ce, false, &DecodeLimits::default());
            }
        }
    }
}
