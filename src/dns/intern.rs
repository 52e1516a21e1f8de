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
    /// Ids, found by the hash of their name.
    index: HashTable<u32>,
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
        let (text, ends) = (&self.text, &self.ends);
        let found = self
            .index
            .find(hash, |&id| slice(text, ends, id as usize) == name);
        if let Some(&id) = found {
            return NameId(id);
        }
        let id = u32::try_from(self.ends.len()).expect("fewer than 2^32 names");
        self.text.push_str(name);
        self.ends
            .push(u32::try_from(self.text.len()).expect("names under 4 GiB"));
        let (text, ends, state) = (&self.text, &self.ends, &self.state);
        self.index.insert_unique(hash, id, |&id| {
            state.hash_one(slice(text, ends, id as usize))
        });
        NameId(id)
    }

    /// The id of `name`, if it is in the table.
    pub fn get(&self, name: &str) -> Option<NameId> {
        let hash = self.state.hash_one(name);
        self.index
            .find(hash, |&id| self.name(NameId(id)) == name)
            .map(|&id| NameId(id))
    }

    pub fn name(&self, id: NameId) -> &str {
        slice(&self.text, &self.ends, id.index())
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

fn slice<'t>(text: &'t str, ends: &[u32], index: usize) -> &'t str {
    let start = if index == 0 {
        0
    } else {
        ends[index - 1] as usize
    };
    &text[start..ends[index] as usize]
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
