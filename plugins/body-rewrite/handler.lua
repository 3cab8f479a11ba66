-- body-rewrite: replaces text in the response body. Buffers the whole body with
-- kong.response.get_raw_body (returns nil until the last chunk) and writes it back.
local BodyRewrite = { PRIORITY = 800, VERSION = "1.0.0" }

function BodyRewrite:header_filter(conf)
  kong.response.clear_header("Content-Length")
end

function BodyRewrite:body_filter(conf)
  local body = kong.response.get_raw_body()
  if body then
    local replaced = body:gsub(conf.find, conf.replace)
    kong.response.set_raw_body(replaced)
  end
end

return BodyRewrite
