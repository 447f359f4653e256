"""utcp.middlebox."""
