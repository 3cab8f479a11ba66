-- kong.db.schema.typedefs: Kong's ready-made field definitions for plugin schemas.
--
-- Every typedef is a plain field table. Used as is (`{ port = typedefs.port }`) it is the
-- definition; called with a table (`typedefs.port { default = 8080 }`) it returns a copy in
-- which the given attributes replace the typedef's.
--
-- Approximations of Kong's checks (Kong uses C/OpenSSL/PCRE helpers that plugins here lack):
--   certificate, key, pem  PEM armour and base64 body only; the key pair is not parsed or matched
--   jwk                    `kty` must be one of RSA, EC, OKP, oct; the key itself is not loaded
--   url                    scheme and host syntax (socket.url-like), no full RFC 3986 parse
--   router_path / paths    `~` regex paths are not compiled; prefix paths are not checked
--                          for normalization
--   lua_code               values must compile as Lua text (no sandbox safety analysis)
--   regex_or_plain_pattern any non-empty string (Kong Enterprise helper, not compiled)
--   host, ip, cidr, sni    pure-Lua parsers following Kong's rules (kong.tools.ip)
-- Everything else is exact (same patterns, bounds and lists as Kong 3.x).

local type, pairs, ipairs, tonumber, tostring = type, pairs, ipairs, tonumber, tostring
local setmetatable, error, rawget = setmetatable, error, rawget
local find, match, gsub, sub, byte = string.find, string.match, string.gsub, string.sub, string.byte

-- Kong's null: ngx.null when reachable, otherwise a stand-in the schema compiler knows.
local null = (type(ngx) == "table" and ngx.null)
  or setmetatable({}, { __null = true, __tostring = function() return "null" end })

local function define(t)
  return setmetatable(t, {
    __call = function(self, overrides)
      local out = {}
      for k, v in pairs(overrides or {}) do out[k] = v end
      for k, v in pairs(self) do
        if out[k] == nil then out[k] = v end
      end
      return define(out)
    end,
  })
end

local function split(s, sep)
  local out, i = {}, 1
  while true do
    local j = find(s, sep, i, true)
    if not j then
      out[#out + 1] = sub(s, i)
      return out
    end
    out[#out + 1] = sub(s, i, j - 1)
    i = j + #sep
  end
end

---------------------------------------------------------------------------------------------
-- addresses

local function is_ipv4(s)
  local parts = { match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 then return false end
  for _, p in ipairs(parts) do
    if #p > 3 or tonumber(p) > 255 then return false end
  end
  return true
end

local function hex_groups(s)
  if s == "" then return 0 end
  local n = 0
  for _, g in ipairs(split(s, ":")) do
    if not match(g, "^%x%x?%x?%x?$") then return nil end
    n = n + 1
  end
  return n
end

local function is_ipv6(s)
  if find(s, "[^%x:%.]") then return false end
  local v4 = match(s, ":(%d+%.%d+%.%d+%.%d+)$")
  if v4 then
    if not is_ipv4(v4) then return false end
    s = sub(s, 1, #s - #v4) .. "0:0"
  elseif find(s, ".", 1, true) then
    return false
  end
  local halves = split(s, "::")
  if #halves > 2 then return false end
  if #halves == 2 then
    local a, b = hex_groups(halves[1]), hex_groups(halves[2])
    return a ~= nil and b ~= nil and a + b <= 7
  end
  return hex_groups(s) == 8
end

local function is_ip(s) return is_ipv4(s) or is_ipv6(s) end

local function cidr_parts(s, max)
  local ip, prefix = match(s, "^(.-)/(%d+)$")
  if not ip or (#prefix > 1 and sub(prefix, 1, 1) == "0") or tonumber(prefix) > max then
    return nil
  end
  return ip
end

local function is_cidr_v4(s)
  local ip = cidr_parts(s, 32)
  return ip ~= nil and is_ipv4(ip)
end

local function is_cidr_v6(s)
  local ip = cidr_parts(s, 128)
  return ip ~= nil and is_ipv6(ip)
end

-- Kong's normalize_ip: { type = "ipv4"|"ipv6"|"name", port = n|nil } or nil, error.
local function normalize_ip(address)
  local without_colons, colons = gsub(address, ":", "")
  local port
  if colons > 1 then
    local inner, rest = match(address, "^%[(.-)%](.*)$")
    if inner then
      if rest ~= "" then
        port = match(rest, "^:(%d+)$")
        if not port then return nil, "invalid ipv6 address" end
        port = tonumber(port)
        if port > 65535 then return nil, "invalid port number" end
      end
    else
      inner = address
    end
    if not is_ipv6(inner) then return nil, "invalid ipv6 address: " .. address end
    return { type = "ipv6", port = port }
  end
  if match(without_colons, "^[%d%.]+$") then
    local ip
    ip, port = match(address, "^([^:]*):?(%d*)$")
    if not ip or not is_ipv4(ip) or (colons == 1 and port == "") then
      return nil, "invalid ipv4 address: " .. address
    end
    port = tonumber(port)
    if port and port > 65535 then return nil, "invalid port number" end
    return { type = "ipv4", port = port }
  end
  local name = address
  port = match(address, ":(%d+)$")
  if port then
    name = sub(address, 1, -(#port + 2))
    port = tonumber(port)
    if port > 65535 then return nil, "invalid port number" end
  end
  if not match(name, "^[%d%a%-%._]+$") then return nil, "invalid hostname: " .. address end
  local labels = split(name, ".")
  for i, label in ipairs(labels) do
    if match(label, "%-$") or (label == "" and i ~= #labels) then
      return nil, "invalid hostname: " .. address
    end
  end
  return { type = "name", port = port }
end

local function validate_host(host)
  local res, err = normalize_ip(host)
  if not res and err ~= "invalid port number" then return nil, "invalid value: " .. host end
  if err == "invalid port number" or res.port then return nil, "must not have a port" end
  return true
end

local function validate_host_with_optional_port(host)
  local res, err = normalize_ip(host)
  return (res and true or nil), err
end

local function validate_sni(host)
  local res, err = normalize_ip(host)
  if not res and err ~= "invalid port number" then return nil, "invalid value: " .. host end
  if res and res.type ~= "name" then return nil, "must not be an IP" end
  if err == "invalid port number" or res.port then return nil, "must not have a port" end
  return true
end

local function validate_wildcard_host(host)
  local at = find(host, "*", 1, true)
  if at then
    if at ~= 1 and at ~= #host then
      return nil, "wildcard must be leftmost or rightmost character"
    end
    local replaced, n = gsub(host, "%*", "wildcard")
    if n > 1 then return nil, "only one wildcard must be specified" end
    host = replaced
  end
  return validate_sni(host)
end

local function validate_ip(ip)
  if is_ip(ip) then return true end
  return nil, "not an ip address: " .. ip
end

local function validate_ip_or_cidr(v)
  if is_ip(v) or is_cidr_v4(v) or is_cidr_v6(v) then return true end
  return nil, "invalid ip or cidr range: '" .. v .. "'"
end

local function validate_ip_or_cidr_v4(v)
  if is_ipv4(v) or is_cidr_v4(v) then return true end
  return nil, "invalid ipv4 cidr range: '" .. v .. "'"
end

---------------------------------------------------------------------------------------------
-- strings

-- Position of the first byte that does not start a valid UTF-8 sequence, or nil.
local function invalid_utf8_at(s)
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2
      or (c >= 0xE0 and c <= 0xEF) and 3 or (c >= 0xF0 and c <= 0xF4) and 4 or nil
    if not len or i + len - 1 > n then return i end
    for j = i + 1, i + len - 1 do
      local cc = byte(s, j)
      if cc < 0x80 or cc > 0xBF then return i end
    end
    i = i + len
  end
  return nil
end

local function validate_utf8(s)
  local at = invalid_utf8_at(s)
  if at then return nil, "invalid utf-8 character sequence detected at position " .. tostring(at) end
  return true
end

local function validate_name(name)
  if match(name, "^[%w%.%-_~]+$") then return true end
  return nil, "invalid value '" .. name .. "': it must only contain alphanumeric and '., -, _, ~' characters"
end

local function validate_utf8_name(name)
  local ok, err = validate_utf8(name)
  if not ok then return nil, err end
  if match(name, "^[%w%.%-_~\128-\244]+$") then return true end
  return nil, "invalid value '" .. name .. "': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
end

local function validate_tag(tag)
  local ok, err = validate_utf8(tag)
  if not ok then return nil, err end
  -- printable ASCII except ',' and '/', space, and non-ASCII UTF-8
  if match(tag, "^[ !-+%-%.0-~\128-\244]+$") then return true end
  return nil, "invalid tag '" .. tag .. "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
end

local function validate_header_name(name)
  if name == nil or name == "" then return nil, "no header name provided" end
  if match(name, "^[%w%-_]+$") then return name end
  return nil, "bad header name '" .. name .. "', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
end

local function validate_http_token(token)
  if token == nil or token == "" then return nil, "no token provided" end
  if not find(token, "[%z\1-\31\127-\255%(%)<>@,;:\\\"/%?={} \t%[%]]") then return token end
  return nil, "contains one or more invalid characters. ASCII control characters (0-31;127), "
    .. "space, tab and the characters ()<>@,;:\\\"/?={}[] are not allowed."
end

local function validate_path(path)
  if not match(path, "^/[%w%.%-_~/%%:@!%$&'%(%)%*%+,;=]*$") then
    return nil, "invalid path: '" .. path .. "' (characters outside of the reserved list of RFC 3986 found)", "rfc3986"
  end
  local stripped = gsub(path, "%%%x%x", "___")
  local at = find(stripped, "%", 1, true)
  if at then
    return nil, "invalid url-encoded value: '" .. sub(stripped, at, at + 2) .. "'", "percent"
  end
  return true
end

local function validate_router_path(path)
  if sub(path, 1, 1) == "~" then return true end
  local ok, err, code = validate_path(path)
  if code == "percent" or not ok then return ok, err, code end
  return true
end

local function validate_url(url)
  local scheme = match(url, "^(%a[%w%+%-%.]*):")
  local rest = scheme and sub(url, #scheme + 2) or url
  local authority = match(rest, "^//([^/%?#]*)")
  local host = authority and gsub(gsub(authority, "^.*@", ""), ":%d*$", "")
  if not host or host == "" then return nil, "missing host in url" end
  if not scheme then return nil, "missing scheme in url" end
  return true
end

local function pem_blocks(s, label_pattern)
  local found = false
  for label, body, closing in s:gmatch("%-%-%-%-%-BEGIN ([%u ]+)%-%-%-%-%-(.-)%-%-%-%-%-END ([%u ]+)%-%-%-%-%-") do
    if label ~= closing or not match(label, label_pattern) then return false end
    if not match((gsub(body, "%s", "")), "^[%w%+/]+=?=?$") then return false end
    found = true
  end
  return found
end

local function validate_certificate(cert)
  if pem_blocks(cert, "^CERTIFICATE$") then return true end
  return nil, "invalid certificate: not a PEM-encoded certificate"
end

local function validate_key(key)
  if pem_blocks(key, "KEY$") then return true end
  return nil, "invalid key: not a PEM-encoded key"
end

local function validate_pem_keys(values)
  local private, public = values.private_key, values.public_key
  local function ref(v) return type(v) == "string" and match(v, "^{vault://.+}$") end
  if ref(private) or ref(public) then return true end
  if type(public) == "string" and not pem_blocks(public, "PUBLIC KEY$") then
    return false, "could not load public key"
  end
  if type(private) == "string" and not pem_blocks(private, "PRIVATE KEY$") then
    return false, "could not load private key"
  end
  return true
end

local function validate_jwk(key)
  local kty = type(key) == "table" and key.kty
  if kty == "RSA" or kty == "EC" or kty == "OKP" or kty == "oct" then return true end
  return false, "could not load JWK, likely not a valid key"
end

local compile = rawget(_G, "loadstring") or rawget(_G, "load")
local function validate_lua_expression(code)
  if byte(code, 1) == 27 then return nil, "binary chunks are not allowed" end
  if not compile then return true end
  local ok, err = compile(code, "=lua_code")
  if ok then return true end
  return nil, "Error parsing function: " .. tostring(err)
end

---------------------------------------------------------------------------------------------
-- the typedefs

local PROTOCOLS = { "grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp" }
local HTTP_PROTOCOLS = { "grpc", "grpcs", "http", "https" }
local TRACE_FORMATS = { "w3c", "b3", "jaeger", "ot", "datadog", "aws", "gcp", "instana" }
local INJECTORS = { "w3c", "b3", "b3-single", "jaeger", "ot", "datadog", "aws", "gcp", "instana" }
local INJECT_FORMATS = { "preserve", "w3c", "b3", "b3-single", "jaeger", "ot", "datadog", "aws", "gcp", "instana" }

local typedefs = {}

typedefs.http_method = define { type = "string", match = "^%u+$" }
typedefs.protocol = define { type = "string", one_of = PROTOCOLS }
typedefs.host = define { type = "string", custom_validator = validate_host }
typedefs.redis_host = define { type = "string", custom_validator = validate_host }
typedefs.host_with_optional_port = define { type = "string", custom_validator = validate_host_with_optional_port }
typedefs.wildcard_host = define { type = "string", custom_validator = validate_wildcard_host }
typedefs.ip = define { type = "string", custom_validator = validate_ip }
typedefs.ip_or_cidr = define { type = "string", custom_validator = validate_ip_or_cidr }
typedefs.cidr_v4 = define { type = "string", custom_validator = validate_ip_or_cidr_v4 }
typedefs.cidr = typedefs.cidr_v4
typedefs.port = define { type = "integer", between = { 0, 65535 } }
typedefs.path = define {
  type = "string",
  starts_with = "/",
  match_none = { { pattern = "//", err = "must not have empty segments" } },
  custom_validator = validate_path,
}
typedefs.url = define { type = "string", custom_validator = validate_url }
typedefs.cookie_name = define { type = "string", custom_validator = validate_http_token }
typedefs.header_name = define { type = "string", custom_validator = validate_header_name }
typedefs.timeout = define { type = "integer", between = { 0, 2 ^ 31 - 2 } }
typedefs.uuid = define { type = "string", uuid = true, auto = true }
typedefs.auto_timestamp_s = define { type = "integer", timestamp = true, auto = true }
typedefs.auto_timestamp_ms = define { type = "number", timestamp = true, auto = true }
typedefs.no_route = define { type = "foreign", reference = "routes", eq = null }
typedefs.no_service = define { type = "foreign", reference = "services", eq = null }
typedefs.no_consumer = define { type = "foreign", reference = "consumers", eq = null }
typedefs.no_consumer_group = define { type = "foreign", reference = "consumer_groups", eq = null }
typedefs.name = define { type = "string", unique = true, custom_validator = validate_name }
typedefs.utf8_name = define { type = "string", unique = true, custom_validator = validate_utf8_name }
typedefs.sni = define { type = "string", custom_validator = validate_sni }
typedefs.redis_server_name = define { type = "string", custom_validator = validate_sni }
typedefs.certificate = define { type = "string", custom_validator = validate_certificate }
typedefs.key = define { type = "string", custom_validator = validate_key }
typedefs.tag = define { type = "string", required = true, custom_validator = validate_tag }
typedefs.tags = define { type = "set", elements = typedefs.tag }
typedefs.capability = define { type = "string" }
typedefs.protocols = define { type = "set", required = true, default = HTTP_PROTOCOLS, elements = typedefs.protocol }
typedefs.protocols_http = define {
  type = "set",
  required = true,
  default = HTTP_PROTOCOLS,
  elements = { type = "string", one_of = HTTP_PROTOCOLS },
}

local function endpoints()
  return {
    type = "set",
    elements = {
      type = "record",
      fields = { { ip = typedefs.ip_or_cidr }, { port = typedefs.port } },
      entity_checks = { { at_least_one_of = { "ip", "port" } } },
    },
  }
end
typedefs.sources = define(endpoints())
typedefs.no_sources = typedefs.sources { eq = null }
typedefs.destinations = define(endpoints())
typedefs.no_destinations = typedefs.destinations { eq = null }

typedefs.methods = define { type = "set", elements = typedefs.http_method }
typedefs.no_methods = typedefs.methods { eq = null }

typedefs.hosts = define {
  type = "array",
  elements = {
    type = "string",
    match_all = { { pattern = "^[^*]*%*?[^*]*$", err = "invalid wildcard: must have at most one wildcard" } },
    match_any = {
      patterns = { "^%*%.", "%.%*$", "^[^*]*$" },
      err = "invalid wildcard: must be placed at leftmost or rightmost label",
    },
    custom_validator = function(host)
      return validate_host_with_optional_port((gsub(host, "%*", "abc")))
    end,
  },
}
typedefs.no_hosts = typedefs.hosts { eq = null }

typedefs.router_path = define {
  type = "string",
  match_any = { patterns = { "^/", "^~/" }, err = "should start with: / (fixed path) or ~/ (regex path)" },
  match_none = { { pattern = "//", err = "must not have empty segments" } },
  custom_validator = validate_router_path,
}
typedefs.router_paths = define { type = "array", elements = typedefs.router_path }
typedefs.paths = typedefs.router_paths
typedefs.no_paths = typedefs.router_paths { eq = null }

typedefs.headers = define {
  type = "map",
  keys = typedefs.header_name,
  values = { type = "array", elements = { type = "string" } },
}
typedefs.no_headers = typedefs.headers { eq = null }

typedefs.semantic_version = define {
  type = "string",
  match_any = {
    patterns = { "^%d+[%.%d]*$", "^%d+[%.%d]*%-?.*$" },
    err = "invalid version number: must be in format of X.Y.Z",
  },
  match_none = { { pattern = "%.%.", err = "must not have empty version segments" } },
}

typedefs.pem = define {
  type = "record",
  required = false,
  fields = {
    { private_key = { type = "string", required = false, referenceable = true, encrypted = true } },
    { public_key = { type = "string", required = false, referenceable = true } },
  },
  entity_checks = { { at_least_one_of = { "private_key", "public_key" } } },
  custom_validator = validate_pem_keys,
}

local jwk_fields = {}
for _, name in ipairs({ "issuer", "kty", "use", "key_ops", "alg", "kid", "x5u", "x5c", "x5t", "x5t#S256",
                        "k", "x", "y", "crv", "n", "e", "d", "p", "q", "dp", "dq", "qi", "oth", "r", "t" }) do
  local def = { type = "string", required = false }
  if name == "key_ops" or name == "x5c" then
    def = { type = "array", required = false, elements = { type = "string", required = false } }
  elseif name == "kid" then
    def = { type = "string", required = true }
  end
  jwk_fields[#jwk_fields + 1] = { [name] = def }
end
typedefs.jwk = define { type = "record", required = false, fields = jwk_fields, custom_validator = validate_jwk }

typedefs.queue = define {
  type = "record",
  fields = {
    { max_batch_size = { type = "integer", default = 1, between = { 1, 1000000 } } },
    { max_coalescing_delay = { type = "number", default = 1, between = { 0, 3600 } } },
    { max_entries = { type = "integer", default = 10000, between = { 1, 1000000 } } },
    { max_bytes = { type = "integer" } },
    { max_retry_time = { type = "number", default = 60 } },
    { initial_retry_delay = { type = "number", default = 0.01, between = { 0.001, 1000000 } } },
    { max_retry_delay = { type = "number", default = 60, between = { 0.001, 1000000 } } },
    { concurrency_limit = { type = "integer", default = 1, one_of = { -1, 1 } } },
  },
}

typedefs.propagation = define {
  type = "record",
  fields = {
    { extract = { type = "array", elements = { type = "string", one_of = TRACE_FORMATS } } },
    { clear = { type = "array", elements = { type = "string", custom_validator = validate_header_name } } },
    { inject = { type = "array", elements = { type = "string", one_of = INJECT_FORMATS } } },
    { default_format = { type = "string", one_of = INJECTORS, required = true } },
  },
}

typedefs.lua_code = define {
  type = "map",
  keys = { type = "string", len_min = 1 },
  values = { type = "string", len_min = 1, custom_validator = validate_lua_expression },
}

typedefs.regex_or_plain_pattern = define { type = "string" }

typedefs.ttl = define { type = "number", between = { 0, 1e8 } }

return setmetatable(typedefs, {
  __index = function(_, k)
    error("schema typedef error: definition " .. tostring(k) .. " does not exist", 2)
  end,
})
