//! Interned zone names: every name of a zone is stored once, in one text buffer, and known
//! by a `NameId` after that. Records name their owner and their SRV/NS target by id, so a
//! zone of half a million records holds no string per record and no reference count per
//! record, and building one costs one hash probe per name written.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::dns::name::FastState;

/// A name of a `NameTable`: an index, valid only with the table (or zone) it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameId(u32);

impl NameId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id at `index` of a table (or zone) that has that many names.
    pub(crate) fn from_index(index: usize) -> NameId {
        NameId(u32::try_from(index).expect("fewer than 2^32 names"))
    }
}

/// Names by id and ids by name.
#[derive(Debug, Clone, Default)]
pub struct NameTable {
    /// Every name, one after the other.
    text: String,
    /// Where each name ends in `text`; a name starts where the previous one ends.
    ends: Vec<u32>,
    /// Each name's id and where it is in `text`, found by the hash of the name. The
    /// position is kept here too, so a probe reads the text without a look in `ends`.
    index: HashTable<Entry>,
    state: FastState,
}

// === impl NameTable ===

impl NameTable {
    pub fn with_capacity(names: usize, bytes: usize) -> NameTable {
        NameTable {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(names),
            index: HashTable::with_capacity(names),
            state: FastState::default(),
        }
    }

    /// The id of `name`, adding it when it is new. Names are taken as they are: callers
    /// write them lower case with a trailing dot.
    pub fn intern(&mut self, name: &str) -> NameId {
        let hash = self.state.hash_one(name);
        let text = &self.text;
        if let Some(entry) = self.index.find(hash, |e| e.text(text) == name) {
            return NameId(entry.id);
        }
        let id = u32::try_from(self.ends.len()).expect("fewer than 2^32 names");
        let start = self.text.len() as u32;
        self.text.push_str(name);
        let end = u32::try_from(self.text.len()).expect("names under 4 GiB");
        self.ends.push(end);
        let (text, state) = (&self.text, &self.state);
        self.index
            .insert_unique(hash, Entry { id, start, end }, |e| {
                state.hash_one(e.text(text))
            });
        NameId(id)
    }

    /// The id of `name`, if it is in the table.
    #[inline]
    pub fn get(&self, name: &str) -> Option<NameId> {
        let hash = self.state.hash_one(name);
        self.index
            .find(hash, |e| e.text(&self.text) == name)
            .map(|e| NameId(e.id))
    }

    #[inline]
    pub fn name(&self, id: NameId) -> &str {
        let i = id.index();
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// How many names there are; ids are `0..len`.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every id with its name, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (NameId, &str)> {
        (0..self.ends.len()).map(|i| {
            let id = NameId(i as u32);
            (id, self.name(id))
        })
    }
}

/// One name in the index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u32,
    start: u32,
    end: u32,
}

impl Entry {
    #[inline]
    fn text(self, text: &str) -> &str {
        &text[self.start as usize..self.end as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_stored_once_and_found_by_text_and_id() {
        let mut table = NameTable::default();
        let a = table.intern("app.marathon.mesos.");
        let b = table.intern("leader.mesos.");
        assert_ne!(a, b);
        assert_eq!(table.intern("app.marathon.mesos."), a);
        assert_eq!(table.len(), 2);
        assert_eq!(table.name(a), "app.marathon.mesos.");
        assert_eq!(table.name(b), "leader.mesos.");
        assert_eq!(table.get("leader.mesos."), Some(b));
        assert_eq!(table.get("leader.mesos"), None);
        assert_eq!(table.get("LEADER.mesos."), None);
        let all: Vec<&str> = table.iter().map(|(_, n)| n).collect();
        assert_eq!(all, ["app.marathon.mesos.", "leader.mesos."]);
    }

    #[test]
    fn many_names_survive_the_table_growing() {
        let mut table = NameTable::default();
        let ids: Vec<NameId> = (0..5000)
            .map(|i| table.intern(&format!("t{i}.mesos.")))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(table.get(&format!("t{i}.mesos.")), Some(*id));
            assert_eq!(table.name(*id), format!("t{i}.mesos."));
        }
        // The empty name is a name like any other.
        let empty = table.intern("");
        assert_eq!(table.name(empty), "");
        assert_eq!(table.get(""), Some(empty));
    }
}
