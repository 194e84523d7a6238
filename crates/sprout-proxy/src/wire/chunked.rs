//! Chunked bodies (RFC 9112 §7.1): followed as they pass, and written when the balancer
//! re-frames a body delimited by close.

use super::{Buf, WireError};
use std::fmt::Write as _;

/// Longest chunk-size line (with extensions) and the most trailer bytes of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Appends one re-framed chunk (for [`ClientBody::Rechunk`]); empty `data` writes the last
/// chunk and the (empty) trailer section, `0\r\n\r\n`.
pub(crate) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = write!(Buf(out), "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Follows a chunked body (RFC 9112 §7.1) through the bytes passing by, to find where it
/// ends; the bytes themselves are forwarded unchanged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunked {
    phase: Phase,
    /// Bytes of the current size line, or of the trailer section so far.
    seen: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Hex digits of a chunk size; the value so far and whether a digit was seen.
    #[default]
    SizeStart,
    Size(u64),
    SizeWs(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// Start of a trailer line, or of the blank line ending the body.
    TrailerStart,
    /// Inside a trailer line; whether its colon has been seen.
    Trailer(bool),
    TrailerLf,
    FinalLf,
    Done,
}

impl Chunked {
    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Consumes bytes of the body from the front of `buf`; returns how many belong to it
    /// (all of `buf`, unless the body ends inside it).
    pub(crate) fn advance(&mut self, buf: &[u8]) -> Result<usize, WireError> {
        self.run(buf, None)
    }

    /// Like [`Chunked::advance`], and appends the body's data (without the chunk framing)
    /// to `data`: for a client that cannot take chunks (HTTP/1.0).
    pub(crate) fn decode(&mut self, buf: &[u8], data: &mut Vec<u8>) -> Result<usize, WireError> {
        self.run(buf, Some(data))
    }

    fn run(&mut self, buf: &[u8], mut data: Option<&mut Vec<u8>>) -> Result<usize, WireError> {
        let mut i = 0;
        while i < buf.len() {
            if let Phase::Data(left) = self.phase {
                let take = left.min((buf.len() - i) as u64);
                if let Some(data) = data.as_deref_mut() {
                    data.extend_from_slice(&buf[i..i + take as usize]);
                }
                i += take as usize;
                self.phase = if take == left {
                    Phase::DataCr
                } else {
                    Phase::Data(left - take)
                };
                continue;
            }
            let b = buf[i];
            i += 1;
            self.phase = match self.phase {
                Phase::SizeStart => {
                    self.seen = 1;
                    Phase::Size(hex(b).ok_or(WireError::BadChunk)?)
                }
                Phase::Size(v) => {
                    self.line_byte()?;
                    match (b, hex(b)) {
                        (_, Some(d)) if v >> 60 == 0 => Phase::Size(v << 4 | d),
                        (_, Some(_)) => return Err(WireError::BadChunk),
                        (b'\r', _) => Phase::SizeLf(v),
                        (b';', _) => Phase::Extension(v),
                        (b' ' | b'\t', _) => Phase::SizeWs(v),
                        _ => return Err(WireError::BadChunk),
                    }
                }
                // Only whitespace, then an extension or the line end (`5 x` is refused).
                Phase::SizeWs(v) => {
                    self.line_byte()?;
                    match b {
                        b' ' | b'\t' => Phase::SizeWs(v),
                        b';' => Phase::Extension(v),
                        b'\r' => Phase::SizeLf(v),
                        _ => return Err(WireError::BadChunk),
                    }
                }
                Phase::Extension(v) => {
                    self.line_byte()?;
                    match b {
                        b'\r' => Phase::SizeLf(v),
                        b'\t' | 0x20..=0x7e => Phase::Extension(v),
                        _ => return Err(WireError::BadChunk),
                    }
                }
                Phase::SizeLf(v) => match (b, v) {
                    (b'\n', 0) => {
                        self.seen = 0;
                        Phase::TrailerStart
                    }
                    (b'\n', v) => Phase::Data(v),
                    _ => return Err(WireError::BadChunk),
                },
                Phase::DataCr if b == b'\r' => Phase::DataLf,
                Phase::DataLf if b == b'\n' => Phase::SizeStart,
                Phase::TrailerStart if b == b'\r' => Phase::FinalLf,
                // A trailer line is `name: value`: a token name (forwarded as it is, so held to
                // what the instance's parser takes; fuzzing found `5;e: x` passed on), a
                // colon, a value without CTLs.
                Phase::TrailerStart => {
                    self.trailer_byte()?;
                    match b {
                        b if is_tchar(b) => Phase::Trailer(false),
                        _ => return Err(WireError::BadChunk),
                    }
                }
                Phase::Trailer(false) => {
                    self.trailer_byte()?;
                    match b {
                        b':' => Phase::Trailer(true),
                        b if is_tchar(b) => Phase::Trailer(false),
                        _ => return Err(WireError::BadChunk),
                    }
                }
                Phase::Trailer(true) => {
                    self.trailer_byte()?;
                    match b {
                        b'\r' => Phase::TrailerLf,
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => Phase::Trailer(true),
                        _ => return Err(WireError::BadChunk),
                    }
                }
                Phase::TrailerLf if b == b'\n' => Phase::TrailerStart,
                Phase::FinalLf if b == b'\n' => {
                    self.phase = Phase::Done;
                    return Ok(i);
                }
                Phase::Done => return Ok(i - 1),
                _ => return Err(WireError::BadChunk),
            };
        }
        Ok(i)
    }

    fn line_byte(&mut self) -> Result<(), WireError> {
        self.seen += 1;
        if self.seen > MAX_CHUNK_LINE {
            return Err(WireError::BadChunk);
        }
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), WireError> {
        self.seen += 1;
        if self.seen > MAX_TRAILERS {
            return Err(WireError::BadChunk);
        }
        Ok(())
    }
}

/// RFC 9110 §5.6.2 `tchar`: the bytes of a field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}
