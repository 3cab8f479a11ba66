//! One long-lived thread compiles every configuration the process serves (at startup, on a
//! file change, SIGHUP or `POST /config`). What a compile keeps for the next one lives in that
//! thread's locals and is found again only there: the Lua loader with the custom plugins'
//! definitions and the outcomes of instance validation (`snapshot::instances`). The memory a
//! compile allocates also belongs to that one thread's heap, which it keeps between compiles
//! that follow each other closely and returns to the system once idle (see [`KEEP_SCRATCH`]).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// The compile thread's queue, with the process it was started in: after a fork (daemon
/// mode) the thread is gone from the child, which starts its own.
static JOBS: Mutex<Option<(u32, mpsc::Sender<Job>)>> = Mutex::new(None);

/// Stack of the compile thread: decoding, validation and Lua schemas recurse with the
/// config's nesting, as they did on the main thread (reserved, not resident).
const STACK: usize = 16 << 20;

/// How long the compile thread keeps the memory a compile freed (the parsed tree, the decoded
/// entities, the previous snapshot) before it hands it back to the system. A compile that comes
/// sooner reuses those pages instead of faulting fresh ones in: on a 1.4 MB config that is
/// 40 ms of a 220 ms reload (the kernel zeroing huge pages). Reloads closer together than this
/// (an editor saving repeatedly, the ingress controller's syncs every 3 s) hold at most one
/// compile's scratch memory meanwhile; a process that stops reloading gives it back. `main`
/// sets mimalloc's own purge delay to this too ([`crate::allocator::keep_freed_pages_for`]).
pub const KEEP_SCRATCH: Duration = Duration::from_secs(5);

fn spawn() -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("config-compile".into())
        .stack_size(STACK)
        .spawn(move || {
            let mut holding = false;
            loop {
                let next = if holding {
                    rx.recv_timeout(KEEP_SCRATCH)
                } else {
                    rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                };
                match next {
                    Ok(job) => {
                        job();
                        holding = true;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        super::release_freed_memory();
                        holding = false;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        });
    if let Err(e) = started {
        // `run` then finds the channel closed and runs each job on its caller's thread.
        tracing::warn!("cannot start the config compile thread ({e}); compiling inline");
    }
    tx
}

/// Runs `f` on the compile thread and returns its result; a panic in `f` is resumed here.
/// Jobs run one at a time, in the order they arrive. Without the thread (it could not be
/// started), `f` runs on the calling thread.
pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    let sent = {
        let mut jobs = JOBS.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        match &*jobs {
            Some((started_in, tx)) if *started_in == pid => tx.send(job),
            _ => {
                let tx = spawn();
                let sent = tx.send(job);
                *jobs = Some((pid, tx));
                sent
            }
        }
    };
    if let Err(mpsc::SendError(job)) = sent {
        job();
    }
    match rx.recv() {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => resume_unwind(panic),
        // The job always sends before it is dropped; a job dropped unrun means the thread
        // died between receiving and running it, which `catch_unwind` rules out.
        Err(_) => panic!("the config compile thread dropped a job"),
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    #[test]
    fn jobs_run_on_one_thread_and_panics_reach_the_caller() {
        let first = run(|| std::thread::current().id());
        let second = run(|| std::thread::current().id());
        assert_eq!(first, second);
        assert_ne!(first, std::thread::current().id());
        let caught = std::panic::catch_unwind(|| run(|| panic!("boom")));
        assert!(caught.is_err());
        // The thread survives a panicking job.
        assert_eq!(run(|| std::thread::current().id()), first);
    }
}
