-- Each plugin's own view of the shared, read-only `ngx` (see readonly.rs). Reads fall through
-- to the shared table. A write the shared table accepts (ngx.status, and through their own
-- tables ngx.ctx, ngx.var, ngx.header, ngx.arg) takes effect as before; a write it refuses
-- (replacing a function such as ngx.req.get_headers, adding a field) lands in this view only:
-- the plugin's own code sees it, other plugins do not. Nested library tables (ngx.req,
-- ngx.resp, ngx.re, ...) get views of their own the same way. Fields read once are kept in
-- the view (the next read is a plain table hit), so assigning nil to one gives back the
-- shared value rather than removing it.
local setmetatable, rawget, rawset, type, pcall, error, next, tostring =
  setmetatable, rawget, rawset, type, pcall, error, next, tostring
local find = string.find
local view_of = ...

local function assign(t, k, v)
  t[k] = v
end

local overlay
overlay = function(real)
  local fields = view_of(real)
  local proxy = {}
  return setmetatable(proxy, {
    __index = function(p, k)
      local v = fields and rawget(fields, k)
      if v == nil then
        -- A field the shared table computes per request (ngx.status, ngx.ctx): not kept.
        return real[k]
      end
      if type(v) == "table" and view_of(v) then
        v = overlay(v)
      end
      -- A fixed field: kept, so the next read is a plain table hit.
      rawset(p, k, v)
      return v
    end,
    __newindex = function(p, k, v)
      if fields and rawget(fields, k) ~= nil then
        return rawset(p, k, v)
      end
      local ok, err = pcall(assign, real, k, v)
      if ok then
        return
      end
      if type(err) == "string" and find(err, "Protected by the sandbox", 1, true) then
        return rawset(p, k, v)
      end
      error(err, 2)
    end,
    __pairs = function(p)
      local merged = {}
      if fields then
        for k, v in next, fields do
          merged[k] = v
        end
      end
      for k, v in next, p do
        merged[k] = v
      end
      return next, merged, nil
    end,
    __tostring = function()
      return tostring(real)
    end,
    __metatable = false,
  })
end

return overlay
