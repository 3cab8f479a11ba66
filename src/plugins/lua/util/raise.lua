-- Trampoline that turns a Rust callback's error into a plain Lua string error.
--
-- Errors returned by mlua callbacks reach Lua as userdata (a wrapped Rust error), but plugin code
-- written for OpenResty expects string errors: `pcall(cjson.decode, s)` followed by
-- `err:find(...)` or `"bad json: " .. err`. Raising a string needs `error()`, which only Lua code
-- can call, so each Rust function is wrapped once in this tiny closure: the Rust side returns
-- `marker, message, level` instead of failing, and `check` raises `error(message, level)`.
-- `return check(raw(...))` is a tail call, so level 2 in `check` names the plugin's own caller,
-- like `error(msg, 2)` inside an OpenResty Lua function; level 0 adds no position, like
-- luaL_error() raised from a C function.
local raw, marker, error = ...

local function check(first, ...)
  if first == marker then
    local msg, level = ...
    error(msg, level)
  end
  return first, ...
end

return function(...)
  return check(raw(...))
end
