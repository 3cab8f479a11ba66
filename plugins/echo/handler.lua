-- echo: answers the request itself with a JSON description of it (kong.response.exit with a table).
local Echo = { PRIORITY = 900, VERSION = "1.0.0" }

function Echo:access(conf)
  local route = kong.router.get_route()
  return kong.response.exit(conf.status, {
    message = conf.message,
    method = kong.request.get_method(),
    path = kong.request.get_path(),
    query = kong.request.get_query(),
    route = route and route.name,
  }, { ["X-Echo"] = "1" })
end

return Echo
