-- wrk script: cycles through a list of requests, one per line "HOST PATH" in the file named by
-- the environment variable BENCH_REQUESTS. The requests are formatted once, in init, so the
-- per-request cost on the load generator is a table lookup.
local reqs = {}
local n = 0
local i = 0

function init(args)
  local f = assert(io.open(os.getenv("BENCH_REQUESTS"), "r"))
  for line in f:lines() do
    local host, path = line:match("^(%S+)%s+(%S+)$")
    if host then
      n = n + 1
      reqs[n] = wrk.format("GET", path, { ["Host"] = host, ["x-in"] = "hello" })
    end
  end
  f:close()
  assert(n > 0, "no requests in " .. os.getenv("BENCH_REQUESTS"))
end

function request()
  i = i + 1
  if i > n then
    i = 1
  end
  return reqs[i]
end
