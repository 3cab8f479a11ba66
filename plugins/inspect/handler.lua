-- inspect: answers with what the PDK reports about the request (query, headers, captures).
local cjson = require "cjson.safe"
local Inspect = { PRIORITY = 850, VERSION = "1.0.0" }

function Inspect:access(conf)
  local captures = kong.request.get_uri_captures()
  local headers = kong.request.get_headers()
  return kong.response.exit(200, {
    query = kong.request.get_query(),
    raw_query = kong.request.get_raw_query(),
    header = kong.request.get_header(conf.header),
    header_via_table = headers[conf.header],
    named = captures.named,
    unnamed = captures.unnamed,
    scheme = kong.request.get_scheme(),
    host = kong.request.get_host(),
    client_ip = kong.client.get_ip(),
    encoded = cjson.encode({ ok = true }),
  })
end

return Inspect
