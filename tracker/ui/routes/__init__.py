"""The dashboard's routes, one module per page family; each parses, calls use cases, renders."""
