"""FFmpeg/ffprobe helpers shared by svc_upload (validation on complete) and
svc_transcode (the ladder): one way to run them, one notion of "usable media"."""
