"""The control loop's steps (tick, run, recover, manual runs) and the syncs."""
