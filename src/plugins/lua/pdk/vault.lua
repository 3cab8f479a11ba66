-- kong.vault with Kong's env vault: references `{vault://env/<resource>[/<key>][?prefix=P][#2]}`
-- resolve to environment variables read once at startup (name: the prefix and resource,
-- upper-cased, dashes to underscores; version 2 adds _PREVIOUS; a key picks a field of a JSON
-- object). Other vaults need Kong's database and are refused. Called once per VM with the
-- `vault` table to fill, ngx, cjson.safe, the environment lookup and the operator's prefix.
local vault, ngx, cjson, env, base_prefix = ...

local type, tostring, tonumber, pairs, error = type, tostring, tonumber, pairs, error
local unescape, decode_args = ngx.unescape_uri, ngx.decode_args

local function is_reference(ref)
  return type(ref) == "string" and ref:sub(1, 9) == "{vault://" and ref:sub(-1) == "}"
end

local function parse(ref)
  if not is_reference(ref) then
    return nil, "not a reference [" .. tostring(ref) .. "]"
  end
  local url = ref:sub(2, -2)
  local rest = url:match("^vault:(.*)$")
  local name, tail = rest:match("^//([^/?#]*)(.*)$")
  if not name then
    return nil, "reference is not url (" .. url .. ") [" .. ref .. "]"
  end
  if name == "" then
    return nil, "reference url is missing host [" .. ref .. "]"
  end
  local version
  local hash = tail:find("#", 1, true)
  if hash then
    version = tail:sub(hash + 1)
    tail = tail:sub(1, hash - 1)
    if not tonumber(version) then
      return nil, "reference url has invalid version [" .. ref .. "]"
    end
    version = tonumber(version)
  end
  local query
  local q = tail:find("?", 1, true)
  if q then
    query = tail:sub(q + 1)
    tail = tail:sub(1, q - 1)
  end
  if tail == "" then
    return nil, "reference url is missing path [" .. ref .. "]"
  end
  if tail == "/" then
    return nil, "reference url has empty path [" .. ref .. "]"
  end
  local segments = {}
  for s in tail:sub(2):gmatch("[^/]+") do
    segments[#segments + 1] = unescape(s)
  end
  if #segments == 0 then
    return nil, "reference url has invalid path [" .. ref .. "]"
  end
  local resource, key
  if #segments == 1 or tail:sub(-1) == "/" then
    resource = table.concat(segments, "/")
  else
    key = segments[#segments]
    segments[#segments] = nil
    resource = table.concat(segments, "/")
  end
  local config
  if query and query ~= "" then
    config = decode_args(query)
  end
  return { name = name, resource = resource, key = key, config = config, version = version }
end

local function fail(why)
  return nil, "could not get value from external vault (" .. why .. ")"
end

function vault.is_reference(ref)
  return is_reference(ref)
end

function vault.parse_reference(ref)
  return parse(ref)
end

function vault.get(ref)
  local r, err = parse(ref)
  if not r then
    return nil, err
  end
  if r.name ~= "env" then
    return nil, "could not find vault (" .. r.name .. "): only the env vault is available (DB-less)"
  end
  local prefix = r.config and r.config.prefix
  if type(prefix) ~= "string" then
    prefix = base_prefix or ""
  end
  local name = (prefix .. r.resource):gsub("-", "_"):upper()
  if r.version == 2 then
    name = name .. "_PREVIOUS"
  end
  local value = env(name)
  if value == nil then
    return fail("no value found")
  end
  if not r.key then
    return value
  end
  local json, jerr = cjson.decode(value)
  if type(json) ~= "table" then
    return fail("could not get subfield value: unable to json decode value (" .. value .. "): "
      .. tostring(jerr or "not an object"))
  end
  local field = json[r.key]
  if field == nil then
    return fail("could not get subfield value: subfield " .. r.key .. " not found in JSON secret")
  end
  if type(field) ~= "string" then
    return fail("could not get subfield value: unexpected " .. type(field)
      .. " value in JSON secret for subfield " .. r.key)
  end
  return field
end

-- Replaces, in place, the fields that `$refs` maps to references with their values.
local function update(options)
  if type(options) ~= "table" then
    return options
  end
  for k, v in pairs(options) do
    if k ~= "$refs" and type(v) == "table" then
      update(v)
    end
  end
  local refs = options["$refs"]
  if type(refs) == "table" then
    for field, ref in pairs(refs) do
      if type(ref) == "string" then
        options[field] = vault.get(ref) or ""
      elseif type(ref) == "table" then
        local t = type(options[field]) == "table" and options[field] or {}
        for k, r in pairs(ref) do
          t[k] = vault.get(r) or ""
        end
        options[field] = t
      end
    end
  end
  return options
end

vault.update = update

function vault.try(callback, options)
  if type(callback) ~= "function" then
    error("callback must be a function", 2)
  end
  return callback(update(options))
end

function vault.flush() end
