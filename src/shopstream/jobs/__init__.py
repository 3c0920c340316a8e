"""Batch jobs that run themselves: what each job does, how a run is locked, retried and
logged, and the scheduler that fires them."""
