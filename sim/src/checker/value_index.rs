//! Finding a value in a sorted vector in two array reads. The checkers look
//! values up per record read and per record observed (a writer, whether a
//! value was ever sent), and a binary search over every send of a history
//! missed the cache at almost every step. Values are `process << 32 |
//! counter` with each process's counters dense from 0, so a table per
//! process, indexed by counter, finds one directly.

use crate::history::Value;

/// An index over a vector sorted by value (repeats allowed: the first of a
/// value's run is found). It does not hold the vector; every lookup is given it.
#[derive(Debug, Default)]
pub(crate) struct ValueIndex {
    /// By process.
    processes: Vec<Slots>,
}

#[derive(Debug)]
enum Slots {
    /// By counter: 1 + the position of the value's first entry (0: none).
    Dense(Vec<u32>),
    /// The process's counters are too sparse for a table: binary search
    /// (as for a process beyond the table of processes).
    Sparse,
}

impl ValueIndex {
    /// How much larger than its entries a process's table may be.
    const SLACK: usize = 4;
    /// Processes beyond this are not indexed (`Value::new` makes none; a
    /// history read from a file may hold any).
    const PROCESSES: usize = 1 << 16;

    /// Indexes `sorted`, ascending by `key`.
    pub(crate) fn new<T>(sorted: &[T], key: impl Fn(&T) -> Value) -> ValueIndex {
        assert!(sorted.len() < u32::MAX as usize, "positions are u32");
        let mut processes = Vec::new();
        let mut next = 0;
        for run in sorted.chunk_by(|a, b| key(a).process() == key(b).process()) {
            let (start, process) = (next, key(&run[0]).process() as usize);
            next += run.len();
            if process >= Self::PROCESSES {
                break; // so is every later one
            }
            processes.resize_with(process + 1, || Slots::Dense(Vec::new()));
            let highest = key(&run[run.len() - 1]).counter() as usize;
            if highest >= run.len() * Self::SLACK + 1024 {
                processes[process] = Slots::Sparse;
                continue;
            }
            let mut table = vec![0u32; highest + 1];
            // In reverse, so a repeated value keeps its first position.
            for (at, entry) in (start..start + run.len()).zip(run).rev() {
                table[key(entry).counter() as usize] = at as u32 + 1;
            }
            processes[process] = Slots::Dense(table);
        }
        ValueIndex { processes }
    }

    /// The position in `sorted` (the vector this indexes) of `value`'s first entry.
    pub(crate) fn find<T>(&self, sorted: &[T], key: impl Fn(&T) -> Value, value: Value) -> Option<usize> {
        let at = match self.processes.get(value.process() as usize) {
            Some(Slots::Dense(table)) => (*table.get(value.counter() as usize)?).checked_sub(1)? as usize,
            _ => sorted.partition_point(|entry| key(entry) < value),
        };
        sorted.get(at).filter(|entry| key(entry) == value).map(|_| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_of_each_value_dense_sparse_and_beyond() {
        let mut values = vec![
            Value::new(0, 0),
            Value::new(0, 2),
            Value::new(0, 2),
            Value::new(3, 1),
            Value::new(5, 1_000_000), // sparse: binary search
            Value::new(5, 7),
            Value::CORRUPT, // beyond the processes indexed
        ];
        values.sort();
        let index = ValueIndex::new(&values, |v| *v);
        for (at, &value) in values.iter().enumerate() {
            let first = values.iter().position(|&v| v == value).unwrap();
            assert_eq!(index.find(&values, |v| *v, value), Some(first), "{value} at {at}");
        }
        for absent in
            [Value::new(0, 1), Value::new(0, 3), Value::new(1, 0), Value::new(3, 0), Value::new(5, 8), Value::new(9, 0)]
        {
            assert_eq!(index.find(&values, |v| *v, absent), None, "{absent}");
        }
        assert_eq!(ValueIndex::new(&[] as &[Value], |v| *v).find(&[] as &[Value], |v| *v, Value::new(0, 0)), None);
    }
}
