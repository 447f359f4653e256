"""utcp.io."""
