-- The PDK's hottest calls through LuaJIT's FFI (see fast.rs): compiled plugin code calls the
-- Rust functions inline instead of leaving the trace for a Lua C function. Each constructor
-- takes the general function (an mlua one) and returns the function the PDK hands out; a call
-- the fast path does not take (another type, text that is not UTF-8, an unknown name, no
-- request, a value too long for the buffer) goes to the general function, which answers or
-- raises exactly as before.
--
-- Called once per VM with the `ffi` library (no plugin reaches it) and the Rust functions'
-- addresses.
local ffi, get_header_fn, service_set_fn, response_set_fn = ...
local type = type
local cast, str = ffi.cast, ffi.string

-- Header values are copied into this buffer, then into a Lua string at once: no pointer into
-- the request outlives the call that made it.
local CAP = 8192
local buf = ffi.new("uint8_t[?]", CAP)

local GENERAL, ABSENT = -2, -1
local get_header = cast("int (*)(const char *, size_t, uint8_t *, size_t)", get_header_fn)
local setter = "int (*)(const char *, size_t, const char *, size_t)"

local M = {}

function M.request_get_header(general)
  return function(name)
    if type(name) == "string" then
      local n = get_header(name, #name, buf, CAP)
      if n >= 0 then
        return str(buf, n)
      elseif n == ABSENT then
        return nil
      end
    end
    return general(name)
  end
end

local function set_header(fn)
  fn = cast(setter, fn)
  return function(general)
    return function(name, value)
      if type(name) == "string" and type(value) == "string"
        and fn(name, #name, value, #value) == 0 then
        return
      end
      return general(name, value)
    end
  end
end

M.service_set_header = set_header(service_set_fn)
M.response_set_header = set_header(response_set_fn)

assert(GENERAL < ABSENT)
return M
