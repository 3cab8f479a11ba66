-- The nginx+Lua peer's "plugins": each does what the gateway's Kong-style bench plugin does
-- (kong-plugin-handler.lua), written against OpenResty's API as Kong's PDK does it underneath:
-- kong.request.get_header reads ngx.var.http_*, kong.service.request.set_header is
-- ngx.req.set_header, kong.response.set_header writes ngx.header.
local M = { plugins = {} }

local function new_plugin()
  local P = {}
  function P.access()
    local v = ngx.var.http_x_in
    ngx.req.set_header("x-up", v or "none")
  end
  function P.header_filter()
    ngx.header["x-out"] = "1"
  end
  return P
end

function M.init(n)
  for i = 1, n do
    M.plugins[i] = new_plugin()
  end
end

function M.access()
  local ps = M.plugins
  for i = 1, #ps do
    ps[i].access()
  end
end

function M.header_filter()
  local ps = M.plugins
  for i = 1, #ps do
    ps[i].header_filter()
  end
end

return M
