//! Log output: `tracing` to standard error, as text or JSON lines.
//!
//! Text lines not bound for a terminal are formatted by `text.rs`: the
//! stock format, written without its styling machinery.
//!
//! The runtime's worker threads collect their lines and write them with one
//! system call when the thread goes idle (tokio's park hook,
//! [`flush_idle_worker`]), when [`PENDING_LIMIT`] bytes are waiting, or
//! when the oldest waiting line is [`PENDING_AGE`] old. Under load the
//! access log then costs one `write` per batch instead of one per line
//! (measured on refresh rotations: bench/README.md, "Rotation: the log
//! written in batches"); when the server is quiet a line is written as soon
//! as its request is done, because the worker then goes idle. Every other
//! thread (start-up, the CLI, hashing) writes each line at once. Lines are
//! never split or dropped; a crash loses at most one batch, which is what
//! the limits bound.

use std::cell::RefCell;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

mod text;

use text::{TextFields, TextLine};

/// Bytes a worker thread may hold before it writes them.
pub const PENDING_LIMIT: usize = 16 * 1024;

/// How long a line may wait for its worker to go idle, checked when the
/// next line comes.
pub const PENDING_AGE: Duration = Duration::from_millis(50);

/// Installs the global subscriber. The level comes from `RUST_LOG`
/// (default `info`). Nothing logged anywhere in the authority contains a
/// token, password or secret: records carry token ids, subjects and client
/// ids only.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colours = io::IsTerminal::is_terminal(&io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(LogWriter);
    let result = match format {
        // A terminal gets the stock formatter's colours.
        LogFormat::Text if colours => builder.try_init(),
        LogFormat::Text => builder
            .fmt_fields(TextFields)
            .event_format(TextLine)
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (tests): keep the first one.
    drop(result);
}

/// Writes what this thread holds and from now on lets it hold lines: the
/// runtime calls it just before a worker thread goes idle
/// (`on_thread_park`) and when it stops (`on_thread_stop`). Only worker
/// threads park, so only they batch.
pub fn flush_idle_worker() {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.get_or_insert_with(Batch::default)
                .drain(&mut io::stderr().lock());
        }
    });
}

thread_local! {
    /// The lines this thread holds; `None` until it first goes idle.
    static HELD: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// The writer the subscriber formats each event into (one whole line per
/// `write`).
#[derive(Clone, Copy, Debug, Default)]
struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

/// One formatted line on its way to standard error.
#[derive(Debug)]
struct Line;

impl Write for Line {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let held = HELD
            .try_with(|held| match held.try_borrow_mut() {
                Ok(mut held) => match held.as_mut() {
                    Some(batch) => {
                        if batch.push(line, Instant::now()) {
                            batch.drain(&mut io::stderr().lock());
                        }
                        true
                    }
                    None => false,
                },
                Err(_) => false,
            })
            .unwrap_or(false);
        if !held {
            io::stderr().lock().write_all(line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lines held by one thread, in the order they were logged.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    /// When the oldest held line came.
    since: Option<Instant>,
}

impl Batch {
    /// Holds `line`; answers whether the batch is to be written now: it is
    /// full, or its oldest line has waited long enough.
    #[must_use]
    fn push(&mut self, line: &[u8], now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        self.bytes.extend_from_slice(line);
        self.bytes.len() >= PENDING_LIMIT || now.duration_since(since) >= PENDING_AGE
    }

    /// Writes every held line with one call. A failed write loses the
    /// batch, as a failed write of a single line did.
    fn drain(&mut self, out: &mut impl Write) {
        if !self.bytes.is_empty() {
            let _ = out.write_all(&self.bytes);
            self.bytes.clear();
        }
        self.since = None;
    }
}

impl Drop for Batch {
    /// A thread that ends without the runtime's stop hook still writes what
    /// it holds.
    fn drop(&mut self) {
        self.drain(&mut io::stderr().lock());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the calls it gets, as the kernel would count `write`s.
    #[derive(Default)]
    struct Calls {
        written: Vec<u8>,
        calls: usize,
    }

    impl Write for Calls {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            self.written.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `Line::write` does with a held line.
    fn log(batch: &mut Batch, line: &[u8], now: Instant, out: &mut Calls) {
        if batch.push(line, now) {
            batch.drain(out);
        }
    }

    #[test]
    fn held_lines_are_written_in_order_with_one_call_when_drained() {
        let mut out = Calls::default();
        let mut batch = Batch::default();
        let now = Instant::now();
        for n in 0..10 {
            log(&mut batch, format!("line {n}\n").as_bytes(), now, &mut out);
        }
        assert_eq!(
            out.calls, 0,
            "nothing is written while the batch is young and small"
        );
        batch.drain(&mut out);
        assert_eq!(out.calls, 1);
        let expected: String = (0..10).map(|n| format!("line {n}\n")).collect();
        assert_eq!(String::from_utf8(out.written.clone()).unwrap(), expected);
        batch.drain(&mut out);
        assert_eq!(out.calls, 1, "an empty batch writes nothing");
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_for_idle() {
        let mut out = Calls::default();
        let mut batch = Batch::default();
        let line = [b'x'; 1000];
        let now = Instant::now();
        let mut pushed = 0;
        while out.calls == 0 {
            log(&mut batch, &line, now, &mut out);
            pushed += line.len();
            assert!(
                pushed <= PENDING_LIMIT + line.len(),
                "never held past the limit"
            );
        }
        assert!(out.written.len() >= PENDING_LIMIT);
        assert!(batch.bytes.is_empty());
        batch.drain(&mut out);
    }

    #[test]
    fn an_old_line_is_written_when_the_next_one_comes() {
        let mut out = Calls::default();
        let mut batch = Batch::default();
        let start = Instant::now();
        log(&mut batch, b"first\n", start, &mut out);
        log(&mut batch, b"second\n", start + PENDING_AGE / 2, &mut out);
        assert_eq!(out.calls, 0);
        log(&mut batch, b"third\n", start + PENDING_AGE, &mut out);
        assert_eq!(out.calls, 1);
        assert_eq!(out.written, b"first\nsecond\nthird\n");
        // The next line starts a new wait.
        log(
            &mut batch,
            b"fourth\n",
            start + PENDING_AGE + Duration::from_millis(1),
            &mut out,
        );
        assert_eq!(out.calls, 1);
        batch.drain(&mut out);
        assert_eq!(out.written, b"first\nsecond\nthird\nfourth\n");
    }
}
