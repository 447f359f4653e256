"""utcp.tcp."""
