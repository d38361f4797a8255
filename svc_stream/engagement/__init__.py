"""svc_stream's engagement domain."""
