//! Servers under test, each on a Tokio runtime of its own with a fixed
//! number of worker threads (never the load generator's), and the CPU time
//! those threads use.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;

/// Numbers the servers of a run: each runtime's threads are named
/// `server-<n>`, so that [`Server::cpu`] counts one server's threads while
/// others are up.
static NEXT_SERVER: AtomicUsize = AtomicUsize::new(1);

/// An axum app served on 127.0.0.1 by a runtime of its own; stopped (and
/// its runtime shut down) when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    /// The name of its runtime's worker threads.
    threads: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Builds the app with `build` inside a new runtime of `threads` worker
    /// threads (so that background tasks, such as a token cache's tracking
    /// connection, live there too) and serves it on a free port.
    pub(crate) fn start<F, Fut>(threads: usize, build: F) -> Result<Self, String>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Router, String>>,
    {
        let name = format!("server-{}", NEXT_SERVER.fetch_add(1, Ordering::Relaxed));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name.clone())
            .enable_all()
            .build()
            .map_err(|error| format!("server runtime: {error}"))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("server-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app = match build().await {
                        Ok(app) => app,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                            return;
                        }
                    };
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _ = ready_tx.send(Err(format!("bind: {error}")));
                            return;
                        }
                    };
                    let addr = listener.local_addr().map_err(|error| error.to_string());
                    let _ = ready_tx.send(addr);
                    // Serve on a worker thread: `block_on` runs on this
                    // (non-worker) thread.
                    let served = tokio::spawn(async move {
                        let _ = axum::serve(listener, app)
                            .with_graceful_shutdown(async {
                                let _ = stopped.await;
                            })
                            .await;
                    });
                    let _ = served.await;
                });
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|error| format!("server thread: {error}"))?;
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the server did not start within 30 s".to_owned())??;
        Ok(Self {
            addr,
            threads: name,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// CPU time its runtime's worker threads have used so far.
    pub(crate) fn cpu(&self) -> Duration {
        thread_cpu(&self.threads)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// CPU time (user + system) used so far by this process's threads named
/// `name`, from `/proc/self/task/*/stat` (10 ms ticks).
fn thread_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ticks = 0_u64;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        ticks += std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|stat| stat_cpu_ticks(&stat))
            .unwrap_or(0);
    }
    Duration::from_millis(ticks * 10)
}

/// utime + stime of a `/proc/<pid>/stat` line (fields 14 and 15, counted
/// after the parenthesised command name, which may hold spaces).
pub(crate) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time used so far by process `pid` (all its threads).
pub(crate) fn process_cpu(pid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_cpu_ticks(&stat))
        .map_or(Duration::ZERO, |ticks| Duration::from_millis(ticks * 10))
}
