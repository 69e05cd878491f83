"""Work spread over worker processes: :mod:`.runner` runs many independent jobs (resumable,
interruptible, a failed job reported and skipped, a dead worker pool replaced) and
:mod:`.workers` makes the pools (capped at the CPUs, quiet, stopped cleanly on Ctrl-C).

Used by the data commands (prepare, preprocess, features); it knows nothing of what a job
does, and imports only the leaves.
"""
