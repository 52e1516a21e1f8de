//! A hash map split into shards, each behind its own `Arc`: a clone copies the shard
//! pointers, and a write copies only the shard it lands in. The route table's vhost and
//! app-id maps are these, so patching one app in a 10,000-app table copies (and later
//! frees) a few dozen entries instead of every vhost.
//!
//! A key is hashed once: the middle bits of the hash pick the shard, the shard's table
//! uses the whole hash (hashbrown takes its bucket from the low bits and its tag from the
//! top ones), so a lookup costs what a `HashMap` lookup costs plus one pointer.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;

/// 256 shards: a 10,000-key map copies about 40 entries per write.
const SHARD_BITS: u32 = 8;
const SHARDS: usize = 1 << SHARD_BITS;

/// A map from `K` to `V` whose clones share every shard not written since.
#[derive(Clone)]
pub struct ShardedMap<K, V> {
    /// One per map and kept by its clones, so a key hashes the same in all of them.
    hasher: RandomState,
    shards: Vec<Arc<HashTable<(K, V)>>>,
    len: usize,
}

// === impl ShardedMap ===

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    pub fn new() -> ShardedMap<K, V> {
        // One empty table shared by every shard until it is written.
        let empty = Arc::new(HashTable::new());
        ShardedMap {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| empty.clone()).collect(),
            len: 0,
        }
    }

    /// Room for about `n` keys without growing (keys spread evenly over the shards).
    pub fn with_capacity(n: usize) -> ShardedMap<K, V> {
        if n == 0 {
            return ShardedMap::new();
        }
        let per_shard = n / SHARDS + n / SHARDS / 4 + 1;
        ShardedMap {
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Arc::new(HashTable::with_capacity(per_shard)))
                .collect(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The key's hash, and its shard.
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 32) as usize & (SHARDS - 1))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.shards[shard]
            .find(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// The value of `key`, to change in place (its shard is copied if a clone shares it).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.shards[shard].find(hash, |(k, _)| k.borrow() == key)?;
        Arc::make_mut(&mut self.shards[shard])
            .find_mut(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// The value of `key`, inserting `make()` first when there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let (hash, shard) = self.locate(&key);
        let hasher = &self.hasher;
        let table = Arc::make_mut(&mut self.shards[shard]);
        let entry = table.entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k));
        let entry = match entry {
            hashbrown::hash_table::Entry::Occupied(e) => e.into_mut(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                self.len += 1;
                e.insert((key, make())).into_mut()
            }
        };
        &mut entry.1
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let mut value = Some(value);
        let slot = self.get_or_insert_with(key, || value.take().expect("taken once"));
        value.map(|v| std::mem::replace(slot, v))
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.shards[shard].find(hash, |(k, _)| k.borrow() == key)?;
        let table = Arc::make_mut(&mut self.shards[shard]);
        let (entry, _) = table
            .find_entry(hash, |(k, _)| k.borrow() == key)
            .ok()?
            .remove();
        self.len -= 1;
        Some(entry.1)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards
            .iter()
            .flat_map(|table| table.iter().map(|(k, v)| (k, v)))
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> ShardedMap<K, V> {
        ShardedMap::new()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for ShardedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> ShardedMap<K, V> {
        let entries = entries.into_iter();
        let mut map = ShardedMap::with_capacity(entries.size_hint().0);
        for (k, v) in entries {
            map.insert(k, v);
        }
        map
    }
}

impl<K: fmt::Debug + Hash + Eq + Clone, V: fmt::Debug + Clone> fmt::Debug for ShardedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// Over random inserts, replacements and removals, the map and a clone taken halfway
    /// each agree with a `HashMap` given the same steps: a write to one never shows in
    /// the other.
    #[test]
    fn behaves_as_a_hash_map_and_clones_stay_apart() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut map: ShardedMap<Arc<str>, u32> = ShardedMap::new();
        let mut model: HashMap<Arc<str>, u32> = HashMap::new();
        let mut frozen = None;
        for step in 0..4000u32 {
            let key: Arc<str> = Arc::from(format!("host-{}", rng.random_range(0..600)));
            match rng.random_range(0..4) {
                0 => assert_eq!(map.remove(&*key), model.remove(&key)),
                1 => {
                    if let Some(v) = map.get_mut(&*key) {
                        *v += 1;
                    }
                    if let Some(v) = model.get_mut(&key) {
                        *v += 1;
                    }
                }
                2 => {
                    let v = *map.get_or_insert_with(key.clone(), || step);
                    assert_eq!(v, *model.entry(key).or_insert(step));
                }
                _ => assert_eq!(map.insert(key.clone(), step), model.insert(key, step)),
            }
            if step == 2000 {
                frozen = Some((map.clone(), model.clone()));
            }
        }
        let agree = |map: &ShardedMap<Arc<str>, u32>, model: &HashMap<Arc<str>, u32>| {
            assert_eq!(map.len(), model.len());
            let mut entries: Vec<(Arc<str>, u32)> =
                map.iter().map(|(k, v)| (k.clone(), *v)).collect();
            entries.sort();
            let mut expected: Vec<(Arc<str>, u32)> =
                model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            expected.sort();
            assert_eq!(entries, expected);
            for (k, v) in model {
                assert_eq!(map.get(&**k), Some(v));
            }
            assert_eq!(map.get("absent"), None);
        };
        agree(&map, &model);
        let (map_then, model_then) = frozen.expect("cloned halfway");
        agree(&map_then, &model_then);
    }

    /// A write copies only the shard it lands in: every other shard is still the one the
    /// clone holds.
    #[test]
    fn a_write_copies_one_shard() {
        let map: ShardedMap<String, u32> = (0..5000).map(|n| (format!("k{n}"), n)).collect();
        let mut changed = map.clone();
        changed.insert("k17".into(), 0);
        changed.remove("k18");
        let shared = (0..SHARDS)
            .filter(|&s| Arc::ptr_eq(&map.shards[s], &changed.shards[s]))
            .count();
        assert!(shared >= SHARDS - 2, "{shared} of {SHARDS} shards shared");
        assert_eq!(map.get("k17"), Some(&17));
        assert_eq!(changed.get("k17"), Some(&0));
        assert_eq!((map.len(), changed.len()), (5000, 4999));
    }
}
