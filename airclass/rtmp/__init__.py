"""RTMP ingest: publishers (OBS, ffmpeg, GStreamer) in, `airclass.media` frames out.

Sans-IO layers, one per module (amf0, handshake, chunk, messages, flv, connection); `server`
is the only module that does I/O. Import `airclass.rtmp.server` for `RtmpServer`,
`RtmpLimits`, `PublishDenied` and `PublishAuthorizer`.
"""
