//! The exactly-once-pipeline checker on handmade histories: one clean
//! consume-transform-produce run (two transactions committed, one aborted
//! and its input processed again), and near-identical twins that break it
//! one way at a time.

use super::log_view::LogView;
use super::tests::{render, MS};
use super::txn::Txns;
use super::txn_tests::{aborted, committed, v};
use super::{check_history, Invariant};
use crate::history::{Call, History, Outcome, Partition, PipelineInfo, Polled, ProcessId, TxnIntent, Value};

/// The pipeline's process; the input producer; the drain.
const PIPE: ProcessId = 5;
const PRODUCER: ProcessId = 1;
const DRAIN: ProcessId = 9;

fn at(topic: &str, partition: u32) -> Partition {
    Partition { topic: topic.into(), partition }
}

/// Pipeline histories at chosen times (`at`, in ms): group `g` reads
/// `in` and writes `out`; the drain reads committed.
struct Pipe {
    history: History,
    now_ns: u64,
}

impl Pipe {
    fn new(caught_up: bool) -> Pipe {
        let mut history = History::default();
        history.pipelines.push(PipelineInfo {
            group: "g".into(),
            inputs: vec!["in".into()],
            output: "out".into(),
            processes: vec![PIPE],
            caught_up,
        });
        history.drain_processes.push(DRAIN);
        history.read_committed_consumers.extend([PIPE, DRAIN]);
        Pipe { history, now_ns: 0 }
    }

    fn at(&mut self, ms: u64) -> &mut Self {
        self.now_ns = ms * MS;
        self
    }

    /// An op by `process` invoked now and answered `after_ms` later.
    fn op(&mut self, process: ProcessId, call: Call, after_ms: u64, outcome: Outcome) -> u64 {
        let op = self.history.invoke(process, self.now_ns, call);
        self.history.complete(op, self.now_ns + after_ms * MS, outcome);
        op
    }

    /// An ok send of `value` (by its process) to `topic`-`partition`, landing at `offset`.
    fn send(&mut self, topic: &str, partition: u32, offset: i64, value: Value) -> u64 {
        let call = Call::Send { topic: topic.into(), partition: Some(partition), value };
        self.op(value.process(), call, 1, Outcome::SendOk { partition: at(topic, partition), offset })
    }

    /// An ok poll by `process` of `records` as (topic, offset, value), partition 0.
    fn poll(&mut self, process: ProcessId, records: &[(&str, i64, Value)]) -> u64 {
        let records = records.iter().map(|&(t, offset, value)| Polled { partition: at(t, 0), offset, value }).collect();
        self.op(process, Call::Poll, 1, Outcome::PollOk { records })
    }

    fn seek(&mut self, process: ProcessId, offset: i64) {
        let call =
            Call::Seek(Box::new(crate::history::Seek { partition: at("in", 0), offset, cause: Default::default() }));
        self.op(process, call, 0, Outcome::Ok);
    }

    fn begin(&mut self) -> u64 {
        let call =
            Call::Txn { transactional_id: "tx-g".into(), producer_id: 1005, epoch: 0, intent: TxnIntent::Commit };
        self.history.invoke(PIPE, self.now_ns, call)
    }

    /// sendOffsetsToTransaction: next offset `next` of in-0, and the transformed pairs.
    fn txn_offsets(&mut self, next: i64, transformed: &[(Value, Value)]) {
        let call = Call::TxnOffsets(Box::new(crate::history::TxnOffsets {
            group: "g".into(),
            generation: 1,
            member: Some("m-1".into()),
            offsets: vec![(at("in", 0), next)],
            transformed: transformed.to_vec(),
            polled: None,
        }));
        self.op(PIPE, call, 0, Outcome::Ok);
    }

    /// commitTransaction (or abort) asked now; answered 2ms later with `outcome`.
    fn end(&mut self, txn: u64, commit: bool, outcome: Outcome) {
        let call = Call::EndTxn { transactional_id: "tx-g".into(), commit };
        self.op(PIPE, call, 2, outcome.clone());
        self.history.complete(txn, self.now_ns + 2 * MS, outcome);
    }

    /// One transaction of the pipeline: poll `inputs` (offset, value) of in-0,
    /// send output `p5:n` for each to out-0 from `out_offset` on, commit
    /// `next`, end with `outcome`.
    fn transaction(&mut self, ms: u64, inputs: &[(i64, Value)], out_offset: i64, next: i64, outcome: Outcome) {
        let txn = self.at(ms).begin();
        let polled: Vec<(&str, i64, Value)> = inputs.iter().map(|&(offset, value)| ("in", offset, value)).collect();
        self.at(ms + 1).poll(PIPE, &polled);
        let mut pairs = Vec::new();
        for (k, &(_, input)) in inputs.iter().enumerate() {
            let output = v(PIPE, input.0 as u32 + (out_offset as u32) * 100);
            self.at(ms + 2 + k as u64).send("out", 0, out_offset + k as i64, output);
            pairs.push((input, output));
        }
        self.at(ms + 10).txn_offsets(next, &pairs);
        let commit = outcome == committed();
        self.at(ms + 11).end(txn, commit, outcome);
    }

    /// The drain reads committed `in` and `out` records (offset, value), then the group's offsets.
    fn drain(&mut self, ms: u64, inputs: &[(i64, Value)], outputs: &[(i64, Value)], committed: Option<i64>) {
        let inputs: Vec<(&str, i64, Value)> = inputs.iter().map(|&(o, val)| ("in", o, val)).collect();
        let outputs: Vec<(&str, i64, Value)> = outputs.iter().map(|&(o, val)| ("out", o, val)).collect();
        self.at(ms).poll(DRAIN, &inputs);
        self.at(ms + 5).poll(DRAIN, &outputs);
        if let Some(next) = committed {
            let call = Call::GroupOffsets(Box::new(crate::history::GroupOffsets {
                group: "g".into(),
                offsets: vec![(at("in", 0), next)],
            }));
            self.at(ms + 10).op(DRAIN, call, 0, Outcome::Ok);
        }
    }

    /// The two pipeline invariants' findings.
    fn check(&self) -> String {
        let mut report = check_history(&self.history);
        let ours = [Invariant::ExactlyOncePipeline, Invariant::PipelineLiveness];
        report.violations.retain(|v| ours.contains(&v.invariant));
        report.counts.retain(|i, _| ours.contains(i));
        render(&report)
    }
}

/// The finding of a pipeline that had not caught up, alone.
const NOT_CAUGHT_UP: &str = "pipeline-liveness: group g (processes [5]): not every process had caught up (its last \
                             polls empty, no transaction open) when the pipelines were stopped, within the bound \
                             after the heal\n\
                             count pipeline-liveness = 1\n";

/// Input p1:0..p1:3 at in-0 offsets 0..3.
fn inputs() -> Vec<(i64, Value)> {
    (0..4).map(|k| (k, v(PRODUCER, k as u32))).collect()
}

/// The output value `transaction` sends for input `input` starting at `out_offset`.
fn out(input: Value, out_offset: i64) -> Value {
    v(PIPE, input.0 as u32 + (out_offset as u32) * 100)
}

/// Four inputs; transaction 1 (committed) transforms the first two into
/// out-0 offsets 0, 1 (marker at 2); transaction 2 transforms the other two
/// into out-0 offsets 3, 4 and ends with `second` (marker at 5); if it
/// aborted, transaction 3 seeks back and processes them again into out-0
/// offsets 6, 7. Each commits in-0's next offset.
fn run(caught_up: bool, second: Outcome, third: bool) -> Pipe {
    let mut p = Pipe::new(caught_up);
    for (offset, value) in inputs() {
        p.at(1).send("in", 0, offset, value);
    }
    let inputs = inputs();
    p.transaction(10, &inputs[..2], 0, 2, committed());
    p.transaction(30, &inputs[2..], 3, 4, second);
    if third {
        p.at(50).seek(PIPE, 2);
        p.transaction(51, &inputs[2..], 6, 4, committed());
    }
    p
}

/// What the drain reads of `out` after the clean run.
fn clean_output() -> Vec<(i64, Value)> {
    let inputs = inputs();
    vec![(0, out(inputs[0].1, 0)), (1, out(inputs[1].1, 0)), (6, out(inputs[2].1, 6)), (7, out(inputs[3].1, 6))]
}

#[test]
fn a_clean_pipeline_with_an_aborted_and_reprocessed_transaction_passes_every_checker() {
    let mut p = run(true, aborted(), true);
    p.drain(100, &inputs(), &clean_output(), Some(4));
    let report = check_history(&p.history);
    assert_eq!(render(&report), "");
    assert_eq!(report.count(Invariant::ExactlyOncePipeline), 0);
    assert!(report.counts.contains_key(&Invariant::ExactlyOncePipeline));
    assert!(report.counts.contains_key(&Invariant::PipelineLiveness));
}

#[test]
fn offset_commits_belong_to_their_transactions() {
    let p = run(true, aborted(), true);
    let view = LogView::build(&p.history);
    let txns = Txns::build(&p.history, &view);
    let owners: Vec<Option<usize>> = txns.offset_commits().iter().map(|c| c.txn).collect();
    assert_eq!(owners, [Some(0), Some(1), Some(2)]);
}

#[test]
fn an_input_reflected_by_two_committed_transactions_is_a_duplicate() {
    // Transaction 2 committed after all, and transaction 3 processed its inputs again.
    let mut p = run(true, committed(), true);
    let inputs = inputs();
    let mut output = clean_output();
    output.extend([(3, out(inputs[2].1, 3)), (4, out(inputs[3].1, 3))]);
    output.sort();
    p.drain(100, &inputs, &output, Some(4));
    assert_eq!(
        p.check(),
        "exactly-once-pipeline: group g: input p1:2 (in-0 offset 2 (read by op 23 (process 9, 100ms..101ms))) \
         is reflected 2 times in the committed output: p5:302 at out-0 offset 3, transformed by op 14 \
         (process 5, 40ms..40ms) in generation 1 in transaction op 10 (process 5, 30ms..43ms) of tx-g \
         (producer 1005, epoch 0), committed; p5:602 at out-0 offset 6, transformed by op 21 (process 5, \
         61ms..61ms) in generation 1 in transaction op 17 (process 5, 51ms..64ms) of tx-g (producer 1005, \
         epoch 0), committed\n\
         exactly-once-pipeline: group g: input p1:3 (in-0 offset 3 (read by op 23 (process 9, 100ms..101ms))) \
         is reflected 2 times in the committed output: p5:303 at out-0 offset 4, transformed by op 14 \
         (process 5, 40ms..40ms) in generation 1 in transaction op 10 (process 5, 30ms..43ms) of tx-g \
         (producer 1005, epoch 0), committed; p5:603 at out-0 offset 7, transformed by op 21 (process 5, \
         61ms..61ms) in generation 1 in transaction op 17 (process 5, 51ms..64ms) of tx-g (producer 1005, \
         epoch 0), committed\n\
         count exactly-once-pipeline = 2\n"
    );
}

#[test]
fn an_input_below_the_committed_offset_without_committed_output_is_lost() {
    // Transaction 2 aborted and nothing processed its inputs again, yet the
    // group's offset says they were consumed.
    let mut p = run(true, aborted(), false);
    let output = &clean_output()[..2];
    p.drain(100, &inputs(), output, Some(4));
    assert_eq!(
        p.check(),
        "exactly-once-pipeline: group g: input p1:2 lost: at in-0 offset 2 (read by op 16 (process 9, \
         100ms..101ms)), below the group's committed offsets (committed offset of in-0 is 4; op 18 (process 9, \
         110ms..110ms)), it has no output in the committed output; transformed into p5:302 by op 14 (process 5, \
         40ms..40ms) in generation 1 in transaction op 10 (process 5, 30ms..43ms) of tx-g (producer 1005, epoch \
         0), aborted (aborted on purpose)\n\
         exactly-once-pipeline: group g: input p1:3 lost: at in-0 offset 3 (read by op 16 (process 9, \
         100ms..101ms)), below the group's committed offsets (committed offset of in-0 is 4; op 18 (process 9, \
         110ms..110ms)), it has no output in the committed output; transformed into p5:303 by op 14 (process 5, \
         40ms..40ms) in generation 1 in transaction op 10 (process 5, 30ms..43ms) of tx-g (producer 1005, epoch \
         0), aborted (aborted on purpose)\n\
         count exactly-once-pipeline = 2\n"
    );
}

#[test]
fn without_the_group_offsets_only_origin_and_duplicates_are_judged() {
    let mut p = run(true, aborted(), false);
    p.drain(100, &inputs(), &clean_output()[..2], None);
    assert_eq!(p.check(), "");
}

#[test]
fn an_aborted_transactions_outputs_never_count_and_its_inputs_need_no_output_above_the_offsets() {
    // Transaction 2 aborted, nothing processed its inputs again, and the
    // group's offset stayed at 2: nothing lost (the group did not catch up).
    let mut p = run(false, aborted(), false);
    p.drain(100, &inputs(), &clean_output()[..2], Some(2));
    assert_eq!(p.check(), NOT_CAUGHT_UP);
}

#[test]
fn output_committed_beyond_the_committed_offsets_is_a_disagreement() {
    // The clean run, but the group's offset says only the first two inputs were consumed.
    let mut p = run(true, aborted(), true);
    p.drain(100, &inputs(), &clean_output(), Some(2));
    assert_eq!(
        p.check(),
        "exactly-once-pipeline: group g: offsets and output disagree: input p1:2 at in-0 offset 2 (read by op 23 \
         (process 9, 100ms..101ms)) lies at or above the group's committed offsets (committed offset of in-0 is \
         2; op 25 (process 9, 110ms..110ms)), yet its output is committed: p5:602 at out-0 offset 6, transformed \
         by op 21 (process 5, 61ms..61ms) in generation 1 in transaction op 17 (process 5, 51ms..64ms) of tx-g \
         (producer 1005, epoch 0), committed\n\
         exactly-once-pipeline: group g: offsets and output disagree: input p1:3 at in-0 offset 3 (read by op 23 \
         (process 9, 100ms..101ms)) lies at or above the group's committed offsets (committed offset of in-0 is \
         2; op 25 (process 9, 110ms..110ms)), yet its output is committed: p5:603 at out-0 offset 7, transformed \
         by op 21 (process 5, 61ms..61ms) in generation 1 in transaction op 17 (process 5, 51ms..64ms) of tx-g \
         (producer 1005, epoch 0), committed\n\
         pipeline-liveness: group g: every process had caught up, but its committed offset of in-0 is 2 (op 25 \
         (process 9, 110ms..110ms)): short of the end of what the drain read there, 4 (it read p1:3 at offset \
         3, op 23 (process 9, 100ms..101ms))\n\
         count exactly-once-pipeline = 2\n\
         count pipeline-liveness = 1\n"
    );
}

#[test]
fn an_output_no_pair_names_is_of_unknown_origin() {
    let mut p = run(true, aborted(), true);
    let stray = v(7, 0);
    p.at(70).send("out", 0, 8, stray);
    let mut output = clean_output();
    output.push((8, stray));
    p.drain(100, &inputs(), &output, Some(4));
    assert_eq!(
        p.check(),
        "exactly-once-pipeline: group g: output of unknown origin: the drain read p7:0 at out-0 offset 8 (op \
         25 (process 9, 105ms..106ms)), and no txn-offsets op pairs it with an input\n\
         count exactly-once-pipeline = 1\n"
    );
}

#[test]
fn a_caught_up_group_with_an_offset_short_of_the_input_end_is_a_liveness_finding() {
    // A fifth input the pipeline never processed, though it said it caught up.
    let mut p = run(true, aborted(), true);
    let late = v(PRODUCER, 4);
    p.at(70).send("in", 0, 4, late);
    let mut inputs = inputs();
    inputs.push((4, late));
    p.drain(100, &inputs, &clean_output(), Some(4));
    assert_eq!(
        p.check(),
        "pipeline-liveness: group g: every process had caught up, but its committed offset of in-0 is 4 (op 26 \
         (process 9, 110ms..110ms)): short of the end of what the drain read there, 5 (it read p1:4 at offset \
         4, op 24 (process 9, 100ms..101ms))\n\
         count pipeline-liveness = 1\n"
    );
    // The same, not caught up: only that is reported.
    p.history.pipelines[0].caught_up = false;
    assert_eq!(p.check(), NOT_CAUGHT_UP);
}

#[test]
fn an_input_value_written_twice_may_be_reflected_twice() {
    // A plain producer's retry wrote p1:3 again at in-0 offset 4; the
    // pipeline processed both records.
    let mut p = run(true, aborted(), true);
    let again = v(PRODUCER, 3);
    p.at(70).send("in", 0, 4, again);
    p.transaction(71, &[(4, again)], 8, 5, committed());
    let mut inputs = inputs();
    inputs.push((4, again));
    let mut output = clean_output();
    output.push((8, out(again, 8)));
    p.drain(100, &inputs, &output, Some(5));
    assert_eq!(p.check(), "");
    // Three outputs for its two records are one too many.
    let mut q = run(true, committed(), true);
    q.at(70).send("in", 0, 4, again);
    q.transaction(71, &[(4, again)], 8, 5, committed());
    let mut output = clean_output();
    output.extend([(3, out(inputs[2].1, 3)), (4, out(inputs[3].1, 3)), (8, out(again, 8))]);
    output.sort();
    q.drain(100, &inputs, &output, None);
    let report = q.check();
    assert!(report.contains("input p1:3 (in-0 offset 3 "), "{report}");
    assert!(report.contains("is reflected 3 times"), "{report}");
    assert!(report.ends_with("count exactly-once-pipeline = 2\n"), "{report}");
}

#[test]
fn the_timed_checkers_report_what_check_history_does_and_name_every_stage() {
    let mut clean = run(true, aborted(), true);
    clean.drain(100, &inputs(), &clean_output(), Some(4));
    let mut twice = run(true, committed(), true);
    let mut output = clean_output();
    output.extend([(3, out(inputs()[2].1, 3)), (4, out(inputs()[3].1, 3))]);
    output.sort();
    twice.drain(100, &inputs(), &output, Some(4));
    for history in [&clean.history, &twice.history, &History::default()] {
        let (report, stages) = super::check_history_timed(history);
        assert_eq!(report, check_history(history));
        let names: Vec<&str> = stages.iter().map(|lap| lap.stage).collect();
        assert_eq!(names, super::HISTORY_STAGES);
    }
    assert_ne!(super::check_history_timed(&twice.history).0.count(Invariant::ExactlyOncePipeline), 0);
}
