-- Guards installed over the base library of every plugin VM (see sandbox/mod.rs).
--
-- pcall, xpcall and coroutine.resume re-raise once the call's CPU budget is spent, so plugin
-- code cannot catch the overrun and go on; they also re-raise the error that ends a handler
-- after kong.response.exit (Kong yields the handler away: nothing after the exit runs). LuaJIT C functions that call back into Lua
-- (string.format through __tostring, table.sort through its comparator, coroutine.resume)
-- check the native stack first; string.rep and table.sort check the budget as well. A sort of
-- a large table without a comparator gets a Lua one, so the instruction hook sees its work.
local pcall, xpcall, resume, format, sort, rep, expired, overrun, check, stopped, WAIT, yield,
  status, system = ...
local type, error = type, error

local function after(ok, ...)
  if not ok then
    if expired() then
      overrun()
    elseif stopped() then
      error((...), 0)
    end
  end
  return ok, ...
end

local function less(a, b)
  return a < b
end

local guards = {}

function guards.pcall(f, ...)
  return after(pcall(f, ...))
end

function guards.xpcall(f, handler, ...)
  return after(xpcall(f, handler, ...))
end

-- A coroutine of the plugin's that waits for I/O (wait.lua yields WAIT) is waited for in its
-- place: the wait goes up to the light thread's scheduler, and the coroutine is resumed with
-- the result, so sockets and sleeps work inside plugin coroutines as in OpenResty.
local function forward(co, ok, tag, ...)
  if ok and tag == WAIT and status(co) == "suspended" then
    return forward(co, resume(co, yield(WAIT, ...)))
  end
  return ok, tag, ...
end

-- The gateway's own coroutines (a phase call's, a light thread's) are resumed by the gateway
-- only: plugin code that kept one (coroutine.running(), ngx.thread.spawn) could otherwise run
-- a waiting call on another request or hand it forged results. OpenResty refuses a
-- coroutine of another request the same way.
function guards.resume(co, ...)
  check()
  if system[co] then
    return false, "cannot resume a coroutine the gateway runs (a phase call or a light thread)"
  end
  return after(forward(co, resume(co, ...)))
end

function guards.format(...)
  check()
  return format(...)
end

function guards.rep(...)
  check()
  return rep(...)
end

function guards.sort(t, comp)
  check()
  if comp == nil and type(t) == "table" and #t > 4096 then
    comp = less
  end
  return sort(t, comp)
end

return guards
