//! The CPU budget of one call into plugin code, counted in the thread's own CPU time.
//!
//! A call is given `limit` of CPU time (`CLOCK_THREAD_CPUTIME_ID`): time the thread spends
//! descheduled, stolen by the hypervisor or waiting does not count. Reading that clock is a
//! system call (measured at about 1.4 µs on this project's VMs, against 30 ns for the wall
//! clock), too dear for every call, so the call's start is timed with the wall clock only: no
//! call can use `limit` of CPU before `limit` of wall time has passed. Only then is the CPU
//! clock read, and from that reading the call may use `limit` more. A call is therefore
//! stopped after between `limit` and twice `limit` of CPU time (a call that spins from its
//! start, after about twice), and a call that is slow only because its thread was not running
//! is never stopped, however long it takes.
//!
//! Calls that may have spent their budget are found by the watchdog (`watchdog`), which sets
//! the instruction hook that calls [`check`] on their VM.
//!
//! Once spent, the budget stays spent until the call returns to Rust: every later
//! [`check`] fails, the instruction hook keeps raising, and the sandbox's `pcall`, `xpcall` and
//! `coroutine.resume` re-raise instead of returning (see `guards.lua`), so plugin code cannot
//! catch the overrun and carry on.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The running call has spent what it may use, and must unwind.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum Exceeded {
    /// Its CPU time.
    #[error("CPU budget of {0:?} exceeded")]
    Cpu(Duration),
    /// The native stack (see `stack`): treated like the budget, so that a recursion caught at
    /// its deepest level by `pcall` or `coroutine.resume` still fails the call.
    #[error("{}", super::stack::MESSAGE)]
    Stack,
}

#[derive(Clone, Copy)]
struct Armed {
    limit: Duration,
    /// The thread's CPU time at which the budget is spent; unknown until `limit` of wall time
    /// has passed (see the module's documentation).
    cpu_deadline: Option<Duration>,
    /// Before this instant the budget cannot be spent (CPU time never outruns wall time).
    next_check: Instant,
    expired: Option<Exceeded>,
}

thread_local! {
    static ARMED: Cell<Option<Armed>> = const { Cell::new(None) };
}

/// CPU time this thread has consumed.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` with a budget of `limit` armed for this thread. A call nested in an armed one runs
/// under the outer budget (plugin code cannot buy itself a fresh budget).
pub fn with_budget<R>(limit: Duration, f: impl FnOnce() -> R) -> R {
    with_budget_since(Instant::now(), limit, f)
}

/// [`with_budget`] for a call that began at `start` (a moment the caller has just read; an
/// earlier start only brings the first look at the CPU clock forward).
pub fn with_budget_since<R>(start: Instant, limit: Duration, f: impl FnOnce() -> R) -> R {
    if ARMED.with(|a| a.get().is_some()) {
        return f();
    }
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.with(|a| a.set(None));
            super::watchdog::end();
        }
    }
    let next_check = start + limit;
    ARMED.with(|a| {
        a.set(Some(Armed {
            cpu_deadline: None,
            limit,
            next_check,
            expired: None,
        }))
    });
    super::watchdog::begin(next_check);
    let _disarm = Disarm;
    f()
}

/// Gives the running call a fresh budget of `limit` from `start`: the next plugin of a batch
/// (`runtime::Batch`), whose calls each have a budget of their own. No effect when no budget
/// is armed, or when the budget is spent (an overrun stays one until the call returns to Rust).
pub fn restart(start: Instant, limit: Duration) {
    let next_check = start + limit;
    let armed = ARMED.with(|a| {
        if a.get().is_none_or(|armed| armed.expired.is_some()) {
            return false;
        }
        a.set(Some(Armed {
            cpu_deadline: None,
            limit,
            next_check,
            expired: None,
        }));
        true
    });
    if armed {
        super::watchdog::begin(next_check);
    }
}

/// Fails once the running call has spent its budget (and from then on); succeeds when no
/// budget is armed.
pub fn check() -> Result<(), Exceeded> {
    ARMED.with(|a| {
        let Some(mut armed) = a.get() else {
            return Ok(());
        };
        if let Some(e) = armed.expired {
            return Err(e);
        }
        let now = Instant::now();
        if now < armed.next_check {
            return Ok(());
        }
        let cpu = thread_cpu_time();
        let deadline = *armed.cpu_deadline.get_or_insert(cpu + armed.limit);
        if cpu >= deadline {
            let e = Exceeded::Cpu(armed.limit);
            armed.expired = Some(e);
            a.set(Some(armed));
            return Err(e);
        }
        armed.next_check = now + (deadline - cpu);
        a.set(Some(armed));
        Ok(())
    })
}

/// What the running call has overrun, if anything (as far as the last [`check`] saw).
pub fn overrun() -> Option<Exceeded> {
    ARMED.with(|a| a.get().and_then(|armed| armed.expired))
}

/// Whether the running call has overrun its budget or the native stack.
pub fn expired() -> bool {
    overrun().is_some()
}

/// Marks the running call as out of native stack (no effect outside a call).
pub fn exhaust_stack() {
    ARMED.with(|a| {
        if let Some(mut armed) = a.get() {
            armed.expired.get_or_insert(Exceeded::Stack);
            a.set(Some(armed));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_thread_keeps_its_budget() {
        with_budget(Duration::from_millis(50), || {
            // Sleeping costs no CPU: four budgets of wall time leave the budget unspent.
            std::thread::sleep(Duration::from_millis(200));
            assert!(check().is_ok());
            assert!(!expired());
        });
    }

    #[test]
    fn spinning_spends_it_and_it_stays_spent() {
        with_budget(Duration::from_millis(20), || {
            let start = Instant::now();
            while check().is_ok() {
                assert!(start.elapsed() < Duration::from_secs(10), "never expired");
            }
            assert!(expired());
            assert!(check().is_err());
        });
        assert!(!expired(), "disarmed after the call");
        assert!(check().is_ok());
    }

    #[test]
    fn nested_calls_share_the_outer_budget() {
        with_budget(Duration::from_millis(20), || {
            let start = Instant::now();
            while check().is_ok() {
                assert!(start.elapsed() < Duration::from_secs(10));
            }
            with_budget(Duration::from_secs(60), || assert!(check().is_err()));
        });
    }
}
