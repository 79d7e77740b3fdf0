//! Appends output records to `output.log` and enforces the per-execution cap.

use std::{
    fs::{File, OpenOptions},
    io::{self, IoSlice, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::SystemTime,
};

use crate::exec::layout::{unix_ms, RecordHeader, OUTPUT_MAGIC, STREAM_STDERR, STREAM_STDOUT, STREAM_SYSTEM};

pub struct OutputWriter {
    file: File,
    max: u64,
    kept: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub truncated: bool,
    /// Set once a write failed (full disk): nothing more is written.
    broken: bool,
    /// Length of the file up to the last whole record.
    good_len: u64,
}

impl OutputWriter {
    pub fn create(path: &Path, max: u64) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        if file.metadata()?.len() == 0 {
            file.write_all(OUTPUT_MAGIC)?;
        }
        let good_len = file.metadata()?.len();
        Ok(Self {
            file,
            max,
            kept: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            broken: false,
            good_len,
        })
    }

    /// Records bytes the action wrote to `stream`.
    pub fn action_output(&mut self, stream: u8, data: &[u8]) {
        if stream == STREAM_STDOUT {
            self.stdout_bytes += data.len() as u64;
        } else if stream == STREAM_STDERR {
            self.stderr_bytes += data.len() as u64;
        }
        if self.truncated || self.broken {
            return;
        }
        // The cap counts what the output takes on disk, record headers
        // included: an action writing one byte at a time cannot make its
        // output 17 times larger than the cap.
        let header = RecordHeader::SIZE as u64;
        let room = self.max.saturating_sub(self.kept).saturating_sub(header);
        let keep = (data.len() as u64).min(room) as usize;
        if keep > 0 {
            self.kept += header + keep as u64;
            self.record(stream, &data[..keep]);
        }
        if keep < data.len() {
            self.truncated = true;
            self.notice(&format!(
                "[bolt] output truncated: the limit of {} bytes per execution (on disk, record headers included) was reached; the action keeps running and the rest of its output is dropped\n",
                self.max
            ));
        }
    }

    /// A notice from Bolt itself; not counted against the cap.
    pub fn notice(&mut self, text: &str) {
        if !self.broken {
            self.record(STREAM_SYSTEM, text.as_bytes());
        }
    }

    fn record(&mut self, stream: u8, data: &[u8]) {
        let header =
            RecordHeader { stream, len: data.len() as u32, time_ms: unix_ms(SystemTime::now()) }.encode();
        match write_all_vectored(&mut self.file, &header, data) {
            Ok(()) => self.good_len += (header.len() + data.len()) as u64,
            Err(_) => {
                // A full disk: cut the half-written record so readers never
                // see one, keep the action running and counting, stop writing.
                let _ = self.file.set_len(self.good_len);
                self.broken = true;
                self.truncated = true;
            }
        }
    }

    /// After a write failed (full disk), one more try to leave a visible
    /// marker at the end of the output, in case space came back.
    pub fn finish_notice(&mut self) {
        if self.broken {
            self.broken = false;
            self.record(STREAM_SYSTEM, b"[bolt] output truncated: the data folder was full\n");
        }
    }

    pub fn sync(&mut self) {
        let _ = self.file.sync_data();
    }
}

fn write_all_vectored(file: &mut File, header: &[u8], data: &[u8]) -> io::Result<()> {
    let total = header.len() + data.len();
    let mut written = file.write_vectored(&[IoSlice::new(header), IoSlice::new(data)])?;
    while written < total {
        let n = if written < header.len() {
            file.write_vectored(&[IoSlice::new(&header[written..]), IoSlice::new(data)])?
        } else {
            file.write(&data[written - header.len()..])?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    Ok(())
}
