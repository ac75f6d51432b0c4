//! Writing a large download to disk as it arrives.

use std::fs::File;

/// Starts the kernel writing a large download to disk as it arrives, so the `fsync` before
/// the final rename has little left to do (and dirty memory stays bounded) instead of
/// flushing gigabytes at the end.
pub(super) struct Writeback {
    pub(super) started: u64,
    pub(super) written: u64,
}

impl Writeback {
    const WINDOW: u64 = 32 << 20;

    pub(super) fn new(offset: u64) -> Writeback {
        Writeback {
            started: offset,
            written: offset,
        }
    }

    /// `bytes` more were handed to the writer (a small tail may still sit in its buffer:
    /// the request covers whatever reached the file, it is only a hint).
    pub(super) fn wrote(&mut self, bytes: u64, file: &File) {
        self.written += bytes;
        if self.written - self.started < Self::WINDOW {
            return;
        }
        start_writeback(file, self.started, self.written - self.started);
        self.started = self.written;
    }
}

#[cfg(target_os = "linux")]
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a hint on a file descriptor we own; SYNC_FILE_RANGE_WRITE only queues
    // writeback of pages already written and touches no memory of ours. A failure only
    // means the final fsync does all the work, so its result is ignored.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn start_writeback(_file: &File, _offset: u64, _len: u64) {}
