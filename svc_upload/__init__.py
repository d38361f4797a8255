"""svc_upload: resumable uploads (gRPC and tus), validation, video metadata and status."""
