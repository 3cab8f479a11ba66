-- resty.redis: a Redis client (RESP2) over cosockets, written for sluice. It follows the public
-- API and observable behaviour of openresty/lua-resty-redis (0.33); see
-- notes/callout-spec.md §6. Called once per VM as chunk(ngx); returns the module by name.
local ngx = ...

local type, tostring, tonumber, select, pairs, setmetatable, rawget, rawset, error =
  type, tostring, tonumber, select, pairs, setmetatable, rawget, rawset, error
local unpack = unpack or table.unpack
local byte, sub = string.byte, string.sub
local concat, remove = table.concat, table.remove
local null = ngx.null

local NOT_INIT = "not initialized"
-- Commands whose reply may take long: a read timeout on their reply keeps the connection.
local BLOCKING = { blpop = true, brpop = true }
-- Which subscription count each pub/sub reply kind moves.
local SUB_COUNT = { subscribe = "_nchan", unsubscribe = "_nchan", psubscribe = "_npat",
  punsubscribe = "_npat" }

local _M = { _VERSION = "0.33" }
local mt = { __index = _M }
-- Instance fields are read with rawget: a missing one would otherwise come back from _M's
-- __index (below) as a command method.

function _M.new(_)
  local sock, err = ngx.socket.tcp()
  if not sock then return nil, err end
  return setmetatable({ _sock = sock, _subscribed = false, _nchan = 0, _npat = 0 }, mt)
end

function _M.set_timeout(self, timeout)
  local sock = rawget(self, "_sock")
  if not sock then error(NOT_INIT, 2) end
  sock:settimeout(timeout)
end

function _M.set_timeouts(self, connect, send, read)
  local sock = rawget(self, "_sock")
  if not sock then error(NOT_INIT, 2) end
  sock:settimeouts(connect, send, read)
end

-- connect(host, port, opts?) / connect("unix:/path", opts?) → 1 | nil, err. opts: the
-- cosocket's (pool, pool_size, backlog) and ssl, ssl_verify, server_name.
function _M.connect(self, host, port_or_opts, opts)
  local sock = rawget(self, "_sock")
  if not sock then return nil, NOT_INIT end
  if type(host) ~= "string" then
    error("bad argument #1 host: string expected, got " .. type(host), 2)
  end
  local ok, err
  if sub(host, 1, 5) == "unix:" then
    if port_or_opts ~= nil and type(port_or_opts) ~= "table" then
      error("bad argument #2 opts: nil or table expected, got " .. type(port_or_opts), 2)
    end
    opts = port_or_opts
    if opts ~= nil then
      ok, err = sock:connect(host, opts)
    else
      ok, err = sock:connect(host)
    end
  else
    if tonumber(port_or_opts) == nil then
      error("bad argument #2 port: number expected, got " .. type(port_or_opts), 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
      error("bad argument #3 opts: nil or table expected, got " .. type(opts), 2)
    end
    ok, err = sock:connect(host, port_or_opts, opts)
  end
  self._subscribed, self._nchan, self._npat, self._msgs = false, 0, 0, nil
  if not ok then return ok, err end
  if opts and opts.ssl then
    ok, err = sock:sslhandshake(false, opts.server_name, opts.ssl_verify)
    if not ok then return ok, "failed to do ssl handshake: " .. tostring(err) end
  end
  return ok, err
end

function _M.set_keepalive(self, ...)
  local sock = rawget(self, "_sock")
  if not sock then return nil, NOT_INIT end
  if rawget(self, "_subscribed") then return nil, "subscribed state" end
  return sock:setkeepalive(...)
end

function _M.get_reused_times(self)
  local sock = rawget(self, "_sock")
  if not sock then return nil, NOT_INIT end
  return sock:getreusedtimes()
end

function _M.close(self)
  local sock = rawget(self, "_sock")
  if not sock then return nil, NOT_INIT end
  return sock:close()
end

-- Requests -------------------------------------------------------------------------------------

-- Scratch for building a request (filled and concatenated before any wait, so never shared).
local buf = {}

-- A command with its first `n` arguments as a RESP array of bulk strings.
local function encode(cmd, n, ...)
  buf[1], buf[2], buf[3], buf[4], buf[5], buf[6] = "*", n + 1, "\r\n$", #cmd, "\r\n", cmd
  local k = 6
  for i = 1, n do
    local arg = select(i, ...)
    if type(arg) ~= "string" then arg = tostring(arg) end
    buf[k + 1], buf[k + 2], buf[k + 3], buf[k + 4] = "\r\n$", #arg, "\r\n", arg
    k = k + 4
  end
  buf[k + 1] = "\r\n"
  return concat(buf, "", 1, k + 1)
end

local read_reply

-- Reads `n` replies into an array (error replies as {false, msg}), or nil and the error.
local function read_replies(self, sock, n)
  local vals = {}
  for i = 1, n do
    local res, rerr = read_reply(self, sock)
    if res then
      vals[i] = res
    elseif res == nil then
      return nil, rerr
    else
      vals[i] = { false, rerr }
    end
  end
  return vals
end

-- Reads one reply: status → string, integer → number, bulk → string (nil: ngx.null),
-- array → table (nil: ngx.null; error elements as {false, msg}), error → false, msg.
function read_reply(self, sock, blocking)
  local line, err = sock:receive("*l")
  if not line then
    -- A read timeout leaves the connection in an unknown state.
    if err == "timeout" and not blocking and not rawget(self, "_subscribed") then sock:close() end
    return nil, err
  end
  local prefix = byte(line)
  if prefix == 36 then -- "$" bulk string
    local size = tonumber(sub(line, 2))
    if size < 0 then return null end
    local data
    data, err = sock:receive(size + 2) -- the data and its CRLF
    if not data then
      if err == "timeout" then sock:close() end
      return nil, err
    end
    return sub(data, 1, size)
  elseif prefix == 43 then -- "+" status
    return sub(line, 2)
  elseif prefix == 42 then -- "*" array
    local n = tonumber(sub(line, 2))
    if n < 0 then return null end
    return read_replies(self, sock, n)
  elseif prefix == 58 then -- ":" integer
    return tonumber(sub(line, 2))
  elseif prefix == 45 then -- "-" error
    return false, sub(line, 2)
  end
  return nil, 'unknown prefix: "' .. tostring(prefix) .. '"'
end

local function is_message(res)
  return type(res) == "table" and (res[1] == "message" or res[1] == "pmessage")
end

-- The reply to a command; while subscribed, messages arriving first are kept for read_reply.
local function command_reply(self, sock, blocking)
  local res, err = read_reply(self, sock, blocking)
  while is_message(res) and rawget(self, "_subscribed") do
    local msgs = rawget(self, "_msgs")
    if not msgs then
      msgs = {}
      self._msgs = msgs
    end
    msgs[#msgs + 1] = res
    res, err = read_reply(self, sock, blocking)
  end
  return res, err
end

local function do_cmd(self, cmd, ...)
  local sock = rawget(self, "_sock")
  if not sock then return nil, NOT_INIT end
  local prefix = rawget(self, "_module_prefix")
  if prefix then
    self._module_prefix = nil
    cmd = prefix .. "." .. cmd
  end
  -- Trailing nil arguments are not sent (as `#{...}` drops them); others become "nil".
  local n = select("#", ...)
  while n > 0 and select(n, ...) == nil do n = n - 1 end
  local req = encode(cmd, n, ...)

  local reqs = rawget(self, "_reqs")
  if reqs then
    reqs[#reqs + 1] = req
    return
  end
  local ok, err = sock:send(req)
  if not ok then return nil, err end
  return command_reply(self, sock, BLOCKING[cmd])
end

local function method(cmd)
  return function(self, ...)
    return do_cmd(self, cmd, ...)
  end
end

for _, cmd in pairs({ "get", "set", "mget", "mset", "del", "incr", "decr", "llen", "lindex",
  "lpop", "lpush", "lrange", "linsert", "hexists", "hget", "hset", "hmget", "hdel", "smembers",
  "sismember", "sadd", "srem", "sdiff", "sinter", "sunion", "zrange", "zrangebyscore", "zrank",
  "zadd", "zrem", "zincrby", "auth", "eval", "expire", "script", "sort" }) do
  _M[cmd] = method(cmd)
end

-- hmset(key, {field = value, ...}) or hmset(key, field, value, ...).
function _M.hmset(self, key, ...)
  local t = ...
  if select("#", ...) ~= 1 or type(t) ~= "table" then return do_cmd(self, "hmset", key, ...) end
  local args, n = {}, 0
  for k, v in pairs(t) do
    args[n + 1], args[n + 2], n = k, v, n + 2
  end
  return do_cmd(self, "hmset", key, unpack(args, 1, n))
end

-- Pipelines --------------------------------------------------------------------------------------

function _M.init_pipeline(self)
  self._reqs = {}
end

function _M.cancel_pipeline(self)
  self._reqs = nil
end

-- commit_pipeline() → replies in order (errors as {false, msg}) | nil, err.
function _M.commit_pipeline(self)
  local reqs = rawget(self, "_reqs")
  if not reqs then return nil, "no pipeline" end
  self._reqs = nil
  local sock = rawget(self, "_sock")
  if not sock then return nil, NOT_INIT end
  local ok, err = sock:send(concat(reqs))
  if not ok then return nil, err end
  local vals, rerr = read_replies(self, sock, #reqs)
  if not vals and rerr == "timeout" then sock:close() end
  return vals, rerr
end

-- Pub/sub ----------------------------------------------------------------------------------------

-- Follows the subscription counts from a (p)(un)subscribe reply: Redis reports the total left,
-- so the change goes to the channel or the pattern count; at 0 the connection is unsubscribed.
local function track(self, res)
  if type(res) ~= "table" then return end
  local field, total = SUB_COUNT[res[1]], res[3]
  if not field or type(total) ~= "number" then return end
  local before = (rawget(self, "_nchan") or 0) + (rawget(self, "_npat") or 0)
  rawset(self, field, (rawget(self, field) or 0) + total - before)
  if total == 0 and (res[1] == "unsubscribe" or res[1] == "punsubscribe") then
    self._subscribed = false
  end
end

-- One reply per channel; `replies` of them come back as an array when more than one.
local function pubsub_replies(self, sock, res, replies)
  track(self, res)
  if replies <= 1 then return res end
  local all = { res }
  for i = 2, replies do
    local err
    res, err = command_reply(self, sock)
    if not res then return nil, err end
    track(self, res)
    all[i] = res
  end
  return all
end

for _, cmd in pairs({ "subscribe", "psubscribe" }) do
  _M[cmd] = function(self, ...)
    local res, err = do_cmd(self, cmd, ...)
    if not res then return nil, err end
    self._subscribed = true
    return pubsub_replies(self, rawget(self, "_sock"), res, select("#", ...))
  end
end

for _, cmd in pairs({ "unsubscribe", "punsubscribe" }) do
  local field = SUB_COUNT[cmd]
  _M[cmd] = function(self, ...)
    if not rawget(self, "_sock") then return nil, NOT_INIT end
    if not rawget(self, "_subscribed") then return nil, "not subscribed" end
    -- Without names, Redis answers once per subscription of that kind (at least once).
    local replies = select("#", ...)
    if replies == 0 then replies = rawget(self, field) or 1 end
    local res, err = do_cmd(self, cmd, ...)
    if not res then return nil, err end
    return pubsub_replies(self, rawget(self, "_sock"), res, replies)
  end
end

-- The next message (or other reply) while subscribed; a read timeout keeps the connection.
function _M.read_reply(self)
  local sock = rawget(self, "_sock")
  if not sock then return nil, NOT_INIT end
  if not rawget(self, "_subscribed") then return nil, "not subscribed" end
  local msgs = rawget(self, "_msgs")
  if msgs then
    local msg = remove(msgs, 1)
    if #msgs == 0 then self._msgs = nil end
    return msg
  end
  local res, err = read_reply(self, sock)
  track(self, res)
  return res, err
end

-- Helpers ----------------------------------------------------------------------------------------

function _M.array_to_hash(_, t)
  local h = {}
  for i = 1, #t, 2 do
    h[t[i]] = t[i + 1]
  end
  return h
end

-- Deprecated: predefines command methods (any name works anyway).
function _M.add_commands(...)
  for i = 1, select("#", ...) do
    local cmd = select(i, ...)
    _M[cmd] = method(cmd)
  end
end

-- register_module_prefix("bf"): then red:bf():add(...) sends "bf.add".
function _M.register_module_prefix(mod)
  _M[mod] = function(self)
    self._module_prefix = mod
    return self
  end
end

-- Any other name is a command, its method made on first use.
setmetatable(_M, {
  __index = function(t, cmd)
    local f = method(cmd)
    rawset(t, cmd, f)
    return f
  end,
})

return { ["resty.redis"] = _M }
