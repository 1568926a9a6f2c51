"""Media frames: where RTMP ingest and HLS packaging meet (neither imports the other)."""
