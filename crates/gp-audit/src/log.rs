//! The SQLite trail's own write-ahead log: where an audit row becomes durable.
//!
//! A committed batch of rows is one frame appended to the current segment file and, with
//! `synchronous = "full"`, flushed (`fdatasync`) before any of its requests is answered.
//! SQLite is then only the trail's index: a second thread inserts the rows behind the
//! log, with no flush of its own on the request path, and records how far it got
//! ([`Position`]) in the same transaction. On opening, every frame past that position is
//! inserted again, so a crash between the flush and the insert loses nothing.
//!
//! Why not SQLite's own WAL: a SQLite commit writes every page it touched in full (the
//! table and each index, 4 KiB apiece) and waits for their flush; a frame here is the
//! rows' own bytes, and the index's page writes and checkpoint flushes leave the request
//! path (BENCHMARKS.md, "Audit trail durability").
//!
//! A frame also carries the notification events committed with its rows
//! ([`AuditStore::append_with_events`](crate::AuditStore::append_with_events)): they become
//! durable in the same write, and the indexer inserts them into the outbox (`notify_event`)
//! in the same transaction as the rows, so a crash after the flush replays both or neither.
//!
//! Segments are files `<20-digit number>.log` in the log directory. A frame is
//! `magic | segment number (u64 LE) | payload length (u32 LE) | checksum (8 bytes) | payload`,
//! the checksum being the first 8 bytes of SHA-256 over the number, length and payload.
//! The magic says what the payload holds: `GPA1`, rows only (the only frame before events
//! existed, and still what a batch without events is written as, byte for byte, so a
//! log of such frames stays readable by an older gateway); `GPA2`, rows then events.
//! Reading a segment stops at the first frame that is incomplete, bears another
//! segment's number or fails its checksum: a torn last write ends its segment, never
//! the log.
//!
//! Frames overwrite a file that already has its blocks: a flush after an append that
//! grows a file also commits the filesystem's journal, and on ext4 (`data=ordered`) that
//! commit first writes out other files' new blocks (the index's), so appends made the
//! log's flushes wait behind the index (BENCHMARKS.md). So the next segment is made
//! ready beforehand, off the request path, as the file `spare`: a segment whose rows are
//! in the index and on disk, renamed (its old frames carry its old number, so they read
//! as the end of the new one), or else [`SEGMENT_BYTES`] of zeros, written and flushed.
//! The writer moves to it when its segment is full, after a write error, and as soon as
//! it can when it had to start one without a spare (on opening, say). Segments beyond
//! the one kept as the spare are deleted once the index holding their rows is on disk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{AuditError, AuditRecord, NewEvent};

/// A segment is closed once it holds this many bytes; a spare made from nothing is this
/// many zeros.
pub(crate) const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// The next segment, ready to write: see the module's documentation.
const SPARE: &str = "spare";
/// A trail writes a spare of zeros only once its segment holds this share of a segment
/// (1/16th): a quiet one (a sandbox, a test) never needs the speed, nor the disk space.
const SPARE_AFTER_SHARE: u64 = 16;
/// A spare being zero-filled; left by a crash, it is removed.
const SPARE_PARTIAL: &str = "spare.partial";

/// A frame of rows only.
const MAGIC_ROWS: [u8; 4] = *b"GPA1";
/// A frame of rows, then the notification events committed with them.
const MAGIC_EVENTS: [u8; 4] = *b"GPA2";
const HEADER: usize = 4 + 8 + 4 + 8;
/// Largest payload a frame may declare: far above a full batch, and a bound on what a
/// damaged length can make the reader allocate.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// How long opening waits for another holder of the log (a store of this process still
/// shutting down) before it refuses.
#[cfg(not(test))]
const LOCK_WAIT: Duration = Duration::from_secs(5);
#[cfg(test)]
const LOCK_WAIT: Duration = Duration::from_millis(300);

/// The end of the last frame a reader has taken: segment number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One frame as read back (or as handed to the indexer): its rows, the events committed
/// with them, and where the frame ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub rows: Vec<AuditRecord>,
    pub events: Vec<NewEvent>,
    pub end: Position,
}

/// The log's writing end.
pub(crate) struct Log {
    dir: PathBuf,
    segment: u64,
    file: File,
    len: u64,
    flush: bool,
    /// Start the next segment before the next frame: the current one is full, or a
    /// write or flush failed and it may end in a torn frame.
    rotate: bool,
    /// The current segment was started without a spare (it grows as it is written):
    /// move to the spare as soon as there is one.
    growing: bool,
    /// Shared with [`Spares`]: a spare is in place.
    spare_ready: Arc<AtomicBool>,
    /// A segment is closed once it holds this many bytes ([`SEGMENT_BYTES`], smaller
    /// in crash tests so that they cross many segments).
    segment_bytes: u64,
    /// Held for the life of the log: one writer per directory.
    _lock: File,
}

/// The indexer's side of the spare: makes the next one once the writer has taken it.
pub(crate) struct Spares {
    dir: PathBuf,
    ready: Arc<AtomicBool>,
    segment_bytes: u64,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> AuditError {
    AuditError(format!("audit log: cannot {what} {}: {e}", path.display()))
}

/// The log directory beside a SQLite trail file: `<file>-log`.
pub(crate) fn dir_for(sqlite_path: &Path) -> PathBuf {
    let mut name = sqlite_path.as_os_str().to_owned();
    name.push("-log");
    PathBuf::from(name)
}

pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

/// The segment numbers in `dir`, ascending.
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>, AuditError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", dir, e))?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push(number);
    }
    out.sort_unstable();
    Ok(out)
}

fn remove_if_present(path: &Path) -> Result<(), AuditError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => Ok(()),
    }
}

/// Flushes `dir` itself, so a file created or removed in it stays so after a crash.
fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("flush", dir, e))
}

impl Log {
    /// Opens the log in `dir` (creating it), holding it against any other writer, and
    /// returns it with every frame written after `indexed` (all frames when `None`), in
    /// order, and the spare's maker for the indexer. Writing continues in a new segment.
    #[cfg(test)]
    pub(crate) fn open(
        dir: &Path,
        indexed: Option<Position>,
        flush: bool,
    ) -> Result<(Self, Vec<Frame>, Spares), AuditError> {
        Self::open_sized(dir, indexed, flush, SEGMENT_BYTES)
    }

    /// [`Log::open`] with segments of `segment_bytes`.
    pub(crate) fn open_sized(
        dir: &Path,
        indexed: Option<Position>,
        flush: bool,
        segment_bytes: u64,
    ) -> Result<(Self, Vec<Frame>, Spares), AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        let lock = lock(dir)?;
        let pending = read_after(dir, indexed)?;
        remove_if_present(&dir.join(SPARE_PARTIAL))?;
        // Numbers only grow, so no file ever holds stale frames of the number it is
        // given. A spare with no segment nor index position beside it has no known past:
        // it goes.
        let last = segments(dir)?
            .last()
            .copied()
            .max(indexed.map(|p| p.segment));
        if last.is_none() {
            remove_if_present(&dir.join(SPARE))?;
        }
        let spare_ready = Arc::new(AtomicBool::new(dir.join(SPARE).exists()));
        let segment = last.map_or(1, |n| n + 1);
        let (file, growing) = start_segment(dir, segment, &spare_ready)?;
        let log = Self {
            dir: dir.to_path_buf(),
            segment,
            file,
            len: 0,
            flush,
            rotate: false,
            growing,
            spare_ready: spare_ready.clone(),
            segment_bytes,
            _lock: lock,
        };
        let spares = Spares {
            dir: dir.to_path_buf(),
            ready: spare_ready,
            segment_bytes,
        };
        Ok((log, pending, spares))
    }

    /// Writes `rows` and `events` as one frame (flushed to disk first when the log
    /// flushes) and returns where it ends.
    pub(crate) fn append<'a, 'e>(
        &mut self,
        rows: impl IntoIterator<Item = &'a AuditRecord, IntoIter: ExactSizeIterator>,
        events: impl IntoIterator<Item = &'e NewEvent, IntoIter: ExactSizeIterator>,
    ) -> Result<Position, AuditError> {
        self.ready()?;
        let frame = encode_frame(self.segment, rows.into_iter(), events.into_iter());
        let written = self.file.write_all_at(&frame, self.len).and_then(|()| {
            if self.flush {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            self.rotate = true;
            return Err(io_error("write", &segment_path(&self.dir, self.segment), e));
        }
        self.len += frame.len() as u64;
        let end = Position {
            segment: self.segment,
            offset: self.len,
        };
        if self.len >= self.segment_bytes {
            // A failure to start the next one now is retried at the next frame.
            self.rotate = true;
        }
        Ok(end)
    }

    /// Whether a frame can be written now: starts the next segment when the current one
    /// is full or failed, or grows while a spare is ready.
    pub(crate) fn ready(&mut self) -> Result<(), AuditError> {
        let spare = self.spare_ready.load(Ordering::Acquire);
        if self.rotate || (self.growing && spare) {
            let next = self.segment + 1;
            let (file, growing) = start_segment(&self.dir, next, &self.spare_ready)?;
            self.file = file;
            self.segment = next;
            self.len = 0;
            self.rotate = false;
            self.growing = growing;
        }
        Ok(())
    }
}

/// Starts segment `segment`: the spare renamed when one is ready (`growing = false`),
/// else a new empty file.
fn start_segment(
    dir: &Path,
    segment: u64,
    spare_ready: &AtomicBool,
) -> Result<(File, bool), AuditError> {
    let path = segment_path(dir, segment);
    let mut growing = true;
    if spare_ready.load(Ordering::Acquire) {
        match std::fs::rename(dir.join(SPARE), &path) {
            Ok(()) => growing = false,
            // Gone (removed by hand, say): a segment that grows does as well.
            Err(e) => tracing::warn!(error = %e, "audit log: no spare segment to take"),
        }
        // Only once the spare is taken may the indexer make the next one.
        spare_ready.store(false, Ordering::Release);
    }
    if growing {
        OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("create", &path, e))?;
    }
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_error("open", &path, e))?;
    Ok((file, growing))
}

impl Spares {
    /// After the index is on disk up to `indexed`: makes the next spare if the writer
    /// has taken the last one (from a full segment below `indexed`'s, else from zeros
    /// once the trail is busy enough to fill 1/[`SPARE_AFTER_SHARE`] of a segment), and deletes
    /// the other segments below `indexed`'s.
    pub(crate) fn recycle(&self, indexed: Position) -> Result<(), AuditError> {
        let mut done: Vec<u64> = segments(&self.dir)?
            .into_iter()
            .take_while(|&n| n < indexed.segment)
            .collect();
        let spare = self.dir.join(SPARE);
        // Only this side sets `ready`, and only for a spare it has just made: the writer
        // may take one at any moment.
        let mut made = false;
        if !self.ready.load(Ordering::Acquire) {
            // Only a full-sized segment: a smaller one would grow again as it is written.
            let full = done.iter().position(|&n| {
                std::fs::metadata(segment_path(&self.dir, n))
                    .is_ok_and(|m| m.len() >= self.segment_bytes)
            });
            match full {
                Some(i) => {
                    let path = segment_path(&self.dir, done.remove(i));
                    std::fs::rename(&path, &spare).map_err(|e| io_error("rename", &path, e))?;
                    made = true;
                }
                None if indexed.offset >= self.segment_bytes / SPARE_AFTER_SHARE => {
                    self.zeros()?;
                    made = true;
                }
                None => {}
            }
        }
        let removed = !done.is_empty();
        for number in done {
            let path = segment_path(&self.dir, number);
            std::fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
        }
        if made || removed {
            sync_dir(&self.dir)?;
        }
        if made {
            self.ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// A spare of zeros, written and flushed in steps of 1 MiB so that no flush of its
    /// holds the device for long.
    fn zeros(&self) -> Result<(), AuditError> {
        let partial = self.dir.join(SPARE_PARTIAL);
        let mut file = File::create(&partial).map_err(|e| io_error("create", &partial, e))?;
        let chunk = vec![0u8; (1024 * 1024).min(self.segment_bytes as usize)];
        for _ in 0..self.segment_bytes.div_ceil(chunk.len() as u64) {
            file.write_all(&chunk)
                .and_then(|()| file.sync_data())
                .map_err(|e| io_error("write", &partial, e))?;
        }
        let spare = self.dir.join(SPARE);
        std::fs::rename(&partial, &spare).map_err(|e| io_error("rename", &partial, e))
    }
}

/// Every whole frame in `dir` after `indexed` (all of them when `None`), in order.
pub(crate) fn read_after(dir: &Path, indexed: Option<Position>) -> Result<Vec<Frame>, AuditError> {
    let mut pending = Vec::new();
    for segment in segments(dir)? {
        let from = match indexed {
            Some(p) if segment < p.segment => continue,
            Some(p) if segment == p.segment => p.offset,
            _ => 0,
        };
        let path = segment_path(dir, segment);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io_error("read", &path, e))?;
        let (frames, _) = read_frames(&bytes, segment, from);
        pending.extend(frames);
    }
    Ok(pending)
}

fn lock(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("open", &path, e))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                #[allow(
                    clippy::disallowed_methods,
                    reason = "opening a trail is start-up work, not a request's; it waits only while a store of this process is closing"
                )]
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError(format!(
                    "audit log {} is in use by another gateway process (each replica needs a trail of its own, or backend = \"postgres\")",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error("lock", &path, e)),
        }
    }
}

fn checksum(segment: u64, len: u32, payload: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(segment.to_le_bytes());
    h.update(len.to_le_bytes());
    h.update(payload);
    let digest = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn encode_frame<'a, 'e>(
    segment: u64,
    rows: impl ExactSizeIterator<Item = &'a AuditRecord>,
    events: impl ExactSizeIterator<Item = &'e NewEvent>,
) -> Vec<u8> {
    let mut payload = Vec::with_capacity(rows.len() * 320 + events.len() * 200);
    put_u32(&mut payload, rows.len());
    for r in rows {
        encode_record(&mut payload, r);
    }
    // Without events, the frame is the one written before events existed.
    let magic = if events.len() == 0 {
        MAGIC_ROWS
    } else {
        put_u32(&mut payload, events.len());
        for e in events {
            encode_event(&mut payload, e);
        }
        MAGIC_EVENTS
    };
    let len = payload.len() as u32;
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&magic);
    frame.extend_from_slice(&segment.to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&checksum(segment, len, &payload));
    frame.extend_from_slice(&payload);
    frame
}

/// The frames of segment `segment` in `bytes` from `from`, and the offset where valid
/// frames end.
fn read_frames(bytes: &[u8], segment: u64, from: u64) -> (Vec<Frame>, u64) {
    let mut frames = Vec::new();
    let mut at = usize::try_from(from).unwrap_or(usize::MAX);
    while let Some((rows, events, next)) = bytes.get(at..).and_then(|rest| frame_at(rest, segment))
    {
        at += next;
        frames.push(Frame {
            rows,
            events,
            end: Position {
                segment,
                offset: at as u64,
            },
        });
    }
    (frames, at.min(bytes.len()) as u64)
}

/// The frame at the start of `bytes` (its rows and events), with its length, if it is
/// whole and belongs to `segment`.
fn frame_at(bytes: &[u8], segment: u64) -> Option<(Vec<AuditRecord>, Vec<NewEvent>, usize)> {
    let header = bytes.get(..HEADER)?;
    let magic: [u8; 4] = header[..4].try_into().ok()?;
    let with_events = match magic {
        MAGIC_ROWS => false,
        MAGIC_EVENTS => true,
        _ => return None,
    };
    let number = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(header[12..16].try_into().ok()?);
    let len_usize = usize::try_from(len).ok().filter(|&n| n <= MAX_PAYLOAD)?;
    if number != segment {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER + len_usize)?;
    if header[16..24] != checksum(number, len, payload) {
        return None;
    }
    let mut reader = Reader(payload);
    let count = reader.u32()?;
    let mut rows = Vec::with_capacity(count.min(4_096) as usize);
    for _ in 0..count {
        rows.push(reader.record()?);
    }
    let mut events = Vec::new();
    if with_events {
        let count = reader.u32()?;
        events.reserve(count.min(4_096) as usize);
        for _ in 0..count {
            events.push(reader.event()?);
        }
    }
    reader
        .0
        .is_empty()
        .then_some((rows, events, HEADER + len_usize))
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn encode_record(out: &mut Vec<u8>, r: &AuditRecord) {
    put_str(out, &r.id);
    put_str(out, &r.recorded);
    put_str(out, &r.request_id);
    out.push(match r.request_id_supplied {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    });
    put_opt(out, r.supplier.as_deref());
    put_opt(out, r.token_id.as_deref());
    put_opt(out, r.patient.as_deref());
    put_opt(out, r.practice.as_deref());
    put_str(out, &r.interaction);
    put_opt(out, r.resource_type.as_deref());
    out.extend_from_slice(&r.status.to_le_bytes());
    put_opt(out, r.outcome_code.as_deref());
    put_str(out, &r.replica);
}

fn encode_event(out: &mut Vec<u8>, e: &NewEvent) {
    put_str(out, &e.id);
    put_str(out, &e.kind);
    put_str(out, &e.patient);
    put_str(out, &e.practice);
    put_str(out, &e.resource_type);
    put_opt(out, e.resource_id.as_deref());
    put_str(out, &e.occurred);
    put_str(out, &e.source);
    put_opt(out, e.supplier.as_deref());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn opt(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.string().map(Some),
            _ => None,
        }
    }
    fn record(&mut self) -> Option<AuditRecord> {
        let id = self.string()?;
        let recorded = self.string()?;
        let request_id = self.string()?;
        let request_id_supplied = match self.u8()? {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return None,
        };
        Some(AuditRecord {
            id,
            recorded,
            request_id,
            request_id_supplied,
            supplier: self.opt()?,
            token_id: self.opt()?,
            patient: self.opt()?,
            practice: self.opt()?,
            interaction: self.string()?,
            resource_type: self.opt()?,
            status: u16::from_le_bytes(self.take(2)?.try_into().ok()?),
            outcome_code: self.opt()?,
            replica: self.string()?,
        })
    }
    fn event(&mut self) -> Option<NewEvent> {
        Some(NewEvent {
            id: self.string()?,
            kind: self.string()?,
            patient: self.string()?,
            practice: self.string()?,
            resource_type: self.string()?,
            resource_id: self.opt()?,
            occurred: self.string()?,
            source: self.string()?,
            supplier: self.opt()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sample, sample_event};
    use super::*;

    fn rows(from: u32, n: u32) -> Vec<AuditRecord> {
        (from..from + n)
            .map(|i| {
                let mut r = sample(i, "9000000009", "demo-consult", "2026-11-01T10:00:00.000Z");
                r.request_id_supplied = [None, Some(false), Some(true)][i as usize % 3];
                r.outcome_code = (i % 2 == 0).then(|| "NO_RECORD_FOUND".into());
                r
            })
            .collect()
    }

    /// A frame of rows only, as read back.
    fn frame(rows: Vec<AuditRecord>, end: Position) -> Frame {
        Frame {
            rows,
            events: Vec::new(),
            end,
        }
    }

    #[test]
    fn frames_come_back_in_order_with_their_positions_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, pending, _) = Log::open(dir.path(), None, true).unwrap();
        assert!(pending.is_empty());
        let first = log.append(&rows(0, 3), []).unwrap();
        let second = log.append(&rows(3, 1), []).unwrap();
        assert!(second > first);
        drop(log);
        let (log, pending, _) = Log::open(dir.path(), None, true).unwrap();
        assert_eq!(
            pending,
            vec![frame(rows(0, 3), first), frame(rows(3, 1), second)]
        );
        assert!(
            log.segment > first.segment,
            "writing goes on in a new segment"
        );
        drop(log);
        // From a position, only what follows it.
        let (_log, pending, _) = Log::open(dir.path(), Some(first), true).unwrap();
        assert_eq!(pending, vec![frame(rows(3, 1), second)]);
    }

    /// Events numbered `from..from + n`, about one patient.
    fn events(from: u32, n: u32) -> Vec<NewEvent> {
        (from..from + n)
            .map(|i| {
                let mut e = sample_event(i, "9000000009");
                e.resource_id = (i % 2 == 0).then(|| format!("obs-{i}"));
                e.supplier = (i % 3 != 0).then(|| "demo-consult".into());
                e
            })
            .collect()
    }

    #[test]
    fn events_come_back_with_the_rows_of_their_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = Log::open(dir.path(), None, true).unwrap();
        let first = log.append(&rows(0, 2), &events(0, 3)).unwrap();
        let second = log.append(&rows(2, 1), []).unwrap();
        let third = log.append(&rows(3, 1), &events(3, 1)).unwrap();
        drop(log);
        let bytes = std::fs::read(segment_path(dir.path(), first.segment)).unwrap();
        assert_eq!(&bytes[..4], b"GPA2", "a frame with events says so");
        let second_start = usize::try_from(first.offset).unwrap();
        assert_eq!(
            &bytes[second_start..second_start + 4],
            b"GPA1",
            "a frame without events is written as before"
        );
        let (_log, pending, _) = Log::open(dir.path(), None, true).unwrap();
        assert_eq!(
            pending,
            vec![
                Frame {
                    rows: rows(0, 2),
                    events: events(0, 3),
                    end: first
                },
                frame(rows(2, 1), second),
                Frame {
                    rows: rows(3, 1),
                    events: events(3, 1),
                    end: third
                },
            ]
        );
    }

    /// A frame the log wrote before events existed: `encode_frame` as of commit 43ae766
    /// (`git show 43ae766:crates/gp-audit/src/log.rs`), segment 3, the row [`old_row`],
    /// printed as hex.
    const OLD_FRAME: &str = concat!(
        "475041310300000000000000a1000000d4397cc829f2d5cd01000000240000003031396130303030",
        "2d303030302d373030302d383030302d30303030303030303030303118000000323032362d31312d",
        "30315431303a30303a30302e3030305a050000007265712d3102010c00000064656d6f2d636f6e73",
        "756c7400010a00000039303030303030303039010600000041313233343506000000637265617465",
        "010b0000004f62736572766174696f6ec90000020000007231",
    );

    fn old_row() -> AuditRecord {
        AuditRecord {
            id: "019a0000-0000-7000-8000-000000000001".into(),
            recorded: "2026-11-01T10:00:00.000Z".into(),
            request_id: "req-1".into(),
            request_id_supplied: Some(true),
            supplier: Some("demo-consult".into()),
            token_id: None,
            patient: Some("9000000009".into()),
            practice: Some("A12345".into()),
            interaction: "create".into(),
            resource_type: Some("Observation".into()),
            status: 201,
            outcome_code: None,
            replica: "r1".into(),
        }
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_frame_from_before_events_still_reads_and_a_frame_without_events_is_still_one() {
        let bytes = unhex(OLD_FRAME);
        let end = Position {
            segment: 3,
            offset: bytes.len() as u64,
        };
        assert_eq!(
            read_frames(&bytes, 3, 0),
            (vec![frame(vec![old_row()], end)], end.offset)
        );
        assert_eq!(
            encode_frame(3, [old_row()].iter(), [].iter()),
            bytes,
            "a batch without events is written byte for byte as before"
        );
        // A frame with events is read as it was written; as a frame of rows only, or
        // cut short, it is not read at all.
        let with = encode_frame(3, [old_row()].iter(), events(0, 2).iter());
        assert_eq!(read_frames(&with, 3, 0).0[0].events, events(0, 2));
        let mut relabelled = with.clone();
        relabelled[..4].copy_from_slice(&MAGIC_ROWS);
        assert!(read_frames(&relabelled, 3, 0).0.is_empty());
        assert!(read_frames(&with[..with.len() - 1], 3, 0).0.is_empty());
    }

    #[test]
    fn a_torn_last_frame_ends_its_segment_and_later_segments_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = Log::open(dir.path(), None, true).unwrap();
        let kept = log.append(&rows(0, 2), []).unwrap();
        log.append(&rows(2, 2), []).unwrap();
        drop(log);
        let path = segment_path(dir.path(), kept.segment);
        let len = std::fs::metadata(&path).unwrap().len();
        // Cut the second frame short, as a crash during its write would.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (mut log, pending, _) = Log::open(dir.path(), None, true).unwrap();
        assert_eq!(pending, vec![frame(rows(0, 2), kept)]);
        let later = log.append(&rows(10, 1), []).unwrap();
        drop(log);
        let (_log, pending, _) = Log::open(dir.path(), None, true).unwrap();
        assert_eq!(
            pending,
            vec![frame(rows(0, 2), kept), frame(rows(10, 1), later)]
        );
    }

    #[test]
    fn a_damaged_byte_or_a_frame_of_another_segment_is_not_read() {
        let plain = encode_frame(7, rows(0, 2).iter(), [].iter());
        let with_events = encode_frame(7, rows(0, 2).iter(), events(0, 2).iter());
        for frame in [plain, with_events] {
            damaged_frames_are_not_read(&frame);
        }
    }

    fn damaged_frames_are_not_read(frame: &[u8]) {
        assert_eq!(read_frames(frame, 7, 0).0.len(), 1);
        assert!(
            read_frames(frame, 8, 0).0.is_empty(),
            "a recycled segment's stale frame"
        );
        for at in [0, 5, 13, 17, HEADER, HEADER + 9, frame.len() - 1] {
            let mut damaged = frame.to_vec();
            damaged[at] ^= 0x20;
            assert_eq!(
                read_frames(&damaged, 7, 0),
                (Vec::new(), 0),
                "byte {at} damaged"
            );
        }
        // A length beyond the file, or beyond any real frame, is not trusted.
        let mut long = frame.to_vec();
        long[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_frames(&long, 7, 0).0.is_empty());
    }

    #[test]
    fn a_full_segment_is_recycled_as_the_spare_and_its_old_frames_never_return() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, spares) = Log::open(dir.path(), None, false).unwrap();
        let start = log.segment;
        assert!(log.growing, "no spare yet: the first segment grows");
        log.len = SEGMENT_BYTES - 1;
        let old = log.append(&rows(0, 1), []).unwrap();
        assert_eq!(old.segment, start);
        let next = log.append(&rows(1, 1), []).unwrap();
        assert_eq!(
            next.segment,
            start + 1,
            "a full segment takes no more frames"
        );

        // The index is on disk up to `next`: the full segment becomes the spare, and the
        // writer moves to it at once, since its own segment has no blocks ahead of it.
        spares.recycle(next).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![next.segment]);
        let moved = log.append(&rows(2, 1), []).unwrap();
        assert_eq!(moved.segment, start + 2);
        assert!(!log.growing);
        assert!(
            std::fs::metadata(segment_path(dir.path(), moved.segment))
                .unwrap()
                .len()
                >= SEGMENT_BYTES,
            "the recycled file keeps its blocks"
        );
        let found: Vec<u32> = read_after(dir.path(), None)
            .unwrap()
            .iter()
            .flat_map(|f| &f.rows)
            .map(|r| r.request_id[4..].parse().unwrap())
            .collect();
        assert_eq!(
            found,
            vec![1, 2],
            "row 0's frame, left in the recycled file, is not read"
        );

        // With no segment to recycle, a quiet trail gets no spare; a busy one gets
        // zeros of a segment's size.
        spares.recycle(moved).unwrap();
        assert!(!dir.path().join(SPARE).exists());
        spares
            .recycle(Position {
                offset: SEGMENT_BYTES / SPARE_AFTER_SHARE,
                ..moved
            })
            .unwrap();
        let spare = std::fs::metadata(dir.path().join(SPARE)).unwrap();
        assert_eq!(spare.len(), SEGMENT_BYTES);
        assert!(!dir.path().join(SPARE_PARTIAL).exists());
    }

    #[test]
    fn a_spare_that_has_gone_costs_no_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = Log::open(dir.path(), None, true).unwrap();
        let first = log.append(&rows(0, 1), []).unwrap();
        // Announced, but not there (removed by hand).
        log.spare_ready.store(true, Ordering::Release);
        let next = log.append(&rows(1, 1), []).unwrap();
        assert_eq!(next.segment, first.segment + 1);
        assert!(log.growing && !log.spare_ready.load(Ordering::Acquire));
        drop(log);
        let (_log, pending, _) = Log::open(dir.path(), None, true).unwrap();
        assert_eq!(pending.len(), 2);
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, _, _) = Log::open(dir.path(), None, true).unwrap();
        let started = Instant::now();
        let second = Log::open(dir.path(), None, true);
        let err = second.err().expect("a second writer is refused");
        assert!(err.0.contains("in use by another gateway process"), "{err}");
        assert!(started.elapsed() >= LOCK_WAIT);
    }
}
