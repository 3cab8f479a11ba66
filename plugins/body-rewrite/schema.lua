return {
  name = "body-rewrite",
  fields = {
    { config = {
        type = "record",
        fields = {
          { find = { type = "string", required = true } },
          { replace = { type = "string", required = true, default = "", len_min = 0 } },
        },
      },
    },
  },
}
