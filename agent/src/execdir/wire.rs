//! The spawner's wire format, both ways: messages of a little-endian u32
//! length, then that many bytes. A request is two messages, the execution
//! folder and the contents of its `spec.json`; the answer is
//! `ok <pid> <starttime>` or `err <message>`.

use std::io::{self, Read, Write};

use super::PidFile;

/// Longest message accepted (a spec holds the arguments, 256 KiB by default).
pub const MAX_MESSAGE: usize = 16 << 20;
/// The command name (`/proc/PID/comm`) of a forked supervisor.
pub const SUPERVISOR_COMM: &std::ffi::CStr = c"bolt-supervise";

/// Writes one length-prefixed message.
pub fn write_message(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("message too long"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one length-prefixed message; `None` at a clean end of input.
pub fn read_message(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("message of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Parses an answer into the supervisor's pid file contents.
pub fn parse_answer(body: &[u8]) -> Result<PidFile, String> {
    let text = String::from_utf8_lossy(body);
    if let Some(err) = text.strip_prefix("err ") {
        return Err(err.to_owned());
    }
    let mut it = text.strip_prefix("ok ").ok_or_else(|| format!("unexpected answer {text:?}"))?.split(' ');
    let pid = it.next().and_then(|p| p.parse().ok()).ok_or_else(|| format!("bad pid in {text:?}"))?;
    let starttime = it.next().and_then(|p| p.parse().ok()).ok_or_else(|| format!("bad start in {text:?}"))?;
    Ok(PidFile { pid, starttime })
}

/// The answer to a request: the forked supervisor, or why there is none.
pub fn answer(result: Result<PidFile, String>) -> String {
    match result {
        Ok(p) => format!("ok {} {}", p.pid, p.starttime),
        Err(e) => format!("err {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_lengths_are_refused() {
        let mut buf = Vec::new();
        write_message(&mut buf, b"/data/executions/x").expect("write");
        write_message(&mut buf, b"").expect("write");
        let mut r = io::Cursor::new(buf);
        assert_eq!(read_message(&mut r).expect("read").expect("a message"), b"/data/executions/x");
        assert_eq!(read_message(&mut r).expect("read").expect("a message"), b"");
        assert!(read_message(&mut r).expect("read").is_none());
        let mut huge = io::Cursor::new(((MAX_MESSAGE + 1) as u32).to_le_bytes().to_vec());
        assert!(read_message(&mut huge).is_err());
        let mut cut = io::Cursor::new(vec![10, 0, 0, 0, b'a']);
        assert!(read_message(&mut cut).is_err());
    }

    #[test]
    fn answers_parse() {
        assert_eq!(parse_answer(b"ok 42 1234").expect("ok"), PidFile { pid: 42, starttime: 1234 });
        assert_eq!(parse_answer(b"err no memory").expect_err("err"), "no memory");
        assert!(parse_answer(b"ok x 1").is_err());
        assert!(parse_answer(b"what").is_err());
        let p = PidFile { pid: 7, starttime: 9 };
        assert_eq!(parse_answer(answer(Ok(p)).as_bytes()), Ok(p));
        assert_eq!(parse_answer(answer(Err("no fork".into())).as_bytes()), Err("no fork".into()));
    }
}
