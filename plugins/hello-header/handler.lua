-- hello-header: adds a header to the request sent upstream and one to the response,
-- in the style of Kong's plugin template (kong-plugin/handler.lua).
local plugin = {
  PRIORITY = 1000, -- runs before most bundled plugins
  VERSION = "0.1.0",
}

function plugin:access(conf)
  kong.service.request.set_header(conf.request_header, "this is on a request")
  if conf.greeting.enabled then
    kong.service.request.set_header("X-Greeting", conf.greeting.text)
  end
end

function plugin:header_filter(conf)
  kong.response.set_header(conf.response_header, "this is on the response")
  kong.response.set_header("X-Hello-Mode", conf.mode)
end

return plugin
