//! Mesos's RecordIO framing of a streamed response: each record is its length in bytes as
//! decimal digits, a `\n`, then that many bytes (here, one JSON `Event`). Chunk boundaries
//! of the HTTP body mean nothing: a record or its length may be split anywhere, and one
//! chunk may hold several records. [`Decoder`] takes chunks as they come and yields whole
//! records; it knows nothing of what a record holds.

use bytes::{Buf, Bytes, BytesMut};

/// Digits a length may have: more than a `u64` would ever need is garbage.
const MAX_LENGTH_DIGITS: usize = 20;

/// Why a stream cannot be read on: the framing is broken, so nothing after it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    #[error("record length {0:?} is not a decimal number")]
    BadLength(String),
    #[error("record of {length} bytes is over the limit of {limit}")]
    TooLarge { length: u64, limit: usize },
}

/// Reassembles records from chunks.
#[derive(Debug)]
pub struct Decoder {
    buffer: BytesMut,
    /// The length of the record being read, once its line is complete.
    want: Option<usize>,
    limit: usize,
}

// === impl Decoder ===

impl Decoder {
    /// A decoder refusing records longer than `limit` bytes (a runaway or hostile length).
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            buffer: BytesMut::new(),
            want: None,
            limit,
        }
    }

    /// Adds a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole record, `Ok(None)` when more bytes are needed. After an error the
    /// stream must be dropped.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, RecordIoError> {
        let want = match self.want {
            Some(want) => want,
            None => {
                let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') else {
                    if self.buffer.len() > MAX_LENGTH_DIGITS {
                        return Err(self.bad_length(self.buffer.len()));
                    }
                    return Ok(None);
                };
                let want = self.parse_length(newline)?;
                self.buffer.advance(newline + 1);
                self.want = Some(want);
                want
            }
        };
        if self.buffer.len() < want {
            return Ok(None);
        }
        self.want = None;
        Ok(Some(self.buffer.split_to(want).freeze()))
    }

    /// Bytes buffered that do not make a whole record yet.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    fn parse_length(&self, end: usize) -> Result<usize, RecordIoError> {
        let digits = &self.buffer[..end];
        if digits.is_empty()
            || digits.len() > MAX_LENGTH_DIGITS
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return Err(self.bad_length(end));
        }
        // All ASCII digits, at most 20 of them: parsing fails only past u64.
        let length: u64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.bad_length(end))?;
        match usize::try_from(length) {
            Ok(n) if n <= self.limit => Ok(n),
            _ => Err(RecordIoError::TooLarge {
                length,
                limit: self.limit,
            }),
        }
    }

    fn bad_length(&self, end: usize) -> RecordIoError {
        let shown = &self.buffer[..end.min(MAX_LENGTH_DIGITS + 1)];
        RecordIoError::BadLength(String::from_utf8_lossy(shown).into_owned())
    }
}

/// One record as Mesos frames it: `len\nbytes`.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = format!("{}\n", record.len()).into_bytes();
    out.extend_from_slice(record);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut Decoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = d.next_record().expect("well framed") {
            out.push(r.to_vec());
        }
        out
    }

    #[test]
    fn records_split_at_every_byte_come_out_whole() {
        let records: [&[u8]; 3] = [
            br#"{"type":"SUBSCRIBED","subscribed":{}}"#,
            br#"{"type":"HEARTBEAT"}"#,
            b"",
        ];
        let stream: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
        for split in 0..=stream.len() {
            let mut d = Decoder::new(1024);
            d.push(&stream[..split]);
            let mut got = drain(&mut d);
            d.push(&stream[split..]);
            got.extend(drain(&mut d));
            assert_eq!(got, records.map(<[u8]>::to_vec), "split at {split}");
            assert_eq!(d.pending(), 0);
        }
        // One byte at a time: the length line itself arrives in pieces.
        let mut d = Decoder::new(1024);
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            got.extend(drain(&mut d));
        }
        assert_eq!(got, records.map(<[u8]>::to_vec));
    }

    #[test]
    fn several_records_in_one_chunk() {
        let mut d = Decoder::new(64);
        d.push(b"20\n{\"type\":\"HEARTBEAT\"}20\n{\"type\":\"HEARTBEAT\"}3\nabc1");
        assert_eq!(drain(&mut d).len(), 3);
        assert_eq!(d.pending(), 1, "the next length has begun");
    }

    #[test]
    fn an_oversized_length_is_refused_before_its_bytes_arrive() {
        let mut d = Decoder::new(100);
        d.push(b"101\n");
        assert_eq!(
            d.next_record(),
            Err(RecordIoError::TooLarge {
                length: 101,
                limit: 100
            })
        );
        let mut d = Decoder::new(100);
        d.push(b"99999999999999999999\n");
        assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
    }

    #[test]
    fn a_garbage_length_is_an_error() {
        for bad in [&b"12a\n"[..], b"\n", b"-1\n", b" 5\n", b"<html>\n"] {
            let mut d = Decoder::new(100);
            d.push(bad);
            assert!(
                matches!(d.next_record(), Err(RecordIoError::BadLength(_))),
                "{bad:?}"
            );
        }
        // A line that never ends is refused once it is longer than any length.
        let mut d = Decoder::new(100);
        d.push(b"HTTP/1.1 200 OK and more text without a newline");
        assert!(matches!(d.next_record(), Err(RecordIoError::BadLength(_))));
    }
}
