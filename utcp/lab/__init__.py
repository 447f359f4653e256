"""utcp.lab."""
