-- The nginx+Lua peer of the callout scenarios (kong-callout-handler.lua): the same handler
-- code against OpenResty's API. resty.redis is Debian's lua-nginx-redis (OpenResty's module,
-- which Debian installs as `nginx.redis`);
-- resty.http is the gateway's own (src/plugins/lua/io/http.lua, loaded by resty/http.lua in
-- the bench directory), as Debian packages none.
local M = {}
local kind, port, url
local redis = require "nginx.redis"
local http = require "resty.http"

function M.init(k, p)
  kind, port = k, p
  url = "http://127.0.0.1:" .. port .. "/callout"
end

function M.access()
  local v
  if kind == "redis" then
    local red = redis:new()
    red:set_timeout(1000)
    local ok, err = red:connect("127.0.0.1", port)
    if not ok then
      return ngx.exit(500)
    end
    v = red:get("bench-key")
    red:set_keepalive(10000, 64)
  else
    local res = http.new():request_uri(url)
    v = res and res.body == "ok\n" and "hello" or "bad"
  end
  ngx.req.set_header("x-up", v or "none")
end

function M.header_filter()
  ngx.header["x-out"] = "1"
end

return M
