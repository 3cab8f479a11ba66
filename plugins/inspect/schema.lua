return {
  name = "inspect",
  fields = {
    { config = {
        type = "record",
        fields = {
          { header = { type = "string", default = "x-probe" } },
        },
      },
    },
  },
}
