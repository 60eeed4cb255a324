"""HTTP routes, one module per area; api.main includes each module's `router`."""
