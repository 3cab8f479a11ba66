-- kong.log as Kong's PDK shapes it, over the Rust log functions of pdk/client.rs: facilities
-- (`kong.log.new`), formats with %namespace/%file_src/%line_src/%func_name/%message,
-- `inspect` (pretty-printed, switchable), `deprecation`, and the per-request serializer edits
-- (`set_serialize_value`, `serialize`).
--
-- A plugin's `set_format`/`inspect.off` on the shared `kong.log` apply to that plugin only
-- (Kong gives each plugin its own namespaced facility); `internal.plugin_name` says whose call
-- it is. The default format writes the message alone: the plugin, its route and the request
-- are fields of the structured log line.
local kong, ngx, internal = ...

local type, tostring, select, pairs, ipairs, error, next = type, tostring, select, pairs, ipairs, error, next
local setmetatable, rawget, pcall = setmetatable, rawget, pcall
local concat, sort, insert = table.concat, table.sort, table.insert
local fmt, find, sub, rep, gsub, byte = string.format, string.find, string.sub, string.rep, string.gsub, string.byte

local log = kong.log
local LEVELS = { "debug", "info", "notice", "warn", "err", "crit", "alert", "emerg" }
local emit = {}
for _, level in ipairs(LEVELS) do
  emit[level] = log[level]
end

-- inspect -------------------------------------------------------------------------------------

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta == tb and (ta == "string" or ta == "number") then
    return a < b
  end
  return ta < tb
end

local function is_identifier(s)
  return type(s) == "string" and find(s, "^[%a_][%w_]*$") ~= nil
end

-- A readable rendering of a value, in the manner of kikito's inspect.lua (which Kong uses):
-- the sequence part first, then the other keys sorted, two spaces per level.
local function inspect(value)
  local out, seen = {}, {}
  local function put(v, depth)
    local t = type(v)
    if t == "string" then
      out[#out + 1] = fmt("%q", v)
    elseif t ~= "table" then
      out[#out + 1] = tostring(v)
    elseif seen[v] then
      out[#out + 1] = "<cycle>"
    else
      seen[v] = true
      local n = #v
      local keys = {}
      for k in pairs(v) do
        if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
          keys[#keys + 1] = k
        end
      end
      sort(keys, key_order)
      if n == 0 and #keys == 0 then
        out[#out + 1] = "{}"
      else
        out[#out + 1] = "{"
        local pad = rep("  ", depth + 1)
        for i = 1, n do
          out[#out + 1] = (i == 1 and " " or ", ")
          put(v[i], depth + 1)
        end
        for i, k in ipairs(keys) do
          out[#out + 1] = ((i == 1 and n == 0) and "\n" or ",\n") .. pad
          if is_identifier(k) then
            out[#out + 1] = k
          else
            out[#out + 1] = "["
            put(k, depth + 1)
            out[#out + 1] = "]"
          end
          out[#out + 1] = " = "
          put(v[k], depth + 1)
        end
        out[#out + 1] = #keys > 0 and ("\n" .. rep("  ", depth) .. "}") or " }"
      end
      seen[v] = nil
    end
  end
  put(value, 0)
  return concat(out)
end

-- Formats --------------------------------------------------------------------------------------

-- Splits a format into literal pieces and modifiers (`%%name` stays literal).
local MODIFIERS = { namespace = true, file_src = true, line_src = true, func_name = true, message = true }

local function parse(format, namespace)
  local pieces, i, literal = {}, 1, {}
  while i <= #format do
    local s, e, name = find(format, "%%([a-z_]+)", i)
    if not s then
      literal[#literal + 1] = sub(format, i)
      break
    end
    if s > 1 and byte(format, s - 1) == 37 then -- "%%name": not a modifier
      literal[#literal + 1] = sub(format, i, e)
    elseif MODIFIERS[name] then
      literal[#literal + 1] = sub(format, i, s - 1)
      pieces[#pieces + 1] = concat(literal)
      literal = {}
      pieces[#pieces + 1] = name == "namespace" and (namespace or "") or { name }
    else
      literal[#literal + 1] = sub(format, i, e)
    end
    i = e + 1
  end
  pieces[#pieces + 1] = concat(literal)
  return pieces
end

local function join(sep, to_string, ...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = to_string((select(i, ...)))
  end
  return concat(parts, sep)
end

-- The line for a format; `depth` is how far up the stack the plugin's call is.
local function render(pieces, msg, depth)
  local out, where = {}, nil
  for i, p in ipairs(pieces) do
    if type(p) == "table" then
      if p[1] == "message" then
        out[i] = msg
      else
        if not where then
          local src, line, name = internal.where(depth)
          where = { file_src = src or "?", line_src = line and tostring(line) or "?", func_name = name or "?" }
        end
        out[i] = where[p[1]]
      end
    else
      out[i] = p
    end
  end
  return concat(out)
end

-- A facility: level functions, set_format, inspect, deprecation. `shared` facilities (the
-- global kong.log) keep their format and inspect switch per plugin.
local function facility(self, namespace, format, shared)
  local formats = {}
  local function key()
    return shared and internal.plugin_name() or 1
  end
  local default_format = format

  function self.set_format(f)
    if f ~= nil and type(f) ~= "string" then
      error("format must be a string", 2)
    end
    formats[key()] = parse(f or default_format or "%message", namespace)
  end

  local function writer(level, depth)
    return function(...)
      local pieces = next(formats) and formats[key()]
      if not pieces and not default_format then
        return emit[level](...)
      end
      pieces = pieces or parse(default_format, namespace)
      return emit[level](render(pieces, join("", tostring, ...), depth))
    end
  end

  -- Stack levels seen from internal.where: 1 render, 2 the writer, 3 its caller.
  for _, level in ipairs(LEVELS) do
    self[level] = writer(level, 3)
  end

  -- kong.log.deprecation(msg, { after = ..., removal = ..., deprecated = ... })
  local warn = writer("warn", 4)
  self.deprecation = function(...)
    local n = select("#", ...)
    local opts = n > 1 and select(n, ...) or nil
    if type(opts) == "table" then
      n = n - 1
    else
      opts = nil
    end
    local msg = join("", tostring, select(1, ...))
    if n == 0 then msg = "" end
    if opts then
      local notes = {}
      if opts.after then notes[#notes + 1] = "deprecated after " .. tostring(opts.after) end
      if opts.removal then notes[#notes + 1] = "scheduled for removal in " .. tostring(opts.removal) end
      if #notes > 0 then msg = msg .. " (" .. concat(notes, ", ") .. ")" end
    end
    return warn(msg)
  end

  local disabled = {}
  local ns = namespace or "kong"
  local inspect_t = {}
  function inspect_t.on()
    disabled[key()] = nil
  end
  function inspect_t.off()
    disabled[key()] = true
  end
  local WRAP = 120
  setmetatable(inspect_t, {
    __call = function(_, ...)
      if next(disabled) and disabled[key()] then
        return
      end
      local src, line, name = internal.where(2)
      local head = fmt("%s:%s:%s [%s]", src or "?", name or "?", tostring(line or "?"), ns)
      local body = join(" ", inspect, ...)
      emit.notice(head .. rep("-", WRAP - #head) .. "+")
      for l in (body .. "\n"):gmatch("([^\n]*)\n") do
        while #l > WRAP do
          emit.notice("|" .. sub(l, 1, WRAP) .. "|")
          l = sub(l, WRAP + 1)
        end
        emit.notice("|" .. l .. rep(" ", WRAP - #l) .. "|")
      end
      emit.notice("+" .. rep("-", WRAP) .. "+")
    end,
  })
  self.inspect = inspect_t
  return self
end

local function new_log(namespace, format)
  if type(namespace) ~= "string" then
    error("namespace must be a string", 2)
  end
  if namespace == "" then
    error("namespace cannot be an empty string", 2)
  end
  if format ~= nil then
    if type(format) ~= "string" then
      error("format must be a string if specified", 2)
    end
    if format == "" then
      error("format cannot be an empty string if specified", 2)
    end
  end
  local self = facility({}, namespace, format or "%file_src:%line_src [%namespace] %message", false)
  self.set_serialize_value = log.set_serialize_value
  self.serialize = log.serialize
  return setmetatable(self, { __call = function(t, ...) return t.notice(...) end })
end

facility(log, nil, nil, true)
log.new = new_log
setmetatable(log, { __call = function(_, ...) return log.notice(...) end })

-- Serializer edits --------------------------------------------------------------------------------

local MODES = { set = true, add = true, replace = true }

-- "a.b\.c" -> { "a", "b.c" }
local function split_key(key)
  local parts, cur, i = {}, {}, 1
  while i <= #key do
    local c = sub(key, i, i)
    if c == "\\" and sub(key, i + 1, i + 1) == "." then
      cur[#cur + 1] = "."
      i = i + 2
    elseif c == "." then
      parts[#parts + 1] = concat(cur)
      cur = {}
      i = i + 1
    else
      cur[#cur + 1] = c
      i = i + 1
    end
  end
  parts[#parts + 1] = concat(cur)
  return parts
end

local function valid_value(v, visited)
  local t = type(v)
  if v == nil or t == "number" or t == "string" or t == "boolean" then
    return true
  end
  if t ~= "table" or visited[v] then
    return false
  end
  visited[v] = true
  for k, item in pairs(v) do
    if not valid_value(k, visited) or not valid_value(item, visited) then
      return false
    end
  end
  visited[v] = nil
  return true
end

function log.set_serialize_value(key, value, options)
  if type(key) ~= "string" then
    error("key must be a string", 2)
  end
  local mode = options and options.mode or "set"
  if not MODES[mode] then
    error("mode must be 'set', 'add' or 'replace'", 2)
  end
  local ctx = ngx.ctx
  local list = rawget(ctx, "serialize_values")
  if not list then
    list = {}
    ctx.serialize_values = list
  end
  list[#list + 1] = { key = key, value = value, mode = mode }
  -- The log plugins written in Rust see the values that convert to JSON.
  pcall(internal.add_serialize_value, split_key(key), value, mode)
end

local function apply(root, edits)
  for _, edit in ipairs(edits) do
    if not valid_value(edit.value, {}) then
      error("value must be nil, a number, string, boolean or a non-self-referencial table "
        .. "containing numbers, string and booleans", 3)
    end
    local path = split_key(edit.key)
    local node, ok = root, true
    for i = 1, #path - 1 do
      local k = path[i]
      local nxt = node[k]
      if nxt == nil then
        if edit.mode == "replace" then
          ok = false
          break
        end
        nxt = {}
        node[k] = nxt
      elseif type(nxt) ~= "table" then
        error("The key '" .. edit.key .. "' could not be used as a serialize value. "
          .. "Value path '" .. k .. "' is of type " .. type(nxt) .. " and not a table", 3)
      end
      node = nxt
    end
    if ok then
      local leaf = path[#path]
      if edit.mode == "set" or (edit.mode == "add" and node[leaf] == nil)
        or (edit.mode == "replace" and node[leaf] ~= nil) then
        node[leaf] = edit.value
      end
    end
  end
  return root
end

-- Kong's serializer reads the request headers through ngx.req.get_headers: a plugin that
-- replaced it in its own view of ngx gets its replacement's answer (redacted as Kong does).
local real_get_headers = ngx.req.get_headers
local function own_request_headers(root)
  local own = internal.plugin_ngx()
  local get_headers = own and own.req.get_headers
  if get_headers == nil or get_headers == real_get_headers or type(root.request) ~= "table" then
    return
  end
  local headers = get_headers()
  if type(headers) ~= "table" then
    return
  end
  for _, name in ipairs({ "authorization", "proxy-authorization" }) do
    if headers[name] ~= nil then
      headers[name] = "REDACTED"
    end
  end
  root.request.headers = headers
end

local serialize_base = log.serialize
function log.serialize()
  local root = serialize_base()
  own_request_headers(root)
  local edits = rawget(ngx.ctx, "serialize_values")
  if edits then
    apply(root, edits)
  end
  return root
end
