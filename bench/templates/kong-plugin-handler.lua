local P = {PRIORITY = @PRIORITY@, VERSION = "1.0.0"}
function P:access(conf)
  local v = kong.request.get_header("x-in")
  kong.service.request.set_header("x-up", v or "none")
end
function P:header_filter(conf)
  kong.response.set_header("x-out", "1")
end
return P
