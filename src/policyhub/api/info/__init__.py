"""Messages <-> the plain records the services work with: one module per resource, each holding
both directions (to_X_info builds a reply, from_X_info reads a message back), and common for
the codecs they share (enum names, times, Struct/ListValue)."""
