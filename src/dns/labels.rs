//! The label values of `drover_dns_queries_total{qtype,rcode,transport}`, from fixed lists so
//! the series stay few whatever clients send, and the counters behind them, looked up once.

use std::fmt;
use std::sync::OnceLock;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType as WireType;
use prometheus::IntCounter;

/// The transport a query came over; also its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The `qtype` label values: the types clients ask a Mesos-DNS server for, then "other".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QtypeLabel {
    A,
    Aaaa,
    Srv,
    Soa,
    Ns,
    Any,
    Ptr,
    Txt,
    Mx,
    Other,
}

pub(super) const QTYPES: usize = 10;

impl QtypeLabel {
    /// Every label, in declaration order (`ALL[label as usize] == label`).
    pub(super) const ALL: [QtypeLabel; QTYPES] = [
        QtypeLabel::A,
        QtypeLabel::Aaaa,
        QtypeLabel::Srv,
        QtypeLabel::Soa,
        QtypeLabel::Ns,
        QtypeLabel::Any,
        QtypeLabel::Ptr,
        QtypeLabel::Txt,
        QtypeLabel::Mx,
        QtypeLabel::Other,
    ];

    pub(super) fn of(t: WireType) -> QtypeLabel {
        match t {
            WireType::A => QtypeLabel::A,
            WireType::AAAA => QtypeLabel::Aaaa,
            WireType::SRV => QtypeLabel::Srv,
            WireType::SOA => QtypeLabel::Soa,
            WireType::NS => QtypeLabel::Ns,
            WireType::ANY => QtypeLabel::Any,
            WireType::PTR => QtypeLabel::Ptr,
            WireType::TXT => QtypeLabel::Txt,
            WireType::MX => QtypeLabel::Mx,
            _ => QtypeLabel::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            QtypeLabel::A => "A",
            QtypeLabel::Aaaa => "AAAA",
            QtypeLabel::Srv => "SRV",
            QtypeLabel::Soa => "SOA",
            QtypeLabel::Ns => "NS",
            QtypeLabel::Any => "ANY",
            QtypeLabel::Ptr => "PTR",
            QtypeLabel::Txt => "TXT",
            QtypeLabel::Mx => "MX",
            QtypeLabel::Other => "other",
        }
    }
}

/// The `rcode` label values.
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        // hickory reads 16 back as BADSIG (same code); we only send BADVERS.
        ResponseCode::BADVERS | ResponseCode::BADSIG => 6,
        _ => 7,
    }
}

/// The counter of each (qtype, rcode, transport), looked up once and kept: a query then
/// costs one array index and one atomic add, not a label hash.
pub(super) struct QueryCounters {
    vec: prometheus::IntCounterVec,
    cells: [[[OnceLock<IntCounter>; 2]; RCODES.len()]; QTYPES],
}

impl QueryCounters {
    pub(super) fn new(vec: prometheus::IntCounterVec) -> QueryCounters {
        QueryCounters {
            vec,
            cells: Default::default(),
        }
    }

    pub(super) fn count(&self, qtype: QtypeLabel, rcode: ResponseCode, transport: Transport) {
        self.count_n(qtype, rcode, transport, 1);
    }

    /// Counts `n` replies at once (a batch's tally).
    pub(super) fn count_n(
        &self,
        qtype: QtypeLabel,
        rcode: ResponseCode,
        transport: Transport,
        n: u64,
    ) {
        let r = rcode_index(rcode);
        let t = transport as usize;
        self.cells[qtype as usize][r][t]
            .get_or_init(|| {
                self.vec
                    .with_label_values(&[qtype.label(), RCODES[r], transport.label()])
            })
            .inc_by(n);
    }
}
