"""driftline.sinks."""
