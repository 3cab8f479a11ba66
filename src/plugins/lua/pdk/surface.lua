-- The argument checks and the Lua-level logic of Kong's PDK for kong.request,
-- kong.service(.request) and kong.client, over the Rust functions of pdk/*.rs (kong.response
-- is in response.lua, the shared checks in checks.lua). Kong's PDK is Lua code whose errors are `error(msg, 2)` strings naming the plugin's
-- call site, and whose getters return `nil, err`; plugins test for those exact messages. Doing
-- the checks here keeps that behaviour (levels, `%q` quoting, `tostring` of numbers) without a
-- Rust conversion that would coerce `127001` to "127001" first.
--
-- Called once per VM with the unfrozen `kong` and `ngx` tables, `cjson`, a `cjson.safe` whose
-- decoder marks arrays with `cjson.array_mt`, `internal` (Rust helpers no plugin sees) and the
-- checks; it replaces functions in place before the tables are frozen.
local kong, ngx, cjson, json_array_mt, internal, checks = ...

local type, tostring, tonumber, pairs, ipairs, error, pcall = type, tostring, tonumber, pairs, ipairs, error, pcall
local fmt, find, sub, lower, gsub, match = string.format, string.find, string.sub, string.lower, string.gsub, string.match
local concat, sort, floor, huge = table.concat, table.sort, math.floor, math.huge

local request = kong.request
local service, srequest = kong.service, kong.service.request

local is_integer, validate_header, validate_headers = checks.is_integer, checks.validate_header, checks.validate_headers
local normalize, check_max, put_header = checks.normalize, checks.check_max, checks.put_header


-- A body decoded by its content type, as kong.request.get_body and
-- kong.service.response.get_body do; `raw()` gives the body or nil and an error, `raw_form()`
-- the same for a form body (Kong reads those with ngx.req.get_post_args, which has its own
-- answer for a body nginx keeps in a file). Called directly by those functions (errors are
-- raised at the level of their caller).
local JSON, FORM, MULTIPART = "application/json", "application/x-www-form-urlencoded", "multipart/form-data"

local function decode_body(content_type, max_args, raw, raw_form)
  if not content_type then
    return nil, "missing content type"
  end
  local ctype = lower(content_type)
  local semi = find(ctype, ";", 1, true)
  if semi then
    ctype = sub(ctype, 1, semi - 1)
  end

  if find(ctype, FORM, 1, true) == 1 then
    check_max(max_args, "max_args", 1000, 4)
    local body, err = (raw_form or raw)()
    if not body then
      return nil, err, FORM
    end
    return internal.decode_args(body, max_args), nil, FORM

  elseif find(ctype, JSON, 1, true) == 1 then
    local body, err = raw()
    if not body then
      return nil, err, JSON
    end
    local json = json_array_mt.decode(body)
    if type(json) ~= "table" then
      return nil, "invalid json body", JSON
    end
    return json, nil, JSON

  elseif find(ctype, MULTIPART, 1, true) == 1 then
    local body, err = raw()
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


-- kong.request ----------------------------------------------------------------------------------

do
  local get_header, get_headers, get_query, get_query_arg = request.get_header, request.get_headers,
    request.get_query, request.get_query_arg
  local get_raw_body = request.get_raw_body
  get_header = internal.fast.request_get_header(get_header)

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

  function request.get_body(mimetype, max_args, max_allowed_file_size)
    local body, err, ctype = decode_body(mimetype or get_header("content-type"), max_args, function()
      return get_raw_body(max_allowed_file_size)
    end, function()
      local body = get_raw_body()
      if not body then
        return nil, "request body in temp file not supported"
      end
      return body
    end)
    return body, err, ctype
  end
end


-- kong.service.response --------------------------------------------------------------------------

do
  local sresponse = kong.service.response
  local get_header, get_headers, get_raw_body = sresponse.get_header, sresponse.get_headers,
    sresponse.get_raw_body

  function sresponse.get_header(name)
    if type(name) ~= "string" then
      error("name must be a string", 2)
    end
    return get_header(name)
  end

  function sresponse.get_headers(max_headers)
    check_max(max_headers, "max_headers", 1000)
    return get_headers(max_headers)
  end

  local NOT_BUFFERED = "service body is only available with buffered proxying " ..
    "(see: kong.service.request.enable_buffering function)"

  -- The Rust getter answers nil without buffered proxying.
  function sresponse.get_raw_body()
    local body = get_raw_body()
    if not body then
      error(NOT_BUFFERED, 2)
    end
    return body
  end

  -- Kong decodes the buffered body by the service's Content-Type.
  function sresponse.get_body(mimetype, max_args)
    local raw = get_raw_body()
    if not raw then
      error(NOT_BUFFERED, 2)
    end
    local body, err, ctype = decode_body(mimetype or get_header("content-type"), max_args, function()
      return raw
    end)
    return body, err, ctype
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
  set_header = internal.fast.service_set_header(set_header)

  -- Kong offers these in the balancer phase only, which plugins here do not have: a call
  -- fails as Kong's phase check fails it anywhere else.
  local function balancer_only()
    error(fmt("function cannot be called in %s phase (only in: balancer, preread)",
              internal.kong_phase()), 3)
  end
  function srequest.disable_tls()
    balancer_only()
  end
  function srequest.enable_tls()
    balancer_only()
  end

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
    -- The common call (a name and a non-empty string value) straight to Rust: what the checks
    -- and put_header below would do with it, without their three calls.
    if type(name) == "string" and type(value) == "string" and value ~= "" and #name ~= 10 then
      return set_header(name, value)
    end
    validate_header(name, value)
    -- The length first: most calls then make no lowercased copy of the name.
    if #name == 10 and lower(name) == ":authority" then
      return nil, "cannot set :authority pseudo-header on non-grpc requests"
    end
    return put_header(name, value, true, set_header, add_header, clear_header)
  end

  function srequest.add_header(name, value)
    validate_header(name, value)
    return put_header(name, value, false, set_header, add_header, clear_header)
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

