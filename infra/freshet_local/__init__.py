"""Local development helpers for Freshet: emulators, a local scheduler and the functions host."""
