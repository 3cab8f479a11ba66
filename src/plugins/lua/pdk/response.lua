-- kong.response over the Rust functions of pdk/response.rs: Kong's argument checks, the
-- error page negotiation of `kong.response.error` (Accept, templates, request_id) and what
-- Kong's send() does to an exit (Transfer-Encoding dropped, gRPC status and message).
-- Called once per VM after surface.lua, with the unfrozen `kong`, `cjson`, `internal` and the
-- shared checks.
local kong, cjson, internal, checks = ...

local type, tostring, tonumber, pairs, error, pcall = type, tostring, tonumber, pairs, error, pcall
local fmt, find, lower, match, concat = string.format, string.find, string.lower, string.match, table.concat
local validate_header, validate_headers = checks.validate_header, checks.validate_headers
local normalize, is_transfer_encoding, check_max = checks.normalize, checks.is_transfer_encoding, checks.check_max
local put_header = checks.put_header

local request, response = kong.request, kong.response

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

-- As Kong's: the version comes from ngx.req.http_version, the calling plugin's own if it
-- replaced it in its view of ngx.
local function is_grpc_request()
  local ctype = request.get_header("content-type")
  if ctype == nil or find(ctype, "application/grpc", 1, true) ~= 1 then
    return false
  end
  local own = internal.plugin_ngx()
  local version = own and own.req.http_version() or request.get_http_version()
  return version == 2
end

do
  local get_header, get_headers, set_status = response.get_header, response.get_headers, response.set_status
  local set_header, add_header, clear_header, set_headers = response.set_header, response.add_header,
    response.clear_header, response.set_headers
  set_header = internal.fast.response_set_header(set_header)
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
    -- As kong.service.request.set_header: the common call straight to Rust (a name of 17
    -- characters may be Transfer-Encoding, which the checks below refuse).
    if type(name) == "string" and type(value) == "string" and value ~= "" and #name ~= 17 then
      return set_header(name, value)
    end
    validate_header(name, value)
    if is_transfer_encoding(name) then
      warn("manually setting Transfer-Encoding. Ignored.")
      return
    end
    return put_header(name, value, true, set_header, add_header, clear_header)
  end

  function response.add_header(name, value)
    validate_header(name, value)
    return put_header(name, value, false, set_header, add_header, clear_header)
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
