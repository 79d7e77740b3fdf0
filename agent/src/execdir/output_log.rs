//! `output.log`: the action's output as records, written by the supervisor
//! ([`OutputWriter`], which enforces the cap) and read by the agent from any
//! logical offset ([`OutputReader`]), plain while running or zstd once done.

use std::{
    fs::{File, OpenOptions},
    io::{self, ErrorKind, IoSlice, Read, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
    time::SystemTime,
};

use super::{OUTPUT, OUTPUT_ZST};
use crate::files::unix_ms;

/// First bytes of every output.log.
pub const OUTPUT_MAGIC: &[u8; 8] = b"BOLTOUT1";

/// Stream tags in record headers (the values of the proto's `Stream`).
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;
pub const STREAM_SYSTEM: u8 = 3;

/// 16-byte header before each record's payload:
/// `stream u8, 3 reserved bytes, len u32 LE, unix ms u64 LE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub stream: u8,
    pub len: u32,
    pub time_ms: u64,
}

impl RecordHeader {
    pub const SIZE: usize = 16;

    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0] = self.stream;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.time_ms.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; Self::SIZE]) -> Option<Self> {
        let stream = b[0];
        if !(STREAM_STDOUT..=STREAM_SYSTEM).contains(&stream) {
            return None;
        }
        Some(Self {
            stream,
            len: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            time_ms: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        })
    }
}

// === reading ===

/// Largest chunk handed out; records are at most the supervisor's buffer.
const MAX_CHUNK: usize = 256 * 1024;
/// One read of record headers while seeking.
const SEEK_BUFFER: usize = 1 << 20;
/// Reads up to `buf.len()` bytes at `at`; fewer only at the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: u8,
    /// Logical offset of `data[0]`.
    pub offset: u64,
    pub time_ms: u64,
    pub data: Vec<u8>,
}

/// A cursor over an execution's output, plain (`output.log`, possibly still
/// growing) or compressed once finished (`output.log.zst`).
pub enum OutputReader {
    Plain(PlainReader),
    Zstd(ZstdReader),
}

impl OutputReader {
    /// Opens whichever form the output has, at logical offset `from`.
    pub fn open_dir(dir: &Path, from: u64) -> io::Result<Self> {
        match PlainReader::open(&dir.join(OUTPUT), from) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                ZstdReader::open(&dir.join(OUTPUT_ZST), from).map(Self::Zstd)
            }
            other => other.map(Self::Plain),
        }
    }

    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        match self {
            Self::Plain(r) => r.next_chunk(),
            Self::Zstd(r) => r.next_chunk(),
        }
    }

    /// Logical offset of the next byte to read.
    pub fn position(&self) -> u64 {
        match self {
            Self::Plain(r) => r.logical,
            Self::Zstd(r) => r.logical,
        }
    }
}

/// Records in a finished, compressed output: read front to back.
pub struct ZstdReader {
    dec: zstd::stream::read::Decoder<'static, std::io::BufReader<File>>,
    logical: u64,
    target: u64,
}

/// Largest record accepted from a file (the supervisor writes at most 64 KiB).
const MAX_RECORD: u32 = 16 << 20;

impl ZstdReader {
    pub fn open(path: &Path, from: u64) -> io::Result<Self> {
        let mut dec = zstd::stream::read::Decoder::new(File::open(path)?)?;
        let mut magic = [0u8; 8];
        dec.read_exact(&mut magic)?;
        if &magic != OUTPUT_MAGIC {
            return Err(io::Error::new(ErrorKind::InvalidData, "not a Bolt output file"));
        }
        Ok(Self { dec, logical: 0, target: from })
    }

    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        loop {
            let mut b = [0u8; RecordHeader::SIZE];
            match self.dec.read_exact(&mut b) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let h = RecordHeader::decode(&b).filter(|h| h.len <= MAX_RECORD).ok_or_else(|| {
                io::Error::new(ErrorKind::InvalidData, "bad record header in compressed output")
            })?;
            let len = u64::from(h.len);
            let mut data = vec![0u8; h.len as usize];
            self.dec.read_exact(&mut data)?;
            let start = self.target.saturating_sub(self.logical).min(len);
            let offset = self.logical + start;
            self.logical += len;
            self.target = self.target.max(self.logical);
            if start == len {
                continue;
            }
            data.drain(..start as usize);
            return Ok(Some(Chunk { stream: h.stream, offset, time_ms: h.time_ms, data }));
        }
    }
}

/// Compresses a finished execution's `output.log` into `output.log.zst`
/// (temp file, fsync, rename), then removes the plain file. Readers that
/// have the plain file open keep reading it. Returns (plain, compressed) sizes.
pub fn compress(dir: &Path) -> io::Result<(u64, u64)> {
    let plain = dir.join(OUTPUT);
    let tmp = dir.join(format!(".{OUTPUT_ZST}.tmp"));
    let mut input = File::open(&plain)?;
    let before = input.metadata()?.len();
    {
        let out =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
        std::io::copy(&mut input, &mut enc)?;
        let out = enc.finish()?;
        out.sync_all()?;
    }
    let after = std::fs::metadata(&tmp)?.len();
    std::fs::rename(&tmp, dir.join(OUTPUT_ZST))?;
    File::open(dir)?.sync_all()?;
    std::fs::remove_file(&plain)?;
    Ok((before, after))
}

/// A cursor over the records of one plain output file. A record the
/// supervisor is still writing is left for the next call.
pub struct PlainReader {
    file: File,
    /// File position of the next record header.
    pos: u64,
    /// Logical offset of the first payload byte at `pos`.
    logical: u64,
    /// Payload bytes of the next record to skip (a start inside a record).
    skip: u64,
}

impl PlainReader {
    /// Opens the file and moves to logical offset `from` (or its end, if the
    /// output is shorter so far).
    pub fn open(path: &Path, from: u64) -> io::Result<Self> {
        let file = File::open(path)?;
        let mut magic = [0u8; 8];
        match file.read_exact_at(&mut magic, 0) {
            Ok(()) if &magic == OUTPUT_MAGIC => {}
            Ok(()) => return Err(io::Error::new(ErrorKind::InvalidData, "not a Bolt output file")),
            // The supervisor has not written the magic yet.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return Ok(Self { file, pos: 0, logical: 0, skip: from })
            }
            Err(e) => return Err(e),
        }
        let mut r = Self { file, pos: 8, logical: 0, skip: 0 };
        r.seek(from)?;
        Ok(r)
    }

    /// Walks whole records up to `target`. Headers are parsed from large
    /// reads with one `fstat` per seek, not a `pread` and an `fstat` per
    /// record: an output of millions of tiny records is crossed at the
    /// speed of a sequential read.
    fn seek(&mut self, target: u64) -> io::Result<()> {
        let file_len = self.file.metadata()?.len();
        let mut buf = vec![0u8; SEEK_BUFFER];
        let (mut buf_start, mut buf_len) = (0u64, 0usize);
        const HEADER: u64 = RecordHeader::SIZE as u64;
        while self.logical < target && self.pos + HEADER <= file_len {
            if self.pos < buf_start || self.pos + HEADER > buf_start + buf_len as u64 {
                buf_len = read_at_most(&self.file, &mut buf, self.pos)?;
                buf_start = self.pos;
                if (buf_len as u64) < HEADER {
                    break;
                }
            }
            let at = (self.pos - buf_start) as usize;
            let mut b = [0u8; RecordHeader::SIZE];
            b.copy_from_slice(&buf[at..at + RecordHeader::SIZE]);
            let h = RecordHeader::decode(&b).ok_or_else(|| {
                io::Error::new(ErrorKind::InvalidData, format!("bad record header at byte {}", self.pos))
            })?;
            let len = u64::from(h.len);
            if self.logical + len > target || self.pos + HEADER + len > file_len {
                break;
            }
            self.pos += HEADER + len;
            self.logical += len;
        }
        self.skip = target.saturating_sub(self.logical);
        Ok(())
    }

    fn header(&self) -> io::Result<Option<RecordHeader>> {
        if self.pos == 0 {
            return Ok(None);
        }
        let mut b = [0u8; RecordHeader::SIZE];
        match self.file.read_exact_at(&mut b, self.pos) {
            Ok(()) => RecordHeader::decode(&b).map(Some).ok_or_else(|| {
                io::Error::new(ErrorKind::InvalidData, format!("bad record header at byte {}", self.pos))
            }),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the record at `pos` with payload `len` is fully written.
    fn complete(&self, len: u64) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() >= self.pos + RecordHeader::SIZE as u64 + len)
    }

    /// The next chunk, or None at the current end of the file.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.pos == 0 {
            // Reopened lazily: the magic may be there by now.
            let mut magic = [0u8; 8];
            if self.file.read_exact_at(&mut magic, 0).is_err() {
                return Ok(None);
            }
            self.pos = 8;
            let skip = self.skip;
            self.skip = 0;
            self.seek(skip)?;
        }
        loop {
            let Some(h) = self.header()? else { return Ok(None) };
            let len = u64::from(h.len);
            if !self.complete(len)? {
                return Ok(None);
            }
            let start = self.skip.min(len);
            let take = (len - start).min(MAX_CHUNK as u64);
            let mut data = vec![0u8; take as usize];
            self.file.read_exact_at(&mut data, self.pos + RecordHeader::SIZE as u64 + start)?;
            let offset = self.logical + start;
            if start + take == len {
                self.pos += RecordHeader::SIZE as u64 + len;
                self.logical += len;
                self.skip = 0;
            } else {
                self.skip = start + take;
            }
            if data.is_empty() {
                continue;
            }
            return Ok(Some(Chunk { stream: h.stream, offset, time_ms: h.time_ms, data }));
        }
    }
}

// === writing ===

/// Appends records to `output.log` and enforces the per-execution cap.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_log(path: &Path, records: &[(u8, &[u8])]) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
        if f.metadata().expect("meta").len() == 0 {
            f.write_all(OUTPUT_MAGIC).expect("magic");
        }
        for (s, d) in records {
            let h = RecordHeader { stream: *s, len: d.len() as u32, time_ms: 7 };
            f.write_all(&h.encode()).expect("header");
            f.write_all(d).expect("data");
        }
    }

    fn all(r: &mut PlainReader) -> Vec<Chunk> {
        let mut v = Vec::new();
        while let Some(c) = r.next_chunk().expect("read") {
            v.push(c);
        }
        v
    }

    #[test]
    fn header_round_trips() {
        let h = RecordHeader { stream: STREAM_STDERR, len: 65536, time_ms: 1_700_000_000_123 };
        assert_eq!(RecordHeader::decode(&h.encode()), Some(h));
        assert_eq!(RecordHeader::decode(&[0u8; 16]), None);
    }

    #[test]
    fn the_writer_caps_what_it_keeps_and_the_reader_reads_it_back() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join(OUTPUT);
        let mut w = OutputWriter::create(&p, 64).expect("create");
        w.action_output(STREAM_STDOUT, b"hello");
        w.action_output(STREAM_STDERR, &[b'e'; 100]);
        w.action_output(STREAM_STDOUT, b"dropped");
        assert!(w.truncated);
        assert_eq!((w.stdout_bytes, w.stderr_bytes), (12, 100));
        let c = all(&mut PlainReader::open(&p, 0).expect("open"));
        let kept: Vec<_> = c.iter().filter(|c| c.stream != STREAM_SYSTEM).map(|c| (c.stream, c.data.len())).collect();
        // 64 bytes on disk: 16+5 for hello, 16+27 of the 100 e's.
        assert_eq!(kept, [(STREAM_STDOUT, 5), (STREAM_STDERR, 27)]);
        assert!(c.iter().any(|c| c.stream == STREAM_SYSTEM && c.data.starts_with(b"[bolt] output truncated")));
    }

    #[test]
    fn seeks_across_many_tiny_records_and_big_ones() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("output.log");
        let tiny: Vec<(u8, &[u8])> = (0..200_000).map(|_| (STREAM_STDOUT, &b"x"[..])).collect();
        write_log(&p, &tiny);
        let big = vec![b'y'; 3 << 20];
        write_log(&p, &[(STREAM_STDERR, &big), (STREAM_STDOUT, b"tail")]);
        let started = std::time::Instant::now();
        let mut r = PlainReader::open(&p, 150_000).expect("open");
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        let first = r.next_chunk().expect("read").expect("chunk");
        assert_eq!((first.offset, first.data.as_slice()), (150_000, &b"x"[..]));
        // Into the middle of the big record, then past it.
        let mut r = PlainReader::open(&p, 200_000 + (1 << 20)).expect("open");
        let c = r.next_chunk().expect("read").expect("chunk");
        assert_eq!((c.stream, c.offset), (STREAM_STDERR, 200_000 + (1 << 20)));
        let mut r = PlainReader::open(&p, 200_000 + (3 << 20) + 2).expect("open");
        let c = r.next_chunk().expect("read").expect("chunk");
        assert_eq!((c.offset, c.data.as_slice()), (200_000 + (3 << 20) + 2, &b"il"[..]));
    }

    #[test]
    fn reads_from_any_offset() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("output.log");
        write_log(&p, &[(STREAM_STDOUT, b"hello "), (STREAM_STDERR, b"oops"), (STREAM_STDOUT, b"world")]);
        let c = all(&mut PlainReader::open(&p, 0).expect("open"));
        assert_eq!(
            c.iter().map(|c| (c.stream, c.offset, c.data.as_slice())).collect::<Vec<_>>(),
            [(STREAM_STDOUT, 0, &b"hello "[..]), (STREAM_STDERR, 6, b"oops"), (STREAM_STDOUT, 10, b"world")]
        );
        let c = all(&mut PlainReader::open(&p, 8).expect("open"));
        assert_eq!((c[0].offset, c[0].data.as_slice()), (8, &b"ps"[..]));
        assert_eq!(c.len(), 2);
        assert!(all(&mut PlainReader::open(&p, 15).expect("open")).is_empty());
        assert!(all(&mut PlainReader::open(&p, 99).expect("open")).is_empty());
    }

    #[test]
    fn a_half_written_record_waits() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("output.log");
        write_log(&p, &[(STREAM_STDOUT, b"one")]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).expect("open");
        let h = RecordHeader { stream: STREAM_STDOUT, len: 3, time_ms: 1 };
        f.write_all(&h.encode()).expect("header");
        f.write_all(b"t").expect("partial");
        let mut r = PlainReader::open(&p, 0).expect("open");
        assert_eq!(all(&mut r).len(), 1);
        f.write_all(b"wo").expect("rest");
        let c = all(&mut r);
        assert_eq!((c[0].offset, c[0].data.as_slice()), (3, &b"two"[..]));
    }

    #[test]
    fn compressed_output_reads_the_same_from_any_offset() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join(OUTPUT);
        let body: Vec<u8> = (0..5000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
        let records: Vec<(u8, &[u8])> = body.chunks(1000).map(|c| (STREAM_STDOUT, c)).collect();
        write_log(&p, &records);
        let mut before = Vec::new();
        let mut r = OutputReader::open_dir(d.path(), 0).expect("plain");
        while let Some(c) = r.next_chunk().expect("read") {
            before.push(c);
        }
        let (plain, packed) = compress(d.path()).expect("compress");
        assert!(!p.exists() && packed * 4 < plain, "{plain} -> {packed}");
        for from in [0u64, 1, 999, 1000, 12345, body.len() as u64] {
            let mut r = OutputReader::open_dir(d.path(), from).expect("zstd");
            assert!(matches!(r, OutputReader::Zstd(_)));
            let mut got = Vec::new();
            let mut first = None;
            while let Some(c) = r.next_chunk().expect("read") {
                first.get_or_insert(c.offset);
                got.extend_from_slice(&c.data);
            }
            assert_eq!(got, body[from as usize..], "from {from}");
            if from < body.len() as u64 {
                assert_eq!(first, Some(from));
            }
            assert_eq!(r.position(), body.len() as u64);
        }
        assert_eq!(before.iter().map(|c| c.data.len()).sum::<usize>(), body.len());
    }

    #[test]
    fn an_empty_file_is_read_later() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("output.log");
        std::fs::write(&p, b"").expect("create");
        let mut r = PlainReader::open(&p, 2).expect("open");
        assert!(r.next_chunk().expect("read").is_none());
        write_log(&p, &[(STREAM_STDOUT, b"abcd")]);
        let c = all(&mut r);
        assert_eq!((c[0].offset, c[0].data.as_slice()), (2, &b"cd"[..]));
    }
}
