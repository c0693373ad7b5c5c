"""Application code the entry points share (not entry points themselves)."""
