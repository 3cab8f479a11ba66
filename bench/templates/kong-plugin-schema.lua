return { name = "@NAME@", fields = { { config = { type = "record", fields = {} } } } }
