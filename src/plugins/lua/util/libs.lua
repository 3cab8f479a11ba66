-- Requirable modules written in Lua: `resty.lrucache` (per VM, as in OpenResty: each worker
-- has its own), `ngx.re` (lua-resty-core's split and opt) and `kong.constants` (the data
-- fields plugins read). Called with the VM's base `ngx`; returns name -> module.
local ngx = ...

local type, pairs, setmetatable, tostring, error = type, pairs, setmetatable, tostring, error
local now = ngx.now

local modules = {}

-- resty.lrucache ------------------------------------------------------------------------------

do
  local lrucache = { _VERSION = "0.13" }
  local mt = { __index = {} }
  local methods = mt.__index

  -- A doubly linked list of nodes, most recently used first; nodes also in `map` by key.
  function lrucache.new(size)
    if type(size) ~= "number" or size < 1 then
      return nil, "size too small"
    end
    local head = {}
    head.prev, head.next = head, head
    return setmetatable({ size = size, n = 0, map = {}, head = head }, mt)
  end

  local function unlink(node)
    node.prev.next, node.next.prev = node.next, node.prev
  end

  local function push_front(self, node)
    local head = self.head
    node.next, node.prev = head.next, head
    head.next.prev = node
    head.next = node
  end

  function methods:get(key)
    local node = self.map[key]
    if not node then
      return nil
    end
    unlink(node)
    push_front(self, node)
    if node.expire and node.expire < now() then
      return nil, node.value, node.flags
    end
    return node.value, nil, node.flags
  end

  function methods:set(key, value, ttl, flags)
    local node = self.map[key]
    if node then
      unlink(node)
    else
      if self.n >= self.size then
        local last = self.head.prev
        unlink(last)
        self.map[last.key] = nil
        self.n = self.n - 1
      end
      node = { key = key }
      self.map[key] = node
      self.n = self.n + 1
    end
    node.value = value
    node.expire = (type(ttl) == "number" and ttl > 0) and (now() + ttl) or nil
    node.flags = type(flags) == "number" and flags or 0
    push_front(self, node)
  end

  function methods:delete(key)
    local node = self.map[key]
    if not node then
      return false
    end
    unlink(node)
    self.map[key] = nil
    self.n = self.n - 1
    return true
  end

  function methods:flush_all()
    self.map = {}
    self.n = 0
    self.head.prev, self.head.next = self.head, self.head
  end

  function methods:count()
    return self.n
  end

  function methods:capacity()
    return self.size
  end

  function methods:get_keys(max_count, res)
    res = res or {}
    local n, node = 0, self.head.next
    while node ~= self.head and (not max_count or max_count == 0 or n < max_count) do
      n = n + 1
      res[n] = node.key
      node = node.next
    end
    res[n + 1] = nil
    return res
  end

  modules["resty.lrucache"] = lrucache
end

-- ngx.re ------------------------------------------------------------------------------------------

do
  local re = {}
  local find = ngx.re.find
  local sub = string.sub

  -- split(subject, regex, opts, ctx, max, res): the pieces between matches (captures of the
  -- regex are kept, as in lua-resty-core).
  function re.split(subject, regex, opts, ctx, max, res)
    if type(subject) ~= "string" then
      subject = tostring(subject)
    end
    if max ~= nil and type(max) ~= "number" then
      error("max must be a number", 2)
    end
    if max and max <= 0 then
      max = nil
    end
    res = res or {}
    local n, pos, len = 0, 1, #subject
    ctx = ctx or {}
    ctx.pos = 1
    while not max or n < max - 1 do
      local from, to, err = find(subject, regex, opts, ctx)
      if err then
        return nil, err
      end
      if not from then
        break
      end
      if to < from then
        -- An empty match: split between characters, never looping in place.
        if from > len then
          break
        end
        to = from
        n = n + 1
        res[n] = sub(subject, pos, from)
        pos = from + 1
        ctx.pos = pos
      else
        n = n + 1
        res[n] = sub(subject, pos, from - 1)
        pos = to + 1
        ctx.pos = pos
      end
      if pos > len + 1 then
        break
      end
    end
    if pos <= len or n == 0 then
      n = n + 1
      res[n] = sub(subject, pos)
    end
    res[n + 1] = nil
    return res
  end

  -- opt("jit_stack_size", n) / opt("jit_max_stack_size", n): nothing to tune here.
  function re.opt(option, value)
    if option ~= "jit_stack_size" and option ~= "jit_max_stack_size" then
      error("unrecognized option name", 2)
    end
  end

  modules["ngx.re"] = re
end

-- kong.constants -------------------------------------------------------------------------------

do
  local protocols = { "grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp" }
  modules["kong.constants"] = {
    CJSON_MAX_PRECISION = 16,
    HEADERS = {
      HOST_OVERRIDE = "X-Host-Override",
      PROXY_LATENCY = "X-Kong-Proxy-Latency",
      RESPONSE_LATENCY = "X-Kong-Response-Latency",
      ADMIN_LATENCY = "X-Kong-Admin-Latency",
      UPSTREAM_LATENCY = "X-Kong-Upstream-Latency",
      UPSTREAM_STATUS = "X-Kong-Upstream-Status",
      CONSUMER_ID = "X-Consumer-ID",
      CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID",
      CONSUMER_USERNAME = "X-Consumer-Username",
      CREDENTIAL_IDENTIFIER = "X-Credential-Identifier",
      RATELIMIT_LIMIT = "X-RateLimit-Limit",
      RATELIMIT_REMAINING = "X-RateLimit-Remaining",
      CONSUMER_GROUPS = "X-Consumer-Groups",
      AUTHENTICATED_GROUPS = "X-Authenticated-Groups",
      FORWARDED_HOST = "X-Forwarded-Host",
      FORWARDED_PATH = "X-Forwarded-Path",
      FORWARDED_PREFIX = "X-Forwarded-Prefix",
      ANONYMOUS = "X-Anonymous-Consumer",
      REQUEST_ID = "X-Kong-Request-Id",
      VIA = "Via",
      SERVER = "Server",
    },
    RATELIMIT = { PERIODS = { "second", "minute", "hour", "day", "month", "year" } },
    PROTOCOLS = protocols,
    PROTOCOLS_WITH_SUBSYSTEM = {
      http = "http", https = "http", grpc = "http", grpcs = "http",
      tcp = "stream", tls = "stream", udp = "stream", tls_passthrough = "stream",
    },
    DATABASE = { DAO_MAX_TTL = 1e8 },
    DECLARATIVE_EMPTY_CONFIG_HASH = string.rep("0", 32),
    RESPONSE_SOURCE = {
      TYPES = { ERROR = "error", EXIT = "exit", SERVICE = "service" },
      NAMES = { error = "kong", exit = "kong", service = "upstream" },
    },
    LOG_LEVELS = {
      debug = ngx.DEBUG, info = ngx.INFO, notice = ngx.NOTICE, warn = ngx.WARN,
      error = ngx.ERR, crit = ngx.CRIT, alert = ngx.ALERT, emerg = ngx.EMERG,
      [ngx.DEBUG] = "debug", [ngx.INFO] = "info", [ngx.NOTICE] = "notice", [ngx.WARN] = "warn",
      [ngx.ERR] = "error", [ngx.CRIT] = "crit", [ngx.ALERT] = "alert", [ngx.EMERG] = "emerg",
    },
  }
end

return modules
