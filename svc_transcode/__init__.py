"""svc_transcode: the Kafka-driven worker that turns an original into an HLS ladder."""
