//! Service output: line splitting, size-bounded rotating log files, tail and follow.
//!
//! Every line a service prints (stdout and stderr alike) is appended, undecorated, to
//! `<log_dir>/<name>.log` and published on a broadcast channel. Before a line would push
//! the file past the size limit, the files are rotated: `<name>.log.(k-1)` becomes
//! `<name>.log.k`, ..., `<name>.log` becomes `<name>.log.1`, and the oldest falls off. So
//! each file holds at most `limit` bytes (or a single line, if one line is longer), and a
//! service never uses more than `limit * (kept + 1)` bytes (plus one line) of disk.
//! Lines longer than [`MAX_LINE`] bytes are split.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::broadcast;
use tracing::warn;

use super::lock;

/// The longest line stored as one line; longer output is cut into pieces of this size.
pub(super) const MAX_LINE: usize = 16 * 1024;

/// Read buffer per service pipe (two per service).
const PIPE_BUFFER: usize = 16 * 1024;

/// Lines a slow follower may lag behind before it misses some.
const FOLLOW_BUFFER: usize = 1024;

/// The log of one service: its files and its live line feed.
#[derive(Debug)]
pub(super) struct LogSink {
    name: String,
    file: Mutex<RotatingFile>,
    lines: broadcast::Sender<String>,
}

impl LogSink {
    /// The log of service `name` in `dir`, rotated at `limit` bytes keeping `kept` old files.
    /// Nothing is opened until the first line arrives.
    pub(super) fn new(dir: &Path, name: &str, limit: u64, kept: usize) -> Self {
        LogSink {
            name: name.to_owned(),
            file: Mutex::new(RotatingFile {
                path: dir.join(format!("{name}.log")),
                writer: None,
                size: 0,
                limit,
                kept,
                failing: false,
            }),
            lines: broadcast::channel(FOLLOW_BUFFER).0,
        }
    }

    /// The current log file.
    pub(super) fn path(&self) -> PathBuf {
        lock(&self.file).path.clone()
    }

    /// The bytes of the last `n` lines (see [`LogSink::tail`]) and a receiver of every
    /// line written after them: both taken under the lock the writer holds while it
    /// writes and publishes a line, so no line is lost or repeated between the two.
    /// Blocking: call it from `spawn_blocking`.
    pub(super) fn tail_and_follow(
        &self,
        n: usize,
    ) -> io::Result<(Vec<u8>, broadcast::Receiver<String>)> {
        let mut file = lock(&self.file);
        let history = self.read_tail(&mut file, n)?;
        Ok((history, self.lines.subscribe()))
    }

    /// The bytes of the last `n` lines across the current and rotated files, oldest
    /// first, each ending in a newline. Only the files needed are read, and lines stay
    /// bytes: no per-line allocation or UTF-8 check (a service may print anything).
    /// Blocking: call it from `spawn_blocking`.
    pub(super) fn tail(&self, n: usize) -> io::Result<Vec<u8>> {
        // Holding the lock keeps rotation from renaming files under our feet.
        let mut file = lock(&self.file);
        self.read_tail(&mut file, n)
    }

    fn read_tail(&self, file: &mut RotatingFile, n: usize) -> io::Result<Vec<u8>> {
        file.flush(&self.name);
        let mut pieces = Vec::new(); // newest file first
        let mut wanted = n;
        for index in 0..=file.kept {
            if wanted == 0 {
                break;
            }
            let mut data = match fs::read(file.numbered(index)) {
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if data.is_empty() {
                continue;
            }
            if data.last() != Some(&b'\n') {
                data.push(b'\n');
            }
            let (start, lines) = last_lines(&data, wanted);
            wanted -= lines;
            data.drain(..start);
            pieces.push(data);
        }
        pieces.reverse();
        Ok(pieces.concat())
    }

    /// Copies a pipe of the service (stdout or stderr) into the log until end of file.
    pub(super) async fn pump(&self, fd: OwnedFd) {
        let pipe = match pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => pipe,
            Err(e) => {
                warn!(service = %self.name, error = %e, "cannot read service output");
                return;
            }
        };
        // Lines are assembled in `partial`, so the read buffer only sets the syscall
        // size; a small one keeps the per-service memory low.
        let mut reader = BufReader::with_capacity(PIPE_BUFFER, pipe);
        let mut partial = Vec::new();
        loop {
            let chunk = match reader.fill_buf().await {
                Ok([]) => break,
                Ok(chunk) => chunk,
                Err(e) => {
                    warn!(service = %self.name, error = %e, "reading service output failed");
                    break;
                }
            };
            let consumed = chunk.len();
            self.write_chunk(&mut partial, chunk);
            reader.consume(consumed);
        }
        if !partial.is_empty() {
            let mut file = lock(&self.file);
            self.emit(&mut file, &partial);
            file.flush(&self.name);
        }
    }

    /// Writes the complete lines of `chunk` (prefixed by the `partial` line left from the
    /// previous chunk) and keeps the unterminated rest in `partial`.
    fn write_chunk(&self, partial: &mut Vec<u8>, chunk: &[u8]) {
        let mut file = lock(&self.file);
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(end) => {
                    partial.extend_from_slice(end);
                    self.emit(&mut file, partial);
                    partial.clear();
                }
                None => partial.extend_from_slice(piece),
            }
            while partial.len() >= MAX_LINE {
                self.emit(&mut file, &partial[..MAX_LINE]);
                partial.drain(..MAX_LINE);
            }
        }
        file.flush(&self.name);
    }

    fn emit(&self, file: &mut RotatingFile, line: &[u8]) {
        file.write_line(&self.name, line);
        if self.lines.receiver_count() > 0 {
            // An error only means the last follower just went away.
            let _ = self.lines.send(String::from_utf8_lossy(line).into_owned());
        }
    }
}

/// `<name>.log` and its rotated predecessors.
#[derive(Debug)]
struct RotatingFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    /// Bytes in the current file.
    size: u64,
    limit: u64,
    kept: usize,
    /// Whether the last write failed (to warn once per failure streak, not per line).
    failing: bool,
}

impl RotatingFile {
    /// `<name>.log` for 0, `<name>.log.<index>` otherwise.
    fn numbered(&self, index: usize) -> PathBuf {
        if index == 0 {
            return self.path.clone();
        }
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    fn write_line(&mut self, service: &str, line: &[u8]) {
        let result = self.try_write_line(line);
        self.note(service, result);
    }

    fn flush(&mut self, service: &str) {
        let result = self.writer.as_mut().map_or(Ok(()), Write::flush);
        self.note(service, result);
    }

    fn note(&mut self, service: &str, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    warn!(service, path = %self.path.display(), error = %e, "cannot write service log; dropping lines");
                }
                self.failing = true;
                // Reopen on the next line.
                self.writer = None;
            }
        }
    }

    fn try_write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        let mut writer = match self.writer.take() {
            Some(writer) => writer,
            None => self.open(false)?,
        };
        if self.size > 0 && self.size + len > self.limit {
            writer.flush()?;
            drop(writer);
            self.rotate()?;
            writer = self.open(true)?;
        }
        let writer = self.writer.insert(writer);
        writer.write_all(line)?;
        writer.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    /// Opens the current file for appending (or truncated), recording its size.
    fn open(&mut self, truncate: bool) -> io::Result<BufWriter<File>> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(!truncate)
            .write(true)
            .truncate(truncate)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        Ok(BufWriter::with_capacity(64 * 1024, file))
    }

    /// Shifts `.log` -> `.log.1` -> ... -> `.log.<kept>`, dropping the oldest.
    fn rotate(&mut self) -> io::Result<()> {
        for index in (0..self.kept).rev() {
            match fs::rename(self.numbered(index), self.numbered(index + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Where the last `n` lines of `data` (which ends in a newline) begin, and how many
/// lines that is (fewer than `n` when `data` has fewer).
fn last_lines(data: &[u8], n: usize) -> (usize, usize) {
    let mut found = 0;
    // Skip the final newline: each newline before it closes one earlier line.
    for (i, &byte) in data[..data.len() - 1].iter().enumerate().rev() {
        if byte == b'\n' {
            found += 1;
            if found == n {
                return (i + 1, n);
            }
        }
    }
    (0, found + 1)
}

/// The lines of a [`LogSink::tail`], for assertions.
#[cfg(test)]
pub(super) fn lines_of(tail: Vec<u8>) -> Vec<String> {
    String::from_utf8_lossy(&tail)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(dir: &Path, limit: u64, kept: usize) -> LogSink {
        LogSink::new(dir, "svc", limit, kept)
    }

    #[test]
    fn splits_lines_across_chunks_and_caps_long_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = sink(dir.path(), 1 << 20, 1);
        let mut partial = Vec::new();
        log.write_chunk(&mut partial, b"one\ntw");
        log.write_chunk(&mut partial, b"o\nthree");
        assert_eq!(partial, b"three");
        log.write_chunk(&mut partial, b"\n");
        let long = vec![b'x'; MAX_LINE + 10];
        log.write_chunk(&mut partial, &long);
        log.write_chunk(&mut partial, b"\n");
        let lines = lines_of(log.tail(10).expect("tail"));
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[..3], ["one", "two", "three"]);
        assert_eq!(lines[3].len(), MAX_LINE);
        assert_eq!(lines[4], "x".repeat(10));
    }

    #[test]
    fn rotation_bounds_the_files_and_tail_spans_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = sink(dir.path(), 100, 2);
        let mut partial = Vec::new();
        for i in 0..1000 {
            log.write_chunk(&mut partial, format!("line {i:04}\n").as_bytes());
        }
        let mut total = 0;
        for index in 0..=2 {
            let len = fs::metadata(lock(&log.file).numbered(index))
                .expect("file")
                .len();
            assert!(len <= 100, "file {index} has {len} bytes");
            total += len;
        }
        assert!(total <= 300);
        assert!(!lock(&log.file).numbered(3).exists());
        // 10 lines of 10 bytes per file: the last 30 lines survive, in order.
        let lines = lines_of(log.tail(1000).expect("tail"));
        let expected: Vec<String> = (970..1000).map(|i| format!("line {i:04}")).collect();
        assert_eq!(lines, expected);
        assert_eq!(lines_of(log.tail(3).expect("tail")), expected[27..]);
        assert!(lines_of(log.tail(0).expect("tail")).is_empty());
    }

    #[test]
    fn last_lines_finds_where_the_tail_begins() {
        assert_eq!(last_lines(b"a\nb\nc\n", 1), (4, 1));
        assert_eq!(last_lines(b"a\nb\nc\n", 2), (2, 2));
        assert_eq!(last_lines(b"a\nb\nc\n", 3), (0, 3));
        assert_eq!(last_lines(b"a\nb\nc\n", 9), (0, 3));
        assert_eq!(last_lines(b"\n", 1), (0, 1));
    }

    #[test]
    fn keeps_appending_to_an_existing_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("svc.log"), "old\n").expect("write");
        let log = sink(dir.path(), 1 << 20, 2);
        log.write_chunk(&mut Vec::new(), b"new\n");
        assert_eq!(lines_of(log.tail(5).expect("tail")), ["old", "new"]);
    }

    #[test]
    fn without_kept_files_rotation_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = sink(dir.path(), 10, 0);
        log.write_chunk(&mut Vec::new(), b"aaaa\nbbbb\ncccc\n");
        assert_eq!(lines_of(log.tail(5).expect("tail")), ["cccc"]);
    }
}
