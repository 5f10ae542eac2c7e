"""Services and the templates they own."""
