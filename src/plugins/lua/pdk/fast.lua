-- The PDK's hottest calls through LuaJIT's FFI (see fast.rs): compiled plugin code calls the
-- Rust functions inline instead of leaving the trace for a Lua C function. Each constructor
-- takes the general function (an mlua one) and returns the function the PDK hands out; a call
-- the fast path does not take (another type, an invalid name, text that is not UTF-8, no
-- request, a value too long for the buffer) goes to the general function, which answers or
-- raises exactly as before.
--
-- Called once per VM with the `ffi` library (no plugin reaches it), `register` and the Rust
-- functions' addresses.
local ffi, register, get_header_fn, service_set_fn, response_set_fn = ...
local type = type
local cast, str = ffi.cast, ffi.string

-- name text -> the address of its header name made by fast.rs (a cdata pointer), or false
local names, made, MAX_NAMES = {}, 0, 256

-- The handle of `name`'s header name, or nil for the general path.
local function handle(name)
  local h = names[name]
  if h == nil then
    if made >= MAX_NAMES then
      return nil
    end
    -- As a cdata pointer: the JIT does not convert a light userdata to a pointer argument.
    h = register(name)
    h = h and cast("const void *", h) or false
    names[name] = h
    made = made + 1
  end
  return h or nil
end

-- Header values are copied into this buffer, then into a Lua string at once: no pointer into
-- the request outlives the call that made it.
local CAP = 8192
local buf = ffi.new("uint8_t[?]", CAP)

local ABSENT = -1
local get_header = cast("int (*)(const void *, uint8_t *, size_t)", get_header_fn)
local setter = "int (*)(const void *, const char *, size_t)"

local M = {}

function M.request_get_header(general)
  return function(name)
    local h = type(name) == "string" and handle(name)
    if h then
      local n = get_header(h, buf, CAP)
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
      if type(value) == "string" then
        local h = type(name) == "string" and handle(name)
        if h and fn(h, value, #value) == 0 then
          return
        end
      end
      return general(name, value)
    end
  end
end

M.service_set_header = set_header(service_set_fn)
M.response_set_header = set_header(response_set_fn)

return M
