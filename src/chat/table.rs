//! A table keyed by connection id. Connection ids are the loop's slab keys:
//! small, dense integers reused as connections come and go. So a vector of
//! slots indexed by the id beats a hash map: no hashing on the hot path
//! (each broadcast looks up every recipient's dialect), and no per-entry
//! overhead beyond the slot.

use super::ConnId;

/// `ConnId -> T`, a slot per id up to the highest seen.
#[derive(Debug, Clone)]
pub struct ConnTable<T> {
    slots: Vec<Option<T>>,
}

impl<T> Default for ConnTable<T> {
    fn default() -> Self {
        ConnTable { slots: Vec::new() }
    }
}

impl<T> ConnTable<T> {
    pub fn get(&self, conn: ConnId) -> Option<&T> {
        self.slots.get(conn)?.as_ref()
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut T> {
        self.slots.get_mut(conn)?.as_mut()
    }

    /// Puts `value` at `conn`, returning what was there.
    pub fn insert(&mut self, conn: ConnId, value: T) -> Option<T> {
        if conn >= self.slots.len() {
            self.slots.resize_with(conn + 1, || None);
        }
        self.slots[conn].replace(value)
    }

    pub fn remove(&mut self, conn: ConnId) -> Option<T> {
        self.slots.get_mut(conn)?.take()
    }

    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// The entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(c, v)| v.as_ref().map(|v| (c, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_by_id() {
        let mut t = ConnTable::default();
        assert_eq!(t.insert(3, "c"), None);
        assert_eq!(t.insert(1, "a"), None);
        assert_eq!(t.insert(3, "C"), Some("c"));
        assert_eq!(t.get(3), Some(&"C"));
        assert_eq!(t.get(2), None);
        assert_eq!(t.get(99), None);
        assert_eq!(t.iter().collect::<Vec<_>>(), [(1, &"a"), (3, &"C")]);
        assert_eq!(t.remove(1), Some("a"));
        assert_eq!(t.remove(1), None);
        assert_eq!(t.iter().count(), 1);
    }
}
