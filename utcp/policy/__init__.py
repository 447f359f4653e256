"""utcp.policy."""
