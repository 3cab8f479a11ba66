-- Read-only views of the tables every plugin of a VM shares: kong, ngx and the modules that
-- `require` returns (see readonly.rs). Runs once per VM with the real base functions.
--
-- A table with fields becomes an empty proxy whose metatable reads from a hidden copy (its
-- nested tables frozen the same way), refuses writes, iterates with pairs/ipairs/# as the
-- original would (Lua 5.2 metamethods) and hides itself from getmetatable/setmetatable. The
-- original's own metamethods keep working: a dynamic __index (ngx.status, ngx.ctx) is asked for
-- keys the copy lacks, a dynamic __newindex receives writes of exactly those keys, __call and
-- __tostring are forwarded.
--
-- An empty table is frozen in place instead, so that its identity stays: markers such as
-- cjson.array_mt, and request-bound tables whose metamethods do everything (ngx.var,
-- ngx.header, ngx.arg, kong.ctx). Its metatable is locked and, if it had no __newindex, given
-- one that refuses.
local setmetatable, getmetatable, rawget, next, type, tostring, error, ipairs =
  setmetatable, getmetatable, rawget, next, type, tostring, error, ipairs

local function refuse(name)
  return function(_, k)
    error(("Cannot modify %s.%s. Protected by the sandbox."):format(name, tostring(k)), 2)
  end
end

local freeze

-- frozen proxy -> the hidden copy of its fields (for the per-plugin ngx views of overlay.lua)
local VIEWS = setmetatable({}, { __mode = "k" })

local function freeze_in_place(t, name)
  local mt = getmetatable(t)
  if mt == nil then
    setmetatable(t, { __newindex = refuse(name), __metatable = false })
  elseif type(mt) == "table" then
    if rawget(mt, "__newindex") == nil then
      mt.__newindex = refuse(name)
    end
    mt.__metatable = false
  end
  return t
end

freeze = function(t, name, seen)
  local done = seen[t]
  if done then
    return done
  end
  if next(t) == nil then
    seen[t] = t
    return freeze_in_place(t, name)
  end
  local view, proxy = {}, {}
  seen[t] = proxy
  VIEWS[proxy] = view
  for k, v in next, t do
    if type(v) == "table" then
      v = freeze(v, name .. "." .. tostring(k), seen)
    end
    view[k] = v
  end
  local pmt = {
    __index = view,
    __newindex = refuse(name),
    __metatable = false,
    __pairs = function()
      return next, view, nil
    end,
    __ipairs = function()
      return ipairs(view)
    end,
    __len = function()
      return #view
    end,
  }
  local mt = getmetatable(t)
  if type(mt) == "table" then
    local index, newindex = rawget(mt, "__index"), rawget(mt, "__newindex")
    if type(index) == "function" then
      setmetatable(view, {
        __index = function(_, k)
          return index(t, k)
        end,
      })
      if type(newindex) == "function" then
        local deny = pmt.__newindex
        pmt.__newindex = function(p, k, v)
          if rawget(view, k) == nil and index(t, k) ~= nil then
            return newindex(t, k, v)
          end
          return deny(p, k)
        end
      end
    end
    for event, f in next, mt do
      if type(f) == "function" and event ~= "__index" and event ~= "__newindex" then
        pmt[event] = function(_, ...)
          return f(t, ...)
        end
      end
    end
  end
  return setmetatable(proxy, pmt)
end

-- A deep copy (for data modules handed out fresh to each requirer); metatables are shared.
local function copy(t, seen)
  seen = seen or {}
  if seen[t] then
    return seen[t]
  end
  local c = {}
  seen[t] = c
  for k, v in next, t do
    if type(v) == "table" then
      v = copy(v, seen)
    end
    c[k] = v
  end
  local mt = getmetatable(t)
  if type(mt) == "table" then
    setmetatable(c, mt)
  end
  return c
end

local function view_of(t)
  return VIEWS[t]
end

return freeze, copy, view_of
