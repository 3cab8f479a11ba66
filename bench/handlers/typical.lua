-- What a rate-limiting-like plugin does once per request with the PDK (PROFILE.md §0): run it
-- as the bench's Lua plugin with BENCH_HANDLER=bench/handlers/typical.lua. It keeps the bench's
-- x-up/x-out contract, so bench/run accepts it too.
local P = {PRIORITY = @PRIORITY@, VERSION = "1.0.0"}
function P:access(conf)
  local route = kong.router.get_route()
  local service = kong.router.get_service()
  local ip = kong.client.get_forwarded_ip()
  kong.log.debug("limiting ", ip, " on ", route and route.id)
  kong.ctx.shared.identifier = (service and service.id or "") .. ":" .. ip
  ngx.ctx.seen = true
  local v = kong.request.get_header("x-in")
  kong.service.request.set_header("x-up", v or "none")
end
function P:header_filter(conf)
  local id = kong.ctx.shared.identifier
  kong.response.set_header("x-out", id and "1" or "0")
end
return P
