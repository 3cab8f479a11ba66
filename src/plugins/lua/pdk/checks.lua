-- Argument checks shared by the Lua layers of the PDK (surface.lua, response.lua), with
-- Kong's messages. Errors are raised at level 3: the caller of the PDK function that called
-- the check.
local type, tostring, ipairs, pairs, error = type, tostring, ipairs, pairs, error
local fmt, lower, floor, huge = string.format, string.lower, math.floor, math.huge

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

-- Writes a header whose value may be an array, through a PDK's Rust setters: `replace` clears
-- the header first (set_header), otherwise the values are added (add_header).
local function put_header(name, value, replace, set, add, clear)
  if type(value) ~= "table" then
    return (replace and set or add)(name, normalize(value))
  end
  if replace then
    clear(name)
  end
  for _, v in ipairs(normalize(value)) do
    add(name, v)
  end
end

local function is_transfer_encoding(name)
  if type(name) ~= "string" or #name ~= 17 then -- most names: no lowercased copy
    return false
  end
  local l = lower(name)
  return l == "transfer-encoding" or l == "transfer_encoding"
end

-- `level` defaults to 3 (the caller of the PDK function that called the check).
local function check_max(value, what, max, level)
  if value == nil then
    return
  end
  level = level or 3
  if type(value) ~= "number" then
    error(what .. " must be a number", level)
  elseif value < 1 then
    error(what .. " must be >= 1", level)
  elseif value > max then
    error(what .. " must be <= " .. max, level)
  end
end

return {
  is_integer = is_integer,
  validate_header = validate_header,
  validate_headers = validate_headers,
  normalize = normalize,
  put_header = put_header,
  is_transfer_encoding = is_transfer_encoding,
  check_max = check_max,
}
