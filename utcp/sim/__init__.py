"""utcp.sim."""
