-- Waiting in plugin code: the phase calls that may wait, light threads (ngx.thread) and
-- ngx.sleep; socket.lua builds the cosockets on `finish`. Runs once per VM; io/mod.rs has the
-- protocol.
--
-- A phase call that may wait runs as `run(id, method, handler, conf)` in a coroutine that Rust
-- resumes: the handler runs right there, so a call that never waits costs one coroutine
-- resume. Code that waits for an operation started in Rust yields (WAIT, ticket); from the
-- handler's own thread the yield reaches Rust, which resumes the call with (ticket, results)
-- once some operation of the request finished. Light threads (ngx.thread.spawn) are
-- coroutines the call's own thread resumes: a result for one of them arriving while the
-- handler waits is handed to it (`dispatch`), and the call ends when the handler and all its
-- threads have. Plugin coroutines pass WAIT yields up (sandbox/guards.lua), so waiting works
-- at any depth, as in OpenResty.
local rs, WAIT, resume, check, expired, overrun, stopped, log_err, system = ...

local create, yield, status = coroutine.create, coroutine.yield, coroutine.status
local type, error, tostring, tonumber, select, pairs = type, error, tostring, tonumber, select,
  pairs
local remove = table.remove
local function pack(...)
  return { n = select("#", ...), ... }
end
local unpack = unpack

-- request id -> the light threads of its call in progress (created by the first spawn; Rust
-- drops a request's entry when the request ends).
local states = {}

-- The request whose call may wait now, or an error naming where waiting is not allowed.
local function waitable(level)
  local id = rs.waitable()
  if not id then
    error("API disabled in the context of " .. rs.context(), level + 1)
  end
  return id
end

local function state_of(id)
  local state = states[id]
  if not state then
    local main = { main = true }
    state = { ready = {}, parked = {}, nparked = 0, recs = {}, main = main, running = main }
    states[id] = state
  end
  return state
end

-- Threads ------------------------------------------------------------------------------------

local function park(state, rec, ticket)
  rec.ticket = ticket
  state.parked[ticket] = rec
  state.nparked = state.nparked + 1
end

-- A finished thread wakes the thread waiting for it (the handler's own thread checks for
-- itself in its wait loop).
local function deliver(state, rec)
  local w = rec.waiter
  if not w then
    return
  end
  for _, t in pairs(w.waiting) do
    t.waiter = nil
  end
  w.waiting = nil
  if not w.main then
    rec.waited = true
    w.args = rec.results
    local q = state.ready
    q[#q + 1] = w
  end
end

-- What a resume of `rec` gave: it ended, failed, or waits.
local function settle(state, rec, ok, tag, ...)
  if not ok then
    if expired() then
      overrun()
    end
    if stopped() then
      -- kong.response.exit in a thread ends the whole call.
      error(tag, 0)
    end
    log_err("lua user thread aborted: runtime error: " .. tostring(tag))
    rec.done = true
    rec.results = { n = 2, false, tag }
    deliver(state, rec)
  elseif status(rec.co) == "dead" then
    rec.done = true
    rec.results = pack(true, tag, ...)
    deliver(state, rec)
  elseif tag == WAIT then
    local ticket, targets = ...
    if ticket then
      park(state, rec, ticket)
    else
      rec.waiting = targets
      for _, t in pairs(targets) do
        t.waiter = rec
      end
    end
  else
    -- A plain coroutine.yield at a light thread's top: it runs again after the others.
    rec.args = { n = 0 }
    local q = state.ready
    q[#q + 1] = rec
  end
end

local function step(state, rec, ...)
  -- Each resume nests on the native stack: bounded like every way back into Lua.
  check()
  local previous = state.running
  state.running = rec
  settle(state, rec, resume(rec.co, ...))
  state.running = previous
end

local function run_ready(state)
  local q = state.ready
  while q[1] do
    local rec = remove(q, 1)
    if not rec.killed then
      local args = rec.args
      rec.args = nil
      step(state, rec, unpack(args, 1, args.n))
    end
  end
end

-- Hands a finished operation to the thread parked on it, and runs what that made ready.
local function dispatch(state, ticket, ...)
  local rec = state.parked[ticket]
  if rec then
    state.parked[ticket] = nil
    state.nparked = state.nparked - 1
    rec.ticket = nil
    step(state, rec, ticket, ...)
  end
  run_ready(state)
end

-- Waits for operation `t` (a ticket, or false: the results follow).
local function finish(t, ...)
  if not t then
    return ...
  end
  local id
  while true do
    local ticket, a, b, c, d = yield(WAIT, t)
    if ticket == t then
      return a, b, c, d
    end
    -- The handler's own thread receives what finished for its light threads.
    id = id or rs.waitable()
    local state = id and states[id]
    if state then
      dispatch(state, ticket, a, b, c, d)
    end
  end
end

local function run(id, fn, handler, conf)
  fn(handler, conf)
  local state = states[id]
  if state then
    -- The call ends when its threads have ended too.
    run_ready(state)
    while state.nparked > 0 do
      local ticket, a, b, c, d = yield(WAIT, false)
      dispatch(state, ticket, a, b, c, d)
    end
    states[id] = nil
  end
end

local thread = {}

local function record(state, co, n, fname)
  if type(co) ~= "thread" then
    error("bad argument #" .. n .. " to '" .. fname .. "' (lua thread expected)", 3)
  end
  return state and state.recs[co]
end

function thread.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'spawn' (Lua function expected)", 2)
  end
  local state = state_of(waitable(2))
  local rec = { co = create(fn), parent = state.running }
  system[rec.co] = true
  state.recs[rec.co] = rec
  -- The new thread runs first, until it waits or ends, as in OpenResty.
  step(state, rec, ...)
  return rec.co
end

function thread.wait(...)
  local state = states[waitable(2)]
  local n = select("#", ...)
  if n == 0 then
    error("at least one coroutine should be specified", 2)
  end
  local targets = {}
  for i = 1, n do
    local rec = record(state, (select(i, ...)), i, "wait")
    if not rec then
      error("attempt to wait on a coroutine that is not a user thread", 2)
    end
    if rec.parent ~= state.running then
      error("only the parent coroutine can wait on the thread", 2)
    end
    if rec.done and not rec.waited and not rec.killed then
      rec.waited = true
      return unpack(rec.results, 1, rec.results.n)
    end
    if not rec.done then
      targets[#targets + 1] = rec
    end
  end
  if #targets == 0 then
    return nil, "already waited or killed"
  end
  if not state.running.main then
    -- A light thread: its resumer wakes it with the results.
    return yield(WAIT, false, targets)
  end
  -- The handler's own thread: it hands finished operations to their threads until one of
  -- its targets has ended.
  while true do
    for _, rec in pairs(targets) do
      if rec.done and not rec.killed then
        rec.waited = true
        return unpack(rec.results, 1, rec.results.n)
      end
    end
    if state.nparked == 0 and not state.ready[1] then
      error("the threads waited for wait for each other: none can end", 2)
    end
    local ticket, a, b, c, d = yield(WAIT, false)
    dispatch(state, ticket, a, b, c, d)
  end
end

local function kill(state, rec)
  rec.killed = true
  rec.done = true
  if rec.ticket then
    rs.cancel(rec.ticket)
    state.parked[rec.ticket] = nil
    state.nparked = state.nparked - 1
    rec.ticket = nil
  end
  if rec.waiting then
    for _, t in pairs(rec.waiting) do
      t.waiter = nil
    end
    rec.waiting = nil
  end
  -- Its own threads go with it.
  for _, other in pairs(state.recs) do
    if other.parent == rec and not other.done then
      kill(state, other)
    end
  end
end

function thread.kill(co)
  local state = states[waitable(2)]
  local rec = record(state, co, 1, "kill")
  if not rec then
    return nil, "not user thread"
  end
  if rec.parent ~= state.running then
    return nil, "killer not parent"
  end
  if rec.waited or rec.killed then
    return nil, "already waited or killed"
  end
  if rec.done then
    rec.waited = true
    return nil, "already terminated"
  end
  kill(state, rec)
  return 1
end

-- Waiting ------------------------------------------------------------------------------------

local function sleep(seconds)
  waitable(2)
  local s = tonumber(seconds)
  if not s then
    error("bad argument #1 to 'sleep' (number expected, got " .. type(seconds) .. ")", 2)
  end
  local ms = s * 1000
  ms = ms - ms % 1
  if ms < 0 then
    error('invalid sleep duration "' .. ms .. '"', 2)
  end
  finish(rs.sleep(ms / 1000))
end

-- The socket functions check with `check_ctx` that they are called where waiting is allowed.
local function check_ctx(level)
  waitable((level or 2) + 1)
end

return {
  run = run,
  states = states,
  sleep = sleep,
  thread = thread,
  -- For the modules built on waiting (sockets, kong.cache): wait for a Rust operation, check
  -- that the code running may wait, and whether it may.
  finish = finish,
  check_ctx = check_ctx,
  can_wait = function()
    return rs.waitable() ~= nil
  end,
}
