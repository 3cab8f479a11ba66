local typedefs = require "kong.db.schema.typedefs"

local PLUGIN_NAME = ({...})[1]:match("^kong%.plugins%.([^%.]+)")

return {
  name = PLUGIN_NAME,
  fields = {
    { consumer = typedefs.no_consumer },
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { request_header = typedefs.header_name { required = true, default = "Hello-World" } },
          { response_header = typedefs.header_name { required = true, default = "Bye-World" } },
          { mode = { type = "string", default = "polite", one_of = { "polite", "loud" } } },
          { ttl = { type = "integer", default = 600, between = { 1, 3600 } } },
          { greeting = {
              type = "record",
              fields = {
                { enabled = { type = "boolean", default = false } },
                { text = { type = "string", default = "hello" } },
              },
          } },
        },
        entity_checks = {
          { distinct = { "request_header", "response_header" } },
        },
      },
    },
  },
}
