"""Drawing: boxes and labels on a copy of a photo, contact sheets of faces."""
