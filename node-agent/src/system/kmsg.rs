//! The kernel log, from /dev/kmsg.
//!
//! Each read of /dev/kmsg returns one record `PRIORITY,SEQ,MICROS,FLAGS;MESSAGE`
//! (Documentation/ABI/testing/dev-kmsg). Reading from the start gives what the kernel
//! buffer holds; a read blocks when there is nothing new, which is how following works.

use std::fs::File;
use std::io::{self, Read};

/// One kernel log record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Syslog priority (0 emergency .. 7 debug).
    pub level: u8,
    /// Microseconds since boot.
    pub micros: u64,
    /// The message text.
    pub message: String,
}

impl Record {
    /// The line the Dmesg RPC sends: `[   12.345678] message`.
    pub fn line(&self) -> String {
        format!(
            "[{:>5}.{:06}] {}",
            self.micros / 1_000_000,
            self.micros % 1_000_000,
            self.message
        )
    }
}

/// Parses one record; continuation lines (` KEY=value`) are dropped.
pub fn parse(raw: &str) -> Option<Record> {
    let (header, message) = raw.split_once(';')?;
    let mut fields = header.split(',');
    let priority: u32 = fields.next()?.parse().ok()?;
    let _sequence = fields.next()?;
    let micros = fields.next()?.parse().ok()?;
    let message = message.lines().next().unwrap_or_default().to_owned();
    Some(Record {
        level: (priority & 7) as u8,
        micros,
        message,
    })
}

/// A reader of kernel records, blocking when there is nothing new.
pub struct Reader {
    file: File,
    buf: Vec<u8>,
}

impl Reader {
    /// Opens /dev/kmsg positioned at the oldest record the kernel still holds.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            file: File::open("/dev/kmsg")?,
            buf: vec![0; 8192],
        })
    }

    /// Reads every record available now without blocking, for `tail`.
    pub fn read_available(&mut self) -> io::Result<Vec<Record>> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        use std::os::fd::AsFd;
        let flags = OFlag::from_bits_truncate(fcntl(self.file.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(
            self.file.as_fd(),
            FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
        )?;
        let mut records = Vec::new();
        let outcome = loop {
            match self.next_record() {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(records),
                Err(e) => break Err(e),
            }
        };
        fcntl(self.file.as_fd(), FcntlArg::F_SETFL(flags))?;
        outcome
    }

    /// Reads the next record, blocking until there is one. `Ok(None)` is a record that
    /// did not parse, or one overwritten before it was read (EPIPE); reading goes on.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        match self.file.read(&mut self.buf) {
            Ok(n) => Ok(parse(&String::from_utf8_lossy(&self.buf[..n]))),
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn records_parse_into_level_time_and_message() {
        let record =
            super::parse("6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n")
                .unwrap();
        assert_eq!(record.level, 6);
        assert_eq!(record.micros, 5140900);
        assert_eq!(record.message, "NET: Registered protocol family 10");
        assert_eq!(
            record.line(),
            "[    5.140900] NET: Registered protocol family 10"
        );
        assert!(super::parse("no header").is_none());
    }
}
