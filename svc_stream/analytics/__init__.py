"""svc_stream's analytics domain."""
