-- The cosocket objects of ngx.socket (tcp, udp, connect, stream) over the Rust operations of
-- io/socket.rs: argument checks and return values as lua-nginx-module has them. Called once
-- per VM with the Rust functions and wait.lua's module; returns the `ngx.socket` table.
local rs, wait = ...

local finish, check_ctx = wait.finish, wait.check_ctx
local type, error, tostring, tonumber, setmetatable, pairs =
  type, error, tostring, tonumber, setmetatable, pairs
local concat, floor = table.concat, math.floor

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

return socket
