-- ctx-relay: passes a value from one plugin to a later one through kong.ctx.shared.
-- Run it twice (as two plugins, e.g. ctx-writer at a higher priority and ctx-reader at a
-- lower one): the writer stores conf.value, the reader forwards it upstream as a header.
local Relay = { PRIORITY = 700, VERSION = "1.0.0" }

function Relay:access(conf)
  if conf.role == "writer" then
    kong.ctx.shared.relayed = conf.value
    kong.ctx.plugin.wrote = true
  else
    local v = kong.ctx.shared.relayed
    kong.service.request.set_header("X-Relayed", v or "nothing")
    kong.service.request.set_header("X-Plugin-Ctx", tostring(kong.ctx.plugin.wrote))
  end
end

return Relay
