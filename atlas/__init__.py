"""The `atlas` console command (a thin dispatcher to each package's own CLI)."""
