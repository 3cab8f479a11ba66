return {
  name = "echo",
  fields = {
    { config = {
        type = "record",
        fields = {
          { status = { type = "integer", default = 200, between = { 100, 599 } } },
          { message = { type = "string", default = "echo" } },
        },
      },
    },
  },
}
