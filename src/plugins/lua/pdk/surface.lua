-- The argument checks and the Lua-level logic of Kong's PDK, over the Rust functions of
-- pdk/*.rs. Kong's PDK is Lua code whose errors are `error(msg, 2)` strings naming the plugin's
-- call site, and whose getters return `nil, err`; plugins test for those exact messages. Doing
-- the checks here keeps that behaviour (levels, `%q` quoting, `tostring` of numbers) without a
-- Rust conversion that would coerce `127001` to "127001" first.
--
-- Called once per VM with the unfrozen `kong` and `ngx` tables, `cjson`, a `cjson.safe` whose
-- decoder marks arrays with `cjson.array_mt`, and `internal` (Rust helpers no plugin sees); it
-- replaces functions in place before the tables are frozen.
local kong, ngx, cjson, json_array_mt, internal = ...

local type, tostring, tonumber, pairs, ipairs, error, pcall = type, tostring, tonumber, pairs, ipairs, error, pcall
local fmt, find, sub, lower, gsub, match = string.format, string.find, string.sub, string.lower, string.gsub, string.match
local concat, sort, floor, huge = table.concat, table.sort, math.floor, math.huge

local request, response = kong.request, kong.response
local service, srequest = kong.service, kong.service.request

local function is_integer(n)
  return type(n) == "number" and n == floor(n) and n > -huge and n < huge
end

-- Headers -------------------------------------------------------------------------------------

-- `level` is the error level of the caller's caller: 3 when called from a PDK function.
local function validate_header(name, value)
  local tname = type(name)
  if tname ~= "string" then
    error(fmt("invalid header name %q: got %s, expected string", tostring(name), tname), 3)
  end
  local tvalue = type(value)
  if tvalue == "table" then
    for _, v in ipairs(value) do
      if type(v) ~= "string" then
        error(fmt("invalid header value in array %q: got %s, expected string", name, type(v)), 3)
      end
    end
  elseif tvalue ~= "string" and tvalue ~= "number" and tvalue ~= "boolean" then
    error(fmt("invalid header value for %q: got %s, expected array of string, string, number or boolean",
              name, tvalue), 3)
  end
end

local function validate_headers(headers)
  if type(headers) ~= "table" then
    error("headers must be a table", 3)
  end
  for k, v in pairs(headers) do
    if type(k) ~= "string" then
      error(fmt("invalid header name %q: got %s, expected string", tostring(k), type(k)), 3)
    end
    local tv = type(v)
    if tv == "table" then
      for _, vv in ipairs(v) do
        if type(vv) ~= "string" then
          error(fmt("invalid header value in array %q: got %s, expected string", k, type(vv)), 3)
        end
      end
    elseif tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      error(fmt("invalid header value for %q: got %s, expected string, number, boolean or array of strings",
                k, tv), 3)
    end
  end
end

-- nginx drops a header whose value is empty; Kong sends a single space instead.
local function normalize(value)
  local t = type(value)
  if t == "string" then
    return value == "" and " " or value
  elseif t == "table" then
    local out = {}
    for i, v in ipairs(value) do
      out[i] = v == "" and " " or v
    end
    return out
  end
  return tostring(value)
end

local function is_transfer_encoding(name)
  local l = lower(name)
  return l == "transfer-encoding" or l == "transfer_encoding"
end

local function check_max(value, what, max)
  if value == nil then
    return
  end
  if type(value) ~= "number" then
    error(what .. " must be a number", 3)
  elseif value < 1 then
    error(what .. " must be >= 1", 3)
  elseif value > max then
    error(what .. " must be <= " .. max, 3)
  end
end

-- kong.request ----------------------------------------------------------------------------------

do
  local get_header, get_headers, get_query, get_query_arg = request.get_header, request.get_headers,
    request.get_query, request.get_query_arg
  local get_raw_body = request.get_raw_body

  function request.get_header(name)
    if type(name) ~= "string" then
      error("header name must be a string", 2)
    end
    return get_header(name)
  end

  function request.get_headers(max_headers)
    check_max(max_headers, "max_headers", 1000)
    return get_headers(max_headers)
  end

  function request.get_query_arg(name)
    if type(name) ~= "string" then
      error("query argument name must be a string", 2)
    end
    return get_query_arg(name)
  end

  function request.get_query(max_args)
    check_max(max_args, "max_args", 1000)
    return get_query(max_args)
  end

  local JSON, FORM, MULTIPART = "application/json", "application/x-www-form-urlencoded", "multipart/form-data"

  function request.get_body(mimetype, max_args, max_allowed_file_size)
    local content_type = mimetype or get_header("content-type")
    if not content_type then
      return nil, "missing content type"
    end
    local ctype = lower(content_type)
    local semi = find(ctype, ";", 1, true)
    if semi then
      ctype = sub(ctype, 1, semi - 1)
    end

    if find(ctype, FORM, 1, true) == 1 then
      check_max(max_args, "max_args", 1000)
      local body, err = get_raw_body(max_allowed_file_size)
      if not body then
        return nil, err, FORM
      end
      return internal.decode_args(body, max_args), nil, FORM

    elseif find(ctype, JSON, 1, true) == 1 then
      local body, err = get_raw_body(max_allowed_file_size)
      if not body then
        return nil, err, JSON
      end
      local json = json_array_mt.decode(body)
      if type(json) ~= "table" then
        return nil, "invalid json body", JSON
      end
      return json, nil, JSON

    elseif find(ctype, MULTIPART, 1, true) == 1 then
      local body, err = get_raw_body(max_allowed_file_size)
      if not body then
        return nil, err, MULTIPART
      end
      local fields = internal.multipart_fields(body, content_type)
      if not fields then
        return nil, "unable to decode multipart body", MULTIPART
      end
      return fields, nil, MULTIPART
    end

    return nil, "unsupported content type '" .. content_type .. "'", ctype
  end
end

-- kong.response ---------------------------------------------------------------------------------

local HTTP_TO_GRPC = {
  [200] = 0, [400] = 3, [401] = 16, [403] = 7, [404] = 5, [409] = 6, [429] = 8, [499] = 1,
  [500] = 13, [501] = 12, [503] = 14, [504] = 4,
}

local GRPC_MESSAGES = {
  [0] = "OK", [1] = "Canceled", [2] = "Unknown", [3] = "InvalidArgument", [4] = "DeadlineExceeded",
  [5] = "NotFound", [6] = "AlreadyExists", [7] = "PermissionDenied", [8] = "ResourceExhausted",
  [9] = "FailedPrecondition", [10] = "Aborted", [11] = "OutOfRange", [12] = "Unimplemented",
  [13] = "Internal", [14] = "Unavailable", [15] = "DataLoss", [16] = "Unauthenticated",
}

local HTTP_MESSAGES = {
  [400] = "Bad request", [401] = "Unauthorized", [402] = "Payment required", [403] = "Forbidden",
  [404] = "Not found", [405] = "Method not allowed", [406] = "Not acceptable",
  [407] = "Proxy authentication required", [408] = "Request timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length required", [412] = "Precondition failed",
  [413] = "Payload too large", [414] = "URI too long", [415] = "Unsupported media type",
  [416] = "Range not satisfiable", [417] = "Expectation failed", [418] = "I'm a teapot",
  [421] = "Misdirected request", [422] = "Unprocessable entity", [423] = "Locked",
  [424] = "Failed dependency", [425] = "Too early", [426] = "Upgrade required",
  [428] = "Precondition required", [429] = "Too many requests",
  [431] = "Request header fields too large", [451] = "Unavailable for legal reasons",
  [494] = "Request header or cookie too large", [500] = "An unexpected error occurred",
  [501] = "Not implemented", [502] = "An invalid response was received from the upstream server",
  [503] = "The upstream server is currently unavailable", [504] = "The upstream server is timing out",
  [505] = "HTTP version not supported", [506] = "Variant also negotiates",
  [507] = "Insufficient storage", [508] = "Loop detected", [510] = "Not extended",
  [511] = "Network authentication required",
}

local function http_message(status)
  local msg = HTTP_MESSAGES[status]
  if msg then
    return msg
  end
  if status >= 500 then
    return "The upstream server responded with " .. status
  end
  return "The server encountered an error (" .. status .. ")"
end

local MIME = {
  ["application/grpc"] = "application/grpc",
  ["text/html"] = "text/html; charset=utf-8",
  ["application/json"] = "application/json; charset=utf-8",
  ["text/plain"] = "text/plain; charset=utf-8",
  ["application/xml"] = "application/xml; charset=utf-8",
  ["application"] = "application/json; charset=utf-8",
  ["text"] = "text/plain; charset=utf-8",
}
local DEFAULT_MIME = "application/json; charset=utf-8"

local TEMPLATES = {
  ["text/html; charset=utf-8"] = '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n'
    .. '    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n'
    .. '    <p>request_id: %s</p>\n  </body>\n</html>\n',
  ["application/json; charset=utf-8"] = '{\n  "message":"%s",\n  "request_id":"%s"\n}',
  ["text/plain; charset=utf-8"] = "%s\nrequest_id: %s\n",
  ["application/xml; charset=utf-8"] = '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n'
    .. '  <message>%s</message>\n  <requestid>%s</requestid>\n</error>\n',
}
TEMPLATES["application/json"] = TEMPLATES["application/json; charset=utf-8"]
TEMPLATES["text/html"] = TEMPLATES["text/html; charset=utf-8"]
TEMPLATES["text/plain"] = TEMPLATES["text/plain; charset=utf-8"]
TEMPLATES["application/xml"] = TEMPLATES["application/xml; charset=utf-8"]

-- The MIME type of one Accept entry ("text/*", "*/*", "application/xml").
local function mime_of(media)
  local base = match(media, "^%s*([^;]*)")
  base = match(base, "^(.-)%s*$")
  local major, minor = match(base, "^([^/]+)/([^/]+)$")
  if major then
    if minor == "*" then
      return major == "*" and DEFAULT_MIME or MIME[major] or DEFAULT_MIME
    end
    return MIME[base] or DEFAULT_MIME
  end
  return DEFAULT_MIME
end

local TOKEN = "[%w][%w%-!#%$&%^_%+%.]+"

-- The response type for an Accept header: the entry of highest quality (first on ties).
local function response_type(accept)
  if type(accept) == "table" then
    accept = concat(accept, ",")
  end
  local chosen, best = DEFAULT_MIME, 0
  if accept == nil then
    return chosen
  end
  for entry in string.gmatch(accept, "[^,]+") do
    entry = match(entry, "^%s*(.-)%s*$")
    local media = match(entry, "^([^;%s]+)") or ""
    local major, minor = match(lower(media), "^([^/]+)/([^/]+)$")
    local valid = major
      and (major == "*" or match(major, "^" .. TOKEN .. "$"))
      and (minor == "*" or match(minor, "^" .. TOKEN .. "$"))
    if valid then
      local q = tonumber(match(entry, ";%s*q=([%d%.]+)")) or 1
      if q > best then
        best = q
        chosen = mime_of(lower(media))
      end
    end
  end
  return chosen
end

local function is_grpc_request()
  local ctype = request.get_header("content-type")
  return ctype ~= nil and find(ctype, "application/grpc", 1, true) == 1
    and request.get_http_version() == 2
end

do
  local get_header, get_headers, set_status = response.get_header, response.get_headers, response.set_status
  local set_header, add_header, clear_header, set_headers = response.set_header, response.add_header,
    response.clear_header, response.set_headers
  local set_raw_body, exit = response.set_raw_body, response.exit
  local warn = kong.log.warn

  local function check_status(status, min)
    if type(status) ~= "number" then
      error("code must be a number", 3)
    elseif status < min or status > 599 then
      error(fmt("code must be a number between %u and %u", min, 599), 3)
    end
  end

  function response.get_header(name)
    if type(name) ~= "string" then
      error("header name must be a string", 2)
    end
    return get_header(name)
  end

  function response.get_headers(max_headers)
    check_max(max_headers, "max_headers", 1000)
    return get_headers(max_headers)
  end

  function response.set_status(status)
    check_status(status, 100)
    return set_status(status)
  end

  function response.set_header(name, value)
    validate_header(name, value)
    if is_transfer_encoding(name) then
      warn("manually setting Transfer-Encoding. Ignored.")
      return
    end
    if type(value) == "table" then
      clear_header(name)
      for _, v in ipairs(normalize(value)) do
        add_header(name, v)
      end
      return
    end
    return set_header(name, normalize(value))
  end

  function response.add_header(name, value)
    validate_header(name, value)
    if type(value) == "table" then
      for _, v in ipairs(normalize(value)) do
        add_header(name, v)
      end
      return
    end
    return add_header(name, normalize(value))
  end

  function response.clear_header(name)
    if type(name) ~= "string" then
      error("header name must be a string", 2)
    end
    return clear_header(name)
  end

  function response.set_headers(headers)
    validate_headers(headers)
    local out = {}
    for k, v in pairs(headers) do
      if is_transfer_encoding(k) then
        warn("manually setting Transfer-Encoding. Ignored.")
      else
        out[k] = normalize(v)
      end
    end
    return set_headers(out)
  end

  function response.set_raw_body(body)
    if type(body) ~= "string" then
      error("body must be a string", 2)
    end
    return set_raw_body(body)
  end

  -- What Kong's send() does before the response leaves: Transfer-Encoding dropped, gRPC
  -- status and message derived from the HTTP status, a table body JSON-encoded (or, for gRPC,
  -- its `message` moved into grpc-message).
  local function send(status, body, headers, level)
    local out, content_type = {}, nil
    if headers then
      for name, value in pairs(headers) do
        if is_transfer_encoding(name) then
          warn("manually setting Transfer-Encoding. Ignored.")
        else
          local l = lower(name)
          if l == "content-type" or l == "content_type" then
            content_type = type(value) == "table" and value[1] or tostring(value)
          end
          out[name] = normalize(value)
        end
      end
    end
    content_type = content_type or internal.pending_header("content-type")

    local is_grpc, grpc_output
    if content_type then
      is_grpc = find(content_type, "application/grpc", 1, true) == 1
      grpc_output = is_grpc
    else
      is_grpc = is_grpc_request()
    end

    local grpc_status
    if is_grpc and not internal.pending_header("grpc-status") and out["grpc-status"] == nil then
      grpc_status = HTTP_TO_GRPC[status]
        or (status >= 500 and 13) or (status >= 400 and 3) or (status >= 200 and status < 300 and 0)
        or 2
      out["grpc-status"] = tostring(grpc_status)
    end
    local has_message = out["grpc-message"] ~= nil or internal.pending_header("grpc-message")

    if type(body) == "table" and is_grpc then
      if grpc_output then
        error("table body encoding with gRPC is not supported", level)
      elseif type(body.message) == "string" then
        body = body.message
      else
        warn("body was removed because table body encoding with gRPC is not supported")
        body = nil
      end
    end

    if type(body) == "string" and is_grpc and not grpc_output then
      out["grpc-message"] = body
      body = nil
    elseif grpc_status and not has_message then
      out["grpc-message"] = GRPC_MESSAGES[grpc_status]
    end
    return exit(status, body, out)
  end

  function response.exit(status, body, headers)
    check_status(status, 100)
    if body ~= nil and type(body) ~= "string" and type(body) ~= "table" then
      error("body must be a nil, string or table", 2)
    end
    if headers ~= nil then
      if type(headers) ~= "table" then
        error("headers must be a nil or table", 2)
      end
      validate_headers(headers)
    end
    return send(status, body, headers, 3)
  end

  function response.error(status, message, headers)
    check_status(status, 400)
    if message ~= nil then
      if type(message) == "table" then
        local ok, encoded = pcall(cjson.encode, message)
        if not ok then
          error("could not JSON encode the error message: " .. tostring(encoded), 2)
        end
        message = encoded
      end
      if type(message) ~= "string" then
        error("message must be a nil, a string or a table", 2)
      end
    end
    if headers ~= nil then
      if type(headers) ~= "table" then
        error("headers must be a nil or table", 2)
      end
      validate_headers(headers)
    end
    local out = {}
    for k, v in pairs(headers or out) do
      out[k] = v
    end
    local given = out["Content-Type"]
    local content_type = type(given) == "table" and given[1] or given
    if given == nil then
      if is_grpc_request() then
        content_type = "application/grpc"
      else
        content_type = response_type(request.get_headers()["accept"])
      end
    end
    out["Content-Type"] = content_type

    local body
    if content_type ~= "application/grpc" then
      local template = TEMPLATES[content_type]
      if not template then
        error("no template found for MIME type " .. tostring(content_type), 2)
      end
      body = fmt(template, message or http_message(status), internal.request_id())
    end
    return send(status, body, out, 3)
  end
end

-- kong.service.request ---------------------------------------------------------------------------

local METHODS = {
  GET = true, HEAD = true, PUT = true, POST = true, DELETE = true, OPTIONS = true, MKCOL = true,
  COPY = true, MOVE = true, PROPFIND = true, PROPPATCH = true, LOCK = true, UNLOCK = true,
  PATCH = true, TRACE = true, CONNECT = true,
}

-- The query string Kong builds from a table: each argument encoded on its own, then sorted.
local function ordered_args(args, level)
  local pieces, one = {}, {}
  for k, v in pairs(args) do
    if type(k) ~= "string" then
      error("arg keys must be strings", level)
    end
    one[k] = v
    local ok, s = pcall(ngx.encode_args, one)
    one[k] = nil
    if not ok then
      error(s, level)
    end
    pieces[#pieces + 1] = s
  end
  sort(pieces)
  return concat(pieces, "&")
end

do
  local set_scheme, set_path, set_raw_query, set_method = srequest.set_scheme, srequest.set_path,
    srequest.set_raw_query, srequest.set_method
  local set_query, clear_query_arg = srequest.set_raw_query, srequest.clear_query_arg
  local set_header, add_header, clear_header = srequest.set_header, srequest.add_header, srequest.clear_header
  local set_headers, set_raw_body = srequest.set_headers, srequest.set_raw_body

  function srequest.set_scheme(scheme)
    if type(scheme) ~= "string" then
      error("scheme must be a string", 2)
    end
    if scheme ~= "http" and scheme ~= "https" then
      error("invalid scheme: " .. scheme, 2)
    end
    return set_scheme(scheme)
  end

  function srequest.set_path(path)
    if type(path) ~= "string" then
      error("path must be a string", 2)
    end
    if sub(path, 1, 1) ~= "/" then
      error("path must start with /", 2)
    end
    return set_path(path)
  end

  function srequest.set_raw_query(query)
    if type(query) ~= "string" then
      error("query must be a string", 2)
    end
    return set_raw_query(query)
  end

  function srequest.set_method(method)
    if type(method) ~= "string" then
      error("method must be a string", 2)
    end
    if not METHODS[method] then
      error("invalid method: " .. method, 2)
    end
    return set_method(method)
  end

  function srequest.set_query(args)
    if type(args) ~= "table" then
      error("args must be a table", 2)
    end
    return set_query(ordered_args(args, 3))
  end

  function srequest.clear_query_arg(name)
    if type(name) ~= "string" then
      error("query argument name must be a string", 2)
    end
    return clear_query_arg(name)
  end

  function srequest.set_header(name, value)
    validate_header(name, value)
    if lower(name) == ":authority" then
      return nil, "cannot set :authority pseudo-header on non-grpc requests"
    end
    if type(value) == "table" then
      clear_header(name)
      for _, v in ipairs(normalize(value)) do
        add_header(name, v)
      end
      return
    end
    return set_header(name, normalize(value))
  end

  function srequest.add_header(name, value)
    validate_header(name, value)
    if type(value) == "table" then
      for _, v in ipairs(value) do
        add_header(name, normalize(v))
      end
      return
    end
    return add_header(name, normalize(value))
  end

  function srequest.clear_header(name)
    if type(name) ~= "string" then
      error("header must be a string", 2)
    end
    return clear_header(name)
  end

  function srequest.set_headers(headers)
    if type(headers) ~= "table" then
      error("headers must be a table", 2)
    end
    validate_headers(headers)
    local out = {}
    for k, v in pairs(headers) do
      out[k] = normalize(v)
    end
    return set_headers(out)
  end

  function srequest.set_raw_body(body)
    if type(body) ~= "string" then
      error("body must be a string", 2)
    end
    return set_raw_body(body)
  end

  local function multipart(args, mime)
    local boundary = match(mime, 'boundary="([^"]*)"') or match(mime, "boundary=([^;]*)")
    local keys = {}
    for k, v in pairs(args) do
      if type(k) ~= "string" then
        error(fmt("invalid key %q: got %s, expected string", tostring(k), type(k)), 3)
      end
      local tv = type(v)
      if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
        error(fmt("invalid value %q: got %s, expected string, number or boolean", k, tv), 3)
      end
      keys[#keys + 1] = k
    end
    -- A boundary that occurs in a value is replaced by one that does not.
    local function clashes(b)
      for _, k in ipairs(keys) do
        if find(tostring(args[k]), "\n--" .. b, 1, true) then
          return true
        end
      end
      return false
    end
    while not boundary or clashes(boundary) do
      boundary = tostring(math.random(1e10))
    end
    sort(keys)
    local out = {}
    for _, k in ipairs(keys) do
      out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. k
        .. "\"\r\n\r\n" .. tostring(args[k]) .. "\r\n"
    end
    out[#out + 1] = "--" .. boundary .. "--\r\n"
    return concat(out), "multipart/form-data; boundary=" .. boundary
  end

  local encoders = {
    ["application/x-www-form-urlencoded"] = function(args, mime)
      return ordered_args(args, 4), mime
    end,
    ["application/json"] = function(args, mime)
      local ok, encoded = pcall(cjson.encode, args)
      if not ok then
        error(encoded, 3)
      end
      return encoded, mime
    end,
    ["multipart/form-data"] = multipart,
  }

  function srequest.set_body(args, mime)
    if type(args) ~= "table" then
      error("args must be a table", 2)
    end
    if mime and type(mime) ~= "string" then
      error("mime must be a string", 2)
    end
    if not mime then
      mime = request.get_header("content-type")
      if not mime then
        return nil, "content type was neither explicitly given as an argument or received as a header"
      end
    end
    local base = match(mime, "^([^;]*)")
    local encode = encoders[base]
    if not encode then
      error("unsupported content type " .. mime, 2)
    end
    local body, content_type = encode(args, mime)
    set_raw_body(body)
    set_header("Content-Type", content_type)
    return true
  end
end

-- kong.service -----------------------------------------------------------------------------------

do
  local set_upstream, set_target, set_retries, set_timeouts = service.set_upstream, service.set_target,
    service.set_retries, service.set_timeouts
  local set_tls_verify = service.set_tls_verify

  function service.set_upstream(host)
    if type(host) ~= "string" then
      error("host must be a string", 2)
    end
    return set_upstream(host)
  end

  function service.set_target(host, port)
    if type(host) ~= "string" then
      error("host must be a string", 2)
    end
    if not is_integer(port) then
      error("port must be an integer", 2)
    end
    if port < 0 or port > 65535 then
      error("port must be an integer between 0 and 65535: given " .. port, 2)
    end
    return set_target(host, port)
  end

  function service.set_retries(retries)
    if not is_integer(retries) then
      error("retries must be an integer", 2)
    end
    if retries < 0 or retries > 32767 then
      error("retries must be an integer between 0 and 32767: given " .. retries, 2)
    end
    return set_retries(retries)
  end

  function service.set_timeouts(connect_timeout, write_timeout, read_timeout)
    local given = { connect_timeout, write_timeout, read_timeout }
    for i, name in ipairs({ "connect_timeout", "write_timeout", "read_timeout" }) do
      local v = given[i]
      if not is_integer(v) then
        error(name .. " must be an integer", 2)
      end
      if v < 1 or v > 2147483646 then
        error(name .. " must be an integer between 1 and 2147483646: given " .. v, 2)
      end
    end
    return set_timeouts(connect_timeout, write_timeout, read_timeout)
  end

  function service.set_tls_verify(on)
    if type(on) ~= "boolean" then
      error("argument must be a boolean", 2)
    end
    return set_tls_verify(on)
  end

  -- Recorded by Kong for nginx's proxy_ssl_verify_depth; certificate chains here are verified
  -- by OpenSSL's default depth, so the value is checked and accepted.
  function service.set_tls_verify_depth(depth)
    if type(depth) ~= "number" then
      error("argument must be a number", 2)
    end
    return true
  end

  -- Both need objects of resty.openssl (cdata), which sandboxed plugins cannot create.
  function service.set_tls_verify_store(store)
    error("argument must be a resty.openssl.x509.store object", 2)
  end

  function service.set_tls_cert_key(chain, key)
    if type(chain) ~= "cdata" then
      error("chain must be a parsed cdata object", 2)
    end
    if type(key) ~= "cdata" then
      error("key must be a parsed cdata object", 2)
    end
  end

  function service.set_target_retry_callback(callback)
    if type(callback) ~= "function" then
      error("retry_callback must be a function", 2)
    end
    error("kong.service.set_target_retry_callback is not supported: retries choose the next "
      .. "target of the upstream's balancer", 2)
  end
end

-- kong.client --------------------------------------------------------------------------------------

do
  local client = kong.client
  local authenticate, load_consumer = client.authenticate, client.load_consumer

  function client.authenticate(consumer, credential)
    if consumer ~= nil and type(consumer) ~= "table" then
      error("consumer must be a table or nil", 2)
    elseif credential ~= nil and type(credential) ~= "table" then
      error("credential must be a table or nil", 2)
    elseif consumer == nil and credential == nil then
      error("either credential or consumer must be provided", 2)
    end
    return authenticate(consumer, credential)
  end

  function client.load_consumer(consumer_id, search_by_username)
    if type(consumer_id) ~= "string" then
      error("consumer_id must be a string", 2)
    end
    local hex = "%x%x%x%x"
    local uuid = "^" .. hex .. hex .. "%-" .. hex .. "%-" .. hex .. "%-" .. hex .. "%-" .. hex .. hex .. hex .. "$"
    if not search_by_username and not match(consumer_id, uuid) then
      error("cannot load a consumer with an id that is not a uuid", 2)
    end
    return load_consumer(consumer_id, search_by_username)
  end
end

