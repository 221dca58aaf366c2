//! State per (process, partition): a row per process, a cell per
//! `PartitionId`, both created on first use (partitions are still being
//! discovered while the view's walk fills these). Process ids are small in
//! practice, so a row is found by direct index; a large id falls back to a map.

use super::log_view::PartitionId;
use crate::history::ProcessId;
use std::collections::BTreeMap;

pub(crate) struct PerProcess<T> {
    /// Rows of processes below `DENSE_PROCESSES`, by process.
    dense: Vec<Option<usize>>,
    /// Rows of the other processes.
    sparse: BTreeMap<ProcessId, usize>,
    cells: Vec<Vec<T>>,
}

/// Process ids below this are found without the map.
const DENSE_PROCESSES: ProcessId = 1 << 12;

impl<T: Default> PerProcess<T> {
    pub(crate) fn new() -> PerProcess<T> {
        PerProcess { dense: Vec::new(), sparse: BTreeMap::new(), cells: Vec::new() }
    }

    /// `process`'s row, created on first use.
    pub(crate) fn row_mut(&mut self, process: ProcessId) -> Row<'_, T> {
        let row = self.row_index(process);
        Row(&mut self.cells[row])
    }

    /// The cell, created on first use.
    pub(crate) fn cell_mut(&mut self, process: ProcessId, partition: PartitionId) -> &mut T {
        let row = self.row_index(process);
        grown_to(&mut self.cells[row], partition)
    }

    /// The cell, if it exists yet (if not, it would be the default).
    pub(crate) fn existing_mut(&mut self, process: ProcessId, partition: PartitionId) -> Option<&mut T> {
        let row = self.find(process)?;
        self.cells[row].get_mut(partition.index())
    }

    fn row_index(&mut self, process: ProcessId) -> usize {
        match self.find(process) {
            Some(row) => row,
            None => self.add(process),
        }
    }

    fn find(&self, process: ProcessId) -> Option<usize> {
        if process < DENSE_PROCESSES {
            return self.dense.get(process as usize).copied().flatten();
        }
        self.sparse.get(&process).copied()
    }

    fn add(&mut self, process: ProcessId) -> usize {
        let row = self.cells.len();
        if process < DENSE_PROCESSES {
            let index = process as usize;
            if self.dense.len() <= index {
                self.dense.resize(index + 1, None);
            }
            self.dense[index] = Some(row);
        } else {
            self.sparse.insert(process, row);
        }
        self.cells.push(Vec::new());
        row
    }
}

/// One process's cells.
pub(crate) struct Row<'a, T>(&'a mut Vec<T>);

impl<T: Default> Row<'_, T> {
    /// The cell, created on first use.
    #[inline]
    pub(crate) fn cell(&mut self, partition: PartitionId) -> &mut T {
        grown_to(self.0, partition)
    }
}

#[inline]
fn grown_to<T: Default>(row: &mut Vec<T>, partition: PartitionId) -> &mut T {
    let index = partition.index();
    if row.len() <= index {
        row.resize_with(index + 1, T::default);
    }
    &mut row[index]
}
