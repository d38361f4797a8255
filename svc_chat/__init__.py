"""svc_chat: live streams and their real-time chat."""
