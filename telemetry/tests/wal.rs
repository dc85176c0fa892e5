//! The write-ahead log against real files: round trips, group commit, readers and checkpoints,
//! segment roll-over and collection, torn and corrupted tails, the size limit, and a process
//! killed with SIGKILL in the middle of appending.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use telemetry::wal::{AppendError, Lsn, Record, Signal, Wal, WalConfig, WalError, WalReader};

/// Bytes of a segment header and of a frame header (see the format in `wal/segment.rs` and
/// `wal/record.rs`).
const SEGMENT_HEADER: u64 = 24;
const FRAME_HEADER: u64 = 17;

fn config(dir: &Path, sinks: &[&str]) -> WalConfig {
    WalConfig {
        sinks: sinks.iter().map(|sink| sink.to_string()).collect(),
        ..WalConfig::new(dir)
    }
}

/// A config whose segments hold exactly `per_segment` records of `payload` bytes.
fn small_segments(dir: &Path, sinks: &[&str], payload: u64, per_segment: u64) -> WalConfig {
    WalConfig {
        segment_bytes: SEGMENT_HEADER + per_segment * (FRAME_HEADER + payload),
        ..config(dir, sinks)
    }
}

/// A payload of exactly `len` bytes that says which record it is.
fn payload(index: u64, len: usize) -> Bytes {
    let mut bytes = format!("record-{index}-").into_bytes();
    bytes.resize(len, b'.');
    Bytes::from(bytes)
}

async fn append_n(wal: &Wal, count: u64, len: usize) -> Vec<Lsn> {
    let mut lsns = Vec::new();
    for index in 0..count {
        lsns.push(wal.append(Signal::Logs, payload(index, len)).await.unwrap());
    }
    lsns
}

/// Every record the reader can get now, without waiting.
async fn read_available(reader: &mut WalReader) -> Vec<Record> {
    let mut records = Vec::new();
    while let Some(record) = reader.try_next().await.unwrap() {
        records.push(record);
    }
    records
}

fn lsns(records: &[Record]) -> Vec<u64> {
    records.iter().map(|record| record.lsn.0).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

/// Where the frame of the `index`-th record (0-based) of a segment starts, for records of
/// `payload` bytes.
fn frame_offset(index: u64, payload: u64) -> u64 {
    SEGMENT_HEADER + index * (FRAME_HEADER + payload)
}

#[tokio::test]
async fn records_round_trip_with_signal_and_payload() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    let sent = [
        (Signal::Traces, Bytes::from_static(b"spans")),
        (Signal::Metrics, Bytes::new()),
        (Signal::Logs, Bytes::from(vec![7u8; 300_000])),
        (Signal::Profiles, Bytes::from_static(b"pprof")),
    ];
    let mut appended = Vec::new();
    for (signal, payload) in &sent {
        appended.push(wal.append(*signal, payload.clone()).await.unwrap());
    }
    assert_eq!(appended, vec![Lsn(1), Lsn(2), Lsn(3), Lsn(4)]);

    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(reader.sink(), "sink");
    for (lsn, (signal, payload)) in appended.iter().zip(&sent) {
        let record = reader.next().await.unwrap();
        assert_eq!((record.lsn, record.signal), (*lsn, *signal));
        assert_eq!(&record.payload, payload);
    }
    assert_eq!(reader.try_next().await.unwrap(), None);

    let stats = wal.stats();
    assert_eq!(
        (stats.first_lsn, stats.last_lsn),
        (Some(Lsn(1)), Some(Lsn(4)))
    );
    assert_eq!(stats.appends, 4);
    assert_eq!(stats.segments, 1);
    let frames: u64 = sent
        .iter()
        .map(|(_, payload)| FRAME_HEADER + payload.len() as u64)
        .sum();
    assert_eq!(stats.bytes_on_disk, SEGMENT_HEADER + frames);
    assert_eq!(stats.sinks[0].lag_records, 4);
    assert_eq!(stats.sinks[0].lag_bytes, frames);
    assert_eq!((stats.corrupted_records, stats.truncated_bytes), (0, 0));
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn no_lsn_at_or_below_the_floor_is_handed_out_even_by_a_new_log() {
    // A sink stored position 40 with its own data; the log was then replaced by an empty one.
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        lsn_floor: Lsn(40),
        ..config(dir.path(), &["sink"])
    })
    .await
    .unwrap();
    assert_eq!(append_n(&wal, 2, 10).await, vec![Lsn(41), Lsn(42)]);
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(lsns(&read_available(&mut reader).await), vec![41, 42]);
    drop(reader);
    wal.close().await.unwrap();
    // Below what the log already has, the floor changes nothing.
    let wal = Wal::open(WalConfig {
        lsn_floor: Lsn(5),
        ..config(dir.path(), &["sink"])
    })
    .await
    .unwrap();
    assert_eq!(append_n(&wal, 1, 10).await, vec![Lsn(43)]);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn lsns_keep_increasing_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert_eq!(append_n(&wal, 3, 10).await, vec![Lsn(1), Lsn(2), Lsn(3)]);
    wal.close().await.unwrap();

    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert_eq!(wal.stats().last_lsn, Some(Lsn(3)));
    assert_eq!(append_n(&wal, 3, 10).await, vec![Lsn(4), Lsn(5), Lsn(6)]);
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(
        lsns(&read_available(&mut reader).await),
        vec![1, 2, 3, 4, 5, 6]
    );
    drop(reader);
    wal.close().await.unwrap();

    // Also when the segments of the older records have been collected.
    let wal = Wal::open(small_segments(dir.path(), &["sink"], 10, 1))
        .await
        .unwrap();
    append_n(&wal, 2, 10).await;
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(read_available(&mut reader).await.len(), 8);
    reader.commit(Lsn(8)).await.unwrap();
    assert_eq!(wal.stats().segments, 1);
    assert_eq!(wal.stats().first_lsn, Some(Lsn(8)));
    drop(reader);
    wal.close().await.unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert_eq!(append_n(&wal, 1, 10).await, vec![Lsn(9)]);
    wal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_are_all_acknowledged_and_share_syncs() {
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(config(dir.path(), &["sink"])).await.unwrap());

    // A reader follows the appenders, waiting at the end of the log.
    let mut reader = wal.reader("sink").unwrap();
    let follower = tokio::spawn(async move {
        let mut records = Vec::new();
        while records.len() < (TASKS * PER_TASK) as usize {
            records.push(reader.next().await.unwrap());
        }
        (reader, records)
    });

    let appenders: Vec<_> = (0..TASKS)
        .map(|task| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for index in 0..PER_TASK {
                    let payload = Bytes::from(format!("{task}-{index}"));
                    let lsn = wal.append(Signal::Traces, payload.clone()).await.unwrap();
                    acknowledged.push((lsn, payload));
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = BTreeMap::new();
    for appender in appenders {
        let mine = appender.await.unwrap();
        // Each appender sees its own records in order.
        assert!(mine.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (lsn, payload) in mine {
            assert!(
                acknowledged.insert(lsn, payload).is_none(),
                "{lsn} given twice"
            );
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(acknowledged.len() as u64, total);
    assert_eq!(acknowledged.keys().next(), Some(&Lsn(1)));
    assert_eq!(acknowledged.keys().last(), Some(&Lsn(total)));

    let (reader, records) = follower.await.unwrap();
    assert_eq!(records.len() as u64, total);
    for (record, (lsn, payload)) in records.iter().zip(&acknowledged) {
        assert_eq!((&record.lsn, &record.payload), (lsn, payload));
    }

    let stats = wal.stats();
    eprintln!(
        "group commit: {} appends, {} syncs, {:.1} appends per sync",
        stats.appends,
        stats.syncs,
        stats.appends as f64 / stats.syncs as f64
    );
    assert_eq!(stats.appends, total);
    assert!(stats.syncs > 0);
    assert!(
        stats.syncs * 4 <= stats.appends,
        "{} syncs for {} appends: appends are not sharing syncs",
        stats.syncs,
        stats.appends
    );
    drop(reader);
    Arc::into_inner(wal).unwrap().close().await.unwrap();
}

#[tokio::test]
async fn readers_at_different_paces_each_get_everything() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path(), &["fast", "slow"], 50, 4))
        .await
        .unwrap();
    append_n(&wal, 20, 50).await;

    let mut fast = wal.reader("fast").unwrap();
    let mut slow = wal.reader("slow").unwrap();
    let fast_records = read_available(&mut fast).await;
    fast.commit(Lsn(20)).await.unwrap();
    let mut slow_records = Vec::new();
    for _ in 0..5 {
        slow_records.push(slow.next().await.unwrap());
    }
    slow.commit(Lsn(5)).await.unwrap();

    let stats = wal.stats();
    let lag: BTreeMap<_, _> = stats
        .sinks
        .iter()
        .map(|sink| {
            (
                sink.sink.as_str(),
                (sink.checkpoint, sink.lag_records, sink.lag_bytes),
            )
        })
        .collect();
    assert_eq!(lag["fast"], (Lsn(20), 0, 0));
    assert_eq!(lag["slow"], (Lsn(5), 15, 15 * (FRAME_HEADER + 50)));

    append_n(&wal, 10, 50).await;
    let mut fast_more = read_available(&mut fast).await;
    slow_records.extend(read_available(&mut slow).await);
    let mut fast_all = fast_records;
    fast_all.append(&mut fast_more);
    let expected: Vec<u64> = (1..=30).collect();
    assert_eq!(lsns(&fast_all), expected);
    assert_eq!(lsns(&slow_records), expected);
    assert_eq!(fast_all, slow_records);
    drop((fast, slow));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn checkpoints_survive_reopen_and_uncommitted_records_come_again() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["a", "b"])).await.unwrap();
    append_n(&wal, 10, 20).await;
    let mut a = wal.reader("a").unwrap();
    let mut b = wal.reader("b").unwrap();
    for _ in 0..5 {
        a.next().await.unwrap();
    }
    a.commit(Lsn(5)).await.unwrap();
    for _ in 0..3 {
        a.next().await.unwrap(); // read, never committed
    }
    for _ in 0..2 {
        b.next().await.unwrap();
    }
    b.commit(Lsn(2)).await.unwrap();
    drop((a, b));
    wal.close().await.unwrap();

    let wal = Wal::open(config(dir.path(), &["a", "b"])).await.unwrap();
    let checkpoints: Vec<_> = wal
        .stats()
        .sinks
        .iter()
        .map(|sink| sink.checkpoint)
        .collect();
    assert_eq!(checkpoints, vec![Lsn(5), Lsn(2)]);
    let mut a = wal.reader("a").unwrap();
    let mut b = wal.reader("b").unwrap();
    assert_eq!(
        lsns(&read_available(&mut a).await),
        (6..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        lsns(&read_available(&mut b).await),
        (3..=10).collect::<Vec<_>>()
    );
    drop((a, b));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_new_sink_starts_at_the_oldest_retained_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path(), &["old"], 30, 4))
        .await
        .unwrap();
    append_n(&wal, 20, 30).await;
    let mut old = wal.reader("old").unwrap();
    for _ in 0..10 {
        old.next().await.unwrap();
    }
    old.commit(Lsn(10)).await.unwrap();
    // Segments 1-4 and 5-8 are finished; 9-12 still holds 11 and 12.
    assert_eq!(wal.stats().first_lsn, Some(Lsn(9)));
    drop(old);
    wal.close().await.unwrap();

    let wal = Wal::open(small_segments(dir.path(), &["old", "new"], 30, 4))
        .await
        .unwrap();
    let mut new = wal.reader("new").unwrap();
    assert_eq!(
        lsns(&read_available(&mut new).await),
        (9..=20).collect::<Vec<_>>()
    );
    let mut old = wal.reader("old").unwrap();
    assert_eq!(old.next().await.unwrap().lsn, Lsn(11));
    drop((new, old));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn segments_roll_over_at_segment_bytes_with_lsn_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_bytes: 1000,
        ..config(dir.path(), &["sink"])
    };
    let wal = Wal::open(config).await.unwrap();
    for index in 0..100u64 {
        let len = 20 + (index as usize * 37) % 150;
        wal.append(Signal::Metrics, payload(index, len))
            .await
            .unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 10, "{} segments", files.len());
    assert_eq!(wal.stats().segments, files.len());
    for file in &files {
        let bytes = fs::read(file).unwrap();
        assert!(bytes.len() <= 1000, "{file:?} has {} bytes", bytes.len());
        assert_eq!(&bytes[0..8], b"FVWALSEG");
        // The name is the first record's LSN, zero-padded to 20 digits.
        let name = file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 20);
        let first_record_lsn = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
        assert_eq!(name.parse::<u64>().unwrap(), first_record_lsn);
    }
    let mut reader = wal.reader("sink").unwrap();
    let records = read_available(&mut reader).await;
    assert_eq!(lsns(&records), (1..=100).collect::<Vec<_>>());
    for (index, record) in records.iter().enumerate() {
        let len = 20 + (index * 37) % 150;
        assert_eq!(record.payload, payload(index as u64, len));
    }
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn collection_waits_for_the_slowest_registered_sink() {
    let dir = tempfile::tempdir().unwrap();
    // Four records per segment: 1-4, 5-8, ..., 37-40.
    let wal = Wal::open(small_segments(dir.path(), &["fast", "slow", "idle"], 40, 4))
        .await
        .unwrap();
    append_n(&wal, 40, 40).await;
    assert_eq!(segment_files(dir.path()).len(), 10);

    let mut fast = wal.reader("fast").unwrap();
    read_available(&mut fast).await;
    fast.commit(Lsn(40)).await.unwrap();
    let mut slow = wal.reader("slow").unwrap();
    for _ in 0..22 {
        slow.next().await.unwrap();
    }
    slow.commit(Lsn(22)).await.unwrap();
    // "idle" has not read anything: nothing may go.
    assert_eq!(wal.collect_garbage().await.unwrap(), 0);
    assert_eq!(segment_files(dir.path()).len(), 10);
    assert_eq!(wal.stats().first_lsn, Some(Lsn(1)));

    let mut idle = wal.reader("idle").unwrap();
    for _ in 0..30 {
        idle.next().await.unwrap();
    }
    idle.commit(Lsn(30)).await.unwrap(); // collects automatically after the commit
    // Segments up to 17-20 are finished by every sink; 21-24 holds 23 and 24 for "slow".
    let stats = wal.stats();
    assert_eq!(stats.first_lsn, Some(Lsn(21)));
    assert_eq!(stats.segments, 5);
    assert_eq!(segment_files(dir.path()).len(), 5);
    assert_eq!(
        stats.bytes_on_disk,
        5 * (SEGMENT_HEADER + 4 * (FRAME_HEADER + 40))
    );
    let slow_lag = stats.sinks.iter().find(|sink| sink.sink == "slow").unwrap();
    assert_eq!(slow_lag.lag_records, 18);
    assert_eq!(slow_lag.lag_bytes, 18 * (FRAME_HEADER + 40));

    // The slow reader goes on reading past the collected segments.
    assert_eq!(
        lsns(&read_available(&mut slow).await),
        (23..=40).collect::<Vec<_>>()
    );
    slow.commit(Lsn(40)).await.unwrap();
    idle.commit(Lsn(30)).await.unwrap();
    assert_eq!(wal.stats().first_lsn, Some(Lsn(29)));
    drop((fast, slow, idle));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    append_n(&wal, 10, 100).await;
    wal.close().await.unwrap();

    // A crash in the middle of writing record 10.
    let segment = &segment_files(dir.path())[0];
    let len = fs::metadata(segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap()
        .set_len(len - 50)
        .unwrap();

    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    let stats = wal.stats();
    assert_eq!(stats.corrupted_records, 1);
    assert_eq!(stats.truncated_bytes, FRAME_HEADER + 100 - 50);
    assert_eq!(stats.last_lsn, Some(Lsn(9)));
    assert_eq!(fs::metadata(segment).unwrap().len(), frame_offset(9, 100));

    let lsn = wal
        .append(Signal::Logs, Bytes::from_static(b"after the crash"))
        .await
        .unwrap();
    assert_eq!(lsn, Lsn(10));
    let mut reader = wal.reader("sink").unwrap();
    let records = read_available(&mut reader).await;
    assert_eq!(lsns(&records), (1..=10).collect::<Vec<_>>());
    for (index, record) in records[..9].iter().enumerate() {
        assert_eq!(record.payload, payload(index as u64, 100));
    }
    assert_eq!(records[9].payload, Bytes::from_static(b"after the crash"));
    drop(reader);
    wal.close().await.unwrap();

    // A crash five bytes into the last frame's header.
    let len = fs::metadata(segment).unwrap().len();
    let cut = FRAME_HEADER + b"after the crash".len() as u64 - 5;
    OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap()
        .set_len(len - cut)
        .unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert_eq!(
        (wal.stats().corrupted_records, wal.stats().truncated_bytes),
        (1, 5)
    );
    let lsn = wal
        .append(Signal::Logs, Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_eq!(lsn, Lsn(10));
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(
        lsns(&read_available(&mut reader).await),
        (1..=10).collect::<Vec<_>>()
    );
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_tail_of_random_garbage_is_cut_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    append_n(&wal, 5, 100).await;
    wal.close().await.unwrap();

    // 4 MiB of noise where the next frames should be (xorshift, so the test is repeatable).
    let segment = &segment_files(dir.path())[0];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut file = OpenOptions::new().append(true).open(segment).unwrap();
    std::io::Write::write_all(&mut file, &noise).unwrap();
    drop(file);

    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    let stats = wal.stats();
    assert_eq!(
        (stats.corrupted_records, stats.truncated_bytes),
        (1, 4 << 20)
    );
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(
        lsns(&read_available(&mut reader).await),
        vec![1, 2, 3, 4, 5]
    );
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_the_last_record_is_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    append_n(&wal, 10, 100).await;
    wal.close().await.unwrap();

    let segment = &segment_files(dir.path())[0];
    flip_byte(segment, frame_offset(9, 100) + FRAME_HEADER + 60);

    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    let stats = wal.stats();
    assert_eq!(
        (stats.corrupted_records, stats.truncated_bytes),
        (1, FRAME_HEADER + 100)
    );
    let mut reader = wal.reader("sink").unwrap();
    let records = read_available(&mut reader).await;
    assert_eq!(lsns(&records), (1..=9).collect::<Vec<_>>());
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.payload == payload(i as u64, 100))
    );
    let lsn = wal
        .append(Signal::Logs, Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(lsn, Lsn(10));
    assert_eq!(
        reader.next().await.unwrap().payload,
        Bytes::from_static(b"new")
    );
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn corrupted_records_in_older_segments_are_skipped_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    // Segments 1-4, 5-8, 9-12.
    let config = small_segments(dir.path(), &["a", "b"], 100, 4);
    let wal = Wal::open(config.clone()).await.unwrap();
    append_n(&wal, 12, 100).await;
    wal.close().await.unwrap();

    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);
    // Record 2: a payload byte. Record 6: its length field, so the reader has to search for
    // the next frame.
    flip_byte(&files[0], frame_offset(1, 100) + FRAME_HEADER + 10);
    flip_byte(&files[1], frame_offset(1, 100) + 6);

    let wal = Wal::open(config).await.unwrap();
    assert_eq!(
        wal.stats().corrupted_records,
        0,
        "older segments are checked by readers"
    );
    let expected: Vec<u64> = (1..=12).filter(|lsn| *lsn != 2 && *lsn != 6).collect();
    for sink in ["a", "b"] {
        let mut reader = wal.reader(sink).unwrap();
        let records = read_available(&mut reader).await;
        assert_eq!(lsns(&records), expected);
        for record in &records {
            assert_eq!(record.payload, payload(record.lsn.0 - 1, 100));
        }
        reader.commit(Lsn(12)).await.unwrap();
    }
    assert_eq!(wal.stats().corrupted_records, 2);
    assert_eq!(wal.stats().segments, 1);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_corrupted_record_inside_the_newest_segment_keeps_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    append_n(&wal, 10, 100).await;
    wal.close().await.unwrap();

    // Record 4 of 10: cutting the segment there would delete five acknowledged records.
    flip_byte(
        &segment_files(dir.path())[0],
        frame_offset(3, 100) + FRAME_HEADER + 1,
    );
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert_eq!(wal.stats().truncated_bytes, 0);
    let mut reader = wal.reader("sink").unwrap();
    let records = read_available(&mut reader).await;
    assert_eq!(lsns(&records), vec![1, 2, 3, 5, 6, 7, 8, 9, 10]);
    assert_eq!(wal.stats().corrupted_records, 1);
    assert_eq!(append_n(&wal, 1, 10).await, vec![Lsn(11)]);
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_committed_lsn_is_never_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    append_n(&wal, 10, 100).await;
    let mut reader = wal.reader("sink").unwrap();
    read_available(&mut reader).await;
    reader.commit(Lsn(10)).await.unwrap();
    drop(reader);
    wal.close().await.unwrap();

    // Record 10 rots after the sink committed it.
    flip_byte(
        &segment_files(dir.path())[0],
        frame_offset(9, 100) + FRAME_HEADER + 1,
    );
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert_eq!(wal.stats().corrupted_records, 1);
    let lsn = wal
        .append(Signal::Logs, Bytes::from_static(b"next"))
        .await
        .unwrap();
    assert_eq!(lsn, Lsn(11));
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(reader.next().await.unwrap().lsn, Lsn(11));
    assert_eq!(
        wal.stats().corrupted_records,
        1,
        "the cut record is not counted twice"
    );
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_while_starting_a_segment_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    append_n(&wal, 3, 10).await;
    wal.close().await.unwrap();

    // The next segment's file exists, but its header never reached the disk (or half of it).
    for partial_header in [0, 11] {
        let next = dir.path().join("wal").join(format!("{:020}.seg", 4));
        fs::write(&next, vec![0xaa; partial_header]).unwrap();
        let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
        assert_eq!(wal.stats().truncated_bytes, partial_header as u64);
        assert_eq!(wal.stats().segments, 2);
        let lsn = wal
            .append(Signal::Logs, Bytes::from_static(b"4"))
            .await
            .unwrap();
        assert_eq!(lsn, Lsn(4));
        let mut reader = wal.reader("sink").unwrap();
        assert_eq!(lsns(&read_available(&mut reader).await), vec![1, 2, 3, 4]);
        drop(reader);
        wal.close().await.unwrap();
        // Undo record 4 for the next round.
        fs::remove_file(&next).unwrap();
    }
}

#[tokio::test]
async fn a_full_log_pushes_back_until_the_sinks_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_bytes: 1024,
        max_bytes: 4096,
        max_record_bytes: 512,
        ..config(dir.path(), &["fast", "slow"])
    };
    let wal = Wal::open(config).await.unwrap();

    let too_large = wal.append(Signal::Logs, Bytes::from(vec![0; 513])).await;
    assert!(matches!(
        too_large,
        Err(AppendError::TooLarge {
            size: 513,
            max: 512
        })
    ));

    let mut accepted = 0;
    let retry_after = loop {
        match wal.append(Signal::Logs, payload(accepted, 100)).await {
            Ok(_) => accepted += 1,
            Err(AppendError::Full { retry_after }) => break retry_after,
            Err(other) => panic!("{other}"),
        }
        assert!(accepted < 1000, "the log never filled up");
    };
    assert!(retry_after > Duration::ZERO);
    assert!(accepted >= 25, "only {accepted} records fit");
    let stats = wal.stats();
    assert!(
        stats.bytes_on_disk <= 4096,
        "{} bytes on disk",
        stats.bytes_on_disk
    );
    // Still full: nothing was read.
    assert!(matches!(
        wal.append(Signal::Logs, payload(0, 100)).await,
        Err(AppendError::Full { .. })
    ));

    let mut fast = wal.reader("fast").unwrap();
    let last = read_available(&mut fast).await.last().unwrap().lsn;
    fast.commit(last).await.unwrap();
    assert!(
        matches!(
            wal.append(Signal::Logs, payload(0, 100)).await,
            Err(AppendError::Full { .. })
        ),
        "the slow sink still needs every record"
    );
    let mut slow = wal.reader("slow").unwrap();
    assert_eq!(read_available(&mut slow).await.len() as u64, accepted);
    slow.commit(last).await.unwrap();

    let lsn = wal.append(Signal::Logs, payload(0, 100)).await.unwrap();
    assert_eq!(lsn, last.next());
    assert!(wal.stats().bytes_on_disk < 4096);
    drop((fast, slow));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn next_waits_for_new_records_and_ends_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(reader.try_next().await.unwrap(), None);
    let waiting = tokio::spawn(async move {
        let record = reader.next().await.unwrap();
        (reader, record)
    });
    tokio::task::yield_now().await;
    let lsn = wal
        .append(Signal::Traces, Bytes::from_static(b"late"))
        .await
        .unwrap();
    let (mut reader, record) = waiting.await.unwrap();
    assert_eq!(
        (record.lsn, record.payload),
        (lsn, Bytes::from_static(b"late"))
    );

    let last = wal
        .append(Signal::Traces, Bytes::from_static(b"last"))
        .await
        .unwrap();
    wal.close().await.unwrap();
    assert_eq!(reader.next().await.unwrap().lsn, last);
    assert!(matches!(reader.next().await, Err(WalError::Closed)));
}

#[tokio::test]
async fn a_cancelled_next_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    // Several read chunks' worth.
    append_n(&wal, 300, 10_000).await;
    let mut reader = wal.reader("sink").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 300 {
        // Polled once, then dropped: the read it started on a blocking thread is picked up by
        // the next call.
        let record = match tokio::time::timeout(Duration::ZERO, reader.next()).await {
            Ok(record) => record.unwrap(),
            Err(_elapsed) => reader.next().await.unwrap(),
        };
        seen.push(record.lsn.0);
    }
    assert_eq!(seen, (1..=300).collect::<Vec<_>>());
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn readers_are_for_registered_sinks_and_start_at_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert!(matches!(wal.reader("other"), Err(WalError::UnknownSink(name)) if name == "other"));
    append_n(&wal, 5, 10).await;
    let mut first = wal.reader("sink").unwrap();
    for _ in 0..3 {
        first.next().await.unwrap();
    }
    first.commit(Lsn(3)).await.unwrap();
    // A second reader of the sink starts at the checkpoint as it is now.
    let mut second = wal.reader("sink").unwrap();
    assert_eq!(lsns(&read_available(&mut second).await), vec![4, 5]);
    second.commit(Lsn(5)).await.unwrap();
    // The checkpoint only moves forward, whichever reader commits.
    assert_eq!(lsns(&read_available(&mut first).await), vec![4, 5]);
    first.commit(Lsn(4)).await.unwrap();
    assert_eq!(wal.stats().sinks[0].checkpoint, Lsn(5));
    drop((first, second));
    wal.close().await.unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    assert_eq!(wal.stats().sinks[0].checkpoint, Lsn(5));
    wal.close().await.unwrap();
}

#[tokio::test]
async fn commit_moves_forward_only_over_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &["sink"])).await.unwrap();
    append_n(&wal, 10, 30).await;
    let mut reader = wal.reader("sink").unwrap();
    assert!(matches!(
        reader.commit(Lsn(1)).await,
        Err(WalError::CommitAhead {
            lsn: Lsn(1),
            read: Lsn(0)
        })
    ));
    for _ in 0..6 {
        reader.next().await.unwrap();
    }
    assert!(matches!(
        reader.commit(Lsn(7)).await,
        Err(WalError::CommitAhead { .. })
    ));
    // An earlier record than the last one read.
    reader.commit(Lsn(4)).await.unwrap();
    let sink = &wal.stats().sinks[0];
    assert_eq!(
        (sink.checkpoint, sink.lag_records, sink.lag_bytes),
        (Lsn(4), 6, 6 * 47)
    );
    // Going back is a no-op.
    reader.commit(Lsn(2)).await.unwrap();
    assert_eq!(wal.stats().sinks[0].checkpoint, Lsn(4));
    reader.commit(Lsn(6)).await.unwrap();
    assert_eq!(wal.stats().sinks[0].lag_bytes, 4 * 47);
    drop(reader);
    wal.close().await.unwrap();
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path(), &[])).await.unwrap();
    assert!(matches!(
        Wal::open(config(dir.path(), &[])).await,
        Err(WalError::Locked { .. })
    ));
    wal.close().await.unwrap();
    Wal::open(config(dir.path(), &[]))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for config in [
        config(dir.path(), &["a", "a"]),
        config(dir.path(), &["no/slash"]),
        WalConfig {
            max_bytes: 10,
            ..config(dir.path(), &[])
        },
    ] {
        assert!(matches!(
            Wal::open(config).await,
            Err(WalError::InvalidConfig(_))
        ));
    }
}

#[tokio::test]
async fn without_fsync_nothing_is_synced_but_everything_else_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        fsync: false,
        segment_bytes: 500,
        ..config(dir.path(), &["sink"])
    };
    let wal = Wal::open(config.clone()).await.unwrap();
    append_n(&wal, 50, 50).await;
    let stats = wal.stats();
    assert_eq!((stats.appends, stats.syncs), (50, 0));
    assert!(stats.segments > 1);
    let mut reader = wal.reader("sink").unwrap();
    assert_eq!(read_available(&mut reader).await.len(), 50);
    reader.commit(Lsn(50)).await.unwrap();
    assert_eq!(wal.stats().segments, 1);
    drop(reader);
    wal.close().await.unwrap();
    let wal = Wal::open(config).await.unwrap();
    assert_eq!(append_n(&wal, 1, 1).await, vec![Lsn(51)]);
    wal.close().await.unwrap();
}

/// Set in the environment of the child process that `acknowledged_records_survive_sigkill`
/// starts: the directory of its log.
const CRASH_CHILD_DIR: &str = "TELEMETRY_WAL_CRASH_CHILD_DIR";

/// Not a test on its own: when started by `acknowledged_records_survive_sigkill`, appends until
/// it is killed, printing `ack {lsn} {payload}` for every acknowledged record.
#[test]
fn crash_child_process() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let wal = Arc::new(Wal::open(crash_config(Path::new(&dir))).await.unwrap());
        let appenders: Vec<_> = (0..8)
            .map(|task| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    for index in 0u64.. {
                        // Sizes that cross segment boundaries now and then.
                        let text = format!("{}-{task}-{index}", std::process::id());
                        let mut bytes = text.clone().into_bytes();
                        bytes.resize(100 + (index as usize * 131) % 1500, b'.');
                        let lsn = wal.append(Signal::Logs, Bytes::from(bytes)).await.unwrap();
                        println!("ack {lsn} {text}");
                    }
                })
            })
            .collect();
        for appender in appenders {
            appender.await.unwrap();
        }
    });
}

fn crash_config(dir: &Path) -> WalConfig {
    WalConfig {
        segment_bytes: 32 * 1024,
        ..config(dir, &["check"])
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    let mut previous_round_max = 0;
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut round_acks = Vec::new();
        let mut record = |line: String, round_acks: &mut Vec<u64>| {
            let Some(rest) = line.strip_prefix("ack ") else {
                return;
            };
            let (lsn, text) = rest.split_once(' ').unwrap();
            let lsn: u64 = lsn.parse().unwrap();
            assert!(
                acknowledged.insert(lsn, text.to_owned()).is_none(),
                "lsn {lsn} acknowledged twice"
            );
            round_acks.push(lsn);
        };
        for line in lines.by_ref() {
            record(line.unwrap(), &mut round_acks);
            if round_acks.len() >= 400 {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no flush
        child.wait().unwrap();
        // Lines already in the pipe were acknowledged before the kill.
        for line in lines {
            record(line.unwrap(), &mut round_acks);
        }
        assert!(
            round_acks.len() >= 400,
            "round {round}: the child acknowledged only {}",
            round_acks.len()
        );
        let round_min = *round_acks.iter().min().unwrap();
        assert!(
            round_min > previous_round_max,
            "lsns went backwards after a crash"
        );
        previous_round_max = *round_acks.iter().max().unwrap();
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let wal = Wal::open(crash_config(dir.path())).await.unwrap();
        let stats = wal.stats();
        eprintln!(
            "after 3 kills: {} acknowledged, {} segments, last lsn {:?}, {} corrupted records, {} truncated bytes",
            acknowledged.len(),
            stats.segments,
            stats.last_lsn,
            stats.corrupted_records,
            stats.truncated_bytes
        );
        let mut reader = wal.reader("check").unwrap();
        let records = read_available(&mut reader).await;
        assert!(records.windows(2).all(|pair| pair[0].lsn < pair[1].lsn));
        let on_disk: BTreeMap<u64, &Record> = records.iter().map(|record| (record.lsn.0, record)).collect();
        let mut missing = Vec::new();
        for (lsn, text) in &acknowledged {
            match on_disk.get(lsn) {
                Some(record) => assert!(
                    record.payload.starts_with(format!("{text}.").as_bytes()),
                    "lsn {lsn} holds another record"
                ),
                None => missing.push(*lsn),
            }
        }
        assert!(missing.is_empty(), "acknowledged records lost: {missing:?}");
        let distinct: HashSet<u64> = records.iter().map(|record| record.lsn.0).collect();
        assert_eq!(distinct.len(), records.len());
        drop(reader);
        wal.close().await.unwrap();
    });
}
