-- Waiting in plugin code: the phase calls that may wait, light threads (ngx.thread), ngx.sleep
-- and the cosocket objects (ngx.socket.tcp/udp). Runs once per VM; io/mod.rs has the protocol.
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
local rs, WAIT, resume, check, expired, overrun, stopped, log_err = ...

local create, yield, status = coroutine.create, coroutine.yield, coroutine.status
local type, error, tostring, tonumber, select, setmetatable, pairs =
  type, error, tostring, tonumber, select, setmetatable, pairs
local concat, floor, remove = table.concat, math.floor, table.remove
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

-- The socket functions check where they are called with `check_ctx`.
local function check_ctx(level)
  waitable((level or 2) + 1)
end

-- Sockets ------------------------------------------------------------------------------------

local H, R = {}, {} -- private keys: the socket's handle and its request

local function handle(self, fname)
  if type(self) ~= "table" or self[H] == nil then
    error("bad argument #1 to '" .. fname .. "' (table expected, got " .. type(self) .. ")", 3)
  end
  return self[H], self[R]
end

-- A timeout in milliseconds: 0 or less (or nil) means the default, as in OpenResty.
local function timeout_arg(v, n, fname)
  local t = tonumber(v)
  if v ~= nil and not t then
    error("bad argument #" .. n .. " to '" .. fname .. "' (number expected, got " .. type(v) .. ")", 3)
  end
  if t and t >= 2 ^ 31 then
    error("bad timeout value", 3)
  end
  if not t or t <= 0 then
    return 0
  end
  return t
end

-- `send` data inside a table: strings, numbers and nested arrays of them.
local function flatten(data, out, fname)
  for k in pairs(data) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then
      error("bad argument #2 to '" .. fname .. "' (non-array table found)", 4)
    end
  end
  for i = 1, #data do
    local v = data[i]
    local t = type(v)
    if t == "string" then
      out[#out + 1] = v
    elseif t == "number" then
      out[#out + 1] = tostring(v)
    elseif t == "table" then
      flatten(v, out, fname)
    else
      error("bad argument #2 to '" .. fname .. "' (bad data type " .. t .. " found)", 4)
    end
  end
  return out
end

-- What `send` sends of `data` (a string, number, boolean, nil, or an array table).
local function payload(data, fname)
  local t = type(data)
  if t == "string" then
    return data
  elseif t == "number" or t == "nil" then
    return tostring(data)
  elseif t == "boolean" then
    return data and "true" or "false"
  elseif t == "table" then
    return concat(flatten(data, {}, fname))
  end
  error("bad argument #2 to '" .. fname .. "' (string, number, boolean, nil, or array table expected, got "
    .. t .. ")", 3)
end

local tcp = {}
local tcp_mt = { __index = tcp, __metatable = false }

local function new_tcp()
  check_ctx(2)
  local h, rid = rs.tcp()
  return setmetatable({ [H] = h, [R] = rid }, tcp_mt)
end

function tcp:connect(host, port, opts)
  local h, rid = handle(self, "connect")
  check_ctx()
  if type(host) ~= "string" then
    error("bad argument #2 to 'connect' (string expected, got " .. type(host) .. ")", 2)
  end
  if type(port) == "table" and opts == nil then
    port, opts = nil, port
  end
  if port ~= nil then
    local p = tonumber(port)
    if not p or p < 0 or p > 65535 or floor(p) ~= p then
      return nil, "bad port number: " .. tostring(port)
    end
    port = p
  elseif host:sub(1, 5):lower() ~= "unix:" then
    return nil, "missing the port number"
  end
  local pool
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #4 to 'connect' (table expected, got " .. type(opts) .. ")", 2)
    end
    pool = opts.pool
    if type(pool) == "number" then
      pool = tostring(pool)
    elseif pool ~= nil and type(pool) ~= "string" then
      error("bad argument #4 to 'connect' (bad \"pool\" option type: " .. type(pool) .. ")", 2)
    end
  end
  return finish(rs.connect(h, rid, host, port, pool))
end

function tcp:sslhandshake(reused_session, server_name, verify, send_status_req)
  local h, rid = handle(self, "sslhandshake")
  check_ctx()
  if server_name ~= nil and type(server_name) ~= "string" then
    error("bad server_name arg: string expected, got " .. type(server_name), 2)
  end
  local ok, err = finish(rs.handshake(h, rid, server_name, verify and true or false))
  if not ok then
    return nil, err
  end
  if reused_session == false then
    return true
  end
  -- No session resumption here: the session object is an opaque token.
  return true
end

function tcp:send(data)
  local h, rid = handle(self, "send")
  check_ctx()
  data = payload(data, "send")
  if data == "" then
    return 0
  end
  return finish(rs.send(h, rid, data))
end

function tcp:receive(pattern)
  local h, rid = handle(self, "receive")
  check_ctx()
  local kind, n = "l", nil
  if pattern ~= nil then
    local num = tonumber(pattern)
    if num then
      if num < 0 then
        error("bad argument #2 to 'receive' (bad number argument)", 2)
      end
      n = floor(num)
      if n == 0 then
        return ""
      end
      kind = "n"
    elseif type(pattern) == "string" then
      local c = pattern:sub(2, 2)
      if pattern == "*l" or pattern == "*a" then
        kind = c
      elseif #pattern == 2 and pattern:sub(1, 1) == "*" then
        error("bad argument #2 to 'receive' (bad pattern argument)", 2)
      else
        error("bad argument #2 to 'receive' (bad pattern argument: " .. pattern .. ")", 2)
      end
    else
      error("bad argument #2 to 'receive' (bad argument)", 2)
    end
  end
  return finish(rs.receive(h, rid, kind, n))
end

function tcp:receiveany(max)
  local h, rid = handle(self, "receiveany")
  check_ctx()
  local n = tonumber(max)
  if not n or n < 1 then
    error("bad argument #2 to 'receiveany' (bad max argument)", 2)
  end
  return finish(rs.receive(h, rid, "any", floor(n)))
end

function tcp:receiveuntil(pattern, opts)
  local h, rid = handle(self, "receiveuntil")
  if type(pattern) ~= "string" then
    error("bad argument #2 to 'receiveuntil' (string expected, got " .. type(pattern) .. ")", 2)
  end
  if pattern == "" then
    return nil, "pattern is empty"
  end
  local inclusive = false
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #3 to 'receiveuntil' (table expected, got " .. type(opts) .. ")", 2)
    end
    inclusive = opts.inclusive and true or false
  end
  local reached = false
  return function(size)
    check_ctx()
    if reached then
      -- The pattern was reached by the last call with a size: this call ends the stream.
      reached = false
      return nil, nil, nil
    end
    local n
    if size ~= nil then
      n = tonumber(size)
      if not n or n < 1 then
        error("bad argument #1 to iterator (bad size argument)", 2)
      end
      n = floor(n)
    end
    local data, err, partial, found = finish(rs.receive(h, rid, "until", n, pattern, inclusive))
    if not data then
      return nil, err, partial
    end
    if n and found then
      if data == "" then
        return nil, nil, nil
      end
      reached = true
    end
    return data
  end
end

function tcp:settimeout(ms)
  local h, rid = handle(self, "settimeout")
  local t = timeout_arg(ms, 2, "settimeout")
  rs.timeouts(h, rid, t, t, t)
end

function tcp:settimeouts(connect, send, read)
  local h, rid = handle(self, "settimeouts")
  rs.timeouts(h, rid, timeout_arg(connect, 2, "settimeouts"), timeout_arg(send, 3, "settimeouts"),
    timeout_arg(read, 4, "settimeouts"))
end

function tcp:setkeepalive(timeout, size)
  local h, rid = handle(self, "setkeepalive")
  local t = tonumber(timeout)
  if timeout ~= nil and (not t or t < 0) then
    error("bad argument #2 to 'setkeepalive' (number expected, got " .. type(timeout) .. ")", 2)
  end
  local n = tonumber(size)
  if size ~= nil and (not n or n < 1) then
    error("bad argument #3 to 'setkeepalive' (bad \"pool_size\" option value: " .. tostring(size) .. ")", 2)
  end
  return rs.keepalive(h, rid, t, n)
end

function tcp:getreusedtimes()
  local h, rid = handle(self, "getreusedtimes")
  return rs.reused(h, rid)
end

function tcp:close()
  local h, rid = handle(self, "close")
  return rs.close(h, rid)
end

function tcp:setoption()
  handle(self, "setoption")
  return true
end

local udp = {}
local udp_mt = { __index = udp, __metatable = false }

local function new_udp()
  check_ctx(2)
  local h, rid = rs.udp()
  return setmetatable({ [H] = h, [R] = rid }, udp_mt)
end

function udp:setpeername(host, port)
  local h, rid = handle(self, "setpeername")
  check_ctx()
  if type(host) ~= "string" then
    error("bad argument #2 to 'setpeername' (string expected, got " .. type(host) .. ")", 2)
  end
  local p = tonumber(port)
  if not p or p < 0 or p > 65535 then
    return nil, "bad port number: " .. tostring(port)
  end
  return finish(rs.udp_peer(h, rid, host, p))
end

function udp:send(data)
  local h, rid = handle(self, "send")
  check_ctx()
  return rs.udp_send(h, rid, payload(data, "send"))
end

function udp:receive(size)
  local h, rid = handle(self, "receive")
  check_ctx()
  local n = tonumber(size) or 8192
  if n < 1 then
    error("bad argument #2 to 'receive' (bad size)", 2)
  end
  return finish(rs.udp_receive(h, rid, floor(n)))
end

function udp:settimeout(ms)
  local h, rid = handle(self, "settimeout")
  local t = timeout_arg(ms, 2, "settimeout")
  rs.timeouts(h, rid, t, t, t)
end

function udp:close()
  local h, rid = handle(self, "close")
  return rs.close(h, rid)
end

local socket = {
  tcp = new_tcp,
  stream = new_tcp,
  udp = new_udp,
  connect = function(host, port, opts)
    local sock = new_tcp()
    local ok, err = sock:connect(host, port, opts)
    if not ok then
      return nil, err
    end
    return sock
  end,
}

return {
  run = run,
  states = states,
  sleep = sleep,
  socket = socket,
  thread = thread,
  -- For modules built on waiting (kong.cache): wait for a Rust operation, and whether the
  -- code running may wait.
  finish = finish,
  check_ctx = check_ctx,
  can_wait = function()
    return rs.waitable() ~= nil
  end,
}
