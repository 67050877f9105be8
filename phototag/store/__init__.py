"""The SQLite index: its schema, the file and its lock, the questions asked of it, exports."""
