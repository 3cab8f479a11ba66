//! The CPU budget's instruction hook, set only on a VM whose call has run past its time.
//!
//! With a count hook set, LuaJIT's interpreter sends *every* bytecode through `lj_vm_inshook`,
//! which cost a trivial plugin call about 15% of its instructions. So no hook is set while
//! calls run within their budget. Each thread that runs plugin code has a [`ThreadWatch`]:
//! the outermost budget of a call writes the wall-clock instant past which the call may have
//! spent its budget (a relaxed store when the call starts and one when it ends). One watchdog
//! thread per process looks at the running calls every [`tick`]; for a call still running past
//! that instant it sets the hook on the VMs of the call's thread (`luaJIT_sethook_async`, our
//! LuaJIT's setter for another thread; compiled code leaves for the interpreter at its next
//! check, where the hook runs). The hook then checks the budget every
//! [`HOOK_EVERY`] instructions and raises the overrun (budget.rs), and the call that ends with
//! the hook set removes it. A spinning call is stopped after at most twice its budget of CPU
//! (budget.rs) plus one tick.
//!
//! The watchdog and the call's thread take turns on the hook through [`ThreadWatch::hook`]:
//! the watchdog marks it busy, checks that the same call is still running, sets the hook and
//! marks it set; the ending call clears the deadline first and then waits out a busy mark
//! before it removes the hook. So only one of them changes LuaJIT's dispatch table at a time,
//! and the watchdog touches a VM only while a call runs on it (a VM is dropped only between
//! calls, and leaves its thread's list first: [`Vm`]).

use std::ffi::c_int;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mlua::ffi;
use mlua::Lua;

use super::budget;

/// How many instructions the hook lets pass between two checks of the budget.
pub const HOOK_EVERY: c_int = 1000;

const NONE: u8 = 0;
const BUSY: u8 = 1;
const SET: u8 = 2;

/// The origin of the deadlines: nanoseconds since the first use.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Every thread's watch (dropped threads' entries are pruned by the watchdog). Not behind a
/// mutex: daemon mode forks after the startup compile, and a lock the watchdog held at that
/// moment would stay locked in the child forever.
static THREADS: LazyLock<ArcSwap<Vec<Weak<ThreadWatch>>>> =
    LazyLock::new(|| ArcSwap::from_pointee(Vec::new()));

/// The process the watchdog thread was started in. A forked child (daemon mode, after the
/// startup compile has run plugin code) has no watchdog thread and starts its own.
static STARTED_IN: AtomicU32 = AtomicU32::new(0);

/// The running call of one thread, and that thread's VMs.
pub struct ThreadWatch {
    /// When the running call may have spent its budget, in nanoseconds since [`EPOCH`]; 0
    /// while no call runs.
    deadline: AtomicU64,
    /// Whether the hook is set on this thread's VMs: `NONE`, `BUSY` (the watchdog is setting
    /// it) or `SET`.
    hook: AtomicU8,
    /// The main states of this thread's VMs.
    vms: Mutex<Vec<VmState>>,
}

/// A VM's main state: LuaJIT keeps hooks per VM (in its global state), so this one pointer
/// reaches the VM's coroutines too.
#[derive(Clone, Copy, PartialEq, Eq)]
struct VmState(*mut ffi::lua_State);

// SAFETY: the pointer is used by another thread only for `luaJIT_sethook_async`, made for that,
// and `lua_gethookmask`, and only while the VM is alive and a call runs on it (module
// documentation).
unsafe impl Send for VmState {}

thread_local! {
    static WATCH: Arc<ThreadWatch> = {
        let watch = Arc::new(ThreadWatch {
            deadline: AtomicU64::new(0),
            hook: AtomicU8::new(NONE),
            vms: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&watch);
        THREADS.rcu(|all| {
            let mut all = Vec::clone(all);
            all.push(weak.clone());
            all
        });
        watch
    };
}

/// The watchdog's period: a quarter of the budget, within 1 ms and 50 ms.
pub fn tick() -> Duration {
    (super::limits().cpu_budget / 4).clamp(Duration::from_millis(1), Duration::from_millis(50))
}

/// Starts the watchdog thread unless this process has one.
fn start() {
    let pid = std::process::id();
    if STARTED_IN.swap(pid, Ordering::SeqCst) == pid {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("lua-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(tick());
            patrol();
        });
    if let Err(e) = spawned {
        // Without the watchdog a runaway call would never be stopped: refuse to go on.
        panic!("cannot start the Lua watchdog thread: {e}");
    }
}

fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos().try_into().unwrap_or(u64::MAX)
}

/// One round of the watchdog: the hook for every call past its deadline.
fn patrol() {
    let now = now_ns();
    let all = THREADS.load_full();
    if all.iter().any(|w| w.strong_count() == 0) {
        THREADS.rcu(|all| {
            all.iter()
                .filter(|w| w.strong_count() > 0)
                .cloned()
                .collect::<Vec<_>>()
        });
    }
    for watch in all.iter().filter_map(Weak::upgrade) {
        let deadline = watch.deadline.load(Ordering::SeqCst);
        if deadline != 0 && deadline <= now {
            watch.arm(deadline);
        }
    }
}

impl ThreadWatch {
    /// Sets the hook on this thread's VMs if the call that had `deadline` still runs. Checked
    /// again on every round while the call runs: LuaJIT's own updates of the hook mask (when
    /// it runs a finalizer) may race with an asynchronous one and lose it.
    fn arm(&self, deadline: u64) {
        let before = self.hook.load(Ordering::SeqCst);
        if before == BUSY
            || self
                .hook
                .compare_exchange(before, BUSY, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return;
        }
        if self.deadline.load(Ordering::SeqCst) != deadline {
            // The call ended (and its thread waits for this mark to go) or another began.
            self.hook.store(before, Ordering::SeqCst);
            return;
        }
        self.set_hooks(true);
        self.hook.store(SET, Ordering::SeqCst);
    }

    /// The end of a call: no deadline, and no hook (waiting for a watchdog that is setting it).
    fn disarm(&self) {
        self.deadline.store(0, Ordering::SeqCst);
        loop {
            match self.hook.load(Ordering::SeqCst) {
                NONE => return,
                SET if self
                    .hook
                    .compare_exchange(SET, BUSY, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok() =>
                {
                    self.set_hooks(false);
                    self.hook.store(NONE, Ordering::SeqCst);
                    return;
                }
                // The watchdog is inside `lua_sethook`: let it finish (it may share this
                // core, as under `taskset`, where spinning would wait out a whole time slice).
                _ => std::thread::yield_now(),
            }
        }
    }

    /// Sets or removes the budget hook on every VM of this thread. The caller holds the
    /// `BUSY` mark, so the watchdog and the VMs' thread never change a hook at once.
    fn set_hooks(&self, on: bool) {
        let vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        for vm in vms.iter() {
            // SAFETY: the VM is alive (it leaves this list before it is closed); lua_sethook
            // may be called asynchronously, from the watchdog while a call runs on the VM.
            unsafe {
                if on {
                    // Only where the hook is not set (the first round, or a mask LuaJIT
                    // restored over it, as around a finalizer).
                    if ffi::lua_gethookmask(vm.0) & ffi::LUA_MASKCOUNT == 0 {
                        luaJIT_sethook_async(vm.0, budget_hook, HOOK_EVERY);
                    }
                } else {
                    ffi::lua_sethook(vm.0, None, 0, 0);
                }
            }
        }
    }
}

/// Marks the start of this thread's outermost call into plugin code, which may have spent its
/// budget at `deadline`.
pub fn begin(deadline: Instant) {
    let ns = deadline
        .saturating_duration_since(*EPOCH)
        .as_nanos()
        .try_into()
        .unwrap_or(u64::MAX)
        .max(1);
    // Only a thread that is exiting has no watch left; its calls go unwatched. A release
    // store is enough: a watchdog that still sees the previous deadline either finds no call
    // (and looks again next round) or sets the hook on a call within its budget, whose checks
    // then pass. Only `disarm`'s store must be ordered before its load of the hook state.
    let _ = WATCH.try_with(|w| w.deadline.store(ns, Ordering::Release));
}

/// Marks the end of this thread's outermost call (removing the hook if the watchdog set it).
pub fn end() {
    let _ = WATCH.try_with(|w| w.disarm());
}

unsafe extern "C-unwind" {
    /// vendor/luajit-src: sets a count hook from another thread while the VM runs.
    fn luaJIT_sethook_async(state: *mut ffi::lua_State, hook: ffi::lua_Hook, count: c_int)
        -> c_int;
}

/// The instruction hook: raises the call's overrun once its budget is spent.
///
/// # Safety
/// Called by LuaJIT with the running state. Raising unwinds through this frame, which holds
/// nothing to drop at that point.
unsafe extern "C-unwind" fn budget_hook(state: *mut ffi::lua_State, _ar: *mut ffi::lua_Debug) {
    if push_overrun(state) {
        ffi::lua_error(state);
    }
}

/// Pushes the overrun's message if the running call is past its budget.
unsafe fn push_overrun(state: *mut ffi::lua_State) -> bool {
    let Err(e) = budget::check() else {
        return false;
    };
    let message = e.to_string();
    ffi::lua_pushlstring(state, message.as_ptr().cast(), message.len());
    true
}

/// A sandboxed VM, known to its thread's watch for as long as it lives. Derefs to the
/// [`Lua`] it owns.
pub struct Vm {
    state: VmState,
    watch: Arc<ThreadWatch>,
    // Dropped after `Drop::drop` has taken the VM off the watch's list.
    lua: Lua,
}

impl Vm {
    /// Registers `lua` (just created on this thread) with this thread's watch.
    pub fn new(lua: Lua) -> Vm {
        // Every VM is made here, so this is where the watchdog starts: in this process (a
        // daemon's workers are forked after the startup compile ran plugin code) and before
        // any call on the VM can need it.
        start();
        let state = VmState(lua.state());
        let watch = WATCH.with(Arc::clone);
        watch
            .vms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
        Vm { state, watch, lua }
    }
}

impl std::ops::Deref for Vm {
    type Target = Lua;
    fn deref(&self) -> &Lua {
        &self.lua
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let mut vms = self.watch.vms.lock().unwrap_or_else(|e| e.into_inner());
        vms.retain(|v| *v != self.state);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{new_vm, with_budget};
    use mlua::ffi;

    /// The VM's hook mask as plugin code would run under it.
    fn install_mask_probe(lua: &mlua::Lua) {
        let probe = crate::plugins::lua::util::support::raw_function(lua, |lua, ()| {
            // SAFETY: reads the hook mask of the running VM.
            Ok(unsafe { ffi::lua_gethookmask(lua.state()) })
        })
        .unwrap();
        lua.globals().set("hookmask", probe).unwrap();
    }

    #[test]
    fn a_call_within_its_budget_runs_without_the_hook() {
        let vm = new_vm().unwrap();
        install_mask_probe(&vm);
        let mask: i32 = with_budget(|| vm.load("return hookmask()").call(())).unwrap();
        assert_eq!(mask, 0);
    }

    #[test]
    fn a_runaway_call_is_stopped_and_the_next_runs_without_the_hook() {
        let vm = new_vm().unwrap();
        install_mask_probe(&vm);
        let started = std::time::Instant::now();
        let err = with_budget(|| vm.load("while true do end").exec()).unwrap_err();
        assert!(err.to_string().contains("CPU budget"), "{err}");
        // Twice the budget of CPU (budget.rs) and a tick, with room for a slow machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let mask: i32 = with_budget(|| vm.load("return hookmask()").call(())).unwrap();
        assert_eq!(mask, 0, "the hook outlived the call that overran");
        // Caught by pcall and retried in a coroutine, the overrun still ends the call.
        let code = "local ok = pcall(function() while true do end end) \
                    coroutine.wrap(function() while true do end end)()";
        let err = with_budget(|| vm.load(code).exec()).unwrap_err();
        assert!(err.to_string().contains("CPU budget"), "{err}");
    }

    /// The JIT is on, and a loop it has compiled (well past LuaJIT's 56 iterations to get hot)
    /// is still stopped: vendor/luajit-src's traces leave for the hook. Run on a thread of its
    /// own so that a loop that is not stopped fails the test instead of hanging it.
    #[test]
    fn a_compiled_loop_is_stopped_by_the_budget() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let vm = new_vm().unwrap();
            let jit_on: bool = vm.load("return (jit.status())").eval().unwrap();
            let code = "local n = 0 while true do n = n + 1 end";
            let outcome = with_budget(|| vm.load(code).exec()).map_err(|e| e.to_string());
            let _ = tx.send((jit_on, outcome));
        });
        let (jit_on, outcome) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a compiled loop ran on past its budget");
        assert!(jit_on, "plugin VMs run with the JIT on");
        let err = outcome.unwrap_err();
        assert!(err.contains("CPU budget"), "{err}");
    }
}
