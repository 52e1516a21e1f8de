use super::*;
use proptest::prelude::*;
use std::net::SocketAddrV6;
use tokio::io::AsyncWriteExt;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(block);
    out
}

fn v4_block() -> Vec<u8> {
    // 192.168.0.1:56324 -> 10.0.0.2:443
    vec![192, 168, 0, 1, 10, 0, 0, 2, 0xdc, 0x04, 0x01, 0xbb]
}

fn v6_block() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&1234u16.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    b
}

fn addrs(src: &str, dst: &str, version: u8) -> ProxyHeader {
    ProxyHeader {
        source: Some(sa(src)),
        destination: Some(sa(dst)),
        version,
    }
}

fn none(version: u8) -> ProxyHeader {
    ProxyHeader {
        source: None,
        destination: None,
        version,
    }
}

fn valid_cases() -> Vec<(&'static str, Vec<u8>, ProxyHeader)> {
    let with_tlvs = {
        let mut b = v4_block();
        b.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // PP2_TYPE_NOOP, 1 byte
        b.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'b', b'c']); // PP2_TYPE_AUTHORITY
        b
    };
    vec![
        (
            "v1 tcp4",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
            addrs("192.168.0.1:56324", "192.168.0.11:443", 1),
        ),
        (
            "v1 tcp4 extremes",
            b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n".to_vec(),
            addrs("255.255.255.255:65535", "0.0.0.0:0", 1),
        ),
        (
            "v1 tcp6",
            b"PROXY TCP6 2001:db8::1 ::1 1234 80\r\n".to_vec(),
            addrs("[2001:db8::1]:1234", "[::1]:80", 1),
        ),
        (
            "v1 tcp6 longest",
            b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff FFFF:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
            addrs(
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                1,
            ),
        ),
        (
            "v1 tcp6 mapped",
            b"PROXY TCP6 ::ffff:1.2.3.4 :: 1 2\r\n".to_vec(),
            addrs("[::ffff:1.2.3.4]:1", "[::]:2", 1),
        ),
        ("v1 unknown short", b"PROXY UNKNOWN\r\n".to_vec(), none(1)),
        (
            "v1 unknown with addresses",
            b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            none(1),
        ),
        (
            "v1 unknown with garbage",
            b"PROXY UNKNOWN \x00\xff  what ever\r\n".to_vec(),
            none(1),
        ),
        (
            "v1 unknown longest (107 bytes)",
            b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
            none(1),
        ),
        (
            "v2 tcp4",
            v2(0x21, 0x11, &v4_block()),
            addrs("192.168.0.1:56324", "10.0.0.2:443", 2),
        ),
        (
            "v2 tcp6",
            v2(0x21, 0x21, &v6_block()),
            addrs("[2001:db8::1]:1234", "[2001:db8::2]:80", 2),
        ),
        (
            "v2 tcp4 with tlvs",
            v2(0x21, 0x11, &with_tlvs),
            addrs("192.168.0.1:56324", "10.0.0.2:443", 2),
        ),
        ("v2 local", v2(0x20, 0x00, &[]), none(2)),
        ("v2 local with addresses", v2(0x20, 0x11, &v4_block()), none(2)),
        ("v2 local ignores family", v2(0x20, 0xff, &[1, 2, 3]), none(2)),
        ("v2 proxy unspec", v2(0x21, 0x00, &[]), none(2)),
        ("v2 proxy unspec with bytes", v2(0x21, 0x00, &[9; 7]), none(2)),
        ("v2 udp4", v2(0x21, 0x12, &v4_block()), none(2)),
        ("v2 udp6", v2(0x21, 0x22, &v6_block()), none(2)),
        ("v2 unix stream", v2(0x21, 0x31, &[0; 216]), none(2)),
        ("v2 unix dgram", v2(0x21, 0x32, &[0; 220]), none(2)),
        ("v2 inet unspec transport", v2(0x21, 0x10, &[]), none(2)),
        (
            "v2 at the length limit",
            v2(0x21, 0x11, &[v4_block(), vec![0; V2_MAX_BLOCK_LEN - 12]].concat()),
            addrs("192.168.0.1:56324", "10.0.0.2:443", 2),
        ),
    ]
}

#[test]
fn valid_headers_parse_with_exact_length() {
    for (name, bytes, expected) in valid_cases() {
        let got = parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, Some((expected.clone(), bytes.len())), "{name}");
        // Trailing application bytes are not consumed.
        let mut more = bytes.clone();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            parse(&more),
            Ok(Some((expected, bytes.len()))),
            "{name} + data"
        );
    }
}

#[test]
fn every_prefix_of_a_valid_header_needs_more() {
    for (name, bytes, _) in valid_cases() {
        for i in 0..bytes.len() {
            assert_eq!(parse(&bytes[..i]), Ok(None), "{name} prefix {i}");
            let need = min_remaining(&bytes[..i]);
            assert!(
                need >= 1 && need <= bytes.len() - i,
                "{name} prefix {i}: min_remaining {need} overshoots"
            );
        }
    }
}

#[test]
fn malformed_headers_are_rejected() {
    use ProxyError::*;
    let long_unknown = [&b"PROXY UNKNOWN "[..], &[b'x'; 93], b"\r\n"].concat();
    assert_eq!(long_unknown.len(), 109);
    let cases: Vec<(&str, Vec<u8>, ProxyError)> = vec![
        ("http", b"GET / HTTP/1.1\r\n".to_vec(), NotProxy),
        ("tls hello", vec![0x16, 0x03, 0x01, 0x00], NotProxy),
        ("post", b"POST / HTTP/1.1\r\n".to_vec(), NotProxy),
        ("lowercase", b"proxy TCP4".to_vec(), NotProxy),
        ("no space", b"PROXYTCP4".to_vec(), NotProxy),
        ("bare PROXY", b"PROXY\r\n".to_vec(), NotProxy),
        (
            "v1 no crlf in 107",
            [&b"PROXY UNKNOWN "[..], &[b'x'; 93]].concat(),
            V1TooLong,
        ),
        ("v1 crlf past 107", long_unknown, V1TooLong),
        (
            "v1 cr at 107",
            [&b"PROXY UNKNOWN "[..], &[b'x'; 92], b"\r\n"].concat(),
            V1TooLong,
        ),
        (
            "v1 bare lf",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
            V1Malformed("line feed without carriage return"),
        ),
        (
            "v1 cr without lf",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX".to_vec(),
            V1Malformed("carriage return without line feed"),
        ),
        (
            "v1 unknown protocol",
            b"PROXY UDP4 1.2.3.4".to_vec(),
            V1Malformed("unknown protocol (expected TCP4, TCP6 or UNKNOWN)"),
        ),
        (
            "v1 unknown protocol early",
            b"PROXY TCP5".to_vec(),
            V1Malformed("unknown protocol (expected TCP4, TCP6 or UNKNOWN)"),
        ),
        (
            "v1 cr after TCP4, early",
            b"PROXY TCP4\r".to_vec(),
            V1Malformed("unknown protocol (expected TCP4, TCP6 or UNKNOWN)"),
        ),
        (
            "v1 UNKNOWNX",
            b"PROXY UNKNOWNX\r\n".to_vec(),
            V1Malformed("unknown protocol (expected TCP4, TCP6 or UNKNOWN)"),
        ),
        (
            "v1 tcp4 without fields",
            b"PROXY TCP4\r\n".to_vec(),
            V1Malformed("expected exactly four single-space-separated fields after the protocol"),
        ),
        (
            "v1 empty protocol",
            b"PROXY \r\n".to_vec(),
            V1Malformed("unknown protocol (expected TCP4, TCP6 or UNKNOWN)"),
        ),
        (
            "v1 double space",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("expected exactly four single-space-separated fields after the protocol"),
        ),
        (
            "v1 double space after PROXY",
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("unknown protocol (expected TCP4, TCP6 or UNKNOWN)"),
        ),
        (
            "v1 trailing space",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n".to_vec(),
            V1Malformed("expected exactly four single-space-separated fields after the protocol"),
        ),
        (
            "v1 missing port",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(),
            V1Malformed("expected exactly four single-space-separated fields after the protocol"),
        ),
        (
            "v1 bad source",
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("bad source address"),
        ),
        (
            "v1 octet too big",
            b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("bad source address"),
        ),
        (
            "v1 octal-looking octet",
            b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("bad source address"),
        ),
        (
            "v1 bad destination",
            b"PROXY TCP4 1.2.3.4 example.com 1 2\r\n".to_vec(),
            V1Malformed("bad destination address"),
        ),
        (
            "v1 tcp4 with ipv6",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("IPv6 address in a TCP4 line (family mismatch)"),
        ),
        (
            "v1 tcp6 with ipv4",
            b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("IPv4 address in a TCP6 line (family mismatch)"),
        ),
        (
            "v1 ipv6 with zone",
            b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n".to_vec(),
            V1Malformed("bad source address"),
        ),
        (
            "v1 ipv6 in brackets",
            b"PROXY TCP6 [::1] ::1 1 2\r\n".to_vec(),
            V1Malformed("bad source address"),
        ),
        (
            "v1 port too big",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(),
            V1Malformed("bad source port"),
        ),
        (
            "v1 port with plus",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n".to_vec(),
            V1Malformed("bad source port"),
        ),
        (
            "v1 port negative",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n".to_vec(),
            V1Malformed("bad destination port"),
        ),
        (
            "v1 port leading zero",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n".to_vec(),
            V1Malformed("bad source port"),
        ),
        (
            "v1 port six digits",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 000002\r\n".to_vec(),
            V1Malformed("bad destination port"),
        ),
        (
            "v1 port hex",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n".to_vec(),
            V1Malformed("bad destination port"),
        ),
        (
            "v1 port with trailing garbage",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n".to_vec(),
            V1Malformed("bad destination port"),
        ),
        (
            "v1 empty port",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n".to_vec(),
            V1Malformed("bad destination port"),
        ),
        (
            "v1 non-utf8 address",
            b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n".to_vec(),
            V1Malformed("bad source address"),
        ),
        (
            "v2 bad signature",
            b"\r\n\r\n\0\r\nQUIX\n!\x11\0\x0c".to_vec(),
            V2BadSignature,
        ),
        (
            "v2 signature cut by http",
            b"\r\nGET".to_vec(),
            V2BadSignature,
        ),
        ("v2 version 1", v2(0x11, 0x11, &v4_block()), V2BadVersion(1)),
        ("v2 version 3", v2(0x31, 0x11, &v4_block()), V2BadVersion(3)),
        ("v2 command 2", v2(0x22, 0x11, &v4_block()), V2BadCommand(2)),
        (
            "v2 command f",
            v2(0x2f, 0x11, &v4_block()),
            V2BadCommand(0xf),
        ),
        (
            "v2 family 4",
            v2(0x21, 0x41, &v4_block()),
            V2BadFamily(0x41),
        ),
        (
            "v2 transport 3",
            v2(0x21, 0x13, &v4_block()),
            V2BadFamily(0x13),
        ),
        (
            "v2 unspec family bad transport",
            v2(0x21, 0x03, &[]),
            V2BadFamily(0x03),
        ),
        (
            "v2 too long",
            v2(0x21, 0x11, &vec![0; V2_MAX_BLOCK_LEN + 1]),
            V2TooLong {
                len: V2_MAX_BLOCK_LEN + 1,
                max: V2_MAX_BLOCK_LEN,
            },
        ),
        (
            "v2 too long, header only",
            [&V2_SIGNATURE[..], &[0x21, 0x11, 0xff, 0xff]].concat(),
            V2TooLong {
                len: 65535,
                max: V2_MAX_BLOCK_LEN,
            },
        ),
        (
            "v2 tcp4 short block",
            v2(0x21, 0x11, &v4_block()[..11]),
            V2AddressesTooShort {
                len: 11,
                needed: 12,
            },
        ),
        (
            "v2 tcp6 with v4-sized block",
            v2(0x21, 0x21, &v4_block()),
            V2AddressesTooShort {
                len: 12,
                needed: 36,
            },
        ),
        (
            "v2 udp6 short block",
            v2(0x21, 0x22, &[0; 35]),
            V2AddressesTooShort {
                len: 35,
                needed: 36,
            },
        ),
        (
            "v2 unix short block",
            v2(0x21, 0x31, &[0; 215]),
            V2AddressesTooShort {
                len: 215,
                needed: 216,
            },
        ),
        (
            "v2 short block detected before the block arrives",
            [&V2_SIGNATURE[..], &[0x21, 0x21, 0x00, 0x0c]].concat(),
            V2AddressesTooShort {
                len: 12,
                needed: 36,
            },
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(parse(&bytes), Err(expected), "{name}");
    }
}

#[test]
fn errors_read_well() {
    assert_eq!(
        ProxyError::NotProxy.to_string(),
        "not a PROXY protocol header"
    );
    assert_eq!(
        ProxyError::V2BadFamily(0x41).to_string(),
        "bad PROXY v2 address family/transport byte 0x41"
    );
    assert_eq!(
        ProxyError::Io(io::ErrorKind::ConnectionReset).to_string(),
        "reading the PROXY header: connection reset"
    );
}

#[test]
fn encoders_produce_the_spec_examples() {
    assert_eq!(
        encode_v1(sa("192.168.0.1:56324"), sa("192.168.0.11:443")),
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    );
    assert_eq!(
        encode_v1(sa("[2001:db8::1]:1234"), sa("[::1]:80")),
        b"PROXY TCP6 2001:db8::1 ::1 1234 80\r\n"
    );
    // Mixed families: the IPv4 side is mapped.
    assert_eq!(
        encode_v1(sa("[2001:db8::1]:1234"), sa("10.0.0.1:80")),
        b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1234 80\r\n"
    );
    // A dual-stack listener's view of an IPv4 client becomes TCP4.
    assert_eq!(
        encode_v1(sa("[::ffff:1.2.3.4]:5"), sa("10.0.0.1:80")),
        b"PROXY TCP4 1.2.3.4 10.0.0.1 5 80\r\n"
    );
    assert_eq!(
        encode_v2(sa("192.168.0.1:56324"), sa("10.0.0.2:443")),
        v2(0x21, 0x11, &v4_block())
    );
    assert_eq!(
        encode_v2(sa("[2001:db8::1]:1234"), sa("[2001:db8::2]:80")),
        v2(0x21, 0x21, &v6_block())
    );
}

/// Serves `data` in reads of at most `chunk` bytes, so tests see exactly what was consumed.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
    reads: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let n = self.data.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.reads += 1;
        std::task::Poll::Ready(Ok(()))
    }
}

fn read_chunked(data: &[u8], chunk: usize) -> (Result<ProxyHeader, ProxyError>, &[u8]) {
    let (result, rest, _) = read_counting(data, chunk);
    (result, rest)
}

/// Also returns how many reads it took.
fn read_counting(data: &[u8], chunk: usize) -> (Result<ProxyHeader, ProxyError>, &[u8], usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut reader = Chunked {
        data,
        chunk,
        reads: 0,
    };
    let result = rt.block_on(read_header(&mut reader, Duration::from_secs(5)));
    (result, reader.data, reader.reads)
}

#[test]
fn read_header_needs_few_reads() {
    // Exact-size reads, not byte by byte: v2 takes three (15 bytes, as v1 could be that
    // short, then 1, then the block), v1 a handful.
    let trailer = b"GET / HTTP/1.1\r\n";
    let cases: [(&[u8], usize); 4] = [
        (&encode_v2(sa("192.168.0.1:56324"), sa("10.0.0.2:443")), 3),
        (&encode_v2(sa("[2001:db8::1]:1"), sa("[2001:db8::2]:2")), 3),
        (b"PROXY TCP4 192.168.10.20 10.0.0.1 51234 80\r\n", 6),
        (
            b"PROXY TCP6 2001:db8:aaaa::1 2001:db8:bbbb::2 51234 443\r\n",
            10,
        ),
    ];
    for (header, max_reads) in cases {
        let data = [header, &trailer[..]].concat();
        let (result, rest, reads) = read_counting(&data, 4096);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(rest, &trailer[..]);
        assert!(
            reads <= max_reads,
            "{reads} reads for {:?}",
            String::from_utf8_lossy(header)
        );
    }
}

#[test]
fn read_header_consumes_exactly_the_header_in_any_fragmentation() {
    let trailer = b"\x16\x03\x01 TLS or HTTP bytes that follow";
    for (name, bytes, expected) in valid_cases() {
        let data = [&bytes[..], &trailer[..]].concat();
        for chunk in [1, 2, 3, 7, 16, 64, 4096] {
            let (result, rest) = read_chunked(&data, chunk);
            assert_eq!(result.as_ref(), Ok(&expected), "{name} chunk {chunk}");
            assert_eq!(rest, &trailer[..], "{name} chunk {chunk}");
        }
    }
}

#[test]
fn read_header_reports_eof_and_malformed() {
    let header = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    for cut in 0..header.len() {
        let (result, _) = read_chunked(&header[..cut], 4096);
        assert_eq!(
            result,
            Err(ProxyError::Truncated { got: cut }),
            "cut at {cut}"
        );
    }
    let (result, _) = read_chunked(b"GET / HTTP/1.1\r\n\r\n", 4096);
    assert_eq!(result, Err(ProxyError::NotProxy));
    let (result, _) = read_chunked(&v2(0x21, 0x41, &v4_block()), 4096);
    assert_eq!(result, Err(ProxyError::V2BadFamily(0x41)));
    let (result, _) = read_chunked(&[b'P'; 200], 4096);
    assert_eq!(result, Err(ProxyError::NotProxy));
    let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 200]].concat();
    let (result, rest) = read_chunked(&long, 4096);
    assert_eq!(result, Err(ProxyError::V1TooLong));
    assert_eq!(
        long.len() - rest.len(),
        V1_MAX_LEN,
        "gave up after 107 bytes"
    );
}

#[tokio::test(start_paused = true)]
async fn read_header_times_out_when_the_client_sends_nothing() {
    let (_client, mut server) = tokio::io::duplex(64);
    let started = tokio::time::Instant::now();
    let result = read_header(&mut server, Duration::from_secs(3)).await;
    assert_eq!(result, Err(ProxyError::Timeout));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn read_header_times_out_on_a_stalled_partial_header() {
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    let result = read_header(&mut server, Duration::from_secs(3)).await;
    assert_eq!(result, Err(ProxyError::Timeout));
}

#[tokio::test]
async fn read_header_over_duplex_reports_eof_mid_header() {
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(&V2_SIGNATURE[..7]).await.unwrap();
    drop(client);
    let result = read_header(&mut server, Duration::from_secs(5)).await;
    assert_eq!(result, Err(ProxyError::Truncated { got: 7 }));
}

#[tokio::test]
async fn read_header_over_loopback_leaves_the_payload() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let header = encode_v2(sa("203.0.113.7:40000"), addr);
        // Header and request in one write, as load balancers do.
        conn.write_all(&[&header[..], b"PING\n"].concat())
            .await
            .unwrap();
        let header = encode_v1(sa("[2001:db8::7]:40001"), addr);
        let mut conn2 = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn2
            .write_all(&[&header[..], b"PONG\n"].concat())
            .await
            .unwrap();
        (conn, conn2)
    });
    for (src, payload) in [
        ("203.0.113.7:40000", b"PING\n"),
        ("[2001:db8::7]:40001", b"PONG\n"),
    ] {
        let (mut conn, _) = listener.accept().await.unwrap();
        let header = read_header(&mut conn, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(header.source, Some(sa(src)));
        let expected_dst = if src.starts_with('[') {
            SocketAddr::new(as_v6(addr.ip()).into(), addr.port())
        } else {
            addr
        };
        assert_eq!(header.destination, Some(expected_dst));
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, payload);
    }
    drop(client.await.unwrap());
}

fn any_socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, flow, scope)| SocketAddrV6::new(ip.into(), port, flow, scope).into()
        ),
        // IPv4-mapped IPv6, as a dual-stack socket reports IPv4 peers.
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(
            Ipv4Addr::from(ip).to_ipv6_mapped().into(),
            port
        )),
    ]
}

/// What a receiver sees for the addresses given to the encoders.
fn expected(source: SocketAddr, destination: SocketAddr, version: u8) -> ProxyHeader {
    let (s, d) = match as_v4_pair(source, destination) {
        Some((s, d)) => (SocketAddr::V4(s), SocketAddr::V4(d)),
        None => (
            SocketAddr::new(as_v6(source.ip()).into(), source.port()),
            SocketAddr::new(as_v6(destination.ip()).into(), destination.port()),
        ),
    };
    ProxyHeader {
        source: Some(s),
        destination: Some(d),
        version,
    }
}

proptest! {
    #[test]
    fn encode_v1_round_trips(src in any_socket_addr(), dst in any_socket_addr()) {
        let bytes = encode_v1(src, dst);
        prop_assert!(bytes.len() <= V1_MAX_LEN);
        prop_assert_eq!(parse(&bytes), Ok(Some((expected(src, dst, 1), bytes.len()))));
    }

    #[test]
    fn encode_v2_round_trips(src in any_socket_addr(), dst in any_socket_addr()) {
        let bytes = encode_v2(src, dst);
        prop_assert_eq!(parse(&bytes), Ok(Some((expected(src, dst, 2), bytes.len()))));
    }

    #[test]
    fn prefixes_of_encoded_headers_need_more(
        src in any_socket_addr(),
        dst in any_socket_addr(),
        v1 in any::<bool>(),
    ) {
        let bytes = if v1 { encode_v1(src, dst) } else { encode_v2(src, dst) };
        for i in 0..bytes.len() {
            prop_assert_eq!(parse(&bytes[..i]), Ok(None), "prefix {}", i);
            let need = min_remaining(&bytes[..i]);
            prop_assert!(need >= 1 && need <= bytes.len() - i, "prefix {}: need {}", i, need);
        }
    }

    #[test]
    fn reads_never_pass_the_header(
        src in any_socket_addr(),
        dst in any_socket_addr(),
        v1 in any::<bool>(),
        chunk in 1usize..40,
        trailer in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let header = if v1 { encode_v1(src, dst) } else { encode_v2(src, dst) };
        let data = [&header[..], &trailer[..]].concat();
        let (result, rest) = read_chunked(&data, chunk);
        prop_assert_eq!(result, Ok(expected(src, dst, if v1 { 1 } else { 2 })));
        prop_assert_eq!(rest, &trailer[..]);
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
        if let Ok(None) = parse(&bytes) {
            prop_assert!(min_remaining(&bytes) >= 1);
        }
    }

    #[test]
    fn parse_never_panics_on_near_headers(
        v1 in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        // Start from a valid prefix so the random bytes reach the deeper checks.
        let mut bytes = if v1 { b"PROXY TCP4 ".to_vec() } else { V2_SIGNATURE.to_vec() };
        bytes.extend_from_slice(&tail);
        match parse(&bytes) {
            Ok(Some((_, n))) => prop_assert!(n <= bytes.len()),
            Ok(None) => prop_assert!(min_remaining(&bytes) >= 1),
            Err(_) => {}
        }
    }

    #[test]
    fn unknown_lines_with_any_payload(payload in proptest::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'), 0..92)
    ) {
        let line = [&b"PROXY UNKNOWN "[..], &payload, b"\r\n"].concat();
        prop_assert_eq!(parse(&line), Ok(Some((none(1), line.len()))));
        for i in 0..line.len() {
            prop_assert_eq!(parse(&line[..i]), Ok(None));
            let need = min_remaining(&line[..i]);
            prop_assert!(need >= 1 && need <= line.len() - i);
        }
    }
}
