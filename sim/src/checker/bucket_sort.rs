//! Sorting what the history records nearly in order. The checkers sort
//! every send by value and every record the drain read by partition and
//! offset; a comparison sort of those was a tenth of a standard seed's
//! checking. Both come from the history almost sorted within a bucket — a
//! process's values in counter order, a partition's records in offset
//! order — but interleaved across buckets. A counting sort by bucket
//! (O(n)), then a sort of each bucket, puts them in order. A bucket's sort
//! is the standard library's stable one, which finds the runs the bucket
//! already holds and merges them: all but free on one sorted run, and
//! O(n log k) on k of them (a retry's values out of place). It copies: a
//! large vector of wide items is better sorted in place.

/// Buckets for sorting by a value's process (more fall back to one sort).
pub(crate) const PROCESS_BUCKETS: usize = 1 << 10;

/// Sorts `items` by (bucket, key), where `bucket` numbers the items'
/// buckets below `buckets`; keys should be unique within a bucket (equal
/// ones keep their order, but the fallback does not promise that). Bucket
/// numbers at or past `buckets` fall back to one sort of everything.
pub(crate) fn sort_by_bucket<T: Copy, K: Ord>(
    items: &mut Vec<T>,
    buckets: usize,
    bucket: impl Fn(&T) -> usize,
    key: impl Fn(&T) -> K,
) {
    if items.iter().any(|item| bucket(item) >= buckets) {
        items.sort_unstable_by_key(|item| (bucket(item), key(item)));
        return;
    }
    let mut starts = vec![0usize; buckets + 1];
    for item in items.iter() {
        starts[bucket(item) + 1] += 1;
    }
    for b in 1..=buckets {
        starts[b] += starts[b - 1];
    }
    let mut next = starts.clone();
    // Overwritten slot by slot: the counts give each item its own.
    let mut sorted: Vec<T> = items.clone();
    for item in items.iter() {
        let at = &mut next[bucket(item)];
        sorted[*at] = *item;
        *at += 1;
    }
    for b in 0..buckets {
        sorted[starts[b]..starts[b + 1]].sort_by_key(&key);
    }
    *items = sorted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_as_a_plain_sort_does(items in prop::collection::vec((0usize..6, any::<u16>()), 0..300)) {
            let mut items: Vec<(usize, u16)> = items;
            items.sort_unstable();
            items.dedup();
            // Out of order: every bucket's run reversed and the buckets too.
            items.reverse();
            let mut expected = items.clone();
            expected.sort_unstable();
            sort_by_bucket(&mut items, 5, |&(b, _)| b, |&(_, k)| k);
            prop_assert_eq!(items, expected);
        }
    }
}
