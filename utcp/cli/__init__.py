"""utcp.cli."""
