"""The proof service: HTTP API, monitoring and the web viewer (issue 10)."""
