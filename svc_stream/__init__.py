"""svc_stream: playback, watch/engagement events, analytics (sole owner of chDB)."""
