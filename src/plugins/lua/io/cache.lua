-- kong.cache: Kong's node cache (mlcache) over the process-wide shared level of cache.rs.
-- Each VM keeps a first level here (values as Lua values: repeated hits return the same
-- table, as in Kong); it is emptied whenever the shared level's epoch moves (an invalidation
-- or a purge anywhere in the process). Called once per VM with the Rust functions and wait.lua's
-- module; returns the `kong.cache` object.
local rs, io = ...

local type, error, tostring, pcall, select, pairs = type, error, tostring, pcall, select, pairs
local now = rs.now
local finish, can_wait = io.finish, io.can_wait

-- Most entries a VM keeps in its first level (it is emptied when full).
local L1_MAX = 10000

local l1, l1_count, l1_epoch = {}, 0, -1
local NEGATIVE = {}

local function l1_check()
  local epoch = rs.epoch()
  if epoch ~= l1_epoch then
    l1, l1_count, l1_epoch = {}, 0, epoch
  end
end

local function l1_set(key, value, ttl)
  if l1_count >= L1_MAX then
    l1, l1_count = {}, 0
  end
  if l1[key] == nil then
    l1_count = l1_count + 1
  end
  if value == nil then
    value = NEGATIVE
  end
  l1[key] = { value, ttl > 0 and now() + ttl or nil }
end

local function check_opts(opts)
  if opts == nil then
    return 0, 0
  end
  if type(opts) ~= "table" then
    error("opts must be a table", 3)
  end
  local ttl, neg_ttl = opts.ttl, opts.neg_ttl
  for name, v in pairs({ ttl = ttl, neg_ttl = neg_ttl, resurrect_ttl = opts.resurrect_ttl }) do
    if type(v) ~= "number" then
      error("opts." .. name .. " must be a number", 3)
    end
    if v < 0 then
      error("opts." .. name .. " must be >= 0", 3)
    end
  end
  ttl = ttl or 0
  return ttl, neg_ttl or ttl
end

local cache = {}

-- Stores what a callback returned: `value` for `ttl` (its own third return value wins;
-- negative: returned but not cached).
local function store(key, value, ttl, neg_ttl, own_ttl)
  local t = value == nil and neg_ttl or ttl
  if type(own_ttl) == "number" then
    t = own_ttl
  end
  if t < 0 then
    return
  end
  rs.set(key, value, t)
  l1_set(key, value, t)
end

-- Runs the callback of a fill (the key's lock is held) and stores its value; `what` names the
-- operation in errors. Returns the value and the ttl used, or nil and the error.
local function fill(key, ttl, neg_ttl, what, cb, ...)
  local ok, value, err, own_ttl = pcall(cb, ...)
  if not ok then
    rs.unlock(key)
    return nil, "failed to " .. what .. " node cache: callback threw an error: " .. tostring(value)
  end
  if value == nil and err ~= nil then
    rs.unlock(key)
    return nil, "failed to " .. what .. " node cache: " .. tostring(err)
  end
  local stored, why = pcall(store, key, value, ttl, neg_ttl, own_ttl)
  rs.unlock(key)
  if not stored then
    error(why, 3)
  end
  if type(own_ttl) == "number" then
    return value, nil, own_ttl
  end
  return value, nil, value == nil and neg_ttl or ttl
end

function cache:get(key, opts, cb, ...)
  if type(key) ~= "string" then
    error("key must be a string", 2)
  end
  if cb ~= nil and type(cb) ~= "function" then
    error("callback must be nil or a function", 2)
  end
  l1_check()
  local hit = l1[key]
  if hit and (hit[2] == nil or hit[2] > now()) then
    local v = hit[1]
    if v == NEGATIVE then
      return nil, nil, 1
    end
    return v, nil, 1
  end
  local ttl, neg_ttl = check_opts(opts)
  -- Another request may be filling the key: wait for it (bounded), then read what it stored.
  for _ = 1, 3 do
    local found, value, left = rs.get(key)
    if found then
      l1_set(key, value, left)
      return value, nil, 2
    end
    if cb == nil then
      return nil, nil, -1
    end
    local ticket = rs.lock(key, can_wait())
    if not ticket then
      local v, err = fill(key, ttl, neg_ttl, "get from", cb, ...)
      if err then
        return nil, err
      end
      return v, nil, 3
    end
    local ended = finish(ticket)
    if not ended then
      return nil, "failed to get from node cache: could not acquire callback lock: timeout"
    end
  end
  return nil, "failed to get from node cache: could not acquire callback lock: timeout"
end

function cache:get_bulk(bulk, opts)
  if type(bulk) ~= "table" then
    error("bulk must be a table", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("opts must be a table", 2)
  end
  local n = bulk.n or #bulk / 4
  local res = { n = 3 * n }
  for i = 1, n do
    local at = (i - 1) * 4
    local key, o, cb, arg = bulk[at + 1], bulk[at + 2], bulk[at + 3], bulk[at + 4]
    if type(key) ~= "string" then
      error("key at index " .. (at + 1) .. " must be a string for operation " .. i .. " (got " .. type(key) .. ")", 2)
    end
    if type(cb) ~= "function" then
      error("callback at index " .. (at + 3) .. " must be a function for operation " .. i .. " (got " .. type(cb) .. ")", 2)
    end
    local v, err, lvl = self:get(key, o, cb, arg)
    res[3 * i - 2], res[3 * i - 1], res[3 * i] = v, err, lvl
  end
  return res
end

function cache:probe(key)
  if type(key) ~= "string" then
    error("key must be a string", 2)
  end
  local found, value, left = rs.get(key)
  if not found then
    return nil
  end
  return left, nil, value
end

function cache:invalidate_local(key)
  if type(key) ~= "string" then
    error("key must be a string", 2)
  end
  rs.invalidate(key)
end

-- One node: invalidating here is invalidating everywhere.
cache.invalidate = cache.invalidate_local

function cache:safe_set(key, value)
  if type(key) ~= "string" then
    error("key must be a string", 2)
  end
  if rs.set(key, value, 0, true) then
    return true
  end
  return false, "no memory"
end

function cache:renew(key, opts, cb, ...)
  if type(key) ~= "string" then
    error("key must be a string", 2)
  end
  if type(cb) ~= "function" then
    error("callback must be a function", 2)
  end
  local ttl, neg_ttl = check_opts(opts)
  local ticket = rs.lock(key, can_wait())
  if ticket and not finish(ticket) then
    return nil, "failed to renew key in node cache: could not acquire callback lock: timeout"
  end
  if ticket then
    rs.lock(key, false)
  end
  rs.invalidate(key)
  return fill(key, ttl, neg_ttl, "renew key in", cb, ...)
end

function cache:purge()
  rs.purge()
end

return cache
