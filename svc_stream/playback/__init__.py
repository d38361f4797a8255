"""svc_stream's playback domain."""
