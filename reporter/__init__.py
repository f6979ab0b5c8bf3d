"""Reporter: events -> IODEF 2.0 incidents (XML, RFC 8727 JSON), RID delivery, receiver."""
