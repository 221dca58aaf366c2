//! State per (process, partition) in one flat Vec: each process takes a row
//! the first time it needs one, and a row holds a cell per `PartitionId`.
//! Ops of one process often come in a row, so the last process's row is
//! remembered and most lookups skip the map.

use super::log_view::PartitionId;
use crate::history::ProcessId;
use std::collections::BTreeMap;

pub(crate) struct PerProcess<T> {
    partitions: usize,
    rows: BTreeMap<ProcessId, usize>,
    last: Option<(ProcessId, usize)>,
    cells: Vec<T>,
}

impl<T: Default> PerProcess<T> {
    pub(crate) fn new(partitions: usize) -> PerProcess<T> {
        PerProcess { partitions, rows: BTreeMap::new(), last: None, cells: Vec::new() }
    }

    /// `process`'s cells, indexed by `PartitionId`; created on first use.
    pub(crate) fn row_mut(&mut self, process: ProcessId) -> &mut [T] {
        let row = match self.find(process) {
            Some(row) => row,
            None => {
                let row = self.rows.len();
                self.rows.insert(process, row);
                self.cells.resize_with((row + 1) * self.partitions, T::default);
                self.last = Some((process, row));
                row
            }
        };
        &mut self.cells[row * self.partitions..(row + 1) * self.partitions]
    }

    /// The cell, if `process` has a row yet (if not, every cell is the default).
    pub(crate) fn existing_mut(&mut self, process: ProcessId, partition: PartitionId) -> Option<&mut T> {
        let row = self.find(process)?;
        Some(&mut self.cells[row * self.partitions + partition.index()])
    }

    /// Every process that has a row, ascending, with its cells.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (ProcessId, &[T])> + '_ {
        self.rows.iter().map(|(&process, &row)| (process, &self.cells[row * self.partitions..(row + 1) * self.partitions]))
    }

    /// Every cell of every row.
    pub(crate) fn cells_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.cells.iter_mut()
    }

    fn find(&mut self, process: ProcessId) -> Option<usize> {
        if let Some((last, row)) = self.last {
            if last == process {
                return Some(row);
            }
        }
        let row = *self.rows.get(&process)?;
        self.last = Some((process, row));
        Some(row)
    }
}
