-- resty.http and resty.http_headers: an HTTP/1.x client over cosockets, written for sluice.
-- It follows the public API and observable behaviour of ledgetech's lua-resty-http 0.17.2
-- (the version Kong pins); see notes/callout-spec.md §5. Called once per VM as chunk(ngx);
-- returns the modules by name. Not supported: egress proxies (proxy options are accepted, but
-- connections always go direct), client certificates, and what needs the downstream socket
-- (get_client_body_reader, proxy_request, proxy_response: there is no ngx.req.socket).
local ngx = ...

local type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, rawget, rawset =
  type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, rawget, rawset
local pcall, error, concat = pcall, error, table.concat
local lower, upper, sub, find, match = string.lower, string.upper, string.sub, string.find,
  string.match
local DEAD, NOT_INIT = "can't resume a dead coroutine", "not initialized"

local function log_err(msg)
  if ngx.log then ngx.log(ngx.ERR, msg) end
end

-- resty.http_headers: a table whose keys are looked up case-insensitively. A field keeps the
-- case it was first set with; the table's own metatable maps lower-cased names to that case.
local function hdr_index(t, k)
  local name = getmetatable(t).names[lower(k)]
  if name ~= nil then return rawget(t, name) end
end

local function hdr_newindex(t, k, v)
  local names, lk = getmetatable(t).names, lower(k)
  local name = names[lk]
  if name == nil then names[lk], name = k, k end
  rawset(t, name, v)
end

local function new_headers()
  return setmetatable({}, { names = {}, __index = hdr_index, __newindex = hdr_newindex })
end

local http_headers = { _VERSION = "0.17.2", new = new_headers }

-- resty.http ----------------------------------------------------------------------------------
local _M = { _VERSION = "0.17.2" }
_M._USER_AGENT = "lua-resty-http/0.17.2 (Lua) ngx_lua/" .. tostring(ngx.config.ngx_lua_version)

local mt = { __index = _M }
local HTTP = { [1.0] = " HTTP/1.0\r\n", [1.1] = " HTTP/1.1\r\n" }
local DEFAULTS = { __index = { method = "GET", path = "/", version = 1.1 } }
local EXPECTING_BODY = { POST = true, PUT = true, PATCH = true }

local function copy(t)
  local c = {}
  for k, v in pairs(t or c) do c[k] = v end
  return c
end

function _M.new()
  local sock, err = ngx.socket.tcp()
  if not sock then return nil, err end
  return setmetatable({ sock = sock, keepalive = true }, mt)
end

-- Plain socket passthroughs.
for name, method in pairs({ set_timeout = "settimeout", set_timeouts = "settimeouts",
  get_reused_times = "getreusedtimes", close = "close" }) do
  _M[name] = function(self, ...)
    local sock = self.sock
    if not sock then return nil, NOT_INIT end
    return sock[method](sock, ...)
  end
end

function _M.ssl_handshake(self, ...)
  local sock = self.sock
  if not sock then return nil, NOT_INIT end
  self.ssl = true
  return sock:sslhandshake(...)
end

-- The pre-0.17 form: connect(host, port, opts?) / connect("unix:/path", opts?), no TLS.
function _M.tcp_only_connect(self, host, port, ...)
  local sock = self.sock
  if not sock then return nil, NOT_INIT end
  self.host, self.port = host, type(port) == "number" and port or nil
  self.keepalive, self.ssl = true, false
  return sock:connect(host, port, ...)
end

-- connect(opts) → true, nil, ssl_session | nil, err. Egress proxies are not supported: proxy
-- options are ignored and the connection always goes straight to host:port.
function _M.connect(self, options, ...)
  if type(options) ~= "table" then return _M.tcp_only_connect(self, options, ...) end
  local sock = self.sock
  if not sock then return nil, NOT_INIT end
  local scheme, host, port = options.scheme, options.host, options.port
  if scheme and not port then
    port = scheme == "https" and 443 or 80
  elseif port and not scheme then
    return nil, "'scheme' is required when providing a port"
  end
  local ssl, sni, verify
  if scheme == "https" then
    if options.ssl_client_cert ~= nil or options.ssl_client_priv_key ~= nil then
      return nil, "client certificates are not supported"
    end
    ssl, sni, verify = true, options.ssl_server_name, options.ssl_verify ~= false
  end

  -- 0.17.2's pool name; its proxy and client certificate parts are always empty here.
  local pool = options.pool or (scheme or "") .. ":" .. host .. ":" .. tostring(port) .. ":"
    .. tostring(ssl) .. ":" .. (sni or "") .. ":" .. tostring(verify) .. ":::"
  local tcp_opts = { pool = pool, pool_size = options.pool_size, backlog = options.backlog }
  local ok, err
  if port == nil then ok, err = sock:connect(host, tcp_opts)
  else ok, err = sock:connect(host, port, tcp_opts) end
  if not ok then return nil, err end

  -- A connection from the pool has done its handshake already.
  local session
  if ssl and sock:getreusedtimes() == 0 then
    session, err = sock:sslhandshake(options.ssl_reused_session, sni, verify,
      options.ssl_send_status_req)
    if not session then self:close() return nil, err end
  end
  self.host, self.port, self.keepalive, self.ssl = host, port, true, ssl
  return true, nil, session
end

function _M.set_keepalive(self, ...)
  local sock = self.sock
  if not sock then return nil, NOT_INIT end
  if self.keepalive == true then return sock:setkeepalive(...) end
  -- The server asked to close: 2 tells this apart from a failed setkeepalive.
  local ok, err = sock:close()
  if ok then return 2, "connection must be closed" end
  return ok, err
end

function _M.set_proxy_options(self, opts)
  self.proxy_opts = copy(opts) -- stored only: proxies are not supported (see connect)
end

-- parse_uri(uri, query_in_path = true) → { scheme, host, port, path, query } | nil, err.
-- The grammar of 0.17.2's regex: [http[s]:]//host-or-[ipv6][:port][path][?query].
function _M.parse_uri(_, uri, query_in_path)
  if query_in_path == nil then query_in_path = true end
  local scheme, pos
  if sub(uri, 1, 7) == "http://" then scheme, pos = "http", 8
  elseif sub(uri, 1, 8) == "https://" then scheme, pos = "https", 9
  elseif sub(uri, 1, 2) == "//" then pos = 3
  else return nil, "bad uri: " .. uri end
  local host
  if sub(uri, pos, pos) == "[" then
    -- A bracketed host runs to the last "]" (the regex's greedy `\[.+\]`).
    local last = match(uri, "^.*()%]", pos + 2)
    host = last and sub(uri, pos, last)
  else
    host = match(uri, "^[^%[%]:/%?]+", pos)
  end
  if not host then return nil, "bad uri: " .. uri end
  pos = pos + #host
  local port = match(uri, "^:(%d+)", pos)
  if port then pos = pos + 1 + #port end
  local path = match(uri, "^[^%?]*", pos)
  pos = pos + #path
  if sub(uri, pos, pos) == "?" then pos = pos + 1 end
  local query = sub(uri, pos)

  if not scheme then
    -- A scheme-relative URI takes the scheme of the request being served.
    local ok, s = pcall(function() return ngx.var.scheme end)
    if not ok or (s ~= "http" and s ~= "https") then
      return nil, "schemaless URIs require a request context: " .. uri
    end
    scheme = s
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if path == "" then path = "/" end
  if query_in_path and query ~= "" then path, query = path .. "?" .. query, nil end
  return { scheme, host, port, path, query }
end

-- Sending -------------------------------------------------------------------------------------
local function send_body(sock, body)
  if type(body) == "function" then
    repeat
      local chunk, err, partial = body()
      if chunk then
        local ok, serr = sock:send(chunk)
        if not ok then return nil, serr end
      elseif err ~= nil then return nil, err, partial end
    until chunk == nil
  elseif body ~= nil then
    local ok, err = sock:send(body)
    if not ok then return nil, err end
  end
  return true
end

local function is_chunked(te)
  if type(te) == "table" then te = concat(te, ",") end
  return find(lower(te), "chunked", 1, true) ~= nil
end

-- send_request(params) → true | nil, err[, partial]. `params` gets the defaults, and its
-- `headers` becomes the http_headers table actually sent.
function _M.send_request(self, params)
  local sock = self.sock
  if not sock then return nil, NOT_INIT end
  setmetatable(params, DEFAULTS)
  local body = params.body
  local headers = new_headers()
  for k, v in pairs(params.headers or {}) do headers[k] = v end

  -- Message length: chunked wins over Content-Length (request smuggling); else compute one.
  local te = headers["Transfer-Encoding"]
  if te and is_chunked(te) then
    headers["Content-Length"] = nil
  elseif not headers["Content-Length"] then
    local bt = type(body)
    if bt == "function" then
      return nil, "Request body is a function but a length or chunked encoding is not specified"
    elseif bt == "table" then
      local len = 0
      for _, v in ipairs(body) do len = len + #tostring(v) end
      headers["Content-Length"] = len
    elseif body ~= nil then
      headers["Content-Length"] = #tostring(body)
    elseif EXPECTING_BODY[upper(params.method)] then
      headers["Content-Length"] = 0
    end
  end
  if not headers["Host"] then
    local host, port = self.host, self.port
    if sub(host, 1, 5) == "unix:" then
      return nil, "Unable to generate a useful Host header for a unix domain socket. "
        .. "Please provide one."
    end
    if port and port ~= (self.ssl and 443 or 80) then host = host .. ":" .. port end
    headers["Host"] = host
  end
  if not headers["User-Agent"] then headers["User-Agent"] = _M._USER_AGENT end
  if params.version == 1.0 and not headers["Connection"] then
    headers["Connection"] = "Keep-Alive"
  end
  params.headers = headers

  local query = params.query or ""
  if type(query) == "table" then query = "?" .. ngx.encode_args(query)
  elseif query ~= "" and sub(query, 1, 1) ~= "?" then query = "?" .. query end
  local version = HTTP[params.version]
  if not version then error("unsupported HTTP version: " .. tostring(params.version), 2) end
  local req, n = { upper(params.method), " ", params.path, query, version }, 5
  for k, v in pairs(headers) do
    k = tostring(k)
    if type(v) == "table" then
      for _, item in pairs(v) do
        req[n + 1], req[n + 2], req[n + 3], n = k, ": ", tostring(item) .. "\r\n", n + 3
      end
    else
      req[n + 1], req[n + 2], req[n + 3], n = k, ": ", tostring(v) .. "\r\n", n + 3
    end
  end
  req[n + 1] = "\r\n"

  -- With `Expect: 100-continue` the body goes after the interim response (read_response).
  local expect = headers["Expect"] == "100-continue"
  if not expect and type(body) == "string" then
    req[n + 2], body = body, nil -- one write for the head and a string body
  end
  local ok, err = sock:send(concat(req))
  if not ok then return nil, err end
  if expect then return true end
  return send_body(sock, body)
end

-- Receiving -----------------------------------------------------------------------------------
local function receive_status(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, nil, nil, err end
  local version, status = tonumber(sub(line, 6, 8)), tonumber(sub(line, 10, 12))
  if version and status then return status, version, sub(line, 14) end
  return nil, nil, nil, "couldn't parse " .. (version and "status code" or "HTTP version")
    .. " from response status line: " .. line
end

-- Header lines up to the first one that is not `name: value` (the blank line). A repeated
-- name collects its values in an array.
local function receive_headers(sock)
  local headers = new_headers()
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local key, val = match(line, "([^:%s]+):%s*(.*)")
    if not key then return headers end
    local cur = headers[key]
    if cur == nil then headers[key] = val
    elseif type(cur) == "table" then cur[#cur + 1] = val
    else headers[key] = { cur, val } end
  end
end

local function positive(max)
  max = tonumber(max)
  return max and max > 0 and max or nil
end

-- Body readers: `reader(max?)` returns the next piece (whole chunks, or the rest, without
-- max), nil at the end, then `nil, "can't resume a dead coroutine"`, as 0.17.2's
-- coroutine-based readers do. An error ends the reader.
local function no_body_reader() return nil end

local function chunked_reader(sock, has_trailers)
  local left, dead = 0, false -- bytes left of the current chunk
  return function(max)
    if dead then return nil, DEAD end
    if left == 0 then
      local line, err = sock:receive("*l")
      local size = line and tonumber(line, 16)
      if not size or size < 0 then
        dead = true
        return nil, line and "unable to read chunksize" or err
      end
      if size == 0 then
        -- The last chunk: announced trailers are left for the trailer reader; anything else
        -- up to the final blank line is skipped.
        dead = true
        if not has_trailers then
          repeat line = sock:receive("*l") until not line or line == ""
        end
        return nil
      end
      left = size
    end
    max = positive(max)
    local data, err
    if max and max < left then
      data, err = sock:receive(max)
      left = left - max
    else
      data, err = sock:receive(left + 2) -- the rest of the chunk and its CRLF
      if data then data = sub(data, 1, left) end
      left = 0
    end
    if not data then dead = true end
    return data, err
  end
end

-- `length` nil: the body runs until the server closes the connection.
local function length_reader(sock, length)
  local state, started -- state: nil reading; "ended": the next call returns nil; "dead"
  return function(max)
    if state == "dead" then return nil, DEAD end
    if state then state = "dead" return nil end
    max = positive(max)
    if not length then
      if not max then state = "ended" return sock:receive("*a") end
      local data, err, partial = sock:receive(max)
      if data then return data end
      state = "ended"
      if err == "closed" then return partial, err end
      return nil, err
    end
    -- Streamed to its end (or a zero length, streamed): this call ends the body.
    if length == 0 and (max or started) then state = "dead" return nil end
    started = true
    local data, err
    if max and max < length then
      data, err = sock:receive(max)
      length = length - max
    else
      data, err = sock:receive(length)
      length = 0
      if not max then state = "ended" end
    end
    if not data then state = "ended" end
    return data, err
  end
end

local function read_body(res)
  local reader = res.body_reader
  if not reader then return nil, "no body to be read" end
  local chunks, n = {}, 0
  while true do
    local chunk, err = reader()
    if err then return nil, err, concat(chunks, "", 1, n) end
    if not chunk then return concat(chunks, "", 1, n) end
    n = n + 1
    chunks[n] = chunk
  end
end

local function read_trailers(res)
  if not res.trailer_reader then return nil, "no trailers" end
  setmetatable(res.headers, { __index = res.trailer_reader() })
end

local function trailer_reader(sock)
  local done = false
  return function()
    if done then return nil, DEAD end
    done = true return receive_headers(sock)
  end
end

function _M.read_response(self, params)
  local sock = self.sock
  if not sock then return nil, NOT_INIT end
  local status, version, reason, err

  -- Expect: 100-continue: the body goes only after a 100; any other status is the answer.
  local req_headers = params.headers
  if req_headers and req_headers["Expect"] == "100-continue" then
    status, version, reason, err = receive_status(sock)
    if not status then return nil, err end
    if status == 100 then
      status = nil
      receive_headers(sock)
      if params.body then
        local ok, serr = send_body(sock, params.body)
        if not ok then return nil, serr end
      end
    end
  end
  if not status then
    status, version, reason, err = receive_status(sock)
    if not status then return nil, err end
  end
  local headers, herr = receive_headers(sock)
  if not headers then return nil, herr end

  -- Keep-alive unless HTTP/1.1 says "close" or HTTP/1.0 does not say "keep-alive". A
  -- repeated Connection header counts as none, as in 0.17.2.
  local conn = headers["Connection"]
  if type(conn) == "string" then
    conn = lower(conn)
    if (version == 1.1 and find(conn, "close", 1, true))
      or (version == 1.0 and not find(conn, "keep-alive", 1, true)) then self.keepalive = false end
  elseif version == 1.0 then self.keepalive = false end

  local has_body = upper(params.method or "GET") ~= "HEAD" and status ~= 204 and status ~= 304
    and (status < 100 or status >= 200)
  local body_reader = no_body_reader
  local has_trailers = headers["Trailer"] ~= nil
  if has_body then
    local te = headers["Transfer-Encoding"]
    if version == 1.1 and te and is_chunked(te) then
      body_reader = chunked_reader(sock, has_trailers)
    else
      local length = tonumber(headers["Content-Length"])
      if length and (length < 0 or length % 1 ~= 0) then length = nil end
      body_reader = length_reader(sock, length)
    end
  end
  return { status = status, reason = reason, headers = headers, has_body = has_body,
    body_reader = body_reader, read_body = read_body, read_trailers = read_trailers,
    trailer_reader = has_trailers and trailer_reader(sock) or nil }
end

function _M.request(self, params)
  params = copy(params)
  local ok, err, partial = self:send_request(params)
  if not ok then return nil, err, partial end
  return self:read_response(params)
end

-- Sends all the requests, then returns their responses, each read when first looked into
-- (errors are logged; the fields then stay nil). Bodies must be read in order.
function _M.request_pipeline(self, requests)
  local list = {}
  for i, params in ipairs(requests) do
    if params.headers and params.headers["Expect"] == "100-continue" then
      return nil, "Cannot pipeline request specifying Expect: 100-continue"
    end
    list[i] = copy(params)
    local ok, err = self:send_request(list[i])
    if not ok then return nil, err end
  end
  local lazy = { __index = function(t, k)
    if t.response_read == false then
      t.response_read = true
      local res, err = self:read_response(t.params)
      if not res then log_err(err) end
      for rk, rv in pairs(res or {}) do t[rk] = rv end
    end
    return rawget(t, k)
  end }
  local responses = {}
  for i, params in ipairs(list) do
    responses[i] = setmetatable({ params = params, response_read = false }, lazy)
  end
  return responses
end

-- request_uri(uri, params?) → res (with res.body) | nil, err: connect, request, read the body,
-- then pool the connection (or close it: params.keepalive == false, or the server said so).
function _M.request_uri(self, uri, params)
  params = copy(params)
  local parsed, err = self:parse_uri(uri, false)
  if not parsed then return nil, err end
  params.scheme, params.host, params.port = parsed[1], parsed[2], parsed[3]
  params.path = params.path or parsed[4]
  params.query = params.query or parsed[5]
  params.ssl_server_name = params.ssl_server_name or params.host

  local ok, res, body
  ok, err = self:connect(params)
  if not ok then return nil, err end
  res, err = self:request(params)
  if not res then self:close() return nil, err end
  body, err = res:read_body()
  if not body then self:close() return nil, err end
  res.body = body
  if params.keepalive == false then ok, err = self:close()
  else ok, err = self:set_keepalive(params.keepalive_timeout, params.keepalive_pool) end
  if not ok then log_err(err) end
  return res, nil
end

-- Nothing of the downstream connection is reachable here (no ngx.req.socket).
local function not_supported() return nil, "not supported" end
_M.get_client_body_reader, _M.proxy_request, _M.proxy_response =
  not_supported, not_supported, not_supported

return { ["resty.http"] = _M, ["resty.http_headers"] = http_headers }
