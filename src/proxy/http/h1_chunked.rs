//! Reading a backend's `Transfer-Encoding: chunked` body (RFC 9112 §7.1) out of the
//! connection's read buffer: chunk sizes and extensions, the data, the CRLF after each
//! chunk, and the trailer section. Data is handed out as slices of the buffer, never copied.

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The longest chunk-size line accepted (the size and any extensions).
const MAX_SIZE_LINE: usize = 1024;
/// The largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Trailer fields read at most.
const MAX_TRAILER_FIELDS: usize = 32;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many data bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last (zero-size) chunk: trailer fields, then the empty line.
    Trailers,
    /// The body has ended.
    Done,
}

/// What the buffer gave.
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete; what follows in the buffer is not this body's.
    End,
    /// More bytes must be read first.
    NeedMore,
}

/// Why a chunked body could not be read: the backend broke the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum ChunkError {
    #[error("a chunk size is not hexadecimal")]
    BadSize,
    #[error("a chunk size is too large")]
    SizeOverflow,
    #[error("a chunk-size line is too long")]
    LongSizeLine,
    #[error("a chunk's data is not followed by CRLF")]
    NoDataEnd,
    #[error("the trailer section is malformed or too large")]
    BadTrailers,
}

#[derive(Debug)]
pub(super) struct ChunkedDecoder {
    state: State,
}

impl ChunkedDecoder {
    pub(super) fn new() -> ChunkedDecoder {
        ChunkedDecoder { state: State::Size }
    }

    /// Takes what it can from `buf`: the next piece of data, the trailers, the end, or
    /// `NeedMore` when `buf` holds no complete step.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line_end) = find_crlf(buf, MAX_SIZE_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&buf[..line_end])?;
                    buf.advance(line_end + 2);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::NoDataEnd);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        self.state = State::Done;
                        return Ok(Decoded::End);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
                    let (len, trailers) = match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((len, parsed))) => {
                            (len, trailer_map(parsed)?)
                        }
                        Ok(httparse::Status::Partial) if buf.len() <= MAX_TRAILERS => {
                            return Ok(Decoded::NeedMore)
                        }
                        _ => return Err(ChunkError::BadTrailers),
                    };
                    buf.advance(len);
                    self.state = State::Done;
                    return Ok(Decoded::Trailers(trailers));
                }
                State::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The trailer fields as a header map; a field hyper would not accept is malformed.
fn trailer_map(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, ChunkError> {
    let mut map = HeaderMap::with_capacity(parsed.len());
    for field in parsed {
        let name =
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ChunkError::BadTrailers)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| ChunkError::BadTrailers)?;
        map.append(name, value);
    }
    Ok(map)
}

/// Where the first CRLF in `buf` starts, looking no further than `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, ChunkError> {
    let window = &buf[..buf.len().min(limit)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some(at)),
        None if buf.len() >= limit => Err(ChunkError::LongSizeLine),
        None => Ok(None),
    }
}

/// The size on a chunk-size line: hex digits, then optional whitespace and `;` extensions,
/// which are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 {
        return Err(ChunkError::BadSize);
    }
    let rest = &line[digits..];
    let rest_ok = match rest.iter().position(|b| !matches!(b, b' ' | b'\t')) {
        None => true,
        Some(at) => rest[at] == b';',
    };
    if !rest_ok {
        return Err(ChunkError::BadSize);
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let digit = (b as char).to_digit(16).ok_or(ChunkError::BadSize)? as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(digit))
            .ok_or(ChunkError::SizeOverflow)?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data joined, the trailers, and what was left after the end.
    type Decoding = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Decodes `input` fed `step` bytes at a time.
    fn decode_all(input: &[u8], step: usize) -> Result<Decoding, ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut data = Vec::new();
        let mut trailers = None;
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => data.extend_from_slice(&d),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => return Ok((data, trailers, buf.to_vec())),
                Decoded::NeedMore => {
                    assert!(fed < input.len(), "ran out of input before the end");
                    let next = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn a_body_decodes_the_same_whatever_the_read_sizes() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nNEXT";
        for step in 1..input.len() {
            let (data, trailers, rest) = decode_all(input, step).unwrap();
            assert_eq!(data, b"hello, world", "step {step}");
            assert!(trailers.is_none());
            // Read sizes decide how much of what follows was buffered; never less than
            // what came after the end once all was fed.
            assert!(b"NEXT".starts_with(&rest), "step {step}: {rest:?}");
        }
    }

    #[test]
    fn trailers_are_returned_as_fields() {
        let input = b"3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-Sum: 12\r\n\r\n";
        for step in [1, 4, input.len()] {
            let (data, trailers, rest) = decode_all(input, step).unwrap();
            assert_eq!(data, b"abc");
            let trailers = trailers.expect("trailers");
            assert_eq!(trailers["grpc-status"], "0");
            assert_eq!(trailers["x-sum"], "12");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn upper_case_sizes_and_whitespace_before_extensions_are_read() {
        let (data, _, _) = decode_all(b"A \t;x\r\n0123456789\r\n0\r\n\r\n", 64).unwrap();
        assert_eq!(data, b"0123456789");
    }

    #[test]
    fn broken_framing_is_an_error() {
        let cases: [(&[u8], ChunkError); 6] = [
            (b"zz\r\n", ChunkError::BadSize),
            (b"\r\n", ChunkError::BadSize),
            (b"5x\r\nhello\r\n", ChunkError::BadSize),
            (b"11111111111111111\r\n", ChunkError::SizeOverflow),
            (b"5\r\nhelloXX0\r\n\r\n", ChunkError::NoDataEnd),
            (b"0\r\nbad field\r\n\r\n", ChunkError::BadTrailers),
        ];
        for (input, want) in cases {
            assert_eq!(decode_all(input, 64).err(), Some(want), "{input:?}");
        }
        let long = [b'1'; MAX_SIZE_LINE + 1];
        assert_eq!(
            decode_all(&long, 4096).err(),
            Some(ChunkError::LongSizeLine)
        );
    }

    #[test]
    fn a_truncated_body_asks_for_more_and_never_ends() {
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"a\r\n0123456789\r\n"[..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"0123456789"))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::NeedMore);
        // Half a size line: still more to read, never an end.
        buf.extend_from_slice(b"5\r");
        assert_eq!(dec.decode(&mut buf).unwrap(), Decoded::NeedMore);
    }
}
