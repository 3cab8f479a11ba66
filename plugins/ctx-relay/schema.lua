local name = ({...})[1]:match("^kong%.plugins%.([^%.]+)")
return {
  name = name,
  fields = {
    { config = {
        type = "record",
        fields = {
          { role = { type = "string", required = true, one_of = { "writer", "reader" } } },
          { value = { type = "string" } },
        },
        entity_checks = {
          { conditional = { if_field = "role", if_match = { eq = "writer" },
                            then_field = "value", then_match = { required = true } } },
        },
      },
    },
  },
}
