"""driftline.streams."""
