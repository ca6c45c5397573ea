"""The service's routes, one module per area; each handler is a thin call into the library."""
