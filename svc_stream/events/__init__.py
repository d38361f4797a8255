"""svc_stream's events domain."""
