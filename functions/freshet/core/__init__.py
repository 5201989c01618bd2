"""Pure rules and models: no I/O, no google.*, no Flask. `now` is always passed in."""
