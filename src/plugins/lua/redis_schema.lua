-- kong.tools.redis.schema: the `redis` record Kong's rate-limiting plugins (and third-party
-- plugins) put in their config schemas. The typedefs module is passed in.
local typedefs = ...

return {
  config_schema = {
    type = "record",
    description = "Redis configuration",
    fields = {
      { host = typedefs.host },
      { port = typedefs.port({ default = 6379 }) },
      { timeout = typedefs.timeout({ default = 2000 }) },
      { username = { type = "string", referenceable = true,
          description = "Username for Redis ACL authentication (Redis 6+); without it, AUTH uses the password alone." } },
      { password = { type = "string", encrypted = true, referenceable = true, len_min = 0,
          description = "Password for Redis; absent or empty: no AUTH." } },
      { database = { type = "integer", default = 0,
          description = "Database to select." } },
      { ssl = { type = "boolean", required = false, default = false,
          description = "Connect to Redis over TLS." } },
      { ssl_verify = { type = "boolean", required = false, default = false,
          description = "Verify Redis's certificate (against --lua-ssl-trusted-certificate, else the system's store)." } },
      { server_name = typedefs.sni({ required = false }) },
    },
  },
}
