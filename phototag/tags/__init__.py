"""What phototag writes: EXIF tags in the photo, XMP sidecars beside it, and tags rebuilt from the index."""
