"""AIRClass: live lectures over a school's own network (RTMP in, HLS out)."""

__version__ = "0.1.0"
