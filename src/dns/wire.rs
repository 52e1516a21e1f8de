//! Zone records as hickory wire records, and the per-thread caches that convert each record
//! set once per zone: a query then costs no name parsing and no record allocation. Shared by
//! the handler (`dns::handler`) and the UDP fast path (`dns::fast`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record as WireRecord};

use crate::dns::zone::{Record, RecordData, Zone};

thread_local! {
    pub(super) static CACHE: RefCell<WireCache> = RefCell::new(WireCache::default());
}

/// The wire records of one answer.
pub(super) struct WireAnswer {
    pub(super) answers: Box<[WireRecord]>,
    pub(super) additional: Box<[WireRecord]>,
}

/// Answers already converted to wire records, for one zone: each (name, type) is
/// converted on its first query and shared after that, so a query costs no name parsing
/// and no record allocation. Per thread (no lock); emptied when the zone changes. Holds
/// at most one entry per record set of the zone, and keeps the zone it is for alive
/// until the next query sees a new one.
#[derive(Default)]
pub(super) struct WireCache {
    zone: Option<Arc<Zone>>,
    /// By the address and length of the zone's answer slice: unique within a zone.
    answers: HashMap<(usize, usize), Arc<WireAnswer>, BuildHasherDefault<AddressHasher>>,
    soa: Option<Arc<WireRecord>>,
}

impl WireCache {
    pub(super) fn use_zone(&mut self, zone: &Arc<Zone>) {
        if switch_zone(&mut self.zone, zone) {
            self.answers.clear();
            self.soa = None;
        }
    }

    /// After `use_zone(zone)`, with `answers` and `additional` from that zone.
    pub(super) fn answer(
        &mut self,
        zone: &Zone,
        answers: &[Record],
        additional: &[Record],
    ) -> Arc<WireAnswer> {
        let key = (answers.as_ptr() as usize, answers.len());
        self.answers
            .entry(key)
            .or_insert_with(|| {
                let owner = answers.first().and_then(|r| name(zone.name(r.owner)));
                let answers = owner
                    .map(|owner| {
                        answers
                            .iter()
                            .filter_map(|r| to_wire(zone, r, Some(&owner)))
                            .collect()
                    })
                    .unwrap_or_default();
                let additional = additional
                    .iter()
                    .filter_map(|r| to_wire(zone, r, None))
                    .collect();
                Arc::new(WireAnswer {
                    answers,
                    additional,
                })
            })
            .clone()
    }

    pub(super) fn soa(&mut self, zone: &Zone) -> Option<Arc<WireRecord>> {
        if self.soa.is_none() {
            self.soa = soa_of(zone).map(Arc::new);
        }
        self.soa.clone()
    }
}

/// Hashes a (pointer, length) key with two multiplications; SipHash's flood resistance
/// buys nothing for keys the zone makes.
#[derive(Default)]
pub(super) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Makes `held` the zone `zone`: true when it held another one, so what a cache built
/// from it is stale.
pub(super) fn switch_zone(held: &mut Option<Arc<Zone>>, zone: &Arc<Zone>) -> bool {
    if held.as_ref().is_some_and(|z| Arc::ptr_eq(z, zone)) {
        return false;
    }
    *held = Some(zone.clone());
    true
}

// === names and records on the wire ===

/// A name on the wire is at most 255 bytes; as text with dots, at most 254.
pub(super) const NAME_BUF: usize = 256;

/// The question name as `Zone::lookup` takes it: labels joined by `.`, a trailing dot.
/// Built on the stack. A label holding a `.` or a byte that is not printable ASCII cannot
/// be any zone name (their labels are host-name characters), so such bytes become `?`,
/// which keeps the name in (or out of) the domain as it was but matches nothing.
pub(super) fn query_key<'b>(name: &Name, buf: &'b mut [u8; NAME_BUF]) -> &'b str {
    let mut len = 0;
    for label in name.iter() {
        for &b in label {
            if len == NAME_BUF - 1 {
                break;
            }
            buf[len] = if b == b'.' || !b.is_ascii_graphic() {
                b'?'
            } else {
                b
            };
            len += 1;
        }
        if len < NAME_BUF {
            buf[len] = b'.';
            len += 1;
        }
    }
    if len == 0 {
        buf[0] = b'.';
        len = 1;
    }
    // Every byte is printable ASCII or `.`.
    std::str::from_utf8(&buf[..len]).unwrap_or(".")
}

/// A zone name (lower case, trailing dot) as a wire name.
pub(super) fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

/// A record of `zone` as a wire record; `owner` saves parsing the owner again when the
/// caller has it.
pub(super) fn to_wire(zone: &Zone, record: &Record, owner: Option<&Name>) -> Option<WireRecord> {
    let owner = match owner {
        Some(o) => o.clone(),
        None => name(zone.name(record.owner))?,
    };
    let data = match &record.data {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Ns(target) => RData::NS(NS(name(zone.name(*target))?)),
        RecordData::Srv(srv) => RData::SRV(SRV::new(
            zone.srv_priority(),
            zone.srv_weight(),
            srv.port,
            name(zone.name(srv.target))?,
        )),
        RecordData::Soa => {
            let soa = zone.soa_fields();
            RData::SOA(SOA::new(
                name(zone.name(soa.mname))?,
                name(&soa.rname)?,
                soa.serial,
                soa.refresh as i32,
                soa.retry as i32,
                soa.expire as i32,
                soa.minimum,
            ))
        }
    };
    Some(WireRecord::from_rdata(owner, zone.ttl(), data))
}

/// The SOA for the authority section of a negative answer.
pub(super) fn soa_of(zone: &Zone) -> Option<WireRecord> {
    to_wire(zone, zone.soa(), None)
}
