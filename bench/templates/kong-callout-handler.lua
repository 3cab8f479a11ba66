-- The callout scenarios' plugin: each request asks Redis (one GET with resty.redis over a
-- kept-alive connection) or an HTTP service (one request_uri with resty.http) before it is
-- proxied, and passes what it got upstream. nginx_callout.lua is the same for nginx+Lua.
local P = {PRIORITY = 1000, VERSION = "1.0.0"}
local kind, port = "@KIND@", @PORT@
local redis = require "resty.redis"
local http = require "resty.http"
local url = "http://127.0.0.1:" .. port .. "/callout"

function P:access(conf)
  local v
  if kind == "redis" then
    local red = redis:new()
    red:set_timeout(1000)
    local ok, err = red:connect("127.0.0.1", port)
    if not ok then
      return kong.response.exit(500, { message = err })
    end
    v = red:get("bench-key")
    red:set_keepalive(10000, 64)
  else
    local res = http.new():request_uri(url)
    v = res and res.body == "ok\n" and "hello" or "bad"
  end
  kong.service.request.set_header("x-up", v or "none")
end

function P:header_filter(conf)
  kong.response.set_header("x-out", "1")
end

return P
